"""``ishowtts sounds add FILE [--name NAME]`` and ``ishowtts sounds``: the sound-effect clips.

A clip a viewer's ``[airhorn]`` plays sits between speech, so it must be as loud as the speech
around it: a sound downloaded from anywhere is often 10-20 dB louder or quieter than the
voices, and viewers would either blast the stream or be unheard. So each clip is checked
once, here (it decodes, it is short, it is not silent), mixed to mono, resampled to
:data:`SOUND_RATE` and loudness-normalised to :data:`TARGET_LUFS` by ITU-R BS.1770
(pyloudnorm, the K-weighted, gated integrated loudness broadcasters use) with a peak
ceiling, then written as ``sounds/NAME.wav``. Voices are stored at the same level, so speech
and effects match.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soundfile as sf
import soxr

from bot.chat.sounds import SOUND_NAME_RE, SOUND_SUFFIXES, SoundsConfig, scan_folder
from bot.core.platform import windows_reserved_name

SOUND_RATE = 24_000
"""The rate clips are stored at: F5-TTS speaks at 24 kHz, so its messages play them as is."""
MAX_SOUND_S = 10.0
"""A sound effect is a few seconds; a longer file is a song or a mistake and would hold the
queue (the speaking-time limit cuts messages, not the import)."""
MIN_SOUND_S = 0.05
TARGET_LUFS = -20.0
"""About the loudness of the stored voices (speech at RMS 0.1, -20 dBFS)."""
PEAK_CEILING_DBFS = -1.0
"""Normalisation never pushes a sample above this, so a clip cannot clip."""
SILENT_LUFS = -70.0
"""BS.1770's absolute gate: a clip quieter than this everywhere holds nothing to play."""
MAX_FILE_BYTES = 50 * 1024 * 1024

FloatArray = npt.NDArray[np.float32]


