"""The speech queue and the speaker task that turns queued messages into sound.

Control beats data: skip, clear, delete and purge act on the queue and on the playing clip
at once (cancelling engine jobs and silencing the player), however long the queue and however
busy the GPU. The speaker synthesises the next message while the current one plays, so the
only silence between messages is the configured gap.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bot.core.messages import ChatMessage
from bot.speech.settings import QueueConfig
from engine.base import Audio
from engine.worker import SynthesisFailed, SynthesisJob

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4
"""Chunks whose loudest sample stays below this (-80 dBFS) are silence to any listener."""
CUT_FADE_S = 0.15
"""A message cut at its longest speaking time (``SpeechItem.max_s``) fades out over this."""
MAX_LEADING_SILENCE_S = 30.0
"""Silence held while waiting for the first sound; more means the engine only makes silence.
It also bounds the memory a fast engine producing endless silence could take."""


def is_audible(chunk: Audio) -> bool:
    """Whether a chunk holds anything above :data:`SILENCE_PEAK` (NaN counts as not audible)."""
    if not len(chunk):
        return False
    peak = float(np.max(np.abs(chunk)))
    return peak >= SILENCE_PEAK


class Outcome(enum.Enum):
    """How a queued message ended."""

    PLAYED = "played"
    SKIPPED = "skipped"
    REMOVED = "removed"
    DROPPED = "dropped"
    FAILED = "failed"


class SoundClip(Protocol):
    """A sound effect played as a part of a message (``bot.chat.sounds.SoundClip``)."""

    @property
    def name(self) -> str:
        """The sound's name, for the log."""
        ...

    @property
    def sample_rate(self) -> int:
        """Its own rate: a message of nothing but sounds plays at the first one's."""
        ...

    async def samples(self, sample_rate: int) -> Audio | None:
        """The clip as mono float32 at ``sample_rate``; None when it cannot be played."""
        ...


@dataclass(frozen=True, slots=True)
class SpeechPart:
    """A stretch of a message spoken in one voice (several voices in one message).

    Attributes:
        text: What is synthesised for this part; for a sound, what is said instead when
            its clip cannot be played ("" for nothing).
        voice: Its voice.
        pause_before_s: Silence played before it (between two parts).
        sound: A sound effect played here instead of speech.
    """

    text: str
    voice: str
    pause_before_s: float = 0.0
    sound: SoundClip | None = None


@dataclass(eq=False)
class SpeechItem:
    """One message waiting to be spoken.

    Attributes:
        message: The chat message it came from (moderation matches on its ids).
        text: What is shown and recorded (template and filters applied); also what is
            spoken unless ``parts`` says otherwise.
        voice: Voice name to speak with (the first part's, when there are parts).
        priority: Higher first; paid messages get 1, others 0.
        seq: Arrival order, for FIFO within a priority.
        parts: When set, what is synthesised instead of ``text``: each part in its voice,
            one after the other (several voices; spoken forms that differ from the text).
        max_s: The longest it may play; longer audio is cut with a short fade. None: no limit.
        job: The engine job once synthesis was requested (prefetch or play).
        batch_size: How many messages its engine job was submitted with (1: alone, more:
            one batch during a raid; 0: not submitted yet).
    """

    message: ChatMessage
    text: str
    voice: str
    priority: int = 0
    seq: int = 0
    parts: tuple[SpeechPart, ...] = ()
    max_s: float | None = None
    job: SynthesisJob | PartsJob | None = field(default=None, repr=False)
    batch_size: int = 0

    def cancel(self) -> None:
        """Cancel the engine job, if one was started."""
        if self.job is not None:
            self.job.cancel()


