"""Where speech goes besides (or instead of) the local audio device: a fan-out of audio events.

The OBS browser source can play the speech itself (``web.browser_audio``), so that a two-PC
setup needs no audio cable and OBS mixes the TTS like any other source. The speech side does
not know about web pages (``bot.web`` imports ``bot.speech``, never the other way): the
:class:`FanoutPlayer` takes the speaker's place as its player, hands every chunk to the local
:class:`~bot.speech.player.AudioPlayer` (``also``) or to nobody (``only``), and publishes what
happens to an :class:`AudioFanout`, which any number of subscribers (the web server's audio
feeds) listen to:

* :class:`ClipStart` when a message's audio begins, with its sample rate;
* :class:`ClipAudio` for each chunk, as it is synthesised (before it is heard locally);
* :class:`ClipEnd` when the last chunk was sent, :class:`ClipStop` when a skip, a deleted
  message or a ban cut it (subscribers drop what they still hold of it, at once);
* :class:`VolumeChange` when ``!volume`` or the panel changes the volume (subscribers apply
  it at once to what is already buffered, so the chunks themselves are never scaled).

With ``only`` there is no device: the player paces each clip by the clock (its length in
samples) so that the speaker's queue, captions and "finished" events keep their meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bot.speech.player import Samples, as_mono_float32

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClipStart:
    """A message's audio begins; its chunks come at ``rate`` Hz, mono."""

    clip: int
    rate: int


@dataclass(frozen=True, slots=True)
class ClipAudio:
    """One chunk of a clip: mono float32 samples in -1..1, not scaled by the volume."""

    clip: int
    samples: Samples


@dataclass(frozen=True, slots=True)
class ClipEnd:
    """Every chunk of the clip was published; it plays out to its end."""

    clip: int


@dataclass(frozen=True, slots=True)
class ClipStop:
    """The clip was cut (skip, deleted message, ban, clear): silence it now."""

    clip: int


@dataclass(frozen=True, slots=True)
class VolumeChange:
    """The volume (0..1) changed; it applies to audio already buffered too."""

    volume: float


OutputEvent = ClipStart | ClipAudio | ClipEnd | ClipStop | VolumeChange
Subscriber = Callable[[OutputEvent], None]


