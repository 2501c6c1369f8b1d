"""``ishowtts voices add``: turn any clip a streamer has into a voice F5-TTS clones well.

Why it exists: F5-TTS clones from a short clip *and its exact transcript*, and it is picky.
A clip that is too long, clipped, too quiet, mostly silence, or paired with the wrong words
gives a mumbling or garbled clone, and the streamer learns it only when chat hears it. So the
clip is checked here, once, with a plain message for every problem, and stored in one
canonical form: ``voices/NAME/reference.wav`` (24 kHz mono 16-bit, loudness-normalised, cut
under F5's ~12 s limit at a pause) plus ``reference.txt``.

Trimming reuses the engine's own code (:func:`engine.voices.load_reference`), so the clip
written here is exactly what the engine would have derived from the original; the import only
does it once, visibly, and lets the streamer check the transcript of what was kept.

Without ``--text`` a transcript is required; where pocketsphinx is installed, its offline
recognition of the (trimmed) clip is offered for confirmation, because recognisers make
mistakes and a wrong transcript is worse than none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from bot.core.platform import windows_reserved_name
from engine.base import VoiceError
from engine.config import BUILTIN_VOICE, VOICE_NAME_RE, VoicesConfig
from engine.text import MAX_SECONDS_PER_BYTE, MIN_SECONDS_PER_BYTE, normalize_space
from engine.voices import MAX_REFERENCE_S, TRANSCRIPT_FILE, load_reference

log = logging.getLogger(__name__)

TARGET_RATE = 24_000
"""F5-TTS (Vocos) works at 24 kHz; storing that rate spares the engine a resampling pass."""
CLIP_FILE = "reference.wav"

MAX_INPUT_S = 120.0
"""Longer files are not reference clips (a whole stream VOD, a podcast): refuse rather than
guess which 10 s the streamer meant."""
MIN_SPEECH_S = 2.0
"""Less speech than this gives the model too little of the voice to copy."""
GOOD_SPEECH_S = 4.0
"""Below this the clone works but is noticeably less like the speaker."""
MAX_TRANSCRIPT_CHARS = 1000

SILENT_DBFS = -65.0
"""Loudest 20 ms frame below this: the clip holds no usable sound at all."""
TOO_QUIET_DBFS = -45.0
"""Speech level below this: amplifying it to a usable level would bring up the noise too."""
QUIET_DBFS = -32.0
TARGET_SPEECH_DBFS = -20.0
"""Speech level after normalisation (F5-TTS's own target RMS of 0.1)."""
PEAK_CEILING_DBFS = -1.0
"""Normalisation never pushes a peak above this, so it cannot clip."""
NOISY_SNR_DB = 20.0
"""Speech less than this far above the background: the clone copies the hiss and hum too."""
CLIP_LEVEL = 0.999
CLIP_RUN = 3
"""Samples at full scale held for this many samples in a row are clipped, not just loud."""
CLIPPED_FAIL = 0.005
"""Share of samples in clipped runs above which distortion will be cloned along."""
LONG_PAUSE_S = 1.5

_FRAME_S = 0.02
_SPEECH_BELOW_LOUD_DB = 30.0

Severity = Literal["error", "warning", "info"]
FloatArray = npt.NDArray[np.float32]
Recogniser = Callable[[FloatArray, int], str]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the import found or did.

    Attributes:
        code: Stable identifier (``too_quiet``, ``clipped``, ``resampled`` ...), for tests and
            tools; the message is for people.
        severity: ``error`` stops the import, ``warning`` is worth fixing, ``info`` is what
            was done.
        message: Plain words, with what to do where something is wrong.
    """

    code: str
    severity: Severity
    message: str


class VoiceImportError(Exception):
    """The voice cannot be imported; ``str()`` says why and what to do.

    Attributes:
        findings: Everything found before stopping, errors included, so a report can show
            all problems at once instead of one per attempt.
    """

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What the clip file is.

    Attributes:
        path: The file.
        format: Container as libsndfile names it (WAV, FLAC, OGG, MP3 ...).
        subtype: Sample encoding (PCM_16, FLOAT, VORBIS ...).
        rate: Sample rate in Hz.
        channels: Channel count.
        seconds: Length.
    """

    path: Path
    format: str
    subtype: str
    rate: int
    channels: int
    seconds: float

    def describe(self) -> str:
        """One line such as ``FLAC (PCM_16), 44100 Hz, 2 channels, 14.2 s``."""
        channels = "mono" if self.channels == 1 else f"{self.channels} channels"
        return f"{self.format} ({self.subtype}), {self.rate} Hz, {channels}, {self.seconds:.1f} s"


@dataclass(frozen=True, slots=True)
class ClipLevels:
    """Levels measured on the clip (dBFS: 0 is full scale).

    Attributes:
        peak_dbfs: Highest sample on any channel.
        speech_dbfs: Average level of the frames that carry speech.
        noise_dbfs: Background level (10th percentile of 20 ms frames).
        speech_start_s: Where sound starts.
        speech_end_s: Where sound ends.
        clipped_share: Share of samples in runs held at full scale.
        longest_pause_s: Longest stretch without speech between start and end.
    """

    peak_dbfs: float
    speech_dbfs: float
    noise_dbfs: float
    speech_start_s: float
    speech_end_s: float
    clipped_share: float
    longest_pause_s: float

    @property
    def speech_span_s(self) -> float:
        """Seconds from the first to the last sound."""
        return max(0.0, self.speech_end_s - self.speech_start_s)


@dataclass(frozen=True, slots=True)
class PreparedVoice:
    """A clip converted and checked, ready to be saved.

    Attributes:
        source: The original file.
        samples: 24 kHz mono float32, trimmed and loudness-normalised.
        transcript: The words spoken in ``samples``.
        transcript_source: ``given`` (from ``--text``) or ``recognised`` (needs confirming).
        findings: What was found and done, in order.
    """

    source: ClipInfo
    samples: FloatArray
    transcript: str
    transcript_source: Literal["given", "recognised"]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def seconds(self) -> float:
        """Length of the prepared clip."""
        return len(self.samples) / TARGET_RATE

    def with_transcript(self, transcript: str) -> PreparedVoice:
        """The same clip with a transcript the user gave or confirmed."""
        text = _clean_transcript(transcript)
        return PreparedVoice(self.source, self.samples, text, "given", self.findings)


# -- reading and measuring ---------------------------------------------------------------


def _db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-9)))