class ClipJob(SynthesisJob):
    """A sound part of a message: its clip's samples at the stream's rate, as a job.

    A SynthesisJob to everything that chains or times parts (:class:`PartsJob`), though no
    engine makes it: the clip is decoded off the event loop when its turn comes (cached after
    the first time), and when it cannot be played, ``fallback`` (the tag read as text) is
    synthesised in its place, or nothing is heard.
    """

    CHUNK_S = 0.05
    """The clip is handed to the player in pieces this long, like an engine's chunks."""

    def __init__(
        self,
        clip: SoundClip,
        sample_rate: int,
        fallback: Callable[[], SynthesisJob] | None = None,
    ) -> None:
        """Play ``clip`` at ``sample_rate``; ``fallback`` submits what is said instead."""
        super().__init__(-1, f"[{clip.name}]", "", sample_rate)
        self._clip = clip
        self._fallback = fallback
        self._spoken: SynthesisJob | None = None
        self._clip_cancelled = False
        self._clip_done = False

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._clip_cancelled

    @property
    def done(self) -> bool:
        """Whether the clip (or what was said instead) has ended."""
        return self._clip_done or self._clip_cancelled

    def cancel(self) -> None:
        """Stop before the next piece (the player's stop() silences what plays)."""
        self._clip_cancelled = True
        if self._spoken is not None:
            self._spoken.cancel()

    async def __aiter__(self) -> AsyncIterator[Audio]:
        """The clip in pieces of :data:`CHUNK_S`, or the fallback's chunks."""
        try:
            audio = None if self.cancelled else await self._clip.samples(self.sample_rate)
            if audio is None:
                if self._fallback is not None and not self.cancelled:
                    self._spoken = self._fallback()
                    async for chunk in self._spoken:
                        yield chunk
                return
            self.first_chunk_at = time.monotonic()
            step = max(1, round(self.CHUNK_S * self.sample_rate))
            for start in range(0, len(audio), step):
                if self.cancelled:
                    return
                yield audio[start : start + step]
        finally:
            self._clip_done = True
            self.finished_at = time.monotonic()


class PartsJob:
    """The engine jobs of a message's parts, heard as one stream with short pauses between.

    Every part is submitted at once, so the engine thread synthesises the next part while
    the current one plays; cancelling cancels them all.
    """

    def __init__(self, jobs: list[tuple[SynthesisJob, float]]) -> None:
        """Chain ``(job, pause before it in seconds)`` pairs (at least one)."""
        self._jobs = jobs
        self.sample_rate = jobs[0][0].sample_rate

    @property
    def jobs(self) -> list[SynthesisJob]:
        """The parts' engine jobs, in order (their timings make the message's)."""
        return [job for job, _ in self._jobs]

    @property
    def cancelled(self) -> bool:
        """Whether every part was cancelled (``cancel()``)."""
        return all(job.cancelled for job, _ in self._jobs)

    @property
    def done(self) -> bool:
        """Whether every part has ended."""
        return all(job.done for job, _ in self._jobs)

    def cancel(self) -> None:
        """Cancel every part."""
        for job, _ in self._jobs:
            job.cancel()

    async def __aiter__(self) -> AsyncIterator[Audio]:
        """Each part's chunks in turn, with its pause before it.

        Raises:
            SynthesisFailed: When the engine failed on a part.
        """
        for index, (job, pause_s) in enumerate(self._jobs):
            if index and pause_s > 0:
                yield np.zeros(round(pause_s * self.sample_rate), dtype=np.float32)
            async for chunk in job:
                yield chunk


class _Cut:
    """Ends a stream at ``max_s`` seconds, fading out over the last :data:`CUT_FADE_S`."""

    def __init__(self, max_s: float | None, sample_rate: int) -> None:
        self._limit = None if max_s is None else max(1, round(max_s * sample_rate))
        self._fade = max(1, round(CUT_FADE_S * sample_rate))
        self._pos = 0
        self.reached = False

    @property
    def heard(self) -> int:
        """Samples let through so far."""
        return self._pos

    def apply(self, chunk: Audio) -> Audio:
        """The part of ``chunk`` that is still heard, faded near the limit."""
        if self._limit is None:
            self._pos += len(chunk)
            return chunk
        start = self._pos
        if start + len(chunk) <= self._limit - self._fade:
            self._pos += len(chunk)
            return chunk
        keep = max(0, min(len(chunk), self._limit - start))
        position = start + np.arange(keep)
        gain = np.clip((self._limit - position) / self._fade, 0.0, 1.0).astype(np.float32)
        self._pos = start + keep
        self.reached = self._pos >= self._limit
        return (chunk[:keep] * gain).astype(np.float32, copy=False)


