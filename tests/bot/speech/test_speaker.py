"""The speech queue and speaker, driven through the real engine thread.

The engine here is a small deterministic Engine subclass (tones whose length follows the text),
so the tests control timing; the worker, queue and speaker are the production classes. The
player is the tests' one fake player (tests/support/chat_harness.py): it records what reached
it and honours stop() the way the real one does. Tests wait on speech events (or on the
engine saying it synthesised a text), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.speech.settings import QueueConfig
from bot.speech.speaker import (
    Speaker,
    SpeechEvent,
    SpeechEventKind,
    SpeechItem,
    SpeechPart,
    SpeechQueue,
)
from engine.base import Audio, Engine, EngineError, EngineState, StopCheck, VoiceInfo
from engine.worker import EngineWorker
from tests.support.chat_harness import RecordingPlayer

RATE = 8000


class ToneEngine(Engine):
    """Yields ``chunks`` chunks of 10 ms per message; the text "fail" raises."""

    name = "tone"
    sample_rate = RATE

    def __init__(self, chunks: int = 3, delay: float = 0.0) -> None:
        self.chunks = chunks
        self.delay = delay
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.synthesised: defaultdict[str, threading.Event] = defaultdict(threading.Event)

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        progress(EngineState.WARMING, "warming tones")

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("default", "tone")]

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        self.calls.append(text)
        self.entered[text].set()
        if text == "fail":
            raise EngineError("this text cannot be spoken")
        for i in range(self.chunks):
            self.gate.wait(5)
            if should_stop():
                return
            if self.delay:
                threading.Event().wait(self.delay)
            yield np.full(RATE // 100, (i + 1) / 10, dtype=np.float32)
        self.synthesised[text].set()

    async def wait_entered(self, text: str, timeout: float = 10) -> None:
        """Wait until the engine thread started on ``text``."""
        assert await asyncio.to_thread(self.entered[text].wait, timeout)

    async def wait_synthesised(self, text: str, timeout: float = 10) -> None:
        """Wait until the engine thread produced all of ``text``'s audio."""
        assert await asyncio.to_thread(self.synthesised[text].wait, timeout)


def msg(text: str, user: str = "alice", mid: str | None = None, bits: int = 0) -> ChatMessage:
    return ChatMessage(
        id=mid or f"{user}-{text}",
        user=ChatUser(
            id=f"id-{user}",
            login=user,
            display_name=user,
            roles=frozenset({Role.EVERYONE}),
            platform=Platform.TWITCH,
        ),
        text=text,
        source="test",
        bits=bits,
    )


def item(text: str, user: str = "alice", mid: str | None = None, priority: int = 0) -> SpeechItem:
    return SpeechItem(message=msg(text, user, mid), text=text, voice="default", priority=priority)


