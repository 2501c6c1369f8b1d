"""AudioPlayer through a real PulseAudio null sink whose monitor is recorded.

Timing is never asserted in wall-clock terms: positions are measured in samples of the
recording, and waits have generous timeouts that only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.speech.devices import AudioDeviceError
from bot.speech.player import AudioPlayer, StreamResampler, as_mono_float32
from bot.speech.settings import AudioConfig
from tests.support.audio import (
    PulseServer,
    SinkRecorder,
    active_span,
    dominant_frequency,
    find_offset,
    launch_pulse_server,
    rms,
    tone,
)

HANG = 30.0  # seconds before a wait counts as hung (not a speed requirement)
SR = 48_000  # the test sink's rate


async def chunked(
    samples: np.ndarray, sizes: list[int] | int, *, pause: float = 0.0
) -> AsyncIterator[np.ndarray]:
    """Yield ``samples`` in chunks like an engine does (uneven sizes cycle)."""
    sizes = [sizes] if isinstance(sizes, int) else sizes
    i = k = 0
    while i < samples.size:
        n = sizes[k % len(sizes)]
        yield samples[i : i + n]
        i += n
        k += 1
        if pause:
            await asyncio.sleep(pause)


async def until_sent(player: AudioPlayer, seconds: float) -> None:
    """Wait until ``seconds`` of the playing clip have gone to the device (its own count)."""
    frames = round(seconds * player.stream_rate)
    async with asyncio.timeout(HANG):
        while player.frames_sent < frames:
            await asyncio.sleep(0.005)


def noise(seconds: float, rate: int, *, seed: int = 1, lead_s: float = 0.1) -> np.ndarray:
    """Band-limited-free random signal: a unique waveform that is easy to align exactly."""
    rng = np.random.default_rng(seed)
    body = rng.uniform(-0.5, 0.5, round(seconds * rate))
    return np.concatenate([np.zeros(round(lead_s * rate)), body]).astype(np.float32)


async def play(
    player: AudioPlayer, chunks: AsyncIterator[np.ndarray], rate: int, **kw: object
) -> bool:
    return await asyncio.wait_for(player.play(chunks, rate, **kw), HANG)  # type: ignore[arg-type]


@pytest.fixture
async def player48(pulse_server: PulseServer) -> AsyncIterator[AudioPlayer]:
    """A player on the test server whose stream is forced to the sink's own 48 kHz."""
    player = AudioPlayer(AudioConfig(device=pulse_server.device_name), rate=SR)
    await player.start()
    try:
        yield player
    finally:
        await player.close()


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("out_rate", [48_000, 44_100])
def test_resampler_keeps_frequency_and_scales_length(out_rate: int) -> None:
    x = tone(1000, 1.0, 24_000, lead_silence_s=0)
    rs = StreamResampler(24_000, out_rate)
    y = np.concatenate([rs.process(x), rs.flush()])
    assert abs(y.size - x.size * out_rate / 24_000) <= 1
    assert dominant_frequency(y[1000:-1000], out_rate) == pytest.approx(1000, abs=0.5)
    # Not a hand-made interpolation: it matches soxr's one-shot high-quality resampler.
    np.testing.assert_allclose(y, soxr.resample(x, 24_000, out_rate), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=12),
    out_rate=st.sampled_from([16_000, 44_100, 48_000]),
)
def test_resampler_streamed_in_uneven_chunks_equals_one_shot(
    sizes: list[int], out_rate: int
) -> None:
    x = noise(0.4, 24_000, lead_s=0)
    whole = StreamResampler(24_000, out_rate)
    one_shot = np.concatenate([whole.process(x), whole.flush()])
    rs = StreamResampler(24_000, out_rate)
    parts, i, k = [], 0, 0
    while i < x.size:
        parts.append(rs.process(x[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    parts.append(rs.flush())
    streamed = np.concatenate(parts)
    assert streamed.size == one_shot.size
    np.testing.assert_allclose(streamed, one_shot, atol=1e-5)


def test_resampler_same_rate_passes_audio_through() -> None:
    x = noise(0.1, 48_000)
    rs = StreamResampler(48_000, 48_000)
    y = rs.process(x)
    assert np.array_equal(y, x)
    assert y is not x
    assert rs.flush().size == 0


@pytest.mark.parametrize("bad", [0, -1, 24_000.5, float("nan"), True, "24000", None])
def test_resampler_rejects_bad_rates(bad: object) -> None:
    with pytest.raises(ValueError, match="Hz"):
        StreamResampler(bad, 48_000)  # type: ignore[arg-type]


def test_chunks_are_normalised_to_mono_float32() -> None:
    assert as_mono_float32(np.array([16384, -32768], np.int16)).tolist() == [0.5, -1.0]
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], np.float64)
    assert as_mono_float32(stereo).tolist() == [0.5, 0.5]
    assert as_mono_float32(np.array([np.nan, np.inf, 0.25], np.float32)).tolist() == [0, 0, 0.25]
    assert as_mono_float32(np.array([0, 128, 255], np.uint8)).tolist() == pytest.approx(
        [-1.0, 0.0, 127 / 128]
    )
    with pytest.raises(ValueError, match="1-D"):
        as_mono_float32(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="numbers"):
        as_mono_float32(np.array(["a", "b"]))


def test_constructor_does_no_io_and_checks_rate() -> None:
    # No server, no device: constructing must not touch PortAudio.
    player = AudioPlayer(AudioConfig(device="surely-not-a-device"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = player.stream_rate
    with pytest.raises(ValueError, match="Hz"):
        AudioPlayer(AudioConfig(), rate=0)


# --------------------------------------------------------------------------- real playback


@pytest.mark.audio
async def test_what_was_sent_arrives_sample_for_sample(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    sent = noise(0.5, SR)
    sink_recorder.start()
    assert await play(player48, chunked(sent, [4800, 333, 12000, 7]), SR) is True
    rec = sink_recorder.stop(mono=False)
    assert player48.channels == 2
    left, right = rec[:, 0], rec[:, 1]
    np.testing.assert_array_equal(left, right)  # mono duplicated to both channels
    at = find_offset(left, sent)
    got = left[at : at + sent.size]
    assert got.size == sent.size
    body = slice(round(0.05 * SR), None)  # the first ms of a stream may be lost (notes pitfall 3)
    np.testing.assert_allclose(got[body], sent[body], atol=1e-6)
    # Nothing else was played: silence before and after the clip.
    assert rms(left[:at]) < 1e-6
    assert rms(left[at + sent.size :]) < 1e-6


@pytest.mark.audio
async def test_24k_clip_on_48k_stream_is_resampled_by_the_player(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    assert player48.stream_rate == SR
    clip = tone(1000, 0.6, 24_000)
    sink_recorder.start()
    assert await play(player48, chunked(clip, [2400, 1000, 5000]), 24_000) is True
    rec = sink_recorder.stop()
    start, end = active_span(rec)
    assert (end - start) / SR == pytest.approx(0.6, abs=0.005)
    assert dominant_frequency(rec[start + 480 : end - 480], SR) == pytest.approx(1000, abs=1.0)
    # The 48 kHz stream reaches a 48 kHz sink untouched, so what arrives is exactly the
    # player's own soxr output (the server did no resampling).
    expected = soxr.resample(clip, 24_000, SR)
    at = find_offset(rec, expected)
    body = slice(round(0.05 * SR), None)
    np.testing.assert_allclose(rec[at : at + expected.size][body], expected[body], atol=1e-5)


@pytest.mark.audio
async def test_default_rate_path_plays_at_the_right_pitch(
    pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    player = AudioPlayer(AudioConfig(device=pulse_server.device_name))
    await player.start()
    try:
        assert player.stream_rate == player.device.default_rate
        sink_recorder.start()
        assert await play(player, chunked(tone(440, 0.5, 24_000), 2400), 24_000) is True
        rec = sink_recorder.stop()
    finally:
        await player.close()
    start, end = active_span(rec)
    assert (end - start) / SR == pytest.approx(0.5, abs=0.01)
    assert dominant_frequency(rec[start + 480 : end - 480], SR) == pytest.approx(440, abs=1.0)


@pytest.mark.audio
async def test_volume_scales_the_output(player48: AudioPlayer, sink_recorder: SinkRecorder) -> None:
    clip = noise(0.4, SR, seed=7)
    sink_recorder.start()
    assert await play(player48, chunked(clip, 4800), SR) is True
    player48.set_volume(0.25)
    assert await play(player48, chunked(clip, 4800), SR) is True
    rec = sink_recorder.stop()
    first = find_offset(rec, clip)
    rest = first + clip.size
    second = rest + find_offset(rec[rest:], clip)
    body = slice(round(0.15 * SR), None)
    loud = rec[first : first + clip.size][body]
    quiet = rec[second : second + clip.size][body]
    assert rms(loud) == pytest.approx(rms(clip[body]), rel=1e-3)
    assert rms(quiet) / rms(loud) == pytest.approx(0.25, rel=1e-3)
    np.testing.assert_allclose(quiet, 0.25 * clip[body], atol=1e-6)
    with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
        player48.set_volume(1.5)
    assert player48.volume == 0.25


@pytest.mark.audio
async def test_volume_change_applies_to_a_clip_that_is_playing(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    clip = tone(1000, 1.5, SR)
    sink_recorder.start()

    started = asyncio.Event()
    task = asyncio.create_task(play(player48, chunked(clip, 4800), SR, on_started=started.set))
    await asyncio.wait_for(started.wait(), HANG)
    await until_sent(player48, 0.3)
    mark = player48.frames_sent
    player48.set_volume(0.5)
    assert await task is True
    rec = sink_recorder.stop()
    start, end = active_span(rec)
    lead = round(0.1 * SR)
    change = start - lead + mark  # the clip position where the new volume may start
    before = rms(rec[start + 2400 : change])
    after = rms(rec[change + round(0.05 * SR) : end - 2400])
    assert after / before == pytest.approx(0.5, rel=0.02)


@pytest.mark.audio
async def test_tail_is_not_cut_even_when_closing_right_after_play(
    pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    # The clip ends at full amplitude on a distinct tone: a cut tail would be visible.
    clip = np.concatenate([tone(500, 0.3, SR), tone(3000, 0.1, SR, lead_silence_s=0)])
    player = AudioPlayer(AudioConfig(device=pulse_server.device_name), rate=SR)
    await player.start()
    sink_recorder.start()
    events: list[str] = []
    ok = await play(player, chunked(clip, 2400), SR, on_started=lambda: events.append("started"))
    events.append("returned")
    await player.close()  # aborts the stream: anything not yet played would be lost
    rec = sink_recorder.stop()
    assert ok is True
    assert events == ["started", "returned"]
    at = find_offset(rec, clip)
    tail = round(0.1 * SR)
    np.testing.assert_allclose(rec[at : at + clip.size][-tail:], clip[-tail:], atol=1e-6)


@pytest.mark.audio
async def test_streaming_starts_before_the_clip_is_complete(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    release = asyncio.Event()
    steps: list[str] = []

    async def engine() -> AsyncIterator[np.ndarray]:
        steps.append("chunk 1")
        yield tone(1000, 0.3, 24_000)
        await release.wait()  # the engine is still synthesising the rest
        steps.append("chunk 2")
        yield tone(1000, 0.3, 24_000, lead_silence_s=0)

    def started() -> None:
        steps.append("started")
        release.set()

    sink_recorder.start()
    assert await play(player48, engine(), 24_000, on_started=started) is True
    rec = sink_recorder.stop()
    assert steps == ["chunk 1", "started", "chunk 2"]
    start, end = active_span(rec)
    assert (end - start) / SR == pytest.approx(0.6, abs=0.02)


@pytest.mark.audio
async def test_stop_silences_within_a_block_and_play_again_works(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    clip = tone(1000, 4.0, 24_000)
    sink_recorder.start()
    started = asyncio.Event()
    task = asyncio.create_task(
        play(player48, chunked(clip, 4800, pause=0.01), 24_000, on_started=started.set)
    )
    await asyncio.wait_for(started.wait(), HANG)
    await until_sent(player48, 0.4)
    player48.stop()
    mark = player48.stop_mark
    assert await task is False
    # Play again after the stop.
    again = tone(2000, 0.3, 24_000)
    assert await play(player48, chunked(again, 2400), 24_000) is True
    rec = sink_recorder.stop()

    assert mark is not None
    onset, _ = active_span(rec)
    lead = round(0.1 * SR)  # tone() leads with 100 ms of silence
    tone_start = onset  # first audible sample of the 1 kHz tone
    stop_at = tone_start - lead + mark  # recording position of the last sample handed out
    # End of the 1 kHz tone: last loud sample before the second clip begins.
    second = find_offset(rec, soxr.resample(again, 24_000, SR))
    first_end = active_span(rec[:second])[1]
    after_stop = first_end - stop_at
    assert after_stop <= round(0.1 * SR)  # within 100 ms of audio (actually one 5 ms fade)
    assert after_stop >= -round(0.01 * SR)  # and it was not cut before the mark
    # Everything after the fade is silent until the next clip.
    assert rms(rec[stop_at + round(0.02 * SR) : second - 10]) < 1e-4
    second_span = active_span(rec[second:])
    seg = rec[second + second_span[0] + 480 : second + second_span[1] - 480]
    assert dominant_frequency(seg, SR) == pytest.approx(2000, abs=2)


@pytest.mark.audio
async def test_stop_while_waiting_for_the_engine_returns_and_closes_the_producer(
    player48: AudioPlayer,
) -> None:
    steps: list[str] = []
    never = asyncio.Event()

    async def engine() -> AsyncIterator[np.ndarray]:
        try:
            yield tone(1000, 0.2, 24_000)
            steps.append("waiting")
            await never.wait()
            yield tone(1000, 0.2, 24_000)
        finally:
            steps.append("producer closed")

    task = asyncio.create_task(
        play(player48, engine(), 24_000, on_started=lambda: steps.append("started"))
    )
    while "waiting" not in steps or "started" not in steps:
        await asyncio.sleep(0.01)
    player48.stop()
    assert await task is False
    await asyncio.sleep(0)
    assert steps[-1] == "producer closed"
    assert await play(player48, chunked(tone(500, 0.1, 24_000), 2400), 24_000) is True


@pytest.mark.audio
async def test_a_failing_producer_is_reported_and_the_next_clip_plays(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    async def broken() -> AsyncIterator[np.ndarray]:
        yield tone(1000, 0.2, 24_000)
        raise RuntimeError("engine exploded")

    with pytest.raises(RuntimeError, match="engine exploded"):
        await play(player48, broken(), 24_000)

    async def bad_chunk() -> AsyncIterator[np.ndarray]:
        yield np.zeros((2, 2, 2), np.float32)

    with pytest.raises(ValueError, match="1-D"):
        await play(player48, bad_chunk(), 24_000)
    sink_recorder.start()
    assert await play(player48, chunked(tone(700, 0.3, 24_000), 2400), 24_000) is True
    rec = sink_recorder.stop()
    start, end = active_span(rec)
    assert dominant_frequency(rec[start + 480 : end - 480], SR) == pytest.approx(700, abs=2)


@pytest.mark.audio
async def test_cancelling_play_silences_the_clip(
    player48: AudioPlayer, sink_recorder: SinkRecorder
) -> None:
    sink_recorder.start()
    started = asyncio.Event()
    task = asyncio.create_task(
        player48.play(chunked(tone(1000, 3.0, SR), 4800), SR, on_started=started.set)
    )
    await asyncio.wait_for(started.wait(), HANG)
    await until_sent(player48, 0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    mark = player48.stop_mark
    rec = sink_recorder.stop()
    assert mark is not None
    start, end = active_span(rec)
    assert end - (start - round(0.1 * SR) + mark) <= round(0.1 * SR)


@pytest.mark.audio
async def test_empty_clip_returns_true_and_one_clip_at_a_time(player48: AudioPlayer) -> None:
    assert await play(player48, chunked(np.zeros(0, np.float32), 10), 24_000) is True
    block = asyncio.Event()

    async def slow() -> AsyncIterator[np.ndarray]:
        yield tone(300, 0.1, 24_000)
        await block.wait()

    started = asyncio.Event()
    first = asyncio.create_task(player48.play(slow(), 24_000, on_started=started.set))
    await asyncio.wait_for(started.wait(), HANG)  # the first clip is playing
    with pytest.raises(RuntimeError, match="one clip at a time"):
        await player48.play(chunked(tone(300, 0.1, 24_000), 100), 24_000)
    block.set()
    assert await asyncio.wait_for(first, HANG) is True


@pytest.mark.audio
async def test_unknown_device_names_ishowtts_devices(pulse_server: PulseServer) -> None:
    player = AudioPlayer(AudioConfig(device="no-such-speaker"))
    with pytest.raises(AudioDeviceError, match="ishowtts devices") as err:
        await player.start()
    assert "no-such-speaker" in str(err.value)
    with pytest.raises(AudioDeviceError, match="ishowtts devices"):
        await player.play(chunked(tone(300, 0.1, 24_000), 100), 24_000)


@pytest.mark.audio
async def test_no_usable_output_names_ishowtts_devices(
    pulse_server: PulseServer, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pulse device is listed, but no sound server answers behind it.
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path / 'nobody-home'}")
    player = AudioPlayer(AudioConfig(device=pulse_server.device_name))
    with pytest.raises(AudioDeviceError, match="ishowtts devices"):
        await player.start()


@pytest.mark.audio
async def test_sound_server_vanishing_mid_clip_raises_and_start_recovers(
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spare = launch_pulse_server(tmp_path, keepalive=False)
    player = AudioPlayer(AudioConfig(device=pulse_server.device_name))
    try:
        monkeypatch.setenv("PULSE_SERVER", spare.env["PULSE_SERVER"])
        await player.start()
        started = asyncio.Event()
        task = asyncio.create_task(
            play(player, chunked(tone(440, 5.0, 24_000), 2400), 24_000, on_started=started.set)
        )
        await asyncio.wait_for(started.wait(), HANG)
        spare.stop()  # the device disappears while the clip plays
        with pytest.raises(AudioDeviceError, match="ishowtts devices"):
            await task
        with pytest.raises(AudioDeviceError, match="not open"):
            await player.play(chunked(tone(440, 0.1, 24_000), 2400), 24_000)
        # The bot retries later; by then the (default) server is back.
        monkeypatch.setenv("PULSE_SERVER", pulse_server.env["PULSE_SERVER"])
        await player.start()
        sink_recorder.start()
        assert await play(player, chunked(tone(880, 0.3, 24_000), 2400), 24_000) is True
        rec = sink_recorder.stop()
    finally:
        spare.stop()
        await player.close()
    start, end = active_span(rec)
    assert dominant_frequency(rec[start + 480 : end - 480], SR) == pytest.approx(880, abs=2)