class SpeechEventKind(enum.Enum):
    """What happened to a speech item."""

    QUEUED = "queued"
    """Accepted into the queue."""
    STARTED = "started"
    """Its first audible sample reached the audio device."""
    FINISHED = "finished"
    """It ended; the event's ``outcome`` says how."""


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    """Something that happened to an item (``outcome`` is set for FINISHED).

    ``audio_s`` (FINISHED): seconds of its audio that reached the player (pauses between
    parts included), so observers can tell the real-time factor of a message played whole.
    """

    kind: SpeechEventKind
    item: SpeechItem
    outcome: Outcome | None = None
    detail: str = ""
    audio_s: float = 0.0


Listener = Callable[[SpeechEvent], None]


class SpeechQueue:
    """A bounded priority queue of SpeechItems with raid-proof overflow rules.

    Everything here runs on the event loop and is synchronous, so every operation is atomic
    with respect to chat handling.
    """

    def __init__(self, cfg: QueueConfig) -> None:
        self._cfg = cfg
        self._items: list[SpeechItem] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> list[SpeechItem]:
        """Items in the order they will be spoken."""
        return list(self._items)

    def pending_for(self, user_id: str) -> int:
        """How many items of this user are waiting."""
        return sum(1 for it in self._items if it.message.user.id == user_id)

    def push(self, item: SpeechItem) -> tuple[bool, list[SpeechItem], str]:
        """Add an item, applying the per-user limit and the overflow policy.

        Returns:
            (accepted, evicted items, reason when not accepted). Evicted items had their
            engine jobs cancelled already.
        """
        if self.pending_for(item.message.user.id) >= self._cfg.per_user_limit:
            return False, [], "too many pending messages from this user"
        evicted: list[SpeechItem] = []
        if len(self._items) >= self._cfg.max_size:
            victim = self._overflow_victim(item)
            if victim is None:
                return False, [], "queue full"
            self._items.remove(victim)
            victim.cancel()
            evicted.append(victim)
        item.seq = next(self._seq)
        if not self._cfg.paid_first:
            item.priority = 0
        # Stable insert: after every item of the same or higher priority.
        pos = len(self._items)
        for i, other in enumerate(self._items):
            if other.priority < item.priority:
                pos = i
                break
        self._items.insert(pos, item)
        self._changed.set()
        return True, evicted, ""

    def _overflow_victim(self, incoming: SpeechItem) -> SpeechItem | None:
        """Pick what to drop when full; paid messages are never dropped for free ones."""
        lowest = min(it.priority for it in self._items)
        if incoming.priority > lowest:
            # Make room by dropping the newest free message (the one least waited for).
            candidates = [it for it in self._items if it.priority == lowest]
            return max(candidates, key=lambda it: it.seq)
        if self._cfg.overflow == "drop_oldest":
            candidates = [it for it in self._items if it.priority <= incoming.priority]
            return min(candidates, key=lambda it: it.seq) if candidates else None
        return None

    def push_front(self, item: SpeechItem) -> None:
        """Put an interrupted item back first in line (bounds don't apply: it was accepted)."""
        self._items.insert(0, item)
        self._changed.set()

    def pop(self) -> SpeechItem | None:
        """Take the next item, or None when empty."""
        if not self._items:
            self._changed.clear()
            return None
        return self._items.pop(0)

    def peek(self) -> SpeechItem | None:
        """The next item without taking it."""
        return self._items[0] if self._items else None

    def remove(self, predicate: Callable[[SpeechItem], bool]) -> list[SpeechItem]:
        """Drop every matching item (cancelling their engine jobs) and return them."""
        gone = [it for it in self._items if predicate(it)]
        if gone:
            self._items = [it for it in self._items if not predicate(it)]
            for it in gone:
                it.cancel()
        return gone

    async def wait_nonempty(self) -> None:
        """Wait until at least one item is queued."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()


class _AudioLost(Exception):
    """The player failed (device gone); carries the original error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Player(Protocol):
    """What the speaker needs from the audio player (``bot.speech.player.AudioPlayer``)."""

    async def play(
        self,
        chunks: AsyncIterator[Audio],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        """Play streamed chunks; True when played to the end, False when stopped."""
        ...

    def stop(self) -> None:
        """Silence the current clip within one block."""
        ...


class Synthesizer(Protocol):
    """What the speaker needs from the engine worker (``engine.worker.EngineWorker``)."""

    def submit(self, text: str, voice: str) -> SynthesisJob:
        """Queue synthesis and return its job handle at once."""
        ...

    def submit_batch(self, requests: Sequence[tuple[str, str]]) -> list[SynthesisJob]:
        """Queue several (text, voice) requests as one batch; one handle each, at once."""
        ...


class Speaker:
    """Owns the queue-to-speakers loop and every control action on it."""

    def __init__(
        self,
        queue: SpeechQueue,
        engine: Synthesizer,
        player: Player,
        *,
        gap_s: float = 0.25,
        timeout_s: float = 60.0,
        recover_audio: Callable[[Exception], Awaitable[None]] | None = None,
        max_batch: Callable[[], int] | None = None,
    ) -> None:
        """Wire the loop to its queue, engine and player.

        ``max_batch`` says how many queued messages may be synthesised as one batch now
        (the engine's own limit is known once it loaded); None: one at a time.
        """
        self.queue = queue
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._engine = engine
        self._player = player
        self._gap_s = gap_s
        self._recover_audio = recover_audio
        self.current: SpeechItem | None = None
        self._current_outcome: Outcome | None = None
        self._heard_s = 0.0
        self._listeners: list[Listener] = []
        self._paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()

    # -- observation ----------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` for every queued/started/finished event (on the event loop)."""
        self._listeners.append(listener)

    def _emit(
        self,
        kind: SpeechEventKind,
        item: SpeechItem,
        outcome: Outcome | None = None,
        detail: str = "",
        audio_s: float = 0.0,
    ) -> None:
        event = SpeechEvent(kind, item, outcome, detail, audio_s)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("speech listener failed on %s", kind.value)

    @property
    def paused(self) -> bool:
        """Whether playback of new items is paused."""
        return self._paused

    # -- data -----------------------------------------------------------------------
    def enqueue(self, item: SpeechItem) -> bool:
        """Queue an item (policies apply); returns whether it was accepted."""
        accepted, evicted, reason = self.queue.push(item)
        for old in evicted:
            self._emit(SpeechEventKind.FINISHED, old, Outcome.DROPPED, "queue full")
        if not accepted:
            log.info("not queued (%s): %s", reason, item.message.user.login)
            self._emit(SpeechEventKind.FINISHED, item, Outcome.DROPPED, reason)
            return False
        self._idle.clear()
        self._emit(SpeechEventKind.QUEUED, item)
        self._prefetch()
        return True

    # -- control (all take effect immediately) ----------------------------------------
    def skip(self) -> SpeechItem | None:
        """Stop the playing message; returns it, or None when nothing was playing."""
        item = self.current
        if item is None:
            return None
        self._current_outcome = Outcome.SKIPPED
        item.cancel()
        self._player.stop()
        return item

    def remove_where(
        self, predicate: Callable[[SpeechItem], bool], *, include_current: bool = True
    ) -> int:
        """Remove queued items matching ``predicate`` (and stop the current one if it matches)."""
        gone = self.queue.remove(predicate)
        for it in gone:
            self._emit(SpeechEventKind.FINISHED, it, Outcome.REMOVED)
        count = len(gone)
        if include_current and self.current is not None and predicate(self.current):
            self._current_outcome = Outcome.REMOVED
            self.current.cancel()
            self._player.stop()
            count += 1
        self._check_idle()
        return count

    def clear(self, *, include_current: bool = False) -> int:
        """Empty the queue (and stop the current message too when asked)."""
        return self.remove_where(lambda _it: True, include_current=include_current)

    def remove_message(self, message_id: str) -> int:
        """A deleted chat message: drop it, or stop it if it is playing."""
        return self.remove_where(lambda it: it.message.id == message_id)

    def purge_user(self, user_id: str) -> int:
        """A timed-out or banned user: drop everything of theirs, playing or queued."""
        return self.remove_where(lambda it: it.message.user.id == user_id)

    def pause(self) -> None:
        """Finish nothing new: the current message completes, the queue waits."""
        self._paused = True
        self._resumed.clear()

    def resume(self) -> None:
        """Start speaking queued messages again."""
        self._paused = False
        self._resumed.set()

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or playing."""
        await self._idle.wait()

    def _check_idle(self) -> None:
        if self.current is None and not len(self.queue):
            self._idle.set()

    # -- the loop ---------------------------------------------------------------------
    def _prefetch(self) -> None:
        """Start synthesising the next item so it is ready when the current one ends.

        During a raid (several waiting items without a job, an engine that batches) the
        next ones are submitted together, up to the engine's batch, so their first audio
        comes together; each keeps its own job (a skip or delete stops only that one). A
        lone message takes the single path, so its first audio is never delayed.
        """
        nxt = self.queue.peek()
        if nxt is None or nxt.job is not None:
            return
        most = self._max_batch() if self._max_batch is not None else 1
        batch: list[SpeechItem] = []
        for waiting in self.queue.snapshot()[: max(1, most)]:
            if waiting.job is not None or waiting.parts:
                break
            batch.append(waiting)
        if len(batch) < 2:
            nxt.job = self._submit(nxt)
            nxt.batch_size = 1
            return
        jobs = self._engine.submit_batch([(it.text, it.voice) for it in batch])
        for waiting, job in zip(batch, jobs, strict=True):
            waiting.job = job
            waiting.batch_size = len(batch)

    def _submit(self, item: SpeechItem) -> SynthesisJob | PartsJob:
        """Ask the engine for the item's audio: its text, or each of its parts."""
        if not item.parts:
            return self._engine.submit(item.text, item.voice)
        if any(p.sound is not None for p in item.parts):
            return self._with_sounds(item.parts)
        return PartsJob(
            [(self._engine.submit(p.text, p.voice), p.pause_before_s) for p in item.parts]
        )

    def _with_sounds(self, parts: tuple[SpeechPart, ...]) -> PartsJob:
        """Speech parts submitted at once, sound parts at the speech's rate (or their own)."""
        spoken = {
            i: self._engine.submit(p.text, p.voice) for i, p in enumerate(parts) if p.sound is None
        }
        first = next(iter(spoken.values()), None)
        sounds = [p.sound for p in parts if p.sound is not None]
        rate = first.sample_rate if first is not None else sounds[0].sample_rate
        jobs: list[tuple[SynthesisJob, float]] = []
        for i, part in enumerate(parts):
            job: SynthesisJob
            if part.sound is None:
                job = spoken[i]
            else:
                fallback = None
                if part.text.strip():
                    text, voice = part.text, part.voice
                    fallback = lambda t=text, v=voice: self._engine.submit(t, v)  # noqa: E731
                job = ClipJob(part.sound, rate, fallback)
            jobs.append((job, part.pause_before_s))
        return PartsJob(jobs)

    async def run(self) -> None:
        """Speak queued items until cancelled."""
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for can swallow a cancellation that races with a result
                # (a skip or clear that ends the stream just as the bot closes): honour it here.
                raise asyncio.CancelledError
            await self.queue.wait_nonempty()
            await self._resumed.wait()
            item = self.queue.pop()
            if item is None:
                continue
            self.current = item
            self._current_outcome = None
            self._heard_s = 0.0
            if item.job is None:
                item.job = self._submit(item)
                item.batch_size = 1
            self._prefetch()
            try:
                outcome, detail = await self._speak(item, item.job)
            except _AudioLost as lost:
                await self._audio_lost(item, lost.error)
                continue
            self.current = None
            self._emit(SpeechEventKind.FINISHED, item, outcome, detail, self._heard_s)
            self._check_idle()
            if outcome in (Outcome.PLAYED, Outcome.SKIPPED) and self._gap_s > 0:
                await asyncio.sleep(self._gap_s)

    async def _audio_lost(self, item: SpeechItem, error: Exception) -> None:
        """Keep the interrupted message (first in line) and the queue; wait for the device."""
        interrupted_by_control = self._current_outcome is not None
        self.current = None
        if interrupted_by_control:
            self._emit(SpeechEventKind.FINISHED, item, self._current_outcome, "")
        else:
            item.job = None  # its audio was cut: synthesise it again once the device is back
            self.queue.push_front(item)
        if self._recover_audio is None:
            log.error("audio output failed: %s", error)
            return
        await self._recover_audio(error)

    async def _speak(self, item: SpeechItem, job: SynthesisJob | PartsJob) -> tuple[Outcome, str]:
        chunks = aiter(job)
        # Nothing is played until the engine produced something audible: a message that is
        # all silence (a broken checkpoint, fp16 underflow) is dropped instead of occupying
        # the speakers. Silent chunks before the first sound are held and played with it, so
        # real speech keeps its exact timing; engine.timeout_s bounds the wait for that sound.
        held: list[Audio] = []
        held_samples = 0
        deadline = time.monotonic() + self._timeout_s
        login = item.message.user.login
        while True:
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(anext(chunks), remaining)
            except StopAsyncIteration:
                if self._current_outcome is not None:
                    return self._current_outcome, ""
                if held:
                    log.warning("the engine produced only silence for %s's message; dropped", login)
                    return Outcome.FAILED, "silence"
                return Outcome.FAILED, "the engine produced no audio"
            except SynthesisFailed as exc:
                log.warning("could not speak %s's message: %s", login, exc)
                return Outcome.FAILED, str(exc)
            except TimeoutError:
                job.cancel()
                log.warning("synthesis took longer than %.0f s; message dropped", self._timeout_s)
                return Outcome.FAILED, "synthesis timed out"
            if self._current_outcome is not None:  # skipped/removed before a sample was played
                return self._current_outcome, ""
            held.append(chunk)
            if is_audible(chunk):
                break
            held_samples += len(chunk)
            if held_samples > MAX_LEADING_SILENCE_S * max(1, job.sample_rate):
                job.cancel()
                log.warning(
                    "the engine produced over %.0f s of silence for %s's message; dropped",
                    MAX_LEADING_SILENCE_S,
                    login,
                )
                return Outcome.FAILED, "silence"

        cut = _Cut(item.max_s, job.sample_rate)

        async def stream() -> AsyncIterator[Audio]:
            for chunk in held:
                yield cut.apply(chunk)
                if cut.reached:
                    job.cancel()
                    return
            held.clear()
            while self._current_outcome is None:
                try:
                    chunk = await asyncio.wait_for(anext(chunks), self._timeout_s)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    job.cancel()
                    raise SynthesisFailed("synthesis timed out") from None
                yield cut.apply(chunk)
                if cut.reached:
                    job.cancel()  # the rest is never heard: stop synthesising it
                    return

        started = False

        def on_started() -> None:
            nonlocal started
            started = True
            self._emit(SpeechEventKind.STARTED, item)

        try:
            finished = await self._player.play(stream(), job.sample_rate, on_started=on_started)
        except SynthesisFailed as exc:
            self._heard_s = cut.heard / max(1, job.sample_rate)
            self._player.stop()
            log.warning("synthesis failed mid-message for %s: %s", item.message.user.login, exc)
            return Outcome.FAILED, str(exc)
        except Exception as exc:  # the audio device vanished or broke
            job.cancel()
            raise _AudioLost(exc) from exc
        self._heard_s = cut.heard / max(1, job.sample_rate)
        if not started:
            self._emit(SpeechEventKind.STARTED, item)
        if self._current_outcome is not None:
            return self._current_outcome, ""
        if finished and cut.reached:
            return Outcome.PLAYED, f"cut after {item.max_s:g} s"
        return (Outcome.PLAYED, "") if finished else (Outcome.SKIPPED, "")
