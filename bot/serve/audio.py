"""Response encodings of ``POST /v1/audio/speech``: audio chunks in, body bytes out.

Every format is produced at 24 kHz mono (OpenAI's rate; its ``pcm`` is 24 kHz signed 16-bit
little-endian mono), whatever the engine's own rate (eSpeak NG speaks at 22.05 kHz): one
streaming resampler per response keeps chunk boundaries seamless.

Streamed formats send bytes for every chunk as soon as the engine has it:

* ``pcm``: raw samples;
* ``wav``: a RIFF header whose sizes say "unknown" (0xFFFFFFFF, as OpenAI's streamed WAV
  does), then the samples; readers take the data up to the end of the body;
* ``opus``: Ogg Opus through libsndfile, page by page.

``flac`` and ``mp3`` are sent whole when the message is complete: their headers carry the
length (FLAC's STREAMINFO sample count, MP3's Xing frame count), libsndfile writes those only
when the file is closed, and readers (libsndfile among them) trust the header over the data,
so a streamed copy decodes to the wrong length or not at all.
"""

from __future__ import annotations

import contextlib
import enum
import struct

import numpy as np
import soundfile
import soxr

from engine.base import Audio

OUTPUT_RATE = 24_000


class Format(enum.StrEnum):
    """The ``response_format`` values this server produces."""

    PCM = "pcm"
    WAV = "wav"
    FLAC = "flac"
    MP3 = "mp3"
    OPUS = "opus"

    @property
    def content_type(self) -> str:
        """The response's Content-Type."""
        return _CONTENT_TYPES[self]

    @property
    def streamed(self) -> bool:
        """Whether bytes leave with each chunk (False: the whole file at the end)."""
        return self in (Format.PCM, Format.WAV, Format.OPUS)


_CONTENT_TYPES = {
    Format.PCM: "audio/pcm",
    Format.WAV: "audio/wav",
    Format.FLAC: "audio/flac",
    Format.MP3: "audio/mpeg",
    Format.OPUS: "audio/ogg",
}
_SOUNDFILE = {
    Format.FLAC: ("FLAC", "PCM_16"),
    Format.MP3: ("MP3", "MPEG_LAYER_III"),
    Format.OPUS: ("OGG", "OPUS"),
}


def wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


def to_s16(audio: Audio) -> bytes:
    """Float samples in [-1, 1] as signed 16-bit little-endian bytes."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


class _Sink:
    """A seekable in-memory file for libsndfile; ``take()`` hands out the bytes not yet sent.

    libsndfile seeks back on close to patch headers; a patch of bytes already sent cannot
    reach the client, which is why only the whole-file formats rely on it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._sent = 0

    def write(self, data: bytes) -> int:
        data = bytes(data)
        end = self._pos + len(data)
        if end > len(self._buf):
            self._buf.extend(b"\0" * (end - len(self._buf)))
        self._buf[self._pos : end] = data
        self._pos = end
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = len(self._buf) if size < 0 else min(len(self._buf), self._pos + size)
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data

    def take(self) -> bytes:
        data = bytes(self._buf[self._sent :])
        self._sent = len(self._buf)
        return data

    def everything(self) -> bytes:
        return bytes(self._buf)


class Encoder:
    """Turns one response's chunks into body bytes (see the module docstring).

    Not thread-safe; one per response. ``feed`` and ``finish`` are quick for ``pcm`` and
    ``wav`` (a resample and a cast); the libsndfile formats take a few milliseconds per
    chunk, so the server calls those off the event loop.
    """

    def __init__(self, fmt: Format, engine_rate: int) -> None:
        """Prepare an encoder for audio at ``engine_rate``; nothing is written yet."""
        self.format = fmt
        self._resampler = (
            soxr.ResampleStream(engine_rate, OUTPUT_RATE, 1, dtype="float32", quality="HQ")
            if engine_rate != OUTPUT_RATE
            else None
        )
        self._started = False
        self._sink: _Sink | None = None
        self._file: soundfile.SoundFile | None = None
        self.samples = 0
        """Samples (at 24 kHz) encoded so far."""

    def _resample(self, audio: Audio, last: bool) -> Audio:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._resampler is None:
            return audio
        return np.asarray(self._resampler.resample_chunk(audio, last=last), dtype=np.float32)

    def _sf(self) -> soundfile.SoundFile:
        if self._file is None:
            self._sink = _Sink()
            container, subtype = _SOUNDFILE[self.format]
            self._file = soundfile.SoundFile(
                self._sink,
                "w",
                samplerate=OUTPUT_RATE,
                channels=1,
                format=container,
                subtype=subtype,
            )
        return self._file

    def _encode(self, audio: Audio) -> bytes:
        self.samples += len(audio)
        if self.format is Format.PCM:
            return to_s16(audio)
        if self.format is Format.WAV:
            head = b"" if self._started else wav_header(OUTPUT_RATE)
            self._started = True
            return head + to_s16(audio)
        file = self._sf()
        if len(audio):
            file.write(audio)
        assert self._sink is not None
        return self._sink.take() if self.format.streamed else b""

    def feed(self, audio: Audio) -> bytes:
        """Bytes to send for one engine chunk (may be empty)."""
        return self._encode(self._resample(audio, last=False))

    def finish(self) -> bytes:
        """The last bytes: the resampler's tail, and the whole file for flac and mp3."""
        tail = self._encode(self._resample(np.zeros(0, dtype=np.float32), last=True))
        if self.format in (Format.PCM, Format.WAV):
            return tail
        file = self._sf()
        file.close()
        assert self._sink is not None
        return tail + self._sink.take() if self.format.streamed else self._sink.everything()

    def close(self) -> None:
        """Drop an unfinished file (the client went away)."""
        if self._file is not None and not self._file.closed:
            # libsndfile may refuse to close an empty file: nothing is kept anyway
            with contextlib.suppress(RuntimeError):
                self._file.close()