def _sf_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1][:200]


def read_clip(path: Path) -> tuple[ClipInfo, npt.NDArray[np.float32]]:
    """Read a clip in any format soundfile (libsndfile) decodes.

    Returns:
        The file's description and its samples as float32 [frames, channels].

    Raises:
        VoiceImportError: Missing, unreadable, not audio, empty, or far too long.
    """
    name = path.name
    if not path.is_file():
        raise VoiceImportError(f"{path} does not exist (or is not a file)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for files it cannot parse
        raise VoiceImportError(
            f"cannot read {name} as audio ({_sf_reason(exc)}); save it as WAV, FLAC, OGG or "
            "MP3 (any audio editor or `ffmpeg -i INPUT reference.wav` converts it)"
        ) from None
    seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    clip = ClipInfo(path, info.format, info.subtype, int(info.samplerate), info.channels, seconds)
    if info.frames <= 0 or info.samplerate <= 0:
        raise VoiceImportError(f"{name} holds no audio ({clip.describe()})")
    if seconds > MAX_INPUT_S:
        raise VoiceImportError(
            f"{name} is {seconds:.0f} s long; a reference clip is 5-10 s of one person "
            f"speaking. Cut such a stretch out of it (up to {MAX_INPUT_S:.0f} s is accepted and "
            f"trimmed to {MAX_REFERENCE_S:.0f} s at a pause)"
        )
    try:
        audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # a header that parses can still hide broken data
        raise VoiceImportError(f"{name} is damaged: {_sf_reason(exc)}") from None
    if audio.size == 0:
        raise VoiceImportError(f"{name} holds no audio ({clip.describe()})")
    if not np.all(np.isfinite(audio)):
        raise VoiceImportError(f"{name} holds invalid samples (NaN or infinity)")
    return clip, audio


def _frame_power(mono: FloatArray, rate: int) -> npt.NDArray[np.float64]:
    frame = max(1, round(_FRAME_S * rate))
    count = max(1, len(mono) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    used = min(len(mono), count * frame)
    padded[:used] = mono[:used]
    power: npt.NDArray[np.float64] = np.mean(np.square(padded.reshape(count, frame)), axis=1)
    return power


def _clipped_samples(audio: npt.NDArray[np.float32]) -> int:
    """Samples in runs of at least CLIP_RUN held at full scale (a flat top), any channel."""
    total = 0
    for channel in audio.T:
        at_top = np.abs(channel) >= CLIP_LEVEL
        flat = np.zeros_like(at_top)
        flat[1:] = np.abs(np.diff(channel)) < 1e-4
        held = at_top & (flat | np.roll(flat, -1))
        if not held.any():
            continue
        # Length of each run of held samples.
        edges = np.diff(np.concatenate(([0], held.view(np.int8), [0])))
        starts = np.flatnonzero(edges == 1)
        stops = np.flatnonzero(edges == -1)
        lengths = stops - starts
        total += int(lengths[lengths >= CLIP_RUN].sum())
    return total


def measure_levels(audio: npt.NDArray[np.float32], rate: int) -> ClipLevels:
    """Measure peak, speech and background levels, clipping and pauses.

    Speech frames are those within 30 dB of the loud frames (95th percentile), which
    separates a voice from room noise in ordinary recordings without a trained detector.
    """
    mono = audio.mean(axis=1, dtype=np.float32)
    power = _frame_power(mono, rate)
    levels = 10.0 * np.log10(np.maximum(power, 1e-18))
    loud = float(np.percentile(levels, 95))
    threshold = max(loud - _SPEECH_BELOW_LOUD_DB, SILENT_DBFS)
    speech = levels > threshold
    peak = _db(float(np.max(np.abs(audio))))
    clipped = _clipped_samples(audio) / audio.size
    noise = float(np.percentile(levels, 10))
    if not speech.any():
        return ClipLevels(peak, float(levels.max()), noise, 0.0, 0.0, clipped, 0.0)
    idx = np.flatnonzero(speech)
    first, last = int(idx[0]), int(idx[-1])
    speech_db = float(10.0 * np.log10(max(float(np.mean(power[speech])), 1e-18)))
    gaps = np.diff(idx) - 1
    longest = float(gaps.max()) * _FRAME_S if gaps.size else 0.0
    return ClipLevels(
        peak_dbfs=peak,
        speech_dbfs=speech_db,
        noise_dbfs=noise,
        speech_start_s=first * _FRAME_S,
        speech_end_s=(last + 1) * _FRAME_S,
        clipped_share=clipped,
        longest_pause_s=longest,
    )


def check_clip(clip: ClipInfo, levels: ClipLevels) -> list[Finding]:
    """Judge a clip's levels and length; errors mean the clone would be bad or fail."""
    name = clip.path.name
    out: list[Finding] = []
    if levels.peak_dbfs < SILENT_DBFS or levels.speech_dbfs < SILENT_DBFS:
        out.append(
            Finding(
                "silent",
                "error",
                f"{name} is silent (peak {levels.peak_dbfs:.0f} dBFS): check that the right "
                "microphone was recorded",
            )
        )
        return out
    if levels.speech_dbfs < TOO_QUIET_DBFS:
        out.append(
            Finding(
                "too_quiet",
                "error",
                f"{name} is too quiet: speech at {levels.speech_dbfs:.0f} dBFS (needs at least "
                f"{TOO_QUIET_DBFS:.0f}); record closer to the microphone or raise its gain",
            )
        )
        return out  # lengths and noise cannot be judged on a signal this close to the floor
    if levels.speech_dbfs < QUIET_DBFS:
        out.append(
            Finding(
                "quiet",
                "warning",
                f"{name} is quiet (speech at {levels.speech_dbfs:.0f} dBFS); it will be "
                "amplified, which also amplifies background noise",
            )
        )
    if levels.clipped_share > CLIPPED_FAIL:
        out.append(
            Finding(
                "clipped",
                "error",
                f"{name} is clipped: {levels.clipped_share:.1%} of it is cut off at full scale, "
                "and the clone would copy the distortion; record again with the input gain lower",
            )
        )
    elif levels.clipped_share > 0:
        out.append(
            Finding(
                "clipped",
                "warning",
                f"{name} touches full scale in a few places ({levels.clipped_share:.2%}); "
                "a recording with a little headroom clones cleaner",
            )
        )
    snr = levels.speech_dbfs - levels.noise_dbfs
    if snr < NOISY_SNR_DB:
        out.append(
            Finding(
                "noisy",
                "warning",
                f"background noise is only {snr:.0f} dB below the voice; the clone copies "
                "hiss and hum too, so a quieter room or a noise-reduced clip works better",
            )
        )
    span = levels.speech_span_s
    if span < MIN_SPEECH_S:
        out.append(
            Finding(
                "too_short",
                "error",
                f"{name} has only {span:.1f} s of sound; use 5-10 s of one person speaking",
            )
        )
    elif span < GOOD_SPEECH_S:
        out.append(
            Finding(
                "short",
                "warning",
                f"{name} has {span:.1f} s of speech; 5-10 s gives a closer likeness",
            )
        )
    if levels.longest_pause_s >= LONG_PAUSE_S:
        out.append(
            Finding(
                "long_pause",
                "warning",
                f"{name} has a {levels.longest_pause_s:.1f} s pause inside it; the clone may "
                "pause oddly too, so cut long silences out",
            )
        )
    return out


# -- converting ---------------------------------------------------------------------------


def _clean_transcript(text: str) -> str:
    text = normalize_space(text)
    if not text:
        raise VoiceImportError("the transcript is empty: give the exact words spoken in the clip")
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise VoiceImportError(
            f"the transcript is {len(text)} characters long; a reference clip holds one or two "
            "sentences"
        )
    return text


def normalise_loudness(samples: FloatArray, rate: int) -> tuple[FloatArray, float]:
    """Scale speech to TARGET_SPEECH_DBFS without letting any peak pass PEAK_CEILING_DBFS.

    Returns:
        The scaled samples and the gain applied, in dB.
    """
    levels = measure_levels(samples.reshape(-1, 1), rate)
    peak = float(np.max(np.abs(samples)))
    gain_db = TARGET_SPEECH_DBFS - levels.speech_dbfs
    gain_db = min(gain_db, PEAK_CEILING_DBFS - _db(peak))
    gain = np.float32(10.0 ** (gain_db / 20.0))
    return (samples * gain).astype(np.float32), gain_db


def transcript_fits(transcript: str, seconds: float) -> Finding | None:
    """A warning when the transcript is implausibly long or short for the clip.

    F5-TTS times new speech from the reference's characters per second, so a transcript that
    does not match the clip makes every message too fast or too slow, not just this one.
    """
    size = len(transcript.encode("utf-8"))
    if size == 0 or seconds <= 0:
        return None
    per_byte = seconds / size
    if MIN_SECONDS_PER_BYTE <= per_byte <= MAX_SECONDS_PER_BYTE:
        return None
    much = "many" if per_byte < MIN_SECONDS_PER_BYTE else "few"
    return Finding(
        "transcript_length",
        "warning",
        f"the transcript has {len(transcript)} characters for {seconds:.1f} s of audio, "
        f"which is too {much} words for that time; make sure it holds exactly the words spoken",
    )


def prepare_voice(
    path: Path,
    transcript: str | None = None,
    recogniser: Recogniser | None = None,
) -> PreparedVoice:
    """Check and convert a clip: mono, 24 kHz, trimmed at a pause, loudness-normalised.

    Args:
        path: The clip (any format soundfile reads).
        transcript: The exact words spoken in the whole clip, or None.
        recogniser: Offline speech recognition used when ``transcript`` is None; its result
            is marked ``recognised`` so the caller asks the user to confirm it.

    Raises:
        VoiceImportError: With every finding so far, when the clip is unusable or there is no
            transcript and no recogniser.
    """
    given = _clean_transcript(transcript) if transcript is not None else None
    clip, audio = read_clip(path)
    name = path.name
    findings: list[Finding] = [Finding("read", "info", f"read {name}: {clip.describe()}")]
    levels = measure_levels(audio, clip.rate)
    findings += check_clip(clip, levels)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise VoiceImportError("\n".join(f.message for f in errors), tuple(findings))
    if given is None and recogniser is None:
        raise VoiceImportError(TRANSCRIPT_REQUIRED, tuple(findings))

    data = path.read_bytes()
    cut_text = given
    if cut_text is None and levels.speech_span_s > MAX_REFERENCE_S:
        # The trimmer cuts the transcript along with the audio, so it needs one; a first
        # recognition of the whole clip serves, and the kept part is recognised again below.
        assert recogniser is not None
        mono = audio.mean(axis=1, dtype=np.float32)
        cut_text = normalize_space(recogniser(mono, clip.rate))
        if not cut_text:
            raise VoiceImportError(NOTHING_RECOGNISED, tuple(findings))
    try:
        ref = load_reference(data, cut_text or "", name)
    except VoiceError as exc:
        raise VoiceImportError(str(exc), tuple(findings)) from None

    if clip.channels > 1:
        findings.append(
            Finding("mixed_to_mono", "info", f"mixed {clip.channels} channels down to mono")
        )
    samples = ref.samples
    if ref.sample_rate != TARGET_RATE:
        samples = soxr.resample(samples, ref.sample_rate, TARGET_RATE, quality="VHQ")
        samples = np.asarray(samples, dtype=np.float32)
        findings.append(
            Finding(
                "resampled", "info", f"resampled {ref.sample_rate} Hz to {TARGET_RATE} Hz (soxr)"
            )
        )
    samples = samples[: round(MAX_REFERENCE_S * TARGET_RATE)]
    if ref.trimmed_from is not None:
        findings.append(
            Finding(
                "cut_at_pause",
                "info",
                f"{ref.trimmed_from:.1f} s is over F5-TTS's {MAX_REFERENCE_S:.0f} s limit: kept "
                f"the first {len(samples) / TARGET_RATE:.1f} s, cut at a pause",
            )
        )
    else:
        removed = clip.seconds - len(ref.samples) / ref.sample_rate
        if removed > 0.1:
            findings.append(
                Finding("trimmed_edges", "info", f"trimmed {removed:.1f} s of silence at the ends")
            )
    samples, gain_db = normalise_loudness(samples, TARGET_RATE)
    findings.append(
        Finding(
            "normalised",
            "info",
            f"loudness: speech {levels.speech_dbfs:.0f} dBFS -> {TARGET_SPEECH_DBFS:.0f} dBFS "
            f"({gain_db:+.1f} dB)",
        )
    )

    source: Literal["given", "recognised"] = "given"
    if given is not None:
        text = ref.transcript
        if ref.trimmed_from is not None:
            findings.append(
                Finding(
                    "transcript_cut",
                    "warning",
                    f"the transcript was cut to match the kept audio: {text!r}; check that "
                    "these are exactly the words in the kept part",
                )
            )
    else:
        assert recogniser is not None
        text = normalize_space(recogniser(samples, TARGET_RATE))
        if not text:
            raise VoiceImportError(NOTHING_RECOGNISED, tuple(findings))
        source = "recognised"
    text = _clean_transcript(text)
    fit = transcript_fits(text, len(samples) / TARGET_RATE)
    if fit is not None and source == "given":
        findings.append(fit)
    return PreparedVoice(clip, samples, text, source, tuple(findings))


TRANSCRIPT_REQUIRED = (
    "a transcript is required: F5-TTS clones a voice from the clip together with the exact "
    'words spoken in it. Run again with --text "the exact words" (a wrong transcript makes '
    "the clone mumble, skip or repeat words)."
)
NOTHING_RECOGNISED = (
    "speech recognition found no words in the clip (it knows English only); "
    'run again with --text "the exact words"'
)


# -- saving -------------------------------------------------------------------------------


def _existing_folder(voices_dir: Path, name: str) -> Path | None:
    """The folder of a voice called ``name`` (names ignore case), if there is one."""
    try:
        entries = list(voices_dir.iterdir())
    except FileNotFoundError:
        return None
    key = name.lower()
    for entry in entries:
        if entry.name.lower() == key:
            return entry
    return None


def check_new_voice(voices: VoicesConfig, name: str, *, force: bool = False) -> None:
    """Refuse names that are invalid or taken (unless ``force``), before any work is done.

    Raises:
        VoiceImportError: Saying which names are allowed, or that ``--force`` replaces.
    """
    if not VOICE_NAME_RE.match(name):
        raise VoiceImportError(
            f"{name[:40]!r} is not a valid voice name: use 1-32 letters, digits, '-' or '_' "
            "(viewers type it after !voice)"
        )
    if windows_reserved_name(name):
        raise VoiceImportError(
            f"{name!r} cannot be a voice name: Windows reserves it for a device (CON, NUL, AUX,"
            " PRN, COM1-9, LPT1-9), so its folder would not work there; pick another name"
        )
    existing = _existing_folder(voices.dir, name)
    if existing is not None and not force:
        raise VoiceImportError(
            f"a voice named {name.lower()!r} already exists ({existing}); pick another name, "
            "or add --force to replace it"
        )
    if existing is None and name.lower() == BUILTIN_VOICE and not force:
        raise VoiceImportError(
            f"{BUILTIN_VOICE!r} is the built-in voice; add --force to replace it with this "
            "clip, or pick another name and set voices.default to it"
        )


def save_voice(
    voices: VoicesConfig, name: str, prepared: PreparedVoice, *, force: bool = False
) -> Path:
    """Write ``voices/NAME/reference.wav`` and ``reference.txt``, replacing atomically.

    The files are written into a hidden folder beside the target (the voice library skips
    dot-folders) and renamed into place, so the running bot never sees half a voice, and a
    replaced voice is only removed once the new one is in place.

    Returns:
        The voice's folder.

    Raises:
        VoiceImportError: Invalid or taken name, or the files cannot be written.
    """
    check_new_voice(voices, name, force=force)
    root = voices.dir
    target = root / name
    staging = root / f".{name}.importing-{os.getpid()}"
    old: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        sf.write(
            str(staging / CLIP_FILE), prepared.samples, TARGET_RATE, subtype="PCM_16", format="WAV"
        )
        (staging / TRANSCRIPT_FILE).write_text(prepared.transcript + "\n", encoding="utf-8")
        existing = _existing_folder(root, name)
        if existing is not None:
            old = root / f".{existing.name}.replaced-{os.getpid()}"
            existing.rename(old)
        staging.rename(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        if old is not None and not target.exists():
            with contextlib.suppress(OSError):
                old.rename(target)
        raise VoiceImportError(f"cannot write the voice into {target}: {exc}") from None
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()
    log.info("voice %r saved in %s", name, target)
    return target


# -- speech recognition ------------------------------------------------------------------


def recogniser_available() -> bool:
    """Whether pocketsphinx (offline English recognition) can be imported."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


_ASR_RATE = 16_000
_ASR_PAD_S = 0.3
_ASR_NOISE = 0.0015


def recognise_speech(samples: FloatArray, rate: int) -> str:
    """Transcribe English speech offline with pocketsphinx (lower case, no punctuation).

    pocketsphinx decodes 16 kHz int16 in one full-utterance pass, which is deterministic;
    silence padding and faint fixed-seed noise keep it from stumbling on digital silence.
    """
    from pocketsphinx import Decoder

    mono = np.asarray(samples, dtype=np.float32)
    if rate != _ASR_RATE:
        mono = np.asarray(soxr.resample(mono, rate, _ASR_RATE), dtype=np.float32)
    pad = np.zeros(round(_ASR_PAD_S * _ASR_RATE), dtype=np.float32)
    mono = np.concatenate([pad, mono, pad])
    noise = np.random.default_rng(1234).normal(0.0, _ASR_NOISE, mono.size).astype(np.float32)
    pcm = (np.clip(mono + noise, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoder = Decoder(samprate=_ASR_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    if hyp is None:
        return ""
    words = [w for w in str(hyp.hypstr).split() if not w.startswith(("<", "[", "("))]
    return " ".join(words)


# -- the command --------------------------------------------------------------------------


_MARK: dict[Severity, str] = {"error": "ERROR", "warning": "WARN ", "info": "  ok "}


def _show(findings: tuple[Finding, ...] | list[Finding], out: TextIO) -> None:
    for finding in findings:
        out.write(f"  {_MARK[finding.severity]} {finding.message}\n")


def confirm_transcript(suggestion: str, ask: Callable[[str], str], out: TextIO) -> str | None:
    """Show a recognised transcript and let the user accept, edit or refuse it.

    Returns:
        The transcript to store, or None when the user declined.
    """
    out.write(
        "\nSpeech recognition heard (it makes mistakes; the transcript must match exactly):\n"
        f"  {suggestion}\n"
    )
    while True:
        answer = ask("Use it? [y]es, [e]dit, [n]o: ").strip().lower()
        if answer in {"y", "yes"}:
            return suggestion
        if answer in {"n", "no", ""}:
            return None
        if answer in {"e", "edit"}:
            edited = normalize_space(ask("Type the exact words spoken in the clip: "))
            if edited:
                return edited
            out.write("  (empty; try again)\n")


def add_voice_command(
    voices: VoicesConfig,
    name: str,
    clip: Path,
    text: str | None,
    *,
    yes: bool = False,
    force: bool = False,
    out: TextIO | None = None,
    ask: Callable[[str], str] = input,
    interactive: bool | None = None,
    recogniser: Recogniser | None = None,
) -> int:
    """``ishowtts voices add NAME CLIP [--text ...] [--yes] [--force]``.

    Args:
        voices: The ``voices`` config section (where voices live).
        name: The new voice's name.
        clip: The audio file.
        text: Its exact transcript, or None to be asked / offered recognition.
        yes: Accept a recognised transcript without asking.
        force: Replace an existing voice of that name.
        out: Where the report goes (stdout by default).
        ask: Reads an answer (``input`` by default).
        interactive: Whether questions can be asked (default: stdin is a terminal).
        recogniser: Speech recogniser to offer (default: pocketsphinx where installed).

    Returns:
        Exit status: 0 saved, 1 declined, 2 unusable clip, name or missing transcript.
    """
    stream = out if out is not None else sys.stdout
    if interactive is None:
        interactive = sys.stdin.isatty()
    if recogniser is None and text is None and recogniser_available():
        recogniser = recognise_speech
    try:
        check_new_voice(voices, name, force=force)
        if text is None and recogniser is not None:
            stream.write("No --text given: recognising the speech to suggest a transcript...\n")
        prepared = prepare_voice(clip, text, recogniser if text is None else None)
    except VoiceImportError as exc:
        if exc.findings:
            _show(exc.findings, stream)
        stream.write(f"\nCannot add voice {name!r}: {exc}\n")
        if str(exc) == TRANSCRIPT_REQUIRED and not recogniser_available():
            stream.write(
                "(Installing pocketsphinx (`.venv/bin/pip install pocketsphinx`) lets this "
                "command suggest a transcript of English speech for you to confirm.)\n"
            )
        return 2
    _show(prepared.findings, stream)
    if prepared.transcript_source == "recognised":
        if yes:
            stream.write(f"\nUsing the recognised transcript (--yes): {prepared.transcript}\n")
        elif not interactive:
            stream.write(
                f"\nSpeech recognition heard: {prepared.transcript!r}\nNothing was saved: "
                "confirm it with --yes, or give the exact words with --text.\n"
            )
            return 1
        else:
            chosen = confirm_transcript(prepared.transcript, ask, stream)
            if chosen is None:
                stream.write('Nothing was saved. Run again with --text "the exact words".\n')
                return 1
            try:
                prepared = prepared.with_transcript(chosen)
            except VoiceImportError as exc:
                stream.write(f"\nCannot add voice {name!r}: {exc}\n")
                return 2
    try:
        folder = save_voice(voices, name, prepared, force=force)
    except VoiceImportError as exc:
        stream.write(f"\nCannot add voice {name!r}: {exc}\n")
        return 2
    stream.write(
        f"\nSaved voice {name!r} in {folder}:\n"
        f"  {CLIP_FILE}: {prepared.seconds:.1f} s, {TARGET_RATE} Hz mono 16-bit\n"
        f"  {TRANSCRIPT_FILE}: {prepared.transcript}\n"
        f'Hear it with: ishowtts voices test {name} "hello chat"\n'
        f"Viewers pick it with: !voice {name.lower()}\n"
    )
    return 0


DEFAULT_TEST_LINE = "Hello chat! This is the {name} voice. How do I sound?"


def voice_problem(voices: VoicesConfig, name: str) -> str | None:
    """Why ``voices test NAME`` cannot speak in ``name``, or None when it can.

    Testing a voice must never fall back to the default silently (that is what the bot does
    for chat): the streamer would judge the wrong voice.
    """
    from engine.voices import VoiceLibrary

    try:
        VoiceLibrary(voices).get(name)
    except VoiceError as exc:
        return str(exc)
    return None
