"""Speaks engine audio through one long-lived sounddevice output stream.

Why it is built this way:

* One callback-mode stream stays open between clips. Opening a stream costs tens of ms (and on
  PulseAudio it pops a new sink input in the streamer's mixer), and closing it right after the
  last write drops roughly one output latency of the tail. With the stream always running, a
  clip starts at the next audio block and its end is never cut.
* Playback is streamed: :meth:`AudioPlayer.play` consumes chunks while the engine still
  synthesises later ones, so speech starts after the first chunk, not after the whole message.
* Engines speak at their own rate (24 kHz for F5) and devices rarely run at it, so audio is
  resampled with soxr's streaming resampler, which keeps its filter state across chunks: the
  chunked result equals a one-shot resample, with no seams at chunk boundaries.
* The PortAudio callback runs on a real-time thread. It only copies from a lock-protected
  buffer and reports progress with ``loop.call_soon_threadsafe``; it never waits on the event
  loop. The loop only looks once a second whether callbacks still arrive (a hung device).
* The stream is opened (and the device checked) by :meth:`AudioPlayer.start`, but it only
  starts running with the first clip, and a clip waits for :data:`PREROLL_S` of steady output
  after a start or an underflow: engine loading (imports that hold the GIL) then never
  underruns the device, and the first words of the first message are never cut.
* :meth:`AudioPlayer.play` returns only once the last sample has been played by the device (it
  compares the stream clock with the time PortAudio said that sample reaches the DAC), so the
  next message's gap is measured from the real end of speech and closing cannot cut the tail.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.speech.devices import AudioDeviceError, OutputDevice, portaudio, resolve_output_device
from bot.speech.settings import AudioConfig

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]

_HINT = "run `ishowtts devices` to see the output devices and set `audio.device` in config.yaml"
_FADE_S = 0.005
"""A stopped clip fades out over this long (capped at one block) instead of clicking."""
_FALLBACK_RATES = (48_000, 44_100)
_OFFLOAD_FRAMES = 12_000
"""Chunks longer than this (input frames) are resampled on a worker thread, not the loop."""
_MIN_LATENCY_S = 0.08
"""Output buffering. With ALSA's PulseAudio plugin at a rate the server must convert, PortAudio's
default 40 ms underflows in bursts (measured: hundreds of extra callbacks in the first second,
each eating a block of audio); 80 ms had none at 24, 44.1 and 48 kHz."""
_STALL_S = 2.0
"""No audio callback for this long while the stream should run means the device hung."""
PREROLL_S = 0.1
"""A clip starts only after this much steady output (no underflow) since the stream started or
last underflowed. Right after a start, and while the process is starved (a C extension's
import holding the GIL, measured during torch's import), the device underflows in bursts; a
clip started then loses pieces of its first words. Steady streams are past it: no delay."""
MAX_PREROLL_WAIT_S = 1.0
"""A clip waits at most this long for a steady stream, then plays anyway (speech beats
perfection)."""


def as_mono_float32(chunk: Any) -> Samples:
    """Turn one chunk of engine audio into mono float32 samples in [-1, 1].

    Engines should yield mono float32 already; this also accepts float64, integer PCM (scaled
    by its full range) and ``(frames, channels)`` arrays (averaged), and replaces NaN/inf with
    silence, so one bad chunk becomes a clear error or a quiet spot, never a crash or a blast.

    Raises:
        ValueError: For arrays with more than two dimensions or a non-numeric dtype.
    """
    x = np.asarray(chunk)
    if x.ndim == 0:
        x = x.reshape(1)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] > 0 else np.zeros(0, np.float32)
    elif x.ndim != 1:
        raise ValueError(f"audio chunks must be 1-D (or frames x channels), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        scale = float(max(abs(info.min), info.max))
        if info.min == 0:  # unsigned PCM is centred on its midpoint
            x = x.astype(np.float64) - (info.max + 1) / 2
            scale = (info.max + 1) / 2
        x = x.astype(np.float64) / scale
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio chunks must hold numbers, got dtype {x.dtype}")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def _hz(name: str, value: Any) -> int:
    """Validate a sample rate: a positive whole number of Hz (24000 or 24000.0)."""
    ok = isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0 or float(value) != int(value):
        raise ValueError(f"{name} must be a positive whole number of Hz, got {value!r}")
    return int(value)


class StreamResampler:
    """Resamples one clip, chunk by chunk, with soxr's streaming (stateful) resampler.

    Feeding a clip in uneven chunks and then calling :meth:`flush` gives the same samples as
    resampling it in one go, so streaming playback has no seams at chunk boundaries.
    When the rates are equal it only converts and copies.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        """Prepare a resampler from ``in_rate`` to ``out_rate`` (Hz).

        Raises:
            ValueError: When a rate is not a positive whole number of Hz.
        """
        self.in_rate = _hz("in_rate", in_rate)
        self.out_rate = _hz("out_rate", out_rate)
        self._stream: Any = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
            )

    def process(self, chunk: Any) -> Samples:
        """Resample the next chunk; the result may be shorter or longer than in proportion.

        Raises:
            ValueError: When the chunk is not audio (see :func:`as_mono_float32`).
        """
        x = as_mono_float32(chunk)
        if self._stream is None:
            return x.copy()
        out: Samples = self._stream.resample_chunk(x)
        return out

    def flush(self) -> Samples:
        """Return the samples still inside the filter; call once, after the last chunk."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        out: Samples = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        return out


class _Clip:
    """One ``play`` call's audio and progress; guarded by the player's lock."""

    __slots__ = (
        "chunks",
        "dac_valid",
        "done",
        "ended",
        "frames_sent",
        "future",
        "last_dac_end",
        "loop",
        "offset",
        "on_started",
        "queued",
        "silence_after",
        "started",
        "waited",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_started: Callable[[], None] | None,
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[bool] = loop.create_future()
        self.on_started = on_started
        self.chunks: collections.deque[Samples] = collections.deque()
        self.offset = 0  # read position inside chunks[0]
        self.queued = 0  # frames buffered and not yet handed to the device
        self.ended = False  # the producer is finished; nothing more will be queued
        self.started = False
        self.done = False  # settled (drained, stopped or failed); ignore further audio
        self.frames_sent = 0
        self.last_dac_end = 0.0  # stream time at which the last sample handed out is played
        self.dac_valid = True
        self.silence_after = 0  # frames of silence handed out after the last sample
        self.waited = 0  # callbacks spent waiting for a steady stream before the first sample

    def append(self, samples: Samples) -> None:
        if samples.size:
            self.chunks.append(samples)
            self.queued += samples.size

    def read_into(self, out: Samples) -> int:
        """Copy up to ``len(out)`` queued frames into ``out``; return how many."""
        want = out.size
        n = 0
        while n < want and self.chunks:
            head = self.chunks[0]
            take = min(want - n, head.size - self.offset)
            out[n : n + take] = head[self.offset : self.offset + take]
            n += take
            self.offset += take
            if self.offset >= head.size:
                self.chunks.popleft()
                self.offset = 0
        self.queued -= n
        return n

    def discard(self) -> None:
        self.chunks.clear()
        self.offset = 0
        self.queued = 0


class AudioPlayer:
    """Plays streamed mono engine audio on the configured output device.

    Life cycle: construct (no I/O), ``await start()`` (opens the device), any number of
    ``await play(...)`` one after the other, ``stop()`` to skip, ``await close()``. After
    :class:`~bot.speech.devices.AudioDeviceError` from ``play`` the stream is closed and
    ``start()`` may be called again (it rescans devices, so a re-plugged device is found).
    """

    def __init__(self, cfg: AudioConfig, *, rate: int | None = None) -> None:
        """Remember the settings; nothing is opened until :meth:`start`.

        Args:
            cfg: ``audio`` section of the config (device, volume, block size).
            rate: Force the stream to this rate (Hz); by default the device's default rate.

        Raises:
            ValueError: When ``rate`` is not a positive number of Hz.
        """
        self._cfg = cfg
        self._forced_rate = _hz("rate", rate) if rate is not None else None
        self._start_lock = asyncio.Lock()
        self._volume = float(cfg.volume)
        self._lock = threading.Lock()
        self._stream: Any = None
        self._device: OutputDevice | None = None
        self._rate = 0
        self._channels = 0
        self._blocksize = 0
        self._fade: Samples = np.zeros(0, np.float32)
        self._scratch: Samples = np.zeros(0, np.float32)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clip: _Clip | None = None
        self._tail: Samples | None = None  # faded-out end of a stopped clip, still to play
        self._gain = self._volume  # gain of the last block, for a click-free volume ramp
        self._closing = False
        self._lost: str | None = None  # why the stream died, once it did
        self._needs_rescan = False
        self._last_callback = 0.0
        self._underflows = 0
        self._steady = 0  # callbacks since the stream started or last underflowed
        self._running = False  # the open stream has been started (with the first clip)
        self._preroll_blocks = 1
        self._max_wait_blocks = 1
        self._stop_mark: int | None = None
        self._busy = False
        self._last_frames_sent = 0
        self._latency_frames = 0

    # ----------------------------------------------------------------- properties

    @property
    def stream_rate(self) -> int:
        """Rate of the open stream in Hz (what every clip is resampled to)."""
        if not self._rate:
            raise RuntimeError("the player is not started")
        return self._rate

    @property
    def device(self) -> OutputDevice:
        """The device the stream plays on."""
        if self._device is None:
            raise RuntimeError("the player is not started")
        return self._device

    @property
    def channels(self) -> int:
        """Channels of the open stream (mono audio is copied to each)."""
        return self._channels

    @property
    def volume(self) -> float:
        """Current volume, 0..1."""
        return self._volume

    @property
    def frames_sent(self) -> int:
        """Stream-rate frames of the current (or last) clip handed to the device so far."""
        with self._lock:
            clip = self._clip
            return clip.frames_sent if clip is not None else self._last_frames_sent

    @property
    def stop_mark(self) -> int | None:
        """``frames_sent`` of the clip at the moment :meth:`stop` last cut one, else None."""
        return self._stop_mark

    @property
    def underflows(self) -> int:
        """How many audio blocks the device reported as underflowed since start."""
        return self._underflows

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Open the output stream on the configured device and start it (idempotent).

        The stream then runs until :meth:`close`, playing silence between clips.

        Raises:
            AudioDeviceError: When no usable output device exists or it cannot be opened;
                the message names ``ishowtts devices``.
        """
        async with self._start_lock:
            if self._stream is not None:
                return
            self._loop = asyncio.get_running_loop()
            try:
                await asyncio.to_thread(self._open)
            except AudioDeviceError:
                self._needs_rescan = True  # the next try looks for newly plugged devices
                raise

    def _open(self) -> None:
        sd = portaudio()
        rescan = self._needs_rescan
        device = resolve_output_device(self._cfg.device, rescan=rescan)
        want_channels = max(1, min(device.channels, 2))
        rates = (
            [self._forced_rate]
            if self._forced_rate
            else list(dict.fromkeys([device.default_rate, *_FALLBACK_RATES]))
        )
        chosen: tuple[int, int] | None = None
        problem = "no settings were tried"
        for rate in rates:
            for channels in dict.fromkeys([want_channels, 1]):
                try:
                    sd.check_output_settings(
                        device=device.index, channels=channels, dtype="float32", samplerate=rate
                    )
                except (sd.PortAudioError, ValueError) as exc:
                    problem = str(exc)
                    continue
                chosen = (rate, channels)
                break
            if chosen:
                break
        if chosen is None:
            tried = ", ".join(f"{r} Hz" for r in rates)
            raise AudioDeviceError(
                f"the output device {device.name!r} cannot play float32 audio at {tried} "
                f"({problem}); {_HINT}"
            )
        rate, channels = chosen
        blocksize = max(1, round(rate * self._cfg.block_ms / 1000))
        fade_frames = max(1, min(blocksize, round(rate * _FADE_S)))
        self._closing = False
        self._lost = None
        try:
            stream = sd.OutputStream(
                device=device.index,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=blocksize,
                latency=max(_MIN_LATENCY_S, self._high_latency(sd, device.index)),
                callback=self._callback,
                finished_callback=self._finished,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(
                f"could not open the output device {device.name!r} ({exc}); {_HINT}"
            ) from None
        with self._lock:
            self._latency_frames = round(float(stream.latency) * rate)
            self._rate = rate
            self._channels = channels
            self._blocksize = blocksize
            self._fade = np.linspace(1.0, 0.0, fade_frames, dtype=np.float32)
            self._scratch = np.zeros(blocksize, np.float32)
            self._device = device
            self._gain = self._volume
            self._tail = None
            self._preroll_blocks = max(1, math.ceil(PREROLL_S * rate / blocksize))
            self._max_wait_blocks = max(1, math.ceil(MAX_PREROLL_WAIT_S * rate / blocksize))
        self._running = False
        self._stream = stream
        self._needs_rescan = False
        log.info(
            "audio output: %r (%s) at %d Hz, %d ch, block %d frames, latency %.1f ms",
            device.name,
            device.hostapi,
            rate,
            channels,
            blocksize,
            float(stream.latency) * 1000,
        )

    @staticmethod
    def _high_latency(sd: Any, index: int) -> float:
        try:
            return float(sd.query_devices(index)["default_high_output_latency"])
        except (sd.PortAudioError, KeyError, TypeError, ValueError):
            return 0.0

    def _run_stream(self) -> None:
        """Start the open stream (on a worker thread: PortAudio may block for a moment).

        Raises:
            AudioDeviceError: When the device refuses to start.
        """
        sd = portaudio()
        stream = self._stream
        if stream is None or self._running:
            return
        with self._lock:
            self._steady = 0
        self._last_callback = time.monotonic()
        try:
            stream.start()
        except sd.PortAudioError as exc:
            raise AudioDeviceError(
                f"could not start the output device {self.device.name!r} ({exc}); {_HINT}"
            ) from None
        self._running = True

    async def close(self) -> None:
        """Silence any clip (its ``play`` returns False) and close the stream."""
        self.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            self._closing = True
            await asyncio.to_thread(self._close_stream, stream)
            log.debug("audio output closed")

    @staticmethod
    def _close_stream(stream: Any) -> None:
        # abort, not stop: after play() returned nothing audible is left, and a dead device
        # could make a draining stop hang.
        with contextlib.suppress(Exception):
            stream.abort()
        with contextlib.suppress(Exception):
            stream.close()

    # ----------------------------------------------------------------- controls

    def set_volume(self, volume: float) -> None:
        """Set the volume (0..1); it applies from the next audio block, ramped over it.

        Raises:
            ValueError: When ``volume`` is not a number between 0 and 1.
        """
        v = float(volume)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"volume must be between 0.0 and 1.0, got {volume!r}")
        with self._lock:
            self._volume = v

    def stop(self) -> None:
        """Cut the current clip: it fades out within one audio block and ``play`` returns False.

        Safe to call when nothing plays. Call it from the event loop's thread.
        """
        with self._lock:
            clip = self._clip
            if clip is None or clip.done:
                return
            self._detach(clip)
            n = min(clip.queued, self._fade.size)
            if n:
                faded = np.zeros(n, np.float32)
                clip.read_into(faded)
                faded *= self._fade[:n] * np.float32(self._volume)
                self._tail = faded if self._tail is None else self._mix(self._tail, faded)
            clip.discard()
            self._stop_mark = clip.frames_sent
        if not clip.future.done():
            clip.future.set_result(False)
        log.debug("clip stopped after %d frames", self._stop_mark)

    @staticmethod
    def _mix(a: Samples, b: Samples) -> Samples:
        out = np.zeros(max(a.size, b.size), np.float32)
        out[: a.size] += a
        out[: b.size] += b
        return out

    def _detach(self, clip: _Clip) -> None:
        """Forget ``clip`` (lock held)."""
        clip.done = True
        if self._clip is clip:
            self._clip = None
            self._last_frames_sent = clip.frames_sent

    # ----------------------------------------------------------------- playing

    async def play(
        self,
        chunks: AsyncIterable[Any],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        """Play one clip as its chunks arrive, and wait until it has been heard.

        Args:
            chunks: Mono audio chunks at ``sample_rate`` (float32 from engines; other dtypes
                are converted). Playback starts with the first chunk.
            sample_rate: Rate of the chunks in Hz; resampled to :attr:`stream_rate`.
            on_started: Called on the event loop when the first sample goes to the device.

        Returns:
            True when the last sample has been played out, False when :meth:`stop` cut it.

        Raises:
            AudioDeviceError: When the stream is not open or the device failed while playing
                (the stream is then closed; call :meth:`start` again later).
            ValueError: When ``sample_rate`` or a chunk is not valid audio.
            RuntimeError: When another ``play`` is still running.
            Exception: Whatever ``chunks`` raised (the clip is silenced first).
        """
        if self._busy:
            raise RuntimeError("play() is already running; one clip at a time")
        if self._stream is not None and self._lost is not None:  # died between clips
            await self._discard_stream()
        if self._stream is None:
            reason = f" ({self._lost})" if self._lost else ""
            raise AudioDeviceError(f"the audio output is not open{reason}; {_HINT}")
        if not self._running:
            try:
                await asyncio.to_thread(self._run_stream)
            except AudioDeviceError as exc:
                self._lost = str(exc)
                await self._discard_stream()
                raise
        resampler = StreamResampler(sample_rate, self._rate)
        loop = asyncio.get_running_loop()
        clip = _Clip(loop, on_started)
        self._busy = True
        with self._lock:
            self._clip = clip
        feeder = asyncio.create_task(self._feed(clip, chunks, resampler), name="audio-feeder")
        try:
            return await self._wait(clip, feeder)
        finally:
            self._busy = False
            if not clip.future.done():  # cancelled, or the producer failed
                self.stop()
            if not feeder.done():
                feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder  # reap it; its error (if any) was raised above or is moot

    async def _wait(self, clip: _Clip, feeder: asyncio.Task[None]) -> bool:
        pending: set[asyncio.Future[Any]] = {clip.future, feeder}
        while True:
            await asyncio.wait(pending, timeout=_STALL_S / 2, return_when=asyncio.FIRST_COMPLETED)
            if clip.future.done():
                if clip.future.exception() is not None:
                    await self._discard_stream()
                return clip.future.result()
            if feeder in pending and feeder.done():
                pending.discard(feeder)
                feeder.result()  # re-raise the producer's error; play() silences the clip
            if self._lost is not None:
                await self._discard_stream()
                raise AudioDeviceError(f"audio output failed: {self._lost}; {_HINT}")
            silent_for = time.monotonic() - self._last_callback
            if silent_for > _STALL_S:
                self._lost = f"the output device stopped asking for audio for {silent_for:.1f} s"
                await self._discard_stream()
                raise AudioDeviceError(f"audio output failed: {self._lost}; {_HINT}")

    async def _feed(
        self, clip: _Clip, chunks: AsyncIterable[Any], resampler: StreamResampler
    ) -> None:
        """Resample chunks as they arrive and queue them for the callback."""
        try:
            async for chunk in chunks:
                if clip.done:
                    break
                frames = np.shape(chunk)[0] if np.ndim(chunk) else 1
                if frames > _OFFLOAD_FRAMES:
                    out = await asyncio.to_thread(resampler.process, chunk)
                else:
                    out = resampler.process(chunk)
                self._queue(clip, out)
            self._queue(clip, resampler.flush(), last=True)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if clip.done and aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _queue(self, clip: _Clip, samples: Samples, *, last: bool = False) -> None:
        if samples.size:
            np.clip(samples, -1.0, 1.0, out=samples)
        with self._lock:
            if clip.done:
                return
            clip.append(samples)
            if last:
                clip.ended = True

    async def _discard_stream(self) -> None:
        """Close a failed stream so that a later :meth:`start` opens a fresh one."""
        stream, self._stream = self._stream, None
        self._needs_rescan = True
        with self._lock:
            clip = self._clip
            if clip is not None:
                self._detach(clip)
                clip.discard()
            self._tail = None
        if stream is not None:
            self._closing = True
            await asyncio.to_thread(self._close_stream, stream)
        log.warning("audio output closed after a failure: %s", self._lost)

    # ----------------------------------------------------------------- audio thread

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's real-time callback: copy queued audio out, never block on the loop."""
        try:
            self._render(outdata, frames, time_info, status)
        except Exception as exc:
            # A bug here must not leave noise in the buffer or die silently: output silence,
            # end the stream and let play() report it (the bot then reopens the device).
            outdata.fill(0)
            self._lost = f"internal error in the audio callback: {exc!r}"
            raise portaudio().CallbackAbort from exc

    def _render(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        self._last_callback = time.monotonic()
        if status.output_underflow:
            self._underflows += 1
            self._steady = 0
        else:
            self._steady += 1
        if self._scratch.size < frames:
            self._scratch = np.zeros(frames, np.float32)
        mono = self._scratch[:frames]
        mono.fill(0.0)
        notify: list[tuple[_Clip, bool | None]] = []
        with self._lock:
            clip = self._clip
            n = clip.read_into(mono) if clip is not None and self._may_play(clip) else 0
            gain, self._gain = self._gain, self._volume
            if gain == self._volume:
                if gain != 1.0:
                    mono *= np.float32(gain)
            else:
                mono *= np.linspace(gain, self._volume, frames, dtype=np.float32)
            tail = self._tail
            if tail is not None:
                t = min(frames, tail.size)
                mono[:t] += tail[:t]
                self._tail = tail[t:] if t < tail.size else None
            if clip is not None:
                self._advance(clip, n, frames, time_info, notify)
        outdata[:] = mono[:, None]
        for target, result in notify:
            self._notify(target, result)

    def _may_play(self, clip: _Clip) -> bool:
        """Whether ``clip`` may hand out audio now (lock held): started, or a steady stream."""
        if clip.started or self._steady >= self._preroll_blocks:
            return True
        if not clip.queued:
            return False
        clip.waited += 1
        return clip.waited > self._max_wait_blocks

    def _advance(
        self,
        clip: _Clip,
        n: int,
        frames: int,
        time_info: Any,
        notify: list[tuple[_Clip, bool | None]],
    ) -> None:
        """Track a clip's progress after one block (lock held)."""
        if n:
            clip.frames_sent += n
            dac = float(time_info.outputBufferDacTime)
            if dac > 0:
                clip.last_dac_end = dac + n / self._rate
            else:
                clip.dac_valid = False
            clip.silence_after = frames - n
            if not clip.started:
                clip.started = True
                notify.append((clip, None))
        elif clip.started:
            clip.silence_after += frames
        if not clip.ended or clip.queued:
            return
        # Everything was handed out; finished once the device has played the last sample.
        latency_frames = self._latency_frames
        if not clip.started:
            finished = True
        elif clip.dac_valid:
            finished = float(time_info.currentTime) >= clip.last_dac_end or (
                clip.silence_after >= self._rate + latency_frames  # clock nonsense: give up
            )
        else:
            finished = clip.silence_after >= latency_frames + self._blocksize
        if finished:
            self._detach(clip)
            notify.append((clip, True))

    def _notify(self, clip: _Clip, result: bool | None) -> None:
        """Hand a clip event to the event loop (from the audio thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            clip.loop.call_soon_threadsafe(self._settle, clip, result)

    def _settle(self, clip: _Clip, result: bool | None) -> None:
        """On the loop: fire ``on_started`` (result None) or finish the clip."""
        if result is None:
            if clip.on_started is not None and not clip.future.done():
                try:
                    clip.on_started()
                except Exception:
                    log.exception("on_started callback failed")
            return
        if not clip.future.done():
            clip.future.set_result(result)

    def _finished(self) -> None:
        """PortAudio says the stream ended; unless we closed it, the device is gone."""
        if self._closing:
            return
        if self._lost is None:
            self._lost = "the audio stream stopped (device unplugged or sound server gone)"
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_lost)

    def _on_lost(self) -> None:
        with self._lock:
            clip = self._clip
        if clip is not None and not clip.future.done():
            clip.future.set_exception(
                AudioDeviceError(f"audio output failed: {self._lost}; {_HINT}")
            )
