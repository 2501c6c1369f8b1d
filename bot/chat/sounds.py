"""Sound effects in a message: ``hello [airhorn] chat`` plays ``sounds/airhorn.wav`` in place.

A tag (``[name]`` or ``{name}``, by ``sounds.syntax``) that names a clip in ``sounds.dir``
becomes a clip part of the spoken message, between the speech parts around it; the speaker
plays it in the same stream, so skip, delete and ban stop a playing effect like any speech.
Tags that name no clip, tags past ``sounds.max_per_message`` and tags of viewers below
``sounds.min_role`` are read as written or dropped (``sounds.unknown``).

The folder is scanned off the event loop (at start, and again when a tag names a clip that
is not known, at most every :data:`RESCAN_S`), so the pipeline looks names up without I/O.
Clips are decoded and resampled to the stream's rate in a worker thread when first played
and kept in an LRU cache; a file that went missing or is damaged is logged once per attempt
and its tag is spoken (or dropped) instead, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr
from pydantic import Field

from bot.chat.roles import RoleName
from bot.core.lru import LRU
from engine.base import Audio
from engine.config import ConfigPath, Section

log = logging.getLogger(__name__)

SOUND_NAME_RE = re.compile(r"[a-z0-9_-]{1,32}\Z")
"""A sound's name (its file's stem, lower case): what viewers type inside the tag."""
SOUND_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
"""Files of the sounds folder that are clips (``ishowtts sounds add`` writes WAV)."""
MAX_PLAY_S = 30.0
"""A clip placed in the folder by hand is cut here when played (imports allow 10 s)."""
RESCAN_S = 5.0
"""Least time between two scans of the folder caused by tags of unknown names."""
CACHE_CLIPS = 32
"""Decoded clips kept in memory (at most 30 s at 48 kHz float32, 5.8 MB, each)."""

_TAGS: dict[str, re.Pattern[str]] = {
    "brackets": re.compile(r"\[([A-Za-z0-9_-]{1,32})\]"),
    "braces": re.compile(r"\{([A-Za-z0-9_-]{1,32})\}"),
}


class SoundsConfig(Section):
    """Sound effects in messages (``sounds``): ``hello [airhorn] chat``."""

    enabled: bool = False
    dir: ConfigPath = Field(default=Path("sounds"), description="the folder of the clips")
    syntax: Literal["brackets", "braces"] = Field(
        default="brackets", description="brackets: '[name]'; braces: '{name}'"
    )
    min_role: RoleName = Field(default="everyone", description="lowest role that may use them")
    max_per_message: int = Field(default=3, ge=1, le=20, description="clips one message plays")
    unknown: Literal["read", "drop"] = Field(
        default="read", description="tags that play nothing: read as written, or left out"
    )


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stretch of a message: text to speak, or a sound (``text`` is then its fallback)."""

    text: str
    sound: str | None = None


def split_sounds(
    text: str,
    syntax: Literal["brackets", "braces"],
    known: Callable[[str], str | None],
    limit: int,
    unknown: Literal["read", "drop"],
) -> tuple[list[Chunk], int]:
    """Split ``text`` at tags that name a sound.

    Args:
        text: The (filtered) text of one voice part.
        syntax: ``brackets`` or ``braces``.
        known: The sound's name for a tag's word (any case), or None when there is none.
        limit: How many sounds this text may still play (0: none; its tags are unknown).
        unknown: What happens to tags that play nothing: ``read`` as written, or ``drop``.

    Returns:
        The chunks in order (text chunks are stripped and never empty; a sound chunk's text
        is what is said if its file cannot be played: the tag as written, or nothing when
        ``unknown`` is ``drop``) and how many sounds were used.
    """
    chunks: list[Chunk] = []
    used = 0
    pending: list[str] = []  # text since the last sound

    def flush() -> None:
        joined = " ".join("".join(pending).split())
        pending.clear()
        if joined:
            chunks.append(Chunk(joined))

    start = 0
    for match in _TAGS[syntax].finditer(text):
        pending.append(text[start : match.start()])
        start = match.end()
        name = known(match.group(1)) if used < limit else None
        if name is None:
            if unknown == "read":
                pending.append(match.group(0))
            else:
                pending.append(" ")
            continue
        flush()
        chunks.append(Chunk(match.group(0) if unknown == "read" else "", name))
        used += 1
    pending.append(text[start:])
    flush()
    return chunks, used


def has_tags(text: str, syntax: Literal["brackets", "braces"]) -> bool:
    """Whether ``text`` holds anything shaped like a tag."""
    return _TAGS[syntax].search(text) is not None


@dataclass(frozen=True, slots=True)
class SoundFile:
    """A clip of the sounds folder, as the last scan found it.

    Attributes:
        name: Its name (the file's stem, lower case).
        path: The file.
        sample_rate: Its rate, which a message of nothing but sounds plays at.
        seconds: Its length.
        mtime_ns: When it was written; a replaced file is decoded again.
    """

    name: str
    path: Path
    sample_rate: int
    seconds: float
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Scan:
    """What a scan of the folder found: usable clips, and files that are not (with why)."""

    sounds: dict[str, SoundFile] = field(default_factory=dict)
    problems: dict[Path, str] = field(default_factory=dict)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:200]


