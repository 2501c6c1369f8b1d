"""Progress the streamer sees: downloads through the real hub client, engine load and warm-up.

Downloads run through the unmodified ``huggingface_hub`` client against a local hub double.
Load progress is checked on the real engine thread with the tiny F5 model, and its estimate
logic with a clock the test moves (so nothing depends on how fast this machine is).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.config import parse_config
from bot.setup.progress import (
    DownloadProgress,
    LoadProgress,
    engine_setup,
    format_bytes,
    format_duration,
)
from engine.base import EngineState
from engine.config import F5Config, VoicesConfig
from tests.support import REPO
from tests.support.hub_double import hub_double

REPO_ID = "someone/tiny-weights"


class EveryUpdate(DownloadProgress):
    """Logs on every counter update, so a short local download shows its steps."""

    interval_s = 0.0
    refresh_s = 0.0


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.setup.progress"]


def test_a_download_through_the_hub_client_is_logged_with_time_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from huggingface_hub import hf_hub_download

    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    data = np.random.default_rng(0).integers(0, 256, 25_000_000, dtype=np.uint8).tobytes()
    with hub_double() as hub:
        hub.add(REPO_ID, "F5/model_tiny.safetensors", data)
        path = hf_hub_download(
            REPO_ID,
            "F5/model_tiny.safetensors",
            endpoint=hub.url,
            cache_dir=tmp_path / "hub",
            tqdm_class=EveryUpdate,
        )
    assert Path(path).read_bytes() == data
    lines = progress_lines(caplog)
    during = [line for line in lines if line.startswith("downloading model_tiny.safetensors: ")]
    assert during, lines
    shares = [int(line.split("(", 1)[1].split("%", 1)[0]) for line in during]
    assert shares == sorted(shares)
    assert shares[0] == 0
    # The client reads in 10 MiB pieces: 25 MB arrive in three updates, two of them partial.
    partial = [line for line, share in zip(during, shares, strict=True) if 0 < share < 100]
    assert partial, during
    assert all("of 25 MB" in line and "/s, about" in line and "left" in line for line in partial)
    assert lines[-1].startswith("downloaded model_tiny.safetensors: 25 MB in ")


def test_an_interrupted_download_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    bar = EveryUpdate(total=4_000_000, desc="vocab.txt", unit="B")
    bar.update(1_000_000)
    bar.close()
    bar.close()  # closing twice reports once
    lines = progress_lines(caplog)
    assert lines[-1].startswith("download stopped after vocab.txt: 1 MB in ")
    assert sum(line.startswith("download stopped") for line in lines) == 1
    assert any("1 MB of 4 MB (25%)" in line for line in lines)


def test_sizes_and_durations_read_naturally() -> None:
    assert format_bytes(1_350_000_000) == "1.35 GB"
    assert format_bytes(412_300_000) == "412 MB"
    assert format_bytes(950_000) == "950 kB"
    assert format_bytes(12) == "12 B"
    assert format_duration(42.4) == "42 s"
    assert format_duration(200) == "3 min 20 s"
    assert format_duration(180) == "3 min"
    assert format_duration(3900) == "1 h 5 min"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_load_steps_are_timed_recorded_and_used_as_estimates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    history = tmp_path / "state" / "load-times.json"
    clock = Clock()
    first = LoadProgress(history, "f5|cuda", heartbeat_s=3600, clock=clock)
    await first.start()
    assert first.previous == []
    # A first start: the engine thread's own report, a fetch, the model load, warm-up.
    for state, detail, seconds in [
        (EngineState.LOADING, "loading the f5 engine", 0.5),
        (EngineState.LOADING, "fetching hf://a/b/model.safetensors (downloaded on first use)", 90),
        (EngineState.LOADING, "loading F5-TTS on cuda (fp16)", 12),
        (EngineState.WARMING, "warming up F5-TTS", 8),
    ]:
        first(state, detail)
        assert first.time_left() is None  # nothing recorded yet: no guess
        clock.now += seconds
    line = first.still_line()
    assert line is not None
    assert line.startswith("still warming up F5-TTS: 1 min 50 s so far")
    assert "left" not in line
    first(EngineState.READY, "f5 engine ready")
    assert first.still_line() is None
    await first.close()
    ready = progress_lines(caplog)[-1]
    assert ready == ("the voice engine is ready after 1 min 50 s (loading 1 min 42 s, warming 8 s)")
    saved = json.loads(history.read_text())
    assert [name for name, _ in saved["f5|cuda"]] == [
        "loading/loading",
        "loading/fetching",
        "loading/loading#2",
        "warming/warming",
    ]

    # The next start of the same set-up knows how long each step took.
    second = LoadProgress(history, "f5|cuda", heartbeat_s=3600, clock=clock)
    await second.start()
    assert len(second.previous) == 4
    second(EngineState.LOADING, "loading the f5 engine")
    clock.now += 0.5
    second(EngineState.LOADING, "fetching hf://a/b/model.safetensors (downloaded on first use)")
    clock.now += 0.2  # cached this time
    second(EngineState.LOADING, "loading F5-TTS on cuda (fp16)")
    clock.now += 5
    left = second.time_left()
    # 7 s more of loading, then 8 s of warm-up; the first start's 90 s fetch is not counted.
    assert left == pytest.approx(15.0)
    line = second.still_line()
    assert line is not None
    assert line == "still loading F5-TTS on cuda (fp16): 6 s so far, about 15 s left"
    clock.now += 20  # slower than last time
    second(EngineState.WARMING, "warming up F5-TTS")
    clock.now += 9
    line = second.still_line()
    assert line is not None
    assert line.endswith("should be ready any moment")
    await second.close()

    # Another set-up has its own timings.
    other = LoadProgress(history, "f5|cpu", clock=clock)
    await other.start()
    assert other.previous == []
    await other.close()


async def test_a_failed_load_records_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    history = tmp_path / "load-times.json"
    clock = Clock()
    progress = LoadProgress(history, "x", heartbeat_s=3600, clock=clock)
    await progress.start()
    progress(EngineState.LOADING, "loading F5-TTS on cpu (fp32)")
    clock.now += 3
    progress(EngineState.ERROR, "F5-TTS weights are missing")
    assert progress.still_line() is None
    await progress.close()
    assert not history.exists()
    assert progress_lines(caplog) == []


async def test_heartbeat_lines_appear_while_a_step_runs_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    progress = LoadProgress(None, "x", heartbeat_s=0.01, announce=True)
    await progress.start()
    progress(EngineState.LOADING, "loading F5-TTS on cpu (fp32)")
    for _ in range(500):
        if any(line.startswith("still loading F5-TTS") for line in progress_lines(caplog)):
            break
        await asyncio.sleep(0.01)
    progress(EngineState.READY, "ready")
    await progress.close()
    lines = progress_lines(caplog)
    assert lines[0] == "loading F5-TTS on cpu (fp32)"  # announce=True logs each step
    assert any(line.startswith("still loading F5-TTS on cpu (fp32): ") for line in lines)
    assert lines[-1].startswith("the voice engine is ready after ")


@pytest.mark.slow
async def test_the_real_engine_thread_reports_its_steps(
    tmp_path: Path, tiny_f5: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from engine.f5 import F5Engine
    from engine.worker import EngineWorker

    caplog.set_level(logging.INFO, logger="bot.setup.progress")
    history = tmp_path / "load-times.json"
    progress = LoadProgress(history, "tiny", heartbeat_s=3600)
    await progress.start()
    engine = F5Engine(F5Config(**tiny_f5), VoicesConfig(dir=tmp_path / "voices"), device="cpu")
    worker = EngineWorker(engine, on_state=progress)
    await worker.start()
    try:
        assert await worker.wait_ready() is EngineState.READY
    finally:
        await worker.close()
        await progress.close()
    ready = [line for line in progress_lines(caplog) if line.startswith("the voice engine")]
    assert len(ready) == 1
    assert "(loading " in ready[0]
    assert ", warming " in ready[0]
    steps = [name for name, _ in json.loads(history.read_text())["tiny"]]
    assert steps == ["loading/loading", "loading/loading#2", "warming/warming"]


def test_setups_differ_by_engine_device_and_model(tmp_path: Path) -> None:
    base = parse_config({}, tmp_path)
    cpu = parse_config({"engine": {"device": "cpu"}}, tmp_path)
    tiny = parse_config({"engine": {"f5": {"model": {"dim": 64, "depth": 2}}}}, tmp_path)
    assert len({engine_setup(base), engine_setup(cpu), engine_setup(tiny)}) == 3
    assert engine_setup(base) == engine_setup(parse_config({}, tmp_path))


@pytest.mark.slow
@pytest.mark.audio
def test_the_running_bot_logs_when_its_voice_engine_is_ready(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: Any
) -> None:
    import os
    import subprocess
    import sys

    import yaml

    from tests.support.f5 import write_tiny_f5_config

    config = write_tiny_f5_config(tmp_path, tiny_f5, seed=5)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data.update(
        audio={"device": pulse_server.device_name, "gap_ms": 0},
        chat={"source": "terminal"},
        storage={"dir": "state"},
        web={"enabled": False},
    )
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        input="hello chat\n",
        cwd=REPO,
        env={**os.environ, **pulse_server.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "the voice engine is ready after" in done.stderr
    saved = json.loads((tmp_path / "state" / "load-times.json").read_text(encoding="utf-8"))
    (steps,) = saved.values()
    assert [name for name, _ in steps][-1] == "warming/warming"
