"""End to end on real components: a terminal line goes through the bot and is heard at the sink.

Real f5-tts code with tiny checkpoints (noise, not speech: we assert that the right amount of
audio arrives, not what it says), the real engine thread, the real sounddevice player on a
PulseAudio null sink whose monitor is recorded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bot.app import App
from bot.config import load_config
from bot.sources.terminal import TerminalSource
from engine.base import EngineState
from engine.worker import SynthesisJob
from tests.support import REPO
from tests.support.audio import PulseServer, SinkRecorder, active_span, rms
from tests.support.f5 import write_tiny_f5_config

pytestmark = [pytest.mark.audio, pytest.mark.slow]


def _config(tmp_path: Path, tiny_f5: dict[str, Any], pulse: PulseServer, **extra: Any) -> Path:
    path = write_tiny_f5_config(tmp_path, tiny_f5, seed=7)
    data = yaml.safe_load(path.read_text())
    data["audio"] = {"device": pulse.device_name, "gap_ms": 0}
    data["chat"] = {"source": "terminal"}
    data["storage"] = {"dir": str(tmp_path / "state")}
    data["web"] = {"port": 0}  # never clash with a running bot or another test
    data.update(extra)
    path.write_text(yaml.safe_dump(data))
    return path


async def test_a_terminal_line_is_heard_at_the_sink(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    cfg = load_config(_config(tmp_path, tiny_f5, pulse_server))
    app = App(cfg)
    jobs: list[SynthesisJob] = []
    submit = app.worker.submit

    def recording_submit(text: str, voice: str) -> SynthesisJob:
        job = submit(text, voice)
        jobs.append(job)
        return job

    app.worker.submit = recording_submit  # type: ignore[method-assign]
    events: list[tuple[str, str]] = []
    app.speaker.add_listener(lambda ev: events.append((ev.kind.value, ev.item.text)))
    await app.start()
    try:
        assert await asyncio.wait_for(app.worker.wait_ready(), 120) is EngineState.READY
        sink_recorder.start()
        read_fd, write_fd = os.pipe()
        os.write(write_fd, b"hello chat, this is a test\n")
        os.close(write_fd)
        status = await asyncio.wait_for(app.run(TerminalSource(fd=read_fd)), 120)
        os.close(read_fd)
        recording = sink_recorder.stop()
    finally:
        await app.close()
    assert status == 0
    assert events == [
        ("queued", "hello chat, this is a test"),
        ("started", "hello chat, this is a test"),
        ("finished", "hello chat, this is a test"),
    ]
    assert len(jobs) == 1
    assert jobs[0].sample_rate == 24_000
    # The engine's output is noise of a known length: that much sound must reach the sink.
    start, end = active_span(recording, threshold=1e-4)
    heard_s = (end - start) / sink_recorder.rate
    assert rms(recording[start:end]) > 1e-4
    assert heard_s > 0.5


def test_cli_speaks_piped_lines_and_exits_zero_on_eof(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    config = _config(tmp_path, tiny_f5, pulse_server)
    sink_recorder.start()
    lines = "first line\n\n   \n😂😂😂\nsecond line here\n" + "x " * 3000 + "\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        input=lines.encode(),
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)},
        timeout=300,
        check=False,
    )
    recording = sink_recorder.stop()
    log = done.stderr.decode(errors="replace")
    assert done.returncode == 0, log
    spoken = [ln.split(": ", 2)[-1] for ln in log.splitlines() if "speaking " in ln]
    # Empty, whitespace-only and emoji-only lines say nothing; the 6,000-char line is capped.
    assert len(spoken) == 3, log
    assert spoken[0] == "first line"
    assert spoken[1] == "second line here"
    assert 0 < len(spoken[2]) <= 500
    assert "Traceback" not in log
    assert rms(recording) > 1e-5


def test_cli_reports_a_broken_config_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("engine:\n  f5:\n    nfe_step: lots\n  name: whisper\n")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(bad), "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "engine.f5.nfe_step" in done.stderr
    assert "'lots'" in done.stderr
    assert "engine.name" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_say_writes_a_wav(tmp_path: Path, tiny_f5: dict[str, Any]) -> None:
    import soundfile as sf

    config = write_tiny_f5_config(tmp_path, tiny_f5)
    out = tmp_path / "hello.wav"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(config),
            "say",
            "hello there",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(str(out))
    assert rate == 24_000
    assert audio.ndim == 1
    assert len(audio) > rate // 4
    assert np.isfinite(audio).all()


def test_cli_without_an_audio_device_names_the_devices_command(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    config = _config(tmp_path, tiny_f5, pulse_server)
    data = yaml.safe_load(config.read_text())
    data["audio"]["device"] = "no such speaker"
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        input=b"hello\n",
        capture_output=True,
        text=False,
        cwd=tmp_path,
        env={**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "ishowtts devices" in err
    assert "Traceback" not in err
