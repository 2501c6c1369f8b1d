"""End-to-end speech check: typed words come out of the speakers as intelligible speech.

The bot runs as a user would run it (``python -m bot --config PATH`` reading chat from stdin)
with the eSpeak NG engine, so the whole chain carries real speech: terminal source, filters,
commands, queue, engine thread, sounddevice player, PulseAudio null sink. The sink's monitor
is recorded and transcribed offline by pocketsphinx (its English model ships in its wheel),
and each transcript must match the typed words within a word-error threshold.

Lines are separated by a long ``audio.gap_ms`` so the recording can be cut into one segment per
message at the silences. The voice is eSpeak's ``en-us+klatt3`` at 150 wpm, measured to be the
recogniser's best (see /work/shared/notes/espeak-and-asr.md).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from engine.config import EspeakConfig, VoicesConfig
from engine.espeak import EspeakEngine, map_voice
from tests.support import REPO
from tests.support.asr import transcribe, wer, words
from tests.support.audio import PulseServer, SinkRecorder
from tests.support.f5 import write_alice

pytestmark = [pytest.mark.audio, pytest.mark.slow]

MAX_WER = 0.5
GAP_MS = 1500
ESPEAK = {"voice": "en-us+klatt3", "rate": 150, "pitch": 50}
LINES = [
    "hello world this is a test",
    "the quick brown fox jumps over the lazy dog",
    "good morning everyone welcome to the stream",
]
_TIMEOUT_S = 120.0


def _config(tmp_path: Path, pulse: PulseServer) -> Path:
    voices = tmp_path / "voices"
    voices.mkdir()
    write_alice(voices)
    data: dict[str, Any] = {
        "engine": {"name": "espeak", "espeak": ESPEAK},
        "voices": {"dir": str(voices)},
        "audio": {"device": pulse.device_name, "gap_ms": GAP_MS},
        "chat": {"source": "terminal"},
        "tts": {"say_names": False},
        "storage": {"dir": str(tmp_path / "state")},
        "web": {"port": 0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Bot:
    """The bot CLI as a child process, fed line by line, its output watched as it comes."""

    def __init__(self, config: Path, pulse: PulseServer, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **pulse.env, "PYTHONPATH": str(REPO)},
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines[name].append(line)
            self._events.put((name, line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, stream: str, text: str, timeout_s: float = _TIMEOUT_S) -> str:
        """Block until a new line on ``stream`` contains ``text``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on {stream} in {timeout_s} s:\n{self.log()}")
            try:
                name, line = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"bot exited waiting for {text!r}:\n{self.log()}"
                    ) from None
                continue
            if name == stream and text in line:
                return line

    def finish(self, timeout_s: float = _TIMEOUT_S) -> int:
        """Close stdin (EOF) and wait for the bot to speak what is queued and exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return "\n".join(self.lines["stderr"][-60:] + self.lines["stdout"][-20:])

    def spoken(self) -> list[tuple[str, str]]:
        """(voice, text) of every "speaking" log line, in order."""
        out = []
        for line in self.lines["stderr"]:
            if " speaking " in line and "(voice " in line:
                head, _, text = line.partition("): ")
                out.append((head.rsplit("(voice ", 1)[1], text))
        return out


@pytest.fixture
def bot_factory(tmp_path: Path, pulse_server: PulseServer) -> Any:
    bots: list[Bot] = []

    def start() -> Bot:
        bot = Bot(_config(tmp_path, pulse_server), pulse_server, tmp_path)
        bots.append(bot)
        bot.wait_for("stderr", "espeak engine ready")
        return bot

    yield start
    for bot in bots:
        bot.kill()


def _segments(audio: np.ndarray, rate: int, min_gap_s: float = 0.9) -> list[np.ndarray]:
    """Cut a recording at silences longer than ``min_gap_s`` (message gaps, not word gaps)."""
    frame = rate // 50
    count = len(audio) // frame
    levels = np.sqrt(np.mean(audio[: count * frame].reshape(count, frame) ** 2, axis=1))
    loud = np.flatnonzero(levels > 0.003)
    if loud.size == 0:
        return []
    spans: list[list[int]] = [[int(loud[0]), int(loud[0])]]
    for index in loud[1:]:
        if (index - spans[-1][1]) * frame / rate > min_gap_s:
            spans.append([int(index), int(index)])
        else:
            spans[-1][1] = int(index)
    pad = frame * 5
    return [
        audio[max(0, a * frame - pad) : (b + 1) * frame + pad]
        for a, b in spans
        if (b - a + 1) * frame / rate > 0.2
    ]


def _voice_print(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mean log spectrum (0-5 kHz, 40 bands) over voiced frames: what a voice sounds like."""
    frame = int(0.04 * rate)
    count = len(audio) // frame
    frames = audio[: count * frame].reshape(count, frame)
    frames = frames[np.sqrt(np.mean(frames**2, axis=1)) > 0.02]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)).mean(axis=0)
    top = int(5000 * frame / rate)
    bands = np.array_split(spectrum[1:top], 40)
    return np.log10(np.array([b.mean() for b in bands]) + 1e-6)


