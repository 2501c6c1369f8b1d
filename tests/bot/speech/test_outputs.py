"""The audio fan-out (``bot.speech.outputs``): what subscribers see of each clip, the clock
pacing of ``only`` and the cut of a stop, with the real event loop and numpy audio (the
browser end is tested in ``tests/bot/web/test_browser_audio.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from bot.speech.outputs import (
    AudioFanout,
    ClipAudio,
    ClipEnd,
    ClipStart,
    ClipStop,
    FanoutPlayer,
    OutputEvent,
    VolumeChange,
)

RATE = 8000


async def _chunks(
    n: int, frames: int = 800, *, fail_at: int | None = None
) -> AsyncIterator[np.ndarray]:
    for i in range(n):
        if fail_at == i:
            raise RuntimeError("the engine broke")
        yield np.full(frames, 0.5, np.float32)
        await asyncio.sleep(0)


def _fanout() -> tuple[AudioFanout, list[OutputEvent]]:
    fanout = AudioFanout()
    seen: list[OutputEvent] = []
    fanout.subscribe(seen.append)
    return fanout, seen


async def test_only_publishes_each_chunk_and_paces_the_clip_by_its_length() -> None:
    fanout, seen = _fanout()
    player = FanoutPlayer(fanout, None, volume=1.0)
    started: list[float] = []
    began = time.monotonic()
    finished = await player.play(_chunks(4), RATE, on_started=lambda: started.append(1))
    took = time.monotonic() - began
    assert finished is True
    assert started == [1]
    assert isinstance(seen[0], ClipStart)
    assert seen[0].rate == RATE
    audio = [e for e in seen if isinstance(e, ClipAudio)]
    assert sum(e.samples.size for e in audio) == 3200
    assert seen[-1] == ClipEnd(seen[0].clip)
    assert took >= 3200 / RATE * 0.9  # it waited (by the clock) until it would be heard
    assert fanout.current is None


async def test_a_stop_cuts_the_paced_clip_at_once_and_tells_the_subscribers() -> None:
    fanout, seen = _fanout()
    player = FanoutPlayer(fanout, None, volume=1.0)
    play = asyncio.create_task(player.play(_chunks(2, frames=RATE * 30), RATE))
    while not any(isinstance(e, ClipAudio) for e in seen):
        await asyncio.sleep(0.01)
    player.stop()
    assert await asyncio.wait_for(play, 2) is False
    start = seen[0]
    assert isinstance(start, ClipStart)
    assert seen[-1] == ClipStop(start.clip)
    assert sum(isinstance(e, ClipStop | ClipEnd) for e in seen) == 1
    player.stop()  # nothing plays: nothing published
    assert sum(isinstance(e, ClipStop) for e in seen) == 1


async def test_an_engine_error_cuts_the_clip_and_is_raised() -> None:
    fanout, seen = _fanout()
    player = FanoutPlayer(fanout, None, volume=1.0)
    with pytest.raises(RuntimeError, match="engine broke"):
        await player.play(_chunks(5, fail_at=2), RATE)
    assert isinstance(seen[-1], ClipStop)


async def test_volume_is_validated_and_published() -> None:
    fanout, seen = _fanout()
    player = FanoutPlayer(fanout, None, volume=0.8)
    assert player.volume == pytest.approx(0.8)
    player.set_volume(0.25)
    assert seen == [VolumeChange(0.25)]
    assert fanout.volume == pytest.approx(0.25)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
            player.set_volume(bad)
    assert player.volume == pytest.approx(0.25)


async def test_a_failing_subscriber_is_dropped_and_speech_goes_on() -> None:
    fanout, seen = _fanout()

    def broken(_event: OutputEvent) -> None:
        raise RuntimeError("page gone")

    fanout.subscribe(broken)
    assert fanout.subscribers == 2
    player = FanoutPlayer(fanout, None, volume=1.0)
    assert await player.play(_chunks(1), RATE) is True
    assert fanout.subscribers == 1
    assert isinstance(seen[-1], ClipEnd)


async def test_bad_rates_are_refused() -> None:
    player = FanoutPlayer(AudioFanout(), None, volume=1.0)
    for rate in (0, -8000):
        with pytest.raises(ValueError, match="sample rate"):
            await player.play(_chunks(1), rate)