class AudioFanout:
    """Hands each output event to every subscriber, on the event loop, in order.

    A subscriber must not block (the web server queues the event for its socket). One that
    raises is logged once and dropped, so a broken page never stops speech.
    """

    def __init__(self, volume: float = 1.0) -> None:
        """Start with no subscribers and ``volume`` (what a new subscriber is told first)."""
        self._subscribers: list[Subscriber] = []
        self.volume = float(volume)
        """The current volume, 0..1."""
        self.current: ClipStart | None = None
        """The clip being published now (a subscriber that joins mid-clip starts with it)."""

    @property
    def subscribers(self) -> int:
        """How many are listening."""
        return len(self._subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Listen from now on; returns the function that stops listening."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: OutputEvent) -> None:
        """Give ``event`` to every subscriber."""
        if isinstance(event, ClipStart):
            self.current = event
        elif isinstance(event, ClipEnd | ClipStop):
            if self.current is not None and self.current.clip == event.clip:
                self.current = None
        elif isinstance(event, VolumeChange):
            self.volume = event.volume
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception as exc:
                log.warning("dropping an audio listener that failed: %s", exc)
                with contextlib.suppress(ValueError):
                    self._subscribers.remove(subscriber)


class LocalPlayer(Protocol):
    """What the fan-out needs of the local device's player (``AudioPlayer``)."""

    @property
    def volume(self) -> float:
        """Current volume, 0..1."""
        ...

    async def start(self) -> None:
        """Open the device."""
        ...

    async def close(self) -> None:
        """Close the device."""
        ...

    def set_volume(self, volume: float) -> None:
        """Set the volume, 0..1."""
        ...

    def stop(self) -> None:
        """Cut the current clip."""
        ...

    async def play(
        self,
        chunks: AsyncIterable[Any],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        """Play one clip; True when heard to the end, False when stopped."""
        ...


class FanoutPlayer:
    """The speaker's player when speech also (or only) goes to the browser source.

    Same contract as :class:`~bot.speech.player.AudioPlayer` for the speaker and the chat
    pipeline (``play``, ``stop``, ``set_volume``, ``volume``, ``start``, ``close``). With a
    ``local`` player, that one plays (and paces) every clip and the fan-out gets a copy of
    each chunk; without one, the clock paces the clip.
    """

    def __init__(self, fanout: AudioFanout, local: LocalPlayer | None, *, volume: float) -> None:
        """Wire to ``fanout`` and (optionally) the local player; no I/O here."""
        self._fanout = fanout
        self._local = local
        self._volume = float(volume)
        self._clip: int | None = None
        self._ids = itertools.count(1)
        self._cut: asyncio.Event | None = None
        fanout.volume = self._volume

    @property
    def local(self) -> LocalPlayer | None:
        """The local device's player, or None when speech plays only in the browser."""
        return self._local

    @property
    def volume(self) -> float:
        """Current volume, 0..1."""
        return self._local.volume if self._local is not None else self._volume

    async def start(self) -> None:
        """Open the local device (nothing to open for the browser)."""
        if self._local is not None:
            await self._local.start()

    async def close(self) -> None:
        """Cut what plays and close the local device."""
        self.stop()
        if self._local is not None:
            await self._local.close()

    def set_volume(self, volume: float) -> None:
        """Set the volume (0..1) here and in every browser source, at once.

        Raises:
            ValueError: When ``volume`` is not a number between 0 and 1.
        """
        v = float(volume)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"volume must be between 0.0 and 1.0, got {volume!r}")
        if self._local is not None:
            self._local.set_volume(v)
        self._volume = v
        self._fanout.publish(VolumeChange(v))

    def stop(self) -> None:
        """Cut the current clip on the device and in every browser source."""
        clip, self._clip = self._clip, None
        if self._local is not None:
            self._local.stop()
        if self._cut is not None:
            self._cut.set()
        if clip is not None:
            self._fanout.publish(ClipStop(clip))

    async def play(
        self,
        chunks: AsyncIterable[Any],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        """Play one clip: on the device and/or in the browser sources, as chunks arrive.

        Returns:
            True when it played to its end, False when :meth:`stop` cut it.

        Raises:
            ValueError: When ``sample_rate`` is not a positive number of Hz.
            Exception: Whatever ``chunks`` or the local player raised (the clip is cut
                in the browser sources first).
        """
        if isinstance(sample_rate, bool) or int(sample_rate) <= 0:
            raise ValueError(f"sample rate must be a positive number of Hz, got {sample_rate!r}")
        clip = next(self._ids)
        self._clip = clip
        self._fanout.publish(ClipStart(clip, int(sample_rate)))
        finished = False
        try:
            if self._local is not None:
                finished = await self._local.play(
                    self._tee(clip, chunks), sample_rate, on_started=on_started
                )
            else:
                finished = await self._paced(clip, chunks, int(sample_rate), on_started)
        finally:
            if self._clip == clip:  # not cut by stop(): it ended, or failed
                self._clip = None
                self._fanout.publish(ClipEnd(clip) if finished else ClipStop(clip))
        return finished

    async def _tee(self, clip: int, chunks: AsyncIterable[Any]) -> AsyncIterator[Samples]:
        """The chunks on their way to the local player, each published as it passes."""
        try:
            async for chunk in chunks:
                samples = as_mono_float32(chunk)
                if self._clip == clip and samples.size:
                    self._fanout.publish(ClipAudio(clip, samples))
                yield samples
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _paced(
        self,
        clip: int,
        chunks: AsyncIterable[Any],
        rate: int,
        on_started: Callable[[], None] | None,
    ) -> bool:
        """Publish the chunks as they come and wait, by the clock, until they were heard."""
        cut = asyncio.Event()
        self._cut = cut
        frames = 0
        began: float | None = None

        async def produce() -> None:
            nonlocal frames, began
            async for chunk in chunks:
                if cut.is_set():
                    return
                samples = as_mono_float32(chunk)
                if not samples.size:
                    continue
                np.clip(samples, -1.0, 1.0, out=samples)
                if began is None:
                    began = time.monotonic()
                    if on_started is not None:
                        on_started()
                frames += samples.size
                self._fanout.publish(ClipAudio(clip, samples))

        producer = asyncio.create_task(produce(), name="browser-audio")
        stopper = asyncio.create_task(cut.wait(), name="browser-audio-cut")
        try:
            await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if cut.is_set():
                return False
            producer.result()  # the engine's error, if any
            if began is None:
                return True  # nothing audible
            heard_at = began + frames / rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cut.wait(), max(0.0, heard_at - time.monotonic()))
            return not cut.is_set()
        finally:
            for task in (producer, stopper):
                if not task.done():
                    task.cancel()
            for task in (producer, stopper):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            if self._cut is cut:
                self._cut = None
