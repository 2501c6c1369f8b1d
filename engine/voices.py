"""The voice library: reference clips and transcripts that F5-TTS clones voices from.

A voice is a folder ``voices/<name>/`` holding one reference clip (any format soundfile reads)
and ``reference.txt``, the exact words spoken in it. A built-in voice named ``default`` uses the
English sample that ships inside the f5-tts package, so the bot speaks out of the box; a folder
``voices/default/`` replaces it.

Chat never supplies paths: viewers give a name, the name is validated, and it is looked up in
the dictionary that the last scan built. Problems (no transcript, unreadable clip, a clip too
long to use) are recorded on the voice and shown to the user instead of crashing the bot.
"""

from __future__ import annotations

import importlib.resources
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from engine.base import VoiceError
from engine.config import BUILTIN_VOICE, VOICE_NAME_RE, VoicesConfig
from engine.text import normalize_space

log = logging.getLogger(__name__)

TRANSCRIPT_FILE = "reference.txt"
BUILTIN_CLIP = "infer/examples/basic/basic_ref_en.wav"
BUILTIN_TRANSCRIPT = "Some call me nature, others call me mother nature."

MAX_REFERENCE_S = 12.0
"""F5-TTS clones best from clips under ~12 s; longer ones are trimmed at a pause."""
MIN_REFERENCE_S = 1.0
MIN_CUT_S = 3.0
"""A trimmed clip keeps at least this much speech, or the clone has too little to go on."""

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64"}
)

_FRAME_S = 0.02
_MIN_PAUSE_S = 0.2
_SHORT_PAUSE_S = 0.08
_EDGE_KEEP_S = 0.02
_TAIL_SILENCE_S = 0.05
_CLAUSE_BOUNDARY = re.compile(r"[.!?…,;:—–。！？，；：][\"')\]]*(?= |$)")

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    """One voice as found on disk.

    Attributes:
        name: Lower-case name, the key viewers type.
        clip: The reference clip.
        transcript: The words spoken in the clip (None when missing).
        problem: Why the voice cannot be used, or None.
        builtin: True for f5-tts's packaged sample.
        note: Something the user should know that does not stop the voice (e.g. trimming).
    """

    name: str
    clip: Path
    transcript: str | None
    problem: str | None
    builtin: bool = False
    note: str | None = None

    @property
    def transcript_file(self) -> Path | None:
        """Where the transcript lives (None for the built-in voice, whose text is fixed)."""
        return None if self.builtin else self.clip.parent / TRANSCRIPT_FILE

    @property
    def usable(self) -> bool:
        """Whether the voice can speak."""
        return self.problem is None


@dataclass(frozen=True, slots=True)
class ReferenceAudio:
    """A decoded reference ready for feature extraction.

    Attributes:
        samples: Mono float32 samples at ``sample_rate``, silent edges trimmed, 50 ms of
            silence appended (as stock f5-tts does) so speech starts after a short pause.
        sample_rate: Rate of ``samples`` (the clip's own rate; resampling comes later).
        transcript: The words spoken in ``samples`` (cut to match when the clip was trimmed).
        trimmed_from: Original length in seconds when the clip was cut, else None.
    """

    samples: FloatArray
    sample_rate: int
    transcript: str
    trimmed_from: float | None = None

    @property
    def seconds(self) -> float:
        """Length of ``samples`` in seconds."""
        return len(self.samples) / self.sample_rate


def builtin_clip() -> Path:
    """Path of the English reference clip packaged inside f5-tts (it may be missing)."""
    return Path(str(importlib.resources.files("f5_tts").joinpath(BUILTIN_CLIP)))


