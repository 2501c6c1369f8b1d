"""Engine selection on this CPU-only machine: espeak, f5 (fails with the reason), auto."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.base import EngineError, EngineState
from engine.config import EngineConfig, VoicesConfig
from engine.espeak import EspeakEngine
from engine.factory import AutoEngine, create_engine, cuda_problem
from engine.worker import EngineWorker
from tests.support import REPO


def _config(tmp_path: Path, **engine: Any) -> tuple[EngineConfig, VoicesConfig]:
    """The engine's own sections, validated as the config file would be (paths from tmp_path)."""
    (tmp_path / "voices" / "alice").mkdir(parents=True, exist_ok=True)
    context = {"base_dir": tmp_path}
    return (
        EngineConfig.model_validate(engine, context=context),
        VoicesConfig.model_validate({"dir": "voices"}, context=context),
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub and an empty hub cache: the released F5 weights cannot be found."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _events() -> tuple[list[tuple[EngineState, str]], Any]:
    events: list[tuple[EngineState, str]] = []
    return events, lambda state, detail: events.append((state, detail))


def test_factory_imports_no_torch_and_builds_without_loading(tmp_path: Path) -> None:
    script = (
        "import sys; from engine.config import EngineConfig, VoicesConfig;"
        "from engine.factory import create_engine;"
        "engines = [create_engine(EngineConfig(name=n), VoicesConfig())"
        " for n in ('espeak', 'auto')];"
        "print(' '.join(type(e).__name__ for e in engines), 'torch' in sys.modules,"
        " any(m == 'bot' or m.startswith('bot.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["EspeakEngine", "AutoEngine", "False", "False"]


def test_espeak_by_name(tmp_path: Path) -> None:
    engine = create_engine(*_config(tmp_path, name="espeak", espeak={"rate": 200}))
    assert isinstance(engine, EspeakEngine)
    assert engine.cfg.rate == 200
    engine.load(lambda _s, _d: None)
    assert [v.name for v in engine.voices()] == ["default", "alice"]


def test_f5_by_name_fails_with_the_reason(tmp_path: Path, offline: None) -> None:
    engine = create_engine(*_config(tmp_path, name="f5"))
    assert engine.name == "f5"
    with pytest.raises(EngineError) as info:
        engine.load(lambda _s, _d: None)
    message = str(info.value)
    for key in ("engine.f5.checkpoint", "engine.f5.vocab", "engine.f5.vocoder"):
        assert key in message
    assert "HF_HUB_OFFLINE" in message


def test_f5_by_name_on_cuda_without_a_gpu_fails(tmp_path: Path) -> None:
    if cuda_problem() is None:
        pytest.skip("this machine has a usable CUDA GPU")
    engine = create_engine(*_config(tmp_path, name="f5", device="cuda"))
    with pytest.raises(EngineError, match="no CUDA GPU is usable"):
        engine.load(lambda _s, _d: None)


async def test_f5_failure_reaches_the_worker_as_an_error(tmp_path: Path, offline: None) -> None:
    """engine.name: f5 never falls back: the worker reports ERROR with the reason."""
    worker = EngineWorker(create_engine(*_config(tmp_path, name="f5")))
    await worker.start()
    try:
        assert await worker.wait_ready() is EngineState.ERROR
        assert "engine.f5.checkpoint" in worker.state_detail
    finally:
        await worker.close()


def test_cuda_problem_names_the_failed_condition() -> None:
    import torch

    problem = cuda_problem()
    if torch.cuda.is_available():
        assert problem is None
    elif not torch.version.cuda:
        assert problem is not None
        assert "build without CUDA" in problem
    else:
        assert problem is not None
        assert "no CUDA GPU is usable" in problem


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_auto_falls_back_to_espeak_with_the_reason(
    tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture, device: str
) -> None:
    problem = cuda_problem()
    if problem is None:
        pytest.skip("this machine has a usable CUDA GPU (see the GPU tests)")
    engine = create_engine(*_config(tmp_path, name="auto", device=device))
    assert isinstance(engine, AutoEngine)
    assert engine.name == "auto"
    assert engine.chosen is None
    with pytest.raises(EngineError, match="not loaded"):
        engine.voices()
    events, progress = _events()
    with caplog.at_level(logging.WARNING, logger="engine.factory"):
        engine.load(progress)
    assert isinstance(engine.chosen, EspeakEngine)
    assert engine.fallback_reason is not None
    assert problem in engine.fallback_reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NOT USING F5-TTS" in warnings[0].getMessage()
    assert problem in warnings[0].getMessage()
    assert "engine.name: espeak" in warnings[0].getMessage()
    assert any("using eSpeak NG" in detail for _, detail in events)
    # Everything is delegated to the chosen engine.
    assert engine.name == "espeak"
    assert engine.sample_rate == 22_050
    assert [v.name for v in engine.voices()] == ["default", "alice"]
    audio = np.concatenate(list(engine.synthesize("hello there", "alice", lambda: False)))
    assert audio.size > 0
    engine.close()


def test_auto_on_cpu_device_falls_back_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(*_config(tmp_path, name="auto", device="cpu"))
    assert isinstance(engine, AutoEngine)
    with caplog.at_level(logging.WARNING, logger="engine.factory"):
        engine.load(lambda _s, _d: None)
    assert isinstance(engine.chosen, EspeakEngine)
    assert engine.fallback_reason is not None
    assert "engine.device is 'cpu'" in engine.fallback_reason
    assert "15x slower" in caplog.text
    assert "engine.name: f5" in caplog.text


def test_auto_fails_only_when_espeak_fails_too(tmp_path: Path) -> None:
    engine = create_engine(
        *_config(tmp_path, name="auto", device="cpu", espeak={"voice": "xx-nowhere"})
    )
    with pytest.raises(EngineError, match=r"engine\.espeak\.voice"):
        engine.load(lambda _s, _d: None)


async def test_worker_reads_the_chosen_rate_when_jobs_start(tmp_path: Path) -> None:
    """Jobs submitted before the auto engine chose still get the chosen engine's rate."""
    engine = create_engine(*_config(tmp_path, name="auto", device="cpu"))
    assert engine.sample_rate == 24_000  # unknown until loaded
    worker = EngineWorker(engine)
    await worker.start()
    try:
        job = worker.submit("Hello. Is this thing on?", "alice")
        audio = await job.collect()
        assert await worker.wait_ready() is EngineState.READY
        assert job.sample_rate == 22_050
        assert audio.size > 22_050 // 2
        assert worker.state_detail == "espeak engine ready"
    finally:
        await worker.close()


@pytest.mark.slow
def test_auto_uses_f5_when_a_gpu_and_weights_are_there(
    tmp_path: Path, tiny_f5: dict[str, Any]
) -> None:
    """Only meaningful on a machine with a usable CUDA GPU."""
    if cuda_problem() is not None:
        pytest.skip(f"needs a usable CUDA GPU: {cuda_problem()}")
    engine = create_engine(*_config(tmp_path, name="auto", f5=tiny_f5))
    assert isinstance(engine, AutoEngine)
    engine.load(lambda _s, _d: None)
    assert engine.fallback_reason is None
    assert engine.name == "f5"
    assert engine.sample_rate == 24_000
    engine.close()


@pytest.mark.slow
def test_auto_with_a_gpu_but_no_weights_says_which_files(
    tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture
) -> None:
    if cuda_problem() is not None:
        pytest.skip(f"needs a usable CUDA GPU: {cuda_problem()}")
    engine = create_engine(*_config(tmp_path, name="auto"))
    assert isinstance(engine, AutoEngine)
    with caplog.at_level(logging.WARNING, logger="engine.factory"):
        engine.load(lambda _s, _d: None)
    assert isinstance(engine.chosen, EspeakEngine)
    assert engine.fallback_reason is not None
    assert "F5-TTS could not load" in engine.fallback_reason
    assert "engine.f5.checkpoint" in caplog.text


def test_auto_passes_batches_and_idle_work_to_the_chosen_engine(tmp_path: Path) -> None:
    from engine.base import SynthesisRequest

    engine = create_engine(*_config(tmp_path, name="auto", device="cpu"))
    assert isinstance(engine, AutoEngine)
    with pytest.raises(EngineError, match="not loaded"):
        engine.synthesize_batch([])
    assert engine.max_batch == 1
    assert engine.idle_work() is False
    engine.load(_events()[1])
    assert isinstance(engine.chosen, EspeakEngine)
    assert engine.max_batch == engine.chosen.max_batch == 1
    texts = ["hello chat", "and welcome"]
    events = list(
        engine.synthesize_batch([SynthesisRequest(t, "alice", lambda: False) for t in texts])
    )
    assert [e.index for e in events if e.last] == [0, 1]
    for index, text in enumerate(texts):
        got = [e.audio for e in events if e.index == index and e.audio is not None]
        want = list(engine.synthesize(text, "alice", lambda: False))
        assert [len(c) for c in got] == [len(c) for c in want]  # eSpeak's noise source varies
    engine.close()
