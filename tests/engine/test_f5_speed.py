"""A request's own speaking speed in the F5 engine (issue 16), tiny real checkpoints on the CPU.

f5-tts's meaning of speed: the generated duration is divided by it (``infer_process``), and
a request's speed multiplies the configured ``engine.f5.speed``. At 1.0 nothing changes;
in a batch, every request keeps its own speed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.base import SynthesisRequest
from engine.config import F5Config, VoicesConfig
from engine.f5 import F5Engine
from engine.f5fast import FastSampler
from engine.sampling import StockSampler
from engine.text import HOP_LENGTH, chunk_limit, duration_frames
from tests.support.f5 import write_alice

TEXT = "Thanks for the follow, and welcome in. Grab a seat, the next round starts soon."


def _never() -> bool:
    return False


def _engine(tiny_f5: dict[str, Any], voices: Path, **f5: Any) -> F5Engine:
    cfg = F5Config(**{**tiny_f5, "nfe_step": 4, "max_chunk_chars": 60, "seed": 7, **f5})
    engine = F5Engine(cfg, VoicesConfig(dir=voices), device="cpu")
    engine.load(lambda *_: None)
    engine.sampler = StockSampler(engine.cfm, nfe_step=4, cfg_strength=2.0, sway_sampling_coef=-1.0)
    return engine


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speed_voices")
    write_alice(folder)
    return folder


@pytest.fixture(scope="module")
def engine(tiny_f5: dict[str, Any], voices: Path) -> Iterator[F5Engine]:
    f5 = _engine(tiny_f5, voices)
    yield f5
    f5.close()


def _samples(chunks: list[np.ndarray]) -> int:
    return sum(len(c) for c in chunks)


def test_speed_two_speaks_in_about_half_the_samples(engine: F5Engine) -> None:
    normal = list(engine.synthesize(TEXT, "alice", _never))
    fast = list(engine.synthesize(TEXT, "alice", _never, speed=2.0))
    slow = list(engine.synthesize(TEXT, "alice", _never, speed=0.5))
    frames = {s: sum(p.frames for p in engine.plan(TEXT, "alice", speed=s)) for s in (0.5, 1, 2)}
    assert _samples(normal) == frames[1] * HOP_LENGTH
    assert _samples(fast) == frames[2] * HOP_LENGTH
    assert _samples(slow) == frames[0.5] * HOP_LENGTH
    # rounding per piece: within a frame or two of exactly half / twice
    assert abs(frames[2] - frames[1] / 2) <= len(engine.plan(TEXT, "alice", speed=2.0))
    assert abs(frames[0.5] - frames[1] * 2) <= 2 * len(engine.plan(TEXT, "alice", speed=0.5))
    assert 0.45 < _samples(fast) / _samples(normal) < 0.55
    assert 1.9 < _samples(slow) / _samples(normal) < 2.1


def test_speed_one_is_the_old_arithmetic_and_the_old_audio(engine: F5Engine) -> None:
    ref = engine.reference("alice")
    cfg = engine._f5
    plans = engine.plan(TEXT, "alice")
    assert engine.plan(TEXT, "alice", speed=1.0) == plans
    assert engine._to_ids is not None
    limit = chunk_limit(ref.text, ref.seconds, cfg.max_chunk_chars, cfg.speed)
    for plan in plans:  # exactly what the engine computed before speed existed
        assert len(plan.text) <= limit
        tokens = int(engine._to_ids(ref.text + plan.text).shape[1])
        old = max(
            duration_frames(plan.text, ref.transcript, ref.seconds, cfg.speed),
            tokens + 1 - ref.frames,
        )
        assert plan.frames == old
    without = list(engine.synthesize(TEXT, "alice", _never))
    at_one = list(engine.synthesize(TEXT, "alice", _never, speed=1.0))
    assert len(without) == len(at_one)
    for a, b in zip(without, at_one, strict=True):
        assert np.array_equal(a, b)


def test_a_requests_speed_multiplies_the_configured_one(
    tiny_f5: dict[str, Any], voices: Path
) -> None:
    slowed = _engine(tiny_f5, voices, speed=0.8)
    quick = _engine(tiny_f5, voices, speed=1.6)
    try:
        assert slowed.plan(TEXT, "alice", speed=2.0) == quick.plan(TEXT, "alice")
        a = list(slowed.synthesize(TEXT, "alice", _never, speed=2.0))
        b = list(quick.synthesize(TEXT, "alice", _never))
        assert [len(c) for c in a] == [len(c) for c in b]
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)
    finally:
        slowed.close()
        quick.close()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.parametrize("batching", [False, True], ids=["stock", "fast-batched"])
def test_a_batch_with_mixed_speeds_equals_each_request_alone(
    engine: F5Engine, batching: bool
) -> None:
    if batching:
        cfg = engine._f5
        engine.sampler = FastSampler(
            engine.cfm,
            nfe_step=cfg.nfe_step,
            cfg_strength=cfg.cfg_strength,
            sway_sampling_coef=cfg.sway_sampling_coef,
            bucket_frames=32,
            max_batch=4,
            max_batch_frames=4096,
        )
    requests = [
        SynthesisRequest(TEXT, "alice", _never, 2.0),
        SynthesisRequest(TEXT, "alice", _never),
        SynthesisRequest("gg, well played", "default", _never, 0.5),
    ]
    try:
        alone = [list(engine.synthesize(r.text, r.voice, _never, speed=r.speed)) for r in requests]
        got: dict[int, list[np.ndarray]] = defaultdict(list)
        for event in engine.synthesize_batch(requests):
            assert event.error is None
            if event.audio is not None:
                got[event.index].append(event.audio)
        for index, want in enumerate(alone):
            assert [len(c) for c in got[index]] == [len(c) for c in want]
            for a, b in zip(got[index], want, strict=True):
                if batching:
                    assert _rel(a, b) < 1e-5
                else:
                    assert np.array_equal(a, b)
        assert _samples(got[0]) < 0.6 * _samples(got[1])  # the same words, twice as fast
        if batching:
            assert isinstance(engine.sampler, FastSampler)
            assert engine.sampler.stats["packed_requests"] >= len(requests)
    finally:
        engine.sampler = StockSampler(
            engine.cfm, nfe_step=4, cfg_strength=2.0, sway_sampling_coef=-1.0
        )