class VoiceLibrary:
    """Finds voices in ``voices.dir`` (plus the built-in default) and looks them up by name.

    The constructor touches nothing on disk; ``scan()`` reads the folder (and decodes only
    clips longer than ``MAX_REFERENCE_S``, to check they can be trimmed).
    """

    def __init__(self, cfg: VoicesConfig) -> None:
        """Remember where voices live; nothing is read until ``scan()``."""
        self._cfg = cfg
        self._specs: dict[str, VoiceSpec] | None = None

    @property
    def default_name(self) -> str:
        """The configured default voice's key."""
        return self._cfg.default.lower()

    def scan(self) -> dict[str, VoiceSpec]:
        """Read the voices folder again and return every voice found, usable or not.

        Returns:
            Lower-case name to spec, the built-in ``default`` included unless a folder
            overrides it. Folders whose names are not valid voice names are listed with a
            problem so the user learns why they are ignored; they can never be selected.
        """
        specs: dict[str, VoiceSpec] = {}
        root = self._cfg.dir
        try:
            entries = sorted(root.iterdir(), key=lambda p: p.name.lower())
        except FileNotFoundError:
            log.info("voices folder %s does not exist; only the built-in voice is available", root)
            entries = []
        except OSError as exc:
            log.warning("cannot list the voices folder %s: %s", root, exc)
            entries = []
        for folder in entries:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            key = folder.name.lower()
            if key in specs:
                log.warning(
                    "ignoring %s: a voice named %r already exists (names ignore case)", folder, key
                )
                continue
            specs[key] = _folder_voice(folder, key)
        if BUILTIN_VOICE not in specs:
            specs[BUILTIN_VOICE] = _builtin_voice()
        self._specs = specs
        return dict(specs)

    def lookup(self, name: str) -> VoiceSpec | None:
        """Find a voice by name (case-insensitive), usable or not; None when there is none.

        Invalid names are never looked up, and only keys of the scanned dictionary are
        ever used, so no text from chat turns into a path. An unknown name triggers one
        rescan, so a voice folder added while the bot runs is found.
        """
        if not VOICE_NAME_RE.match(name):
            return None
        key = name.lower()
        specs = self._specs if self._specs is not None else self.scan()
        if key not in specs:
            specs = self.scan()
        return specs.get(key)

    def get(self, name: str) -> VoiceSpec:
        """Look up a usable voice by name (case-insensitive).

        Raises:
            VoiceError: The name is invalid or unknown, or the voice has a problem.
        """
        if not VOICE_NAME_RE.match(name):
            raise VoiceError(
                f"{name[:40]!r} is not a voice name (1-32 letters, digits, '-' or '_')"
            )
        spec = self.lookup(name)
        if spec is None:
            specs = self._specs or {}
            known = ", ".join(sorted(k for k, s in specs.items() if s.usable)) or "none"
            raise VoiceError(f"no voice named {name.lower()!r} (available: {known})")
        if spec.problem is not None:
            raise VoiceError(f"voice {spec.name!r} cannot be used: {spec.problem}")
        return spec


def _builtin_voice() -> VoiceSpec:
    clip = builtin_clip()
    problem = None
    if not clip.is_file():
        problem = (
            f"f5-tts's packaged sample {clip} is missing (reinstall f5-tts, "
            f"or add a folder voices/{BUILTIN_VOICE}/ with a clip and {TRANSCRIPT_FILE})"
        )
    return VoiceSpec(BUILTIN_VOICE, clip, BUILTIN_TRANSCRIPT, problem, builtin=True)


