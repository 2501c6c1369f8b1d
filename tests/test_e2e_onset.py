"""The first message after start begins cleanly at the speaker, run after run (issue 12.14).

In 17 end-to-end runs two had the first words of the first message garbled, with ALSA
reporting underruns right at the start of playback. The cause: the output stream started
running as soon as the device was opened, while ``engine.name: auto`` was still importing torch
(a C extension's import holds the GIL for seconds), so PortAudio's callbacks were starved in
bursts; a first clip queued into such a stream lost blocks of its first words. The player now
starts the stream with the first clip and lets the clip's first sample out only after a short
pre-roll of steady callbacks (``bot.speech.player.PREROLL_S``).

Each run here is the real bot process (``python -m bot``, terminal source, ``engine.name:
auto``, which on this GPU-less machine imports torch, then speaks with eSpeak NG), with the
first chat line typed before the engine is even loaded, recorded at the PulseAudio null sink's
monitor. The recording of the first message must be the engine's own rendering of that line,
sample for sample up to resampling: aligned by cross-correlation, the first 0.8 s (where the
garbling was heard) and the whole message correlate with the reference, and the envelope has
no dropout (a missing 10 ms block shows as a gap the reference does not have).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import yaml

from engine.config import EspeakConfig, VoicesConfig
from engine.espeak import EspeakEngine
from tests.support import REPO
from tests.support.audio import PulseServer, SinkRecorder, active_span, find_offset

pytestmark = [pytest.mark.audio, pytest.mark.slow]

RUNS = 6
FIRST_LINE = "good morning everyone welcome to the stream"
ESPEAK = {"voice": "en-us+klatt3", "rate": 150, "pitch": 50}
ONSET_S = 0.8
MIN_ONSET_CORRELATION = 0.97
MIN_WHOLE_CORRELATION = 0.95
_TIMEOUT_S = 120.0


def _config(tmp_path: Path, pulse: PulseServer) -> Path:
    data: dict[str, Any] = {
        "engine": {"name": "auto", "espeak": ESPEAK},
        "voices": {"dir": str(tmp_path / "voices")},
        "audio": {"device": pulse.device_name},
        "chat": {"source": "terminal"},
        "tts": {"say_names": False},
        "storage": {"dir": str(tmp_path / "state")},
        "web": {"port": 0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _reference(tmp_path: Path, rate: int) -> np.ndarray:
    """The engine's own rendering of the first line, at the sink's rate."""
    engine = EspeakEngine(EspeakConfig(**ESPEAK), VoicesConfig(dir=tmp_path / "none"))
    engine.load(lambda _s, _d: None)
    chunks = list(engine.synthesize(FIRST_LINE, "default", lambda: False))
    audio = np.concatenate(chunks).astype(np.float32)
    resampled: np.ndarray = soxr.resample(audio, engine.sample_rate, rate)
    return resampled.astype(np.float32)


def _run_bot(config: Path, pulse: PulseServer, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """One start of the bot: the first line is typed at once, then EOF (speak, then exit)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        input=FIRST_LINE.encode() + b"\n",
        capture_output=True,
        cwd=cwd,
        env={**os.environ, **pulse.env, "PYTHONPATH": str(REPO)},
        timeout=_TIMEOUT_S,
        check=False,
    )


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    denom = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(np.dot(a64, b64) / denom) if denom else 0.0


def _envelope(audio: np.ndarray, rate: int, frame_s: float = 0.01) -> np.ndarray:
    frame = max(1, int(frame_s * rate))
    count = len(audio) // frame
    blocks = audio[: count * frame].astype(np.float64).reshape(count, frame)
    envelope: np.ndarray = np.sqrt(np.mean(blocks**2, axis=1))
    return envelope


def _check_onset(recording: np.ndarray, reference: np.ndarray, rate: int) -> dict[str, float]:
    """Compare the first message in ``recording`` with ``reference``; the numbers it measured."""
    start, _ = active_span(recording, threshold=0.01)
    ref_start, _ = active_span(reference, threshold=0.01)
    assert start > 0, "nothing was heard"
    # Align on the first second of speech, searched around where the sound begins.
    window = recording[max(0, start - rate) : start + len(reference) + rate]
    offset = max(0, start - rate) + find_offset(window, reference)
    heard = recording[offset : offset + len(reference)]
    assert len(heard) == len(reference), "the recording ends before the message does"
    onset = slice(ref_start, ref_start + int(ONSET_S * rate))
    onset_corr = _correlation(heard[onset], reference[onset])
    whole_corr = _correlation(heard, reference)
    # A dropout: a 10 ms frame silent in the recording where the reference is clearly loud.
    env_heard = _envelope(heard, rate)
    env_ref = _envelope(reference, rate)
    loud = env_ref > 0.05
    dropouts = int(np.count_nonzero(loud & (env_heard < 0.1 * env_ref)))
    numbers = {
        "onset_corr": onset_corr,
        "whole_corr": whole_corr,
        "dropouts": float(dropouts),
        "lead_ms": 1000.0 * (offset + ref_start - start) / rate,
    }
    assert onset_corr >= MIN_ONSET_CORRELATION, f"first {ONSET_S} s garbled: {numbers}"
    assert whole_corr >= MIN_WHOLE_CORRELATION, f"message garbled: {numbers}"
    assert dropouts == 0, f"dropouts in the first message: {numbers}"
    return numbers


def test_the_first_message_after_start_begins_cleanly_every_time(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    config = _config(tmp_path, pulse_server)
    reference = _reference(tmp_path, sink_recorder.rate)
    results = []
    for run in range(RUNS):
        sink_recorder.start()
        done = _run_bot(config, pulse_server, tmp_path)
        recording = sink_recorder.stop()
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode == 0, stderr[-3000:]
        assert "speaking" in stderr, stderr[-3000:]
        numbers = _check_onset(recording, reference, sink_recorder.rate)
        results.append(numbers)
        # ALSA reports every underrun on stderr ("underrun occurred"); at the start of
        # playback is where they garbled the first words.
        assert "underrun" not in stderr.lower(), f"run {run}: {stderr[-3000:]}"
    print("onset runs:", results)


@pytest.mark.parametrize("fault", ["gap", "lost"])
def test_the_check_catches_a_garbled_start(tmp_path: Path, fault: str) -> None:
    """Control: the comparison fails when one device block of the first words goes wrong.

    An underrun either plays a block of silence in the middle of a word (the rest comes
    late: ``gap``) or loses the block it should have played (``lost``).
    """
    rate = 48_000
    reference = _reference(tmp_path, rate)
    lead = np.zeros(rate // 2, np.float32)
    assert _check_onset(np.concatenate([lead, reference, lead]), reference, rate)["dropouts"] == 0
    env = _envelope(reference, rate)
    ref_start, _ = active_span(reference, threshold=0.01)
    frame = int(0.01 * rate)
    loud = [i for i in np.flatnonzero(env > 0.1) if ref_start + int(0.1 * rate) < i * frame]
    cut = int(loud[0]) * frame  # inside a loud part of the first word
    block = int(0.04 * rate)  # one 40 ms block
    if fault == "gap":
        faulty = np.concatenate([reference[:cut], np.zeros(block, np.float32), reference[cut:]])
    else:
        faulty = np.concatenate([reference[:cut], reference[cut + block :]])
    with pytest.raises(AssertionError):
        _check_onset(np.concatenate([lead, faulty, lead]), reference, rate)