class Harness:
    def __init__(self, engine: ToneEngine, cfg: QueueConfig | None = None) -> None:
        self.engine = engine
        self.worker = EngineWorker(engine)
        self.player = RecordingPlayer()
        self.queue = SpeechQueue(cfg or QueueConfig())
        self.recoveries: list[str] = []
        self.device_back = asyncio.Event()
        self.device_back.set()
        self.speaker = Speaker(
            self.queue, self.worker, self.player, gap_s=0, recover_audio=self._recover
        )
        self.events: list[tuple[str, str, str | None]] = []
        self.speaker.add_listener(self._record)
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def _recover(self, error: Exception) -> None:
        self.recoveries.append(str(error))
        self._changed.set()
        await self.device_back.wait()

    def _record(self, ev: SpeechEvent) -> None:
        self.events.append((ev.kind.value, ev.item.text, ev.outcome.value if ev.outcome else None))
        if ev.kind is SpeechEventKind.STARTED:
            self.player.label = ev.item.text
        self._changed.set()

    def started(self) -> list[str]:
        return [text for kind, text, _ in self.events if kind == "started"]

    async def __aenter__(self) -> Harness:
        await self.worker.start()
        assert await self.worker.wait_ready() is EngineState.READY
        self.task = asyncio.create_task(self.speaker.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.worker.close()

    def finished(self) -> list[tuple[str, str | None]]:
        return [(text, outcome) for kind, text, outcome in self.events if kind == "finished"]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        """Wait until ``condition()`` holds, checking it after every speech event or recovery."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def test_messages_are_spoken_in_order_with_full_audio() -> None:
    async with Harness(ToneEngine(chunks=3)) as h:
        for text in ("one", "two", "three"):
            assert h.speaker.enqueue(item(text))
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.player.played == [("one", 240), ("two", 240), ("three", 240)]
        assert h.finished() == [("one", "played"), ("two", "played"), ("three", "played")]
        kinds = [(k, t) for k, t, _ in h.events if t == "two"]
        assert kinds == [("queued", "two"), ("started", "two"), ("finished", "two")]


async def test_next_message_is_synthesised_while_the_current_one_plays() -> None:
    engine = ToneEngine(chunks=20)
    async with Harness(engine) as h:
        h.player.hold.clear()  # "first" keeps playing until released
        h.speaker.enqueue(item("first"))
        h.speaker.enqueue(item("second"))
        await h.wait_for(lambda: h.started() == ["first"])
        second = h.queue.peek()
        assert second is not None
        assert second.job is not None
        await engine.wait_synthesised("second")
        # "second" finished synthesising while "first" was still playing
        assert h.speaker.current is not None
        assert h.speaker.current.text == "first"
        h.player.hold.set()
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.player.played == [("first", 20 * 80), ("second", 20 * 80)]


async def test_skip_stops_the_current_message_and_the_next_one_plays() -> None:
    async with Harness(ToneEngine(chunks=200)) as h:
        h.speaker.enqueue(item("long"))
        h.speaker.enqueue(item("next"))
        await h.wait_for(lambda: h.started() == ["long"])
        skipped = h.speaker.skip()
        assert skipped is not None
        assert skipped.text == "long"
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.finished() == [("long", "skipped"), ("next", "played")]
        long_samples = dict(h.player.played)["long"]
        assert long_samples < 200 * RATE // 100


async def test_skip_with_nothing_playing_is_harmless() -> None:
    async with Harness(ToneEngine()) as h:
        assert h.speaker.skip() is None


async def test_deleted_message_is_dropped_while_queued_and_stopped_while_playing() -> None:
    async with Harness(ToneEngine(chunks=200)) as h:
        h.speaker.enqueue(item("playing", mid="m1"))
        h.speaker.enqueue(item("queued", mid="m2"))
        h.speaker.enqueue(item("kept", mid="m3"))
        await h.wait_for(lambda: h.started() == ["playing"])
        assert h.speaker.remove_message("m2") == 1
        assert h.speaker.remove_message("m1") == 1
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert ("queued", "removed") in h.finished()
        assert ("playing", "removed") in h.finished()
        assert [t for t, _ in h.player.played] == ["playing", "kept"]


async def test_purge_removes_every_message_of_a_user_playing_or_queued() -> None:
    async with Harness(ToneEngine(chunks=200)) as h:
        h.speaker.enqueue(item("troll 1", user="troll"))
        h.speaker.enqueue(item("nice", user="bob"))
        h.speaker.enqueue(item("troll 2", user="troll"))
        await h.wait_for(lambda: h.started() == ["troll 1"])
        assert h.speaker.purge_user("id-troll") == 2
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert [t for t, _ in h.player.played] == ["troll 1", "nice"]
        assert h.finished()[-1] == ("nice", "played")


async def test_clear_empties_the_queue_and_can_include_the_current_message() -> None:
    async with Harness(ToneEngine(chunks=200)) as h:
        h.player.hold.clear()  # m0 keeps playing until stopped
        for i in range(5):
            h.speaker.enqueue(item(f"m{i}", user=f"u{i}"))
        await h.wait_for(lambda: h.started() == ["m0"])
        assert h.speaker.clear() == 4
        assert len(h.queue) == 0
        assert h.speaker.current is not None  # still playing
        assert h.speaker.clear(include_current=True) == 1
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert [t for t, _ in h.player.played] == ["m0"]


async def test_removed_items_cancel_their_engine_jobs() -> None:
    engine = ToneEngine(chunks=50)
    engine.gate.clear()  # hold the engine so that jobs stay queued
    async with Harness(engine) as h:
        h.speaker.enqueue(item("a", mid="a"))
        h.speaker.enqueue(item("b", mid="b"))
        await engine.wait_entered("a")  # taken from the queue, so "b" was prefetched
        queued = h.queue.peek()
        assert queued is not None
        assert queued.job is not None
        h.speaker.remove_message("b")
        assert queued.job.cancelled
        engine.gate.set()
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert engine.calls == ["a"]  # the cancelled job never reached the engine


async def test_a_failing_synthesis_is_reported_and_the_next_message_plays() -> None:
    async with Harness(ToneEngine()) as h:
        h.speaker.enqueue(item("fail"))
        h.speaker.enqueue(item("fine"))
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.finished() == [("fail", "failed"), ("fine", "played")]


async def test_pause_holds_the_queue_and_resume_releases_it() -> None:
    engine = ToneEngine()
    async with Harness(engine) as h:
        h.speaker.pause()
        h.speaker.enqueue(item("held"))
        await engine.wait_synthesised("held")  # prefetched; an unpaused speaker takes it at once
        assert h.speaker.current is None
        assert [it.text for it in h.queue.snapshot()] == ["held"]
        assert h.started() == []
        h.speaker.resume()
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.player.played == [("held", 240)]


def test_queue_bound_drop_newest() -> None:
    q = SpeechQueue(QueueConfig(max_size=3, per_user_limit=10, overflow="drop_newest"))
    results = [q.push(item(f"m{i}"))[0] for i in range(5)]
    assert results == [True, True, True, False, False]
    assert [it.text for it in q.snapshot()] == ["m0", "m1", "m2"]


def test_queue_bound_drop_oldest() -> None:
    q = SpeechQueue(QueueConfig(max_size=3, per_user_limit=10, overflow="drop_oldest"))
    for i in range(5):
        assert q.push(item(f"m{i}"))[0]
    assert [it.text for it in q.snapshot()] == ["m2", "m3", "m4"]


def test_per_user_limit() -> None:
    q = SpeechQueue(QueueConfig(max_size=10, per_user_limit=2))
    assert [q.push(item(f"a{i}", user="a"))[0] for i in range(3)] == [True, True, False]
    assert q.push(item("b0", user="b"))[0]


def test_paid_messages_go_first_and_push_out_free_ones_when_full() -> None:
    q = SpeechQueue(QueueConfig(max_size=3, per_user_limit=10))
    for i in range(3):
        q.push(item(f"free{i}", user=f"u{i}"))
    accepted, evicted, _ = q.push(item("paid", user="rich", priority=1))
    assert accepted
    assert [it.text for it in evicted] == ["free2"]
    assert [it.text for it in q.snapshot()] == ["paid", "free0", "free1"]


def test_burst_never_exceeds_the_bound() -> None:
    q = SpeechQueue(QueueConfig(max_size=25, per_user_limit=3, overflow="drop_oldest"))
    for i in range(2000):
        q.push(item(f"m{i}", user=f"u{i % 40}", priority=1 if i % 97 == 0 else 0))
        assert len(q) <= 25
    per_user: dict[str, int] = {}
    for it in q.snapshot():
        per_user[it.message.user.id] = per_user.get(it.message.user.id, 0) + 1
    assert max(per_user.values()) <= 3


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
def test_evicted_items_have_their_jobs_cancelled(overflow: str) -> None:
    class FakeJob:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    q = SpeechQueue(QueueConfig(max_size=1, per_user_limit=10, overflow=overflow))  # type: ignore[arg-type]
    first = item("first")
    first.job = FakeJob()  # type: ignore[assignment]
    q.push(first)
    accepted, evicted, _ = q.push(item("second"))
    assert first.job is not None
    if overflow == "drop_oldest":
        assert accepted
        assert evicted == [first]
        assert first.job.cancelled
    else:
        assert not accepted
        assert not first.job.cancelled


async def test_a_hung_synthesis_times_out_and_the_next_message_plays() -> None:
    engine = ToneEngine(chunks=2)
    async with Harness(engine) as h:
        h.speaker._timeout_s = 0.3
        engine.gate.clear()  # the engine hangs on the first message
        h.speaker.enqueue(item("hangs"))
        await h.wait_for(lambda: h.finished() == [("hangs", "failed")])
        engine.gate.set()  # the engine recovers; its late output for "hangs" is discarded
        h.speaker.enqueue(item("after"))
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.finished() == [("hangs", "failed"), ("after", "played")]
        assert [t for t, _ in h.player.played] == ["after"]


async def test_a_lost_audio_device_keeps_the_queue_and_replays_the_interrupted_message() -> None:
    async with Harness(ToneEngine(chunks=5)) as h:
        h.device_back.clear()
        h.player.fail_after_chunks = 2
        h.speaker.enqueue(item("interrupted"))
        h.speaker.enqueue(item("waiting", user="bob"))
        await h.wait_for(lambda: h.recoveries == ["device unplugged"])
        # While the device is away nothing is lost: both messages wait, in order.
        assert [it.text for it in h.queue.snapshot()] == ["interrupted", "waiting"]
        h.device_back.set()
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.player.played == [("interrupted", 400), ("waiting", 400)]
        assert h.finished() == [("interrupted", "played"), ("waiting", "played")]


# -- several voices in one message; the longest speaking time (issue 18.1, 18.5) ---------------
async def test_parts_play_in_order_as_one_clip_with_the_pause_between() -> None:
    engine = ToneEngine(chunks=3)
    async with Harness(engine) as h:
        parts = (SpeechPart("one", "default"), SpeechPart("two", "default", 0.05))
        spoken = SpeechItem(message=msg("shown"), text="shown", voice="default", parts=parts)
        assert h.speaker.enqueue(spoken)
        assert h.speaker.enqueue(item("after"))
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        # Both parts were asked for before the first one played; the shown text never was.
        assert engine.calls == ["one", "two", "after"]
        assert h.player.played == [("shown", 2 * 240 + 400), ("after", 240)]
        assert h.finished() == [("shown", "played"), ("after", "played")]


@pytest.mark.parametrize(
    ("max_s", "samples"), [(0.05, 400), (0.2, 1600), (0.3, 2400), (None, 2400)]
)
async def test_the_longest_speaking_time_cuts_at_the_limit(
    max_s: float | None, samples: int
) -> None:
    engine = ToneEngine(chunks=30)  # 0.3 s
    async with Harness(engine) as h:
        long = SpeechItem(message=msg("long"), text="long", voice="default", max_s=max_s)
        assert h.speaker.enqueue(long)
        await asyncio.wait_for(h.speaker.wait_idle(), 10)
        assert h.player.played == [("long", samples)]
        assert h.finished() == [("long", "played")]