def _folder_voice(folder: Path, key: str) -> VoiceSpec:
    """Inspect one voice folder; every failure becomes the spec's ``problem``."""
    where = f"{folder.parent.name}/{folder.name}/"
    clips = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    named = [p for p in clips if p.stem.lower() == "reference"]
    clip = (named or clips or [folder / "reference.wav"])[0]

    def problem(text: str, transcript: str | None = None) -> VoiceSpec:
        return VoiceSpec(key, clip, transcript, text)

    if not VOICE_NAME_RE.match(folder.name):
        return problem(
            f"the folder name {folder.name!r} is not a valid voice name: "
            "use 1-32 letters, digits, '-' or '_'"
        )
    if not clips:
        suffixes = ", ".join(sorted(AUDIO_SUFFIXES))
        return problem(f"no reference clip in {where} (one audio file: {suffixes})")
    if len(clips) > 1 and not named:
        names = ", ".join(p.name for p in clips)
        return problem(
            f"several audio files in {where} ({names}): keep one, or name the one to clone "
            "reference.wav (or .flac, .mp3, ...)"
        )
    try:
        transcript = read_transcript(folder / TRANSCRIPT_FILE)
    except VoiceError as exc:
        return problem(str(exc))
    try:
        info = sf.info(str(clip))
    except Exception as exc:  # soundfile raises several types for unreadable files
        return problem(f"cannot read {where}{clip.name}: {_sf_reason(exc)}", transcript)
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if info.frames <= 0 or seconds < MIN_REFERENCE_S:
        return problem(
            f"{where}{clip.name} is only {seconds:.1f} s long; use 3-12 s of clear speech",
            transcript,
        )
    note = None
    if seconds > MAX_REFERENCE_S:
        try:
            ref = load_reference(clip.read_bytes(), transcript, where + clip.name)
        except (OSError, VoiceError) as exc:
            return problem(str(exc), transcript)
        note = (
            f"{clip.name} is {seconds:.1f} s; using its first {ref.seconds:.1f} s "
            f"(cut at a pause), spoken text: {ref.transcript!r}"
        )
    return VoiceSpec(key, clip, transcript, None, note=note)


def _sf_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:200]


def read_transcript(path: Path) -> str:
    """Read a ``reference.txt``.

    Raises:
        VoiceError: When it is missing, unreadable, not UTF-8 or empty.
    """
    where = f"{path.parent.name}/{path.name}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return _raise(
            f"missing {where}: write the exact words spoken in the reference clip into it"
        )
    except UnicodeDecodeError:
        return _raise(f"{where} is not UTF-8 text")
    except OSError as exc:
        return _raise(f"cannot read {where}: {exc.strerror or exc}")
    text = normalize_space(text)
    if not text:
        return _raise(f"{where} is empty: write the exact words spoken in the reference clip")
    return text


def _raise(message: str) -> str:
    raise VoiceError(message)


def decode_clip(data: bytes, where: str) -> tuple[FloatArray, int]:
    """Decode audio bytes (any format soundfile reads) and mix them to mono float32.

    Raises:
        VoiceError: When the bytes are not audio soundfile can decode.
    """
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for broken files
        raise VoiceError(f"cannot read {where}: {_sf_reason(exc)}") from None
    if audio.size == 0 or rate <= 0:
        raise VoiceError(f"{where} holds no audio")
    mono = audio.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise VoiceError(f"{where} holds invalid samples (NaN or infinity)")
    return np.ascontiguousarray(mono), int(rate)


def load_reference(data: bytes, transcript: str, where: str) -> ReferenceAudio:
    """Turn a clip's bytes and transcript into the reference F5-TTS is conditioned on.

    Silent edges are trimmed (they would count as speaking time and slow the clone down).
    A clip longer than ``MAX_REFERENCE_S`` is cut at the latest pause that fits, and the
    transcript is cut at the punctuation (or word) boundary that sits at the same fraction
    of the speech, because the model needs the words of exactly the audio it hears.

    Args:
        data: The clip file's bytes.
        transcript: Its exact transcript.
        where: How to name the clip in messages.

    Raises:
        VoiceError: Unreadable, silent, or too long without a pause to cut at.
    """
    samples, rate = decode_clip(data, where)
    frame = max(1, round(_FRAME_S * rate))
    levels = _frame_levels(samples, frame)
    if levels.size == 0 or float(levels.max()) <= -90.0:
        raise VoiceError(f"{where} is silent")
    loud = float(np.percentile(levels, 95))
    threshold = max(-50.0, loud - 35.0)
    voiced = np.flatnonzero(levels > threshold)
    if voiced.size == 0:  # some signal, but nothing at speaking level (e.g. a -60 dBFS hum)
        raise VoiceError(f"{where} is too quiet: no part of it reaches speaking level (-50 dBFS)")
    keep = round(_EDGE_KEEP_S * rate)
    start = max(0, int(voiced[0]) * frame - keep)
    end = min(len(samples), (int(voiced[-1]) + 1) * frame + keep)
    total_s = len(samples) / rate
    trimmed_from = None
    text = normalize_space(transcript)
    if (end - start) / rate > MAX_REFERENCE_S:
        cut = _find_cut(levels, threshold, frame, rate, start, end, text)
        if cut is None:
            raise VoiceError(
                f"{where} is {total_s:.1f} s long, and F5-TTS needs under "
                f"{MAX_REFERENCE_S:.0f} s; it has no pause to cut at, so trim it to one or two "
                "sentences (and make reference.txt match)"
            )
        cut_sample, text = cut
        end = cut_sample
        trimmed_from = total_s
        log.info("%s: using the first %.1f s (cut at a pause)", where, (end - start) / rate)
    tail = np.zeros(round(_TAIL_SILENCE_S * rate), dtype=np.float32)
    clip = np.concatenate([samples[start:end], tail]).astype(np.float32, copy=False)
    return ReferenceAudio(clip, rate, text, trimmed_from)