class SoundImportError(Exception):
    """The clip cannot be imported; ``str()`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class PreparedSound:
    """A clip converted and normalised, ready to be written.

    Attributes:
        samples: Mono float32 at :data:`SOUND_RATE`.
        source_rate: The file's rate.
        channels: The file's channel count.
        lufs_before: The file's integrated loudness (LUFS, its channels summed).
        lufs_after: After normalisation (below the target when the peak ceiling held it).
        gain_db: The gain applied.
    """

    samples: FloatArray
    source_rate: int
    channels: int
    lufs_before: float
    lufs_after: float
    gain_db: float

    @property
    def seconds(self) -> float:
        """Length of the clip."""
        return len(self.samples) / SOUND_RATE


def check_name(name: str) -> str:
    """The sound's name in lower case, or why it cannot be one.

    Raises:
        SoundImportError: Not 1-32 letters, digits, '-' or '_' (no dots, slashes or spaces,
            so it can never leave the sounds folder), or a name Windows reserves.
    """
    lowered = name.lower()
    if not SOUND_NAME_RE.fullmatch(lowered):
        raise SoundImportError(
            f"{name[:40]!r} is not a valid sound name: use 1-32 letters, digits, '-' or '_' "
            "(viewers type it inside the tag, e.g. [airhorn]); choose one with --name"
        )
    if windows_reserved_name(lowered):
        raise SoundImportError(
            f"{name!r} cannot be a sound name: Windows reserves it for a device (CON, NUL, AUX,"
            " PRN, COM1-9, LPT1-9), so its file would not work there; pick another with --name"
        )
    return lowered


def loudness(samples: FloatArray, rate: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4) of samples, mono or [frames, channels].

    BS.1770 measures 400 ms blocks; a shorter clip (a 0.2 s beep) is measured repeated to
    that length, which leaves the loudness of a steady sound unchanged.
    """
    block = round(0.4 * rate) + 1
    if len(samples) < block:
        reps = -(-block // len(samples))
        samples = np.tile(samples, (reps, 1) if samples.ndim == 2 else reps)
    meter = pyloudnorm.Meter(rate)
    return float(meter.integrated_loudness(samples.astype(np.float64)))


def read_sound(path: Path) -> tuple[FloatArray, int, int]:
    """Decode a clip with soundfile: (samples [frames, channels], rate, channels).

    Raises:
        SoundImportError: Missing, not audio, damaged, empty, too short or too long.
    """
    name = path.name
    if not path.is_file():
        raise SoundImportError(f"{path} does not exist (or is not a file)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SoundImportError(f"{name} is over {MAX_FILE_BYTES // 2**20} MB; not a sound effect")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for files it cannot parse
        raise SoundImportError(
            f"cannot read {name} as audio ({_reason(exc)}); save it as WAV, FLAC, OGG or MP3"
        ) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise SoundImportError(f"{name} holds no audio")
    seconds = info.frames / info.samplerate
    if seconds > MAX_SOUND_S:
        raise SoundImportError(
            f"{name} is {seconds:.1f} s long; a sound effect may be up to {MAX_SOUND_S:.0f} s "
            "(cut the part you want in an audio editor)"
        )
    if seconds < MIN_SOUND_S:
        raise SoundImportError(f"{name} is only {seconds * 1000:.0f} ms long; nothing to hear")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # a header that parses can still hide broken data
        raise SoundImportError(f"{name} is damaged: {_reason(exc)}") from None
    if audio.size == 0:
        raise SoundImportError(f"{name} holds no audio")
    if not np.all(np.isfinite(audio)):
        raise SoundImportError(f"{name} holds invalid samples (NaN or infinity)")
    return audio, int(rate), int(audio.shape[1])


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:200]


def prepare_sound(path: Path) -> PreparedSound:
    """Check and convert a clip: mono, :data:`SOUND_RATE`, normalised to :data:`TARGET_LUFS`.

    Raises:
        SoundImportError: Unreadable, too long or short, or silent.
    """
    audio, rate, channels = read_sound(path)
    mono = audio.mean(axis=1, dtype=np.float32)
    if rate != SOUND_RATE:
        mono = np.asarray(soxr.resample(mono, rate, SOUND_RATE, quality="VHQ"), dtype=np.float32)
    # The file's loudness as any BS.1770 meter shows it (its channels summed; pyloudnorm
    # weighs up to five), for the report; the gain is computed on the mono mix stored.
    source_lufs = loudness(audio if channels <= 5 else audio.mean(axis=1), rate)
    before = loudness(mono, SOUND_RATE)
    if not np.isfinite(before) or before < SILENT_LUFS:
        raise SoundImportError(f"{path.name} is silent: there is nothing to play")
    peak = float(np.max(np.abs(mono)))
    gain_db = TARGET_LUFS - before
    gain_db = min(gain_db, PEAK_CEILING_DBFS - 20.0 * np.log10(max(peak, 1e-9)))
    out = (mono * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    return PreparedSound(
        out, rate, channels, source_lufs, loudness(out, SOUND_RATE), float(gain_db)
    )


def existing_files(folder: Path, name: str) -> list[Path]:
    """Files of the folder that already are the sound ``name`` (any case, any clip suffix)."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    return [
        e for e in entries if e.suffix.lower() in SOUND_SUFFIXES and e.stem.lower() == name.lower()
    ]


def check_free(folder: Path, name: str, *, force: bool = False) -> list[Path]:
    """The files a new sound ``name`` replaces (with ``force``).

    Raises:
        SoundImportError: The name is taken and ``force`` is not set.
    """
    taken = existing_files(folder, name)
    if taken and not force:
        raise SoundImportError(
            f"a sound named {name!r} already exists ({taken[0]}); pick another --name, or add "
            "--force to replace it"
        )
    return taken


def save_sound(folder: Path, name: str, sound: PreparedSound, *, force: bool = False) -> Path:
    """Write ``folder/NAME.wav`` (16-bit PCM) atomically; ``force`` replaces an existing one.

    Raises:
        SoundImportError: The name is taken (without ``force``) or the file cannot be written.
    """
    name = check_name(name)
    target = folder / f"{name}.wav"
    taken = check_free(folder, name, force=force)
    staging = folder / f".{name}.importing-{os.getpid()}.wav"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(str(staging), sound.samples, SOUND_RATE, subtype="PCM_16", format="WAV")
        os.replace(staging, target)
        for old in taken:
            if old != target and old.name != target.name:
                with contextlib.suppress(OSError):
                    old.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            staging.unlink()
        raise SoundImportError(f"cannot write the sound into {target}: {exc}") from None
    return target


def add_sound_command(
    cfg: SoundsConfig,
    clip: Path,
    name: str | None = None,
    *,
    force: bool = False,
    out: TextIO | None = None,
) -> int:
    """``ishowtts sounds add FILE [--name NAME] [--force]``.

    Returns:
        Exit status: 0 saved, 2 unusable clip or name.
    """
    stream = out if out is not None else sys.stdout
    chosen = name if name is not None else clip.stem
    try:
        lowered = check_name(chosen)
        check_free(cfg.dir, lowered, force=force)  # before the work of converting
        prepared = prepare_sound(clip)
        target = save_sound(cfg.dir, lowered, prepared, force=force)
    except SoundImportError as exc:
        stream.write(f"Cannot add sound {chosen[:40]!r}: {exc}\n")
        return 2
    channels = "mono" if prepared.channels == 1 else f"{prepared.channels} channels"
    stream.write(
        f"Saved sound {lowered!r} in {target}:\n"
        f"  read {clip.name}: {prepared.source_rate} Hz, {channels}, {prepared.seconds:.2f} s\n"
        f"  loudness {prepared.lufs_before:.1f} LUFS -> {prepared.lufs_after:.1f} LUFS "
        f"({prepared.gain_db:+.1f} dB; target {TARGET_LUFS:.0f} LUFS, peaks under "
        f"{PEAK_CEILING_DBFS:.0f} dBFS)\n"
        f"Chat plays it with: {_tag(cfg, lowered)}"
        + ("" if cfg.enabled else "  (after setting sounds.enabled: true in config.yaml)")
        + "\n"
    )
    return 0


def _tag(cfg: SoundsConfig, name: str) -> str:
    return f"[{name}]" if cfg.syntax == "brackets" else f"{{{name}}}"


def list_sounds_command(cfg: SoundsConfig, out: TextIO | None = None) -> int:
    """``ishowtts sounds``: each clip with its tag and length, and files that are no clip.

    Returns:
        0, or 1 when some file of the folder cannot be used.
    """
    stream = out if out is not None else sys.stdout
    found = scan_folder(cfg.dir)
    state = "on" if cfg.enabled else "off (sounds.enabled: false)"
    stream.write(f"sounds from {cfg.dir}: {state}\n")
    if not found.sounds and not found.problems:
        stream.write("  none yet; add one with: ishowtts sounds add FILE --name NAME\n")
    for sound_name in sorted(found.sounds):
        sound = found.sounds[sound_name]
        tag = _tag(cfg, sound_name)
        stream.write(f"  {tag:<24} {sound.seconds:5.2f} s  {sound.path.name}\n")
    for path, problem in sorted(found.problems.items()):
        stream.write(f"  {path.name:<24} PROBLEM: {problem}\n")
    return 1 if found.problems else 0
