"""The speaker prefetches a raid's queued messages as engine batches (issue 17).

The real EngineWorker thread and the production queue and speaker; the engine is the tests'
tone engine (tests/support/chat_harness.py) taught to batch: it records every batch it gets
and answers it round by round (one chunk of each live request per round, as F5 does), so
the chunks of a batch's messages arrive interleaved. The player is the tests' recording one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.core.messages import ChatMessage, ChatUser, Platform
from bot.speech.settings import QueueConfig
from bot.speech.speaker import Speaker, SpeechEvent, SpeechEventKind, SpeechItem, SpeechQueue
from engine.base import Audio, BatchChunk, EngineState, StopCheck, SynthesisRequest
from engine.config import F5Config, VoicesConfig
from engine.f5 import F5Engine
from engine.f5fast import FastSampler
from engine.worker import EngineWorker
from tests.support.chat_harness import RATE, RecordingPlayer, ToneEngine, until
from tests.support.f5 import write_alice

CHUNK = RATE // 100


class BatchToneEngine(ToneEngine):
    """The tone engine with batches of up to ``max_batch``, answered in rounds."""

    name = "batch-tone"

    def __init__(self, max_batch: int) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self._in_batch = False

    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, **options: Any
    ) -> Iterator[Audio]:
        if not self._in_batch:
            self.singles.append(text)
        return super().synthesize(text, voice, should_stop, **options)

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> Iterator[BatchChunk]:
        self.batches.append([r.text for r in requests])
        self._in_batch = True
        try:
            streams = {
                i: iter(self.synthesize(r.text, r.voice, r.should_stop))
                for i, r in enumerate(requests)
            }
        finally:
            self._in_batch = False
        while streams:
            for index in list(streams):
                if requests[index].should_stop():
                    del streams[index]
                    yield BatchChunk(index, last=True)
                    continue
                try:
                    chunk = next(streams[index])
                except StopIteration:
                    del streams[index]
                    yield BatchChunk(index, last=True)
                    continue
                yield BatchChunk(index, chunk)


def _item(text: str, n: int) -> SpeechItem:
    user = ChatUser(
        id=f"id-{n}", login=f"viewer{n}", display_name=f"viewer{n}", platform=Platform.TWITCH
    )
    return SpeechItem(
        message=ChatMessage(id=f"m{n}", user=user, text=text, source="test"),
        text=text,
        voice="default",
    )


def _samples(text: str) -> int:
    """What the tone engine makes of ``text``, whole."""
    return max(1, len(text) // 4) * CHUNK


class Rig:
    """Worker, queue, speaker and player, as the App wires them (batches by the engine's size)."""

    def __init__(
        self, engine: BatchToneEngine, on_event: Callable[[SpeechEvent], None] | None = None
    ) -> None:
        self.engine = engine
        self.worker = EngineWorker(engine)
        self.player = RecordingPlayer()
        self.queue = SpeechQueue(QueueConfig())
        self.speaker = Speaker(
            self.queue, self.worker, self.player, gap_s=0, max_batch=lambda: engine.max_batch
        )
        self.finished: list[tuple[str, str]] = []
        self.speaker.add_listener(self._record)
        if on_event is not None:
            self.speaker.add_listener(on_event)
        self._task: asyncio.Task[None] | None = None

    def _record(self, event: SpeechEvent) -> None:
        if event.kind is SpeechEventKind.STARTED:
            self.player.label = event.item.text
        elif event.kind is SpeechEventKind.FINISHED and event.outcome is not None:
            self.finished.append((event.item.text, event.outcome.value))

    async def __aenter__(self) -> Rig:
        await self.worker.start()
        assert await self.worker.wait_ready() is EngineState.READY
        self._task = asyncio.create_task(self.speaker.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.engine.gate.set()
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.worker.close()

    async def idle(self) -> None:
        await asyncio.wait_for(self.speaker.wait_idle(), 30)


async def test_a_raid_is_synthesised_in_batches_of_at_most_max_batch() -> None:
    engine = BatchToneEngine(max_batch=4)
    async with Rig(engine) as rig:
        texts = [f"raid line number {n:02d} says hello" for n in range(10)]
        for n, text in enumerate(texts):  # the raid arrives at once
            assert rig.speaker.enqueue(_item(text, n))
        await rig.idle()
        # the first one alone (the lone path, at once), then the waiting ones in batches of
        # 4 taken from the head of the queue, the last one alone again
        assert engine.batches == [texts[1:5], texts[5:9]]
        assert engine.singles == [texts[0], texts[9]]
        assert all(len(batch) <= engine.max_batch for batch in engine.batches)
        # every message played whole, in queue order, though its chunks were interleaved
        assert rig.player.played == [(text, _samples(text)) for text in texts]
        assert rig.finished == [(text, "played") for text in texts]


async def test_a_lone_message_is_not_batched() -> None:
    engine = BatchToneEngine(max_batch=4)
    async with Rig(engine) as rig:
        assert rig.speaker.enqueue(_item("just one line here", 1))
        await rig.idle()
        assert rig.speaker.enqueue(_item("and later another one", 2))
        await rig.idle()
        # two at once: the first goes alone, the second is the only one waiting: alone too
        assert rig.speaker.enqueue(_item("a pair arriving", 3))
        assert rig.speaker.enqueue(_item("at the same moment", 4))
        await rig.idle()
        assert engine.batches == []
        assert engine.singles == [
            "just one line here",
            "and later another one",
            "a pair arriving",
            "at the same moment",
        ]
        assert [n for _, n in rig.player.played] == [_samples(t) for t in engine.singles]


async def test_an_engine_without_batches_gets_the_raid_one_by_one() -> None:
    engine = BatchToneEngine(max_batch=1)
    async with Rig(engine) as rig:
        texts = [f"raid line number {n:02d}" for n in range(6)]
        for n, text in enumerate(texts):
            assert rig.speaker.enqueue(_item(text, n))
        await rig.idle()
        assert engine.batches == []
        assert engine.singles == texts


async def test_skipping_or_deleting_one_batched_message_leaves_the_others_whole() -> None:
    engine = BatchToneEngine(max_batch=4)
    texts = [f"raid line number {n:02d} says hello" for n in range(5)]
    rig: Rig

    def skip_the_third(event: SpeechEvent) -> None:
        if event.kind is SpeechEventKind.STARTED and event.item.text == texts[2]:
            rig.speaker.skip()

    async with Rig(engine, on_event=skip_the_third) as rig:
        engine.gate.clear()  # hold the engine until the batch is in and one of it is deleted
        for n, text in enumerate(texts):
            assert rig.speaker.enqueue(_item(text, n))
        await until(lambda: all(it.job is not None for it in rig.queue.snapshot()))
        batched = rig.queue.snapshot()
        assert [it.text for it in batched] == texts[1:]
        assert {it.batch_size for it in batched} == {4}
        assert rig.speaker.remove_message("m3") == 1  # a moderator deletes one of the batch
        engine.gate.set()
        await rig.idle()
        # submitted as one batch of 4; the deleted one was left out before the engine saw
        # it (never synthesised), the others went on together
        assert engine.batches == [[texts[1], texts[2], texts[4]]]
        assert texts[3] not in [text for text, _voice in engine.calls]
        assert rig.finished == [
            (texts[3], "removed"),
            (texts[0], "played"),
            (texts[1], "played"),
            (texts[2], "skipped"),
            (texts[4], "played"),
        ]
        played = dict(rig.player.played)
        assert played[texts[1]] == _samples(texts[1])
        assert played[texts[4]] == _samples(texts[4])
        assert played[texts[2]] < _samples(texts[2])


async def test_a_raid_through_tiny_f5_is_packed_and_each_message_sounds_as_alone(
    tiny_f5: dict[str, Any], tmp_path: Path
) -> None:
    """The real F5 engine (tiny checkpoint, CPU, the fast sampler batching up to 4)."""
    write_alice(tmp_path / "voices")
    cfg = F5Config(**{**tiny_f5, "nfe_step": 4}, max_chunk_chars=30, seed=11)
    engine = F5Engine(cfg, VoicesConfig(dir=tmp_path / "voices"), device="cpu")
    worker = EngineWorker(engine)
    player = RecordingPlayer()
    queue = SpeechQueue(QueueConfig())
    speaker = Speaker(queue, worker, player, gap_s=0, max_batch=lambda: engine.max_batch)
    finished: list[tuple[str, str]] = []

    def record(event: SpeechEvent) -> None:
        if event.kind is SpeechEventKind.STARTED:
            player.label = event.item.text
        elif event.kind is SpeechEventKind.FINISHED and event.outcome is not None:
            finished.append((event.item.text, event.outcome.value))
            sizes.append(event.item.batch_size)

    sizes: list[int] = []
    speaker.add_listener(record)
    await worker.start()
    task: asyncio.Task[None] | None = None
    try:
        assert await worker.wait_ready() is EngineState.READY

        def batching(f5: Any) -> FastSampler:
            fast = FastSampler(
                f5.cfm,
                nfe_step=4,
                cfg_strength=cfg.cfg_strength,
                sway_sampling_coef=cfg.sway_sampling_coef,
                bucket_frames=32,
                max_batch=4,
                max_batch_frames=4096,
            )
            f5.sampler = fast
            return fast

        sampler = await worker.call(batching)
        assert engine.max_batch == 4
        texts = ["hello chat", "welcome in", "raid incoming", "gg everyone", "hype train"]
        task = asyncio.create_task(speaker.run())
        for n, text in enumerate(texts):
            assert speaker.enqueue(_item(text, n))
        await asyncio.wait_for(speaker.wait_idle(), 240)
        assert finished == [(text, "played") for text in texts]
        assert sizes == [1, 4, 4, 4, 4]  # the first alone, the four waiting as one batch
        assert sampler.stats["packed_passes"] >= 1  # the raid's four went through one pass
        assert sampler.stats["packed_requests"] >= 4
        played = dict(zip([label for label, _ in player.played], player.audio, strict=True))

        def alone_of(text: str) -> Callable[[Any], Audio]:
            def run(f5: Any) -> Audio:
                return np.concatenate(list(f5.synthesize(text, "default", _never)))

            return run

        for text in texts:
            alone = await worker.call(alone_of(text))  # the same engine, alone, same seed
            got = played[text]
            assert got.shape == alone.shape
            assert float(np.linalg.norm(got - alone) / np.linalg.norm(alone)) < 1e-5
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await worker.close()


def _never() -> bool:
    return False