def _frame_levels(samples: FloatArray, frame: int) -> npt.NDArray[np.float64]:
    """RMS level in dBFS of consecutive ``frame``-sample frames."""
    count = len(samples) // frame
    if count == 0:
        rms = np.sqrt(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
        return np.array([20 * np.log10(max(rms, 1e-9))])
    frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    levels: npt.NDArray[np.float64] = 20 * np.log10(np.maximum(rms, 1e-9))
    return levels


def _pauses(silent: npt.NDArray[np.bool_], min_frames: int) -> list[tuple[int, int]]:
    """Runs of silent frames at least ``min_frames`` long, as (first, last + 1)."""
    runs: list[tuple[int, int]] = []
    run_start: int | None = None
    for i, quiet in enumerate(silent.tolist()):
        if quiet and run_start is None:
            run_start = i
        elif not quiet and run_start is not None:
            if i - run_start >= min_frames:
                runs.append((run_start, i))
            run_start = None
    return runs


def _find_cut(
    levels: npt.NDArray[np.float64],
    threshold: float,
    frame: int,
    rate: int,
    start: int,
    end: int,
    transcript: str,
) -> tuple[int, str] | None:
    """Pick where to end a too-long clip and the matching part of its transcript.

    Prefers the latest pause (200 ms, else 80 ms) that keeps the clip under the limit and
    lands near clause punctuation in the transcript (speakers pause at commas and full
    stops); failing that, the latest pause with the transcript cut at the nearest word.
    """
    silent = levels <= threshold
    speech_s = (end - start) / rate
    boundaries = [m.end() for m in _CLAUSE_BOUNDARY.finditer(transcript)]
    words = [m.start() for m in re.finditer(r" ", transcript)]
    for pause_s in (_MIN_PAUSE_S, _SHORT_PAUSE_S):
        candidates: list[int] = []
        for first, stop in _pauses(silent, max(1, round(pause_s / _FRAME_S))):
            cut = (first + stop) // 2 * frame
            if MIN_CUT_S <= (cut - start) / rate <= MAX_REFERENCE_S and cut < end:
                candidates.append(cut)
        if not candidates:
            continue
        for cut in reversed(candidates):
            share = (cut - start) / rate / speech_s
            best = _nearest(boundaries, share * len(transcript))
            if best is not None and abs(best / len(transcript) - share) <= 0.06:
                return cut, transcript[:best].strip()
        cut = candidates[-1]
        share = (cut - start) / rate / speech_s
        best = _nearest(words, share * len(transcript))
        if best is not None and best > 0:
            return cut, transcript[:best].strip()
    return None


def _nearest(positions: list[int], target: float) -> int | None:
    return min(positions, key=lambda p: abs(p - target)) if positions else None
