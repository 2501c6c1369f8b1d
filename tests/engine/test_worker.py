"""The engine thread driving the tiny F5 engine: order, cancellation, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.base import Audio, EngineState, StopCheck
from engine.config import F5Config, VoicesConfig
from engine.f5 import F5Engine
from engine.worker import EngineWorker, SynthesisFailed, SynthesisJob
from tests.support.f5 import write_alice, write_voice

LONG = "First part of the message. Second part comes next. Third part is here. And a fourth."


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    voices = tmp_path_factory.mktemp("worker_voices")
    write_alice(voices)
    write_voice(voices, "mute", np.full(24000, 0.1, np.float32), 24000, None)
    return voices


def _engine(tiny_f5: dict[str, Any], voices_dir: Path, cls: type[F5Engine] = F5Engine) -> F5Engine:
    # Small chunks, so a message is several chunks; NFE 4 keeps the CPU work short.
    cfg = F5Config(**{**tiny_f5, "nfe_step": 4}, max_chunk_chars=30)
    return cls(cfg, VoicesConfig(dir=voices_dir), device="cpu")


class _Recorder:
    def __init__(self) -> None:
        self.states: list[EngineState] = []

    def __call__(self, state: EngineState, _detail: str) -> None:
        self.states.append(state)


@pytest.fixture
async def worker(tiny_f5: dict[str, Any], voices_dir: Path) -> AsyncIterator[EngineWorker]:
    w = EngineWorker(_engine(tiny_f5, voices_dir))
    await w.start()
    assert await w.wait_ready() is EngineState.READY
    yield w
    await w.close()


async def _chunks_generated(worker: EngineWorker) -> int:
    return await worker.call(lambda e: e.chunks_generated)  # type: ignore[attr-defined, no-any-return]


async def _planned(worker: EngineWorker, text: str, voice: str = "alice") -> list[int]:
    plan = await worker.call(lambda e: e.plan(text, voice))  # type: ignore[attr-defined]
    return [p.samples for p in plan]


async def test_states_and_jobs_in_order(tiny_f5: dict[str, Any], voices_dir: Path) -> None:
    recorder = _Recorder()
    w = EngineWorker(_engine(tiny_f5, voices_dir), on_state=recorder)
    await w.start()
    try:
        # Jobs submitted while the model loads wait for it.
        texts = ["one two three", LONG, "gg"]
        jobs = [w.submit(t, "alice") for t in texts]
        assert await w.wait_ready() is EngineState.READY
        assert recorder.states[0] is EngineState.LOADING
        assert recorder.states.index(EngineState.WARMING) < recorder.states.index(EngineState.READY)
        finished: list[int] = []

        async def collect(job: SynthesisJob) -> np.ndarray:
            audio = await job.collect()
            finished.append(job.id)
            return audio

        audios = await asyncio.gather(*(collect(j) for j in jobs))
        assert finished == [j.id for j in jobs]
        starts = [j.started_at for j in jobs]
        assert all(s is not None for s in starts)
        assert starts == sorted(starts)  # type: ignore[type-var]
        for job, text, audio in zip(jobs, texts, audios, strict=True):
            assert job.sample_rate == 24000
            assert len(audio) == sum(await _planned(w, text))
            assert job.first_chunk_at is not None
            assert job.done
        assert len(await _planned(w, LONG)) >= 3
    finally:
        await w.close()
    assert recorder.states[-1] is EngineState.STOPPED


async def test_streaming_yields_each_chunk(worker: EngineWorker) -> None:
    planned = await _planned(worker, LONG)
    job = worker.submit(LONG, "alice")
    sizes = [len(chunk) async for chunk in job]
    assert sizes == planned
    assert len(sizes) >= 3


async def test_cancel_while_queued(worker: EngineWorker) -> None:
    before = await _chunks_generated(worker)
    first = worker.submit(LONG, "alice")
    skipped = worker.submit("this one is skipped entirely", "alice")
    last = worker.submit("and this one runs", "alice")
    skipped.cancel()
    assert skipped.done
    assert skipped.cancelled
    a, b, c = await asyncio.gather(first.collect(), skipped.collect(), last.collect())
    assert b.size == 0
    assert skipped.started_at is None  # the engine never touched it
    assert len(a) == sum(await _planned(worker, LONG))
    assert len(c) == sum(await _planned(worker, "and this one runs"))
    generated = await _chunks_generated(worker) - before
    assert generated == len(await _planned(worker, LONG)) + len(
        await _planned(worker, "and this one runs")
    )


async def test_cancel_while_running_stops_at_the_next_chunk(
    tiny_f5: dict[str, Any], voices_dir: Path
) -> None:
    # The validator runs on the engine thread after each chunk: holding the first chunk
    # there lets the test cancel at a known point, with no timing guesses.
    first_chunk = threading.Event()
    release = threading.Event()

    def hold_first(chunk: Audio) -> Audio:
        if not first_chunk.is_set():
            first_chunk.set()
            release.wait(60)
        return np.clip(chunk, -1.0, 1.0)

    w = EngineWorker(_engine(tiny_f5, voices_dir), chunk_validator=hold_first)
    await w.start()
    try:
        assert await w.wait_ready() is EngineState.READY
        # Warm-up chunks do not pass the validator, so the first chunk seen is the job's.
        planned = await _planned(w, LONG)
        assert len(planned) >= 3
        before = await _chunks_generated(w)
        job = w.submit(LONG, "alice")
        after_job = w.submit("still spoken", "alice")
        assert await asyncio.to_thread(first_chunk.wait, 120)
        job.cancel()
        release.set()
        assert (await job.collect()).size == 0
        tail = await after_job.collect()
        assert len(tail) == sum(await _planned(w, "still spoken"))
        # Exactly one chunk of the cancelled job was synthesised: the engine saw the stop
        # before starting the second.
        generated = await _chunks_generated(w) - before
        assert generated == 1 + len(await _planned(w, "still spoken"))
    finally:
        release.set()
        await w.close()


async def test_a_failing_job_is_reported_and_the_next_runs(worker: EngineWorker) -> None:
    broken = worker.submit("hello", "mute")  # a voice without a transcript
    good = worker.submit("hello", "alice")
    with pytest.raises(
        SynthesisFailed, match=r"voice 'mute' cannot be used: missing .*reference\.txt"
    ):
        await broken.collect()
    assert len(await good.collect()) == sum(await _planned(worker, "hello"))


class _Flaky(F5Engine):
    """The real engine, but a job whose text is "boom" breaks after its first chunk."""

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        if text != "boom":
            yield from super().synthesize(text, voice, should_stop)
            return
        yield from super().synthesize("first words", voice, should_stop)
        raise RuntimeError("kaboom in the middle of a job")


async def test_an_unexpected_exception_mid_job_does_not_stop_the_worker(
    tiny_f5: dict[str, Any], voices_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = EngineWorker(_engine(tiny_f5, voices_dir, _Flaky))
    await w.start()
    try:
        assert await w.wait_ready() is EngineState.READY
        bad = w.submit("boom", "alice")
        good = w.submit("after the storm", "alice")
        received: list[int] = []

        async def drain() -> None:
            async for chunk in bad:
                received.append(len(chunk))

        with pytest.raises(SynthesisFailed, match="kaboom"):
            await drain()
        assert received == await _planned(w, "first words")
        assert len(await good.collect()) == sum(await _planned(w, "after the storm"))
        assert "synthesis of job 1 failed" in caplog.text
    finally:
        await w.close()


async def test_load_failure_is_reported_and_jobs_fail_clearly(tmp_path: Path) -> None:
    cfg = F5Config(
        checkpoint=str(tmp_path / "nope.safetensors"),
        vocab=str(tmp_path / "v.txt"),
        vocoder=str(tmp_path / "vocos"),
    )
    recorder = _Recorder()
    w = EngineWorker(F5Engine(cfg, VoicesConfig(dir=tmp_path), device="cpu"), on_state=recorder)
    await w.start()
    try:
        assert await w.wait_ready() is EngineState.ERROR
        assert "engine.f5.checkpoint" in w.state_detail
        job = w.submit("hello", "default")
        with pytest.raises(SynthesisFailed, match="engine unavailable: F5-TTS weights are missing"):
            await job.collect()
    finally:
        await w.close()
    assert recorder.states == [EngineState.LOADING, EngineState.ERROR, EngineState.STOPPED]


# -- batches ----------------------------------------------------------------------------------


def _batching(engine: Any) -> None:
    """Give the loaded engine a batching sampler (the fast sampler packs on the CPU too)."""
    from engine.f5fast import FastSampler

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


async def _batching_worker(tiny_f5: dict[str, Any], voices_dir: Path, **kw: Any) -> EngineWorker:
    w = EngineWorker(_engine(tiny_f5, voices_dir), **kw)
    await w.start()
    assert await w.wait_ready() is EngineState.READY
    await w.call(_batching)
    return w


async def _hold(worker: EngineWorker) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Keep the engine thread busy in a call until the returned gate is set.

    Returns once the thread is inside the call, so jobs submitted next queue up behind it.
    """
    entered, gate = threading.Event(), threading.Event()

    def busy(_engine: Any) -> None:
        entered.set()
        gate.wait(60)

    task = asyncio.ensure_future(worker.call(busy))
    assert await asyncio.to_thread(entered.wait, 60)
    return gate, task