def _check_heard(segment: np.ndarray, rate: int, typed: str) -> str:
    heard = transcribe(segment, rate)
    assert wer(typed, heard) <= MAX_WER, f"typed {typed!r}, heard {heard!r}"
    return heard


def test_typed_lines_are_heard_as_those_words(
    bot_factory: Any, sink_recorder: SinkRecorder
) -> None:
    sink_recorder.start()
    bot = bot_factory()
    for line in LINES:
        bot.send(line)
    assert bot.finish() == 0, bot.log()
    recording = sink_recorder.stop()
    assert bot.spoken() == [("default", line) for line in LINES]
    segments = _segments(recording, sink_recorder.rate)
    assert len(segments) == len(LINES), f"{len(segments)} segments for {len(LINES)} lines"
    for segment, line in zip(segments, LINES, strict=True):
        _check_heard(segment, sink_recorder.rate, line)
    # Control: the check can fail. Each segment matches its own line, not another one.
    wrong = transcribe(segments[0], sink_recorder.rate)
    assert wer(LINES[1], wrong) > MAX_WER


def test_voice_command_changes_the_voice_and_words_still_come_through(
    bot_factory: Any, sink_recorder: SinkRecorder
) -> None:
    sink_recorder.start()
    bot = bot_factory()
    bot.send(LINES[0])
    bot.send("!voice alice")
    bot.wait_for("stdout", "your voice is now alice")
    bot.send(LINES[0])
    bot.send("!voice reset")
    bot.wait_for("stdout", "your voice is default again")
    bot.send(LINES[0])
    assert bot.finish() == 0, bot.log()
    recording = sink_recorder.stop()
    assert bot.spoken() == [("default", LINES[0]), ("alice", LINES[0]), ("default", LINES[0])]
    segments = _segments(recording, sink_recorder.rate)
    assert len(segments) == 3, f"{len(segments)} segments for 3 lines"
    for segment in segments:
        _check_heard(segment, sink_recorder.rate, LINES[0])
    # alice really is another voice: the same words in her voice differ from the default
    # voice far more than the default voice differs from itself.
    assert map_voice("alice", EspeakConfig(**ESPEAK)) != map_voice("default", EspeakConfig())
    prints = [_voice_print(s, sink_recorder.rate) for s in segments]
    same = float(np.max(np.abs(prints[0] - prints[2])))
    other = float(np.max(np.abs(prints[0] - prints[1])))
    assert other > 3 * same + 0.05, f"default vs alice {other:.3f}, default vs itself {same:.3f}"


def test_skip_stops_a_long_message_and_the_next_one_is_heard(
    bot_factory: Any, sink_recorder: SinkRecorder, tmp_path: Path
) -> None:
    long_line = (
        "this message is very long and it will be stopped before the end because we talk "
        "about the weather and the game and the music and the food and many other things "
        "and only at the very end do we say the final words purple elephant"
    )
    engine = EspeakEngine(EspeakConfig(**ESPEAK), VoicesConfig(dir=tmp_path / "none"))
    engine.load(lambda _s, _d: None)
    full_s = sum(c.size for c in engine.synthesize(long_line, "default", lambda: False))
    full_s /= engine.sample_rate

    sink_recorder.start()
    bot = bot_factory()
    bot.send(long_line)
    bot.wait_for("stderr", "speaking ")
    time.sleep(1.5)  # let a little of it play
    bot.send("!skip")
    bot.wait_for("stdout", "skipped")
    mark = sink_recorder.frames
    bot.send(LINES[0])
    assert bot.finish() == 0, bot.log()
    recording = sink_recorder.stop()
    rate = sink_recorder.rate

    assert [text for _, text in bot.spoken()] == [long_line, LINES[0]]
    before, after = recording[:mark], recording[mark:]
    played = _segments(before, rate)
    assert played, "nothing of the long message was heard"
    played_s = sum(len(s) for s in played) / rate
    assert played_s < 0.5 * full_s, f"{played_s:.1f} s of a {full_s:.1f} s message played"
    heard_before = words(transcribe(before, rate))
    assert "elephant" not in heard_before
    assert "purple" not in heard_before
    segments = _segments(after, rate)
    assert len(segments) == 1, f"{len(segments)} segments after the skip"
    _check_heard(segments[0], rate, LINES[0])


def test_recogniser_controls() -> None:
    """The recogniser hears nothing in silence and rejects unrelated speech."""
    rate = 48_000
    assert transcribe(np.zeros(rate * 2, np.float32), rate) == ""
    engine = EspeakEngine(EspeakConfig(**ESPEAK), VoicesConfig(dir=Path("/nonexistent")))
    engine.load(lambda _s, _d: None)
    speech = np.concatenate(list(engine.synthesize(LINES[1], "default", lambda: False)))
    assert wer(LINES[1], transcribe(speech, engine.sample_rate)) <= MAX_WER
    assert wer(LINES[2], transcribe(speech, engine.sample_rate)) > MAX_WER
    assert wer(LINES[1], transcribe(speech[::-1].copy(), engine.sample_rate)) > MAX_WER
    assert wer("a b c", "a x c") == pytest.approx(1 / 3)
    assert wer("hello world", "") == 1.0
