"""Batched synthesis in the F5 engine (issue 17), tiny real checkpoints on the CPU.

``F5Engine.synthesize_batch`` renders several requests (different voices, texts, lengths)
in rounds of one sampler pass each. With a batching sampler (the fast sampler with
``max_batch`` above 1, which the CPU runs on demand here) every request's audio must equal
what ``synthesize`` gives it alone with the same seed, on the fast sampler's single path and
on f5-tts's own sampler alike; stopping or failing one request leaves the others alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.base import BatchChunk, Engine, StopCheck, SynthesisRequest, VoiceError
from engine.config import F5Config, VoicesConfig
from engine.f5 import F5Engine
from engine.f5fast import FastSampler
from engine.sampling import StockSampler
from tests.support.f5 import write_alice, write_voice

LONG = "First part of the message. Second part comes next. Third part is here. And a fourth."
REQUESTS = [("hello chat, welcome in", "alice"), (LONG, "default"), ("gg", "alice")]


def _never() -> bool:
    return False


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    voices = tmp_path_factory.mktemp("batch_voices")
    write_alice(voices)
    write_voice(voices, "mute", np.full(24000, 0.1, np.float32), 24000, None)
    return voices


@pytest.fixture(scope="module")
def engine(tiny_f5: dict[str, Any], voices_dir: Path) -> Iterator[F5Engine]:
    """A seeded engine (same noise for a request alone and in a batch), NFE 4, short pieces."""
    cfg = F5Config(**{**tiny_f5, "nfe_step": 4}, max_chunk_chars=30, seed=11)
    f5 = F5Engine(cfg, VoicesConfig(dir=voices_dir), device="cpu")
    f5.load(lambda *_: None)
    yield f5
    f5.close()


def _fast(engine: F5Engine, max_batch: int) -> FastSampler:
    cfg = engine._f5
    return FastSampler(
        engine.cfm,
        nfe_step=cfg.nfe_step,
        cfg_strength=cfg.cfg_strength,
        sway_sampling_coef=cfg.sway_sampling_coef,
        bucket_frames=32,
        max_batch=max_batch,
        max_batch_frames=4096,
    )


def _alone(engine: F5Engine, text: str, voice: str) -> list[np.ndarray]:
    return list(engine.synthesize(text, voice, _never))


def _batch(engine: Engine, requests: list[SynthesisRequest]) -> list[BatchChunk]:
    return list(engine.synthesize_batch(requests))


def _by_request(events: list[BatchChunk]) -> dict[int, list[np.ndarray]]:
    chunks: dict[int, list[np.ndarray]] = defaultdict(list)
    for event in events:
        if event.audio is not None:
            chunks[event.index].append(event.audio)
    return chunks


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def _requests(stops: dict[int, StopCheck] | None = None) -> list[SynthesisRequest]:
    stops = stops or {}
    return [SynthesisRequest(t, v, stops.get(i, _never)) for i, (t, v) in enumerate(REQUESTS)]


def _each_request_ends_once(events: list[BatchChunk], count: int) -> None:
    lasts = [e.index for e in events if e.last]
    assert sorted(lasts) == list(range(count))
    for index in range(count):
        mine = [e for e in events if e.index == index]
        assert mine[-1].last
        assert not any(e.last for e in mine[:-1])


def test_the_stock_sampler_runs_a_batch_one_request_after_another(engine: F5Engine) -> None:
    engine.sampler = StockSampler(engine.cfm, nfe_step=4, cfg_strength=2.0, sway_sampling_coef=-1.0)
    assert engine.max_batch == 1
    events = _batch(engine, _requests())
    _each_request_ends_once(events, len(REQUESTS))
    chunks = _by_request(events)
    for index, (text, voice) in enumerate(REQUESTS):
        alone = _alone(engine, text, voice)
        assert len(chunks[index]) == len(alone) == len(engine.plan(text, voice))
        for got, want in zip(chunks[index], alone, strict=True):
            assert np.array_equal(got, want)


def test_a_batch_equals_each_request_alone_on_both_samplers(engine: F5Engine) -> None:
    engine.sampler = StockSampler(engine.cfm, nfe_step=4, cfg_strength=2.0, sway_sampling_coef=-1.0)
    stock = {i: _alone(engine, t, v) for i, (t, v) in enumerate(REQUESTS)}
    engine.sampler = _fast(engine, max_batch=4)
    single = {i: _alone(engine, t, v) for i, (t, v) in enumerate(REQUESTS)}
    sampler = _fast(engine, max_batch=4)
    engine.sampler = sampler
    assert engine.max_batch == 4
    events = _batch(engine, _requests())
    _each_request_ends_once(events, len(REQUESTS))
    # round 1 packs every request's first piece; LONG's later pieces go on alone
    assert sampler.stats["packed_passes"] >= 1
    assert sampler.stats["packed_requests"] >= len(REQUESTS)
    first_round = [e.index for e in events[: len(REQUESTS)]]
    assert sorted(first_round) == list(range(len(REQUESTS)))  # all first audio together
    chunks = _by_request(events)
    for index in range(len(REQUESTS)):
        assert len(chunks[index]) == len(single[index]) == len(stock[index])
        for got, one, base in zip(chunks[index], single[index], stock[index], strict=True):
            assert got.shape == one.shape == base.shape
            assert _rel(got, one) < 1e-5
            assert _rel(got, base) < 1e-5


def test_a_stopped_request_is_dropped_and_the_others_go_on(engine: F5Engine) -> None:
    engine.sampler = _fast(engine, max_batch=4)
    polls = 0

    def stop_after_first_round() -> bool:
        nonlocal polls
        polls += 1
        return polls > 1

    events = _batch(engine, _requests({1: stop_after_first_round}))
    _each_request_ends_once(events, len(REQUESTS))
    chunks = _by_request(events)
    assert len(chunks[1]) == 1  # LONG stopped after its first piece
    assert len(engine.plan(LONG, "default")) >= 3
    for index in (0, 2):
        text, voice = REQUESTS[index]
        assert len(chunks[index]) == len(engine.plan(text, voice))


def test_an_unusable_voice_fails_only_its_request(engine: F5Engine) -> None:
    engine.sampler = _fast(engine, max_batch=4)
    requests = [
        SynthesisRequest("hello", "mute", _never),  # a voice without a transcript
        SynthesisRequest("hello there", "alice", _never),
    ]
    events = _batch(engine, requests)
    _each_request_ends_once(events, 2)
    (failed,) = [e for e in events if e.index == 0]
    assert isinstance(failed.error, VoiceError)
    assert failed.audio is None
    assert len(_by_request(events)[1]) == len(engine.plan("hello there", "alice"))


def test_idle_work_is_the_samplers_deferred_preparation(engine: F5Engine) -> None:
    engine.sampler = _fast(engine, max_batch=4)
    assert engine.idle_work() is False  # the CPU captures nothing, so nothing is deferred