async def _packed(worker: EngineWorker) -> float:
    return await worker.call(lambda e: e.sampler.stats.get("packed_requests", 0.0))  # type: ignore[attr-defined, no-any-return]


async def test_submit_batch_streams_each_job_and_cancels_one_alone(
    tiny_f5: dict[str, Any], voices_dir: Path
) -> None:
    w = await _batching_worker(tiny_f5, voices_dir)
    try:
        texts = [("one two three", "alice"), (LONG, "alice"), ("gg", "default")]
        gate, blocked = await _hold(w)
        jobs = w.submit_batch(texts)
        jobs[1].cancel()  # before it starts: dropped, the others run together
        gate.set()
        await blocked
        audios = await asyncio.gather(*(j.collect() for j in jobs))
        assert audios[1].size == 0
        for job, (text, voice), audio in zip(jobs, texts, audios, strict=True):
            if job is not jobs[1]:
                assert len(audio) == sum(await _planned(w, text, voice))
                assert job.started_at is not None
        assert jobs[0].started_at == jobs[2].started_at  # one batch
        assert await _packed(w) == 2
        assert w.submit_batch([]) == []
    finally:
        await w.close()


async def test_queued_jobs_meet_in_one_batch_only_when_the_worker_batches(
    tiny_f5: dict[str, Any], voices_dir: Path
) -> None:
    texts = ["first in the queue", "second one here", "and the third"]
    for max_batch in (1, 4):
        w = await _batching_worker(tiny_f5, voices_dir, max_batch=max_batch)
        try:
            # the engine thread is busy with a call while the jobs queue up behind it
            gate, blocked = await _hold(w)
            jobs = [w.submit(t, "alice") for t in texts]
            gate.set()
            await blocked
            audios = await asyncio.gather(*(j.collect() for j in jobs))
            for text, audio in zip(texts, audios, strict=True):
                assert len(audio) == sum(await _planned(w, text))
            starts = {j.started_at for j in jobs}
            if max_batch == 1:
                assert len(starts) == 3  # one at a time, as before
                assert await _packed(w) == 0
            else:
                assert len(starts) == 1  # drained into one batch
                assert await _packed(w) == 3
        finally:
            await w.close()