def scan_folder(folder: Path) -> Scan:
    """Find the clips in ``folder`` (blocking: call it in a thread). A missing folder is empty."""
    found = Scan()
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.problems[folder] = f"cannot read the folder: {exc}"
        return found
    for path in entries:
        if path.suffix.lower() not in SOUND_SUFFIXES or path.name.startswith("."):
            continue
        name = path.stem.lower()
        if not SOUND_NAME_RE.match(name):
            found.problems[path] = "the name is not 1-32 letters, digits, '-' or '_'"
            continue
        if name in found.sounds:
            found.problems[path] = f"another file is already the sound {name!r}"
            continue
        try:
            info = sf.info(str(path))
            mtime = path.stat().st_mtime_ns
        except Exception as exc:  # soundfile raises several types for files it cannot parse
            found.problems[path] = f"cannot read it as audio ({_reason(exc)})"
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            found.problems[path] = "it holds no audio"
            continue
        found.sounds[name] = SoundFile(
            name, path, int(info.samplerate), info.frames / info.samplerate, mtime
        )
    return found


class SoundLoadError(Exception):
    """A clip cannot be played; ``str()`` says why."""


def decode(sound: SoundFile, sample_rate: int) -> Audio:
    """A clip as mono float32 at ``sample_rate`` (blocking: call it in a thread).

    Raises:
        SoundLoadError: The file is gone, damaged or holds nothing playable.
    """
    try:
        audio, rate = sf.read(str(sound.path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise SoundLoadError(f"{sound.path} is gone") from None
    except Exception as exc:  # a header that parsed can still hide broken data
        raise SoundLoadError(f"cannot read {sound.path} ({_reason(exc)})") from None
    if audio.size == 0:
        raise SoundLoadError(f"{sound.path} holds no audio")
    mono = audio.mean(axis=1, dtype=np.float32)[: round(MAX_PLAY_S * rate)]
    if not np.all(np.isfinite(mono)):
        raise SoundLoadError(f"{sound.path} holds invalid samples (NaN or infinity)")
    if rate != sample_rate:
        mono = np.asarray(soxr.resample(mono, rate, sample_rate, quality="HQ"), dtype=np.float32)
    out: Audio = np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
    return out


@dataclass(frozen=True, slots=True)
class SoundClip:
    """A clip part of a message (``bot.speech.speaker.SoundClip``): a sound and its bank."""

    sound: SoundFile
    bank: SoundBank = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """The sound's name."""
        return self.sound.name

    @property
    def sample_rate(self) -> int:
        """Its file's rate."""
        return self.sound.sample_rate

    async def samples(self, sample_rate: int) -> Audio | None:
        """The clip at ``sample_rate``, or None when it cannot be played (logged)."""
        return await self.bank.samples(self.sound, sample_rate)


class SoundBank:
    """The sounds folder: names known without I/O, clips decoded off the loop and cached."""

    def __init__(self, cfg: SoundsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        """Remember the settings; nothing is read until :meth:`rescan`."""
        self.cfg = cfg
        self._clock = clock
        self._sounds: dict[str, SoundFile] | None = None
        self._scanned_at: float | None = None
        self._cache: LRU[tuple[Path, int, int], Audio] = LRU(CACHE_CLIPS)
        self._scanning: asyncio.Task[None] | None = None

    @property
    def known(self) -> dict[str, SoundFile] | None:
        """The clips found by the last scan (None before the first one ended)."""
        return self._sounds

    async def rescan(self) -> Scan:
        """Scan the folder in a thread and use what it found; problems are logged."""
        self._scanned_at = self._clock()
        found = await asyncio.to_thread(scan_folder, self.cfg.dir)
        for path, problem in found.problems.items():
            log.warning("sounds: %s: %s; its tag is %s", path, problem, self._instead())
        self._sounds = found.sounds
        log.debug("sounds: %d clips in %s", len(found.sounds), self.cfg.dir)
        return found

    def should_rescan(self) -> bool:
        """Whether a tag of an unknown name may scan again (at most every RESCAN_S)."""
        if self._scanning is not None and not self._scanning.done():
            return False
        return self._scanned_at is None or self._clock() - self._scanned_at >= RESCAN_S

    def scanning(self, task: asyncio.Task[None]) -> None:
        """Remember the running scan (its owner keeps it in a TaskSet)."""
        self._scanning = task

    def clip(self, name: str) -> SoundClip | None:
        """The clip called ``name`` (any case), if the last scan found it."""
        sound = (self._sounds or {}).get(name.lower())
        return SoundClip(sound, self) if sound is not None else None

    async def samples(self, sound: SoundFile, sample_rate: int) -> Audio | None:
        """``sound`` at ``sample_rate``: cached, else decoded in a thread; None when broken."""
        key = (sound.path, sound.mtime_ns, sample_rate)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            audio = await asyncio.to_thread(decode, sound, sample_rate)
        except SoundLoadError as exc:
            log.warning(
                "sound %r cannot be played: %s; its tag is %s", sound.name, exc, self._instead()
            )
            return None
        self._cache.put(key, audio)
        return audio

    def _instead(self) -> str:
        return "read as text" if self.cfg.unknown == "read" else "dropped"