async def test_a_batch_waits_for_more_but_a_lone_job_does_not(
    tiny_f5: dict[str, Any], voices_dir: Path
) -> None:
    # A wait far longer than the test's timeout: a lone job that waited would time out, and
    # a burst that did not wait would miss the job submitted after the gate opens.
    w = await _batching_worker(tiny_f5, voices_dir, max_batch=3, batch_wait_s=600.0)
    try:
        lone = w.submit("just me", "alice")
        assert len(await asyncio.wait_for(lone.collect(), 60)) == sum(await _planned(w, "just me"))
        assert await _packed(w) == 0

        gate, blocked = await _hold(w)
        first = [w.submit(t, "alice") for t in ("a burst", "of chat")]
        gate.set()
        await blocked
        late = w.submit("arrives late", "alice")  # joins the waiting batch, which is then full
        jobs = [*first, late]
        await asyncio.wait_for(asyncio.gather(*(j.collect() for j in jobs)), 60)
        assert len({j.started_at for j in jobs}) == 1, [(j.text, j.started_at) for j in jobs]
        assert await _packed(w) == 3
    finally:
        await w.close()


async def test_jobs_drained_into_one_batch_keep_their_own_speed(
    tiny_f5: dict[str, Any], voices_dir: Path
) -> None:
    w = await _batching_worker(tiny_f5, voices_dir, max_batch=4)
    try:
        text = "the same words at three speeds"
        gate, blocked = await _hold(w)
        jobs = [w.submit(text, "alice", speed=s) for s in (2.0, 1.0, 0.5)]
        gate.set()
        await blocked
        audios = await asyncio.gather(*(j.collect() for j in jobs))
        assert len({j.started_at for j in jobs}) == 1  # drained into one batch
        assert await _packed(w) == 3
        for job, audio in zip(jobs, audios, strict=True):
            plan = await w.call(lambda e, s=job.speed: e.plan(text, "alice", speed=s))  # type: ignore[attr-defined]
            assert len(audio) == sum(p.samples for p in plan)
        assert len(audios[0]) < 0.6 * len(audios[1])
        assert len(audios[1]) < 0.6 * len(audios[2])
    finally:
        await w.close()
