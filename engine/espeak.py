"""eSpeak NG engine: a voice on every machine, no GPU and no downloads.

F5-TTS needs an NVIDIA GPU to keep up with chat. When there is none (or its weights cannot be
fetched) the bot still speaks, through eSpeak NG. The library and its voice data come from the
``espeakng-loader`` wheel (no system package), driven here through a small ctypes binding in
synchronous mode: ``espeak_Synth`` returns once a sentence is rendered and our callback has
received its samples.

Chat voice names keep working: each bot voice (the F5 voice folders plus the built-in
``default``) maps deterministically, through a stable hash, to an eSpeak variant, pitch and rate
offset, so different viewers still sound different and the same viewer sounds the same after a
restart or on another machine.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import difflib
import hashlib
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.base import Audio, Engine, EngineError, EngineState, StopCheck, VoiceInfo
from engine.config import BUILTIN_VOICE, VOICE_NAME_RE, EspeakConfig, VoicesConfig
from engine.voices import VoiceLibrary, VoiceSpec

log = logging.getLogger(__name__)

# espeak_ng/speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0

# Variants whose speech stays clear. Measured with an offline recogniser (pocketsphinx, four
# plain sentences, pitch 38/50/62, 160 wpm; mean word error rate): klatt3 0.23, klatt5 0.24,
# m5 0.25, klatt4 0.28, klatt6 0.29, m6 0.37; left out: klatt 0.38, klatt2 0.44, m1 0.52,
# m3 0.57, f1-f4 0.60-0.94, m2/m7 0.77-0.89, and the novelty variants (whisper, croak,
# robosoft...). Distinct voices come from the variant plus a pitch and rate offset per name.
VARIANT_POOL: tuple[str, ...] = ("klatt3", "klatt4", "klatt5", "klatt6", "m5", "m6")
_PITCH_SPREAD = 12  # a mapped voice's pitch is the configured pitch +- this much
_RATE_SPREAD = 0.08  # and its rate the configured rate +- 8 %
_RATE_MIN = 80
"""eSpeak NG's slowest rate (it speaks anything lower at 80 wpm itself)."""
_RATE_MAX = 1800
"""The fastest a request's speed may push it: 4 x the configured maximum, 450. Above 450
eSpeak NG speeds up with libsonic (the bundled library does: measured 700 wpm speaks a line
in 0.23x the time of 175 wpm, and it accepted 5000)."""

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_SPEAKABLE = re.compile(r"[^\W_]", re.UNICODE)


class _EspeakVoice(ctypes.Structure):
    """``espeak_VOICE`` from speak_lib.h (only read, never written by us)."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Library:
    """The process's one handle on libespeak-ng.

    The C library keeps global state (one voice, one callback, one output buffer) and is not
    thread-safe: four threads synthesising at once crashed it with a double free. dlopen hands
    every caller the same copy, so a per-engine handle would only pretend to be separate. This
    object is therefore shared by all engines of the process (``_LIBRARY`` below, the module's
    one piece of state, created empty: nothing is loaded until an engine's ``load()``); its
    lock serialises every call, and it keeps the ctypes callback referenced for the lifetime of
    the process, because the library calls it long after ``espeak_SetSynthCallback`` returns.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._lib: ctypes.CDLL | None = None
        self._callback: object | None = None
        self._sink: list[np.ndarray] | None = None
        self._stop: StopCheck | None = None
        self.sample_rate = 0
        self.data_path = ""
        self.voice_files: frozenset[str] = frozenset()
        self.variants: frozenset[str] = frozenset()

    def ensure_loaded(self) -> None:
        """Load and initialise the library once per process.

        Raises:
            EngineError: When the wheel is missing or the library cannot start.
        """
        with self.lock:
            if self._lib is not None:
                return
            try:
                import espeakng_loader
            except ImportError as exc:
                raise EngineError(
                    "eSpeak NG is not installed: run `pip install espeakng-loader` "
                    "(it ships the library and its voices)"
                ) from exc
            lib_path = espeakng_loader.get_library_path()
            try:
                data_path = espeakng_loader.get_data_path()
                lib = ctypes.CDLL(lib_path)
            except (OSError, RuntimeError) as exc:
                raise EngineError(
                    f"cannot load eSpeak NG from {lib_path} ({exc}); reinstall it with "
                    "`pip install --force-reinstall espeakng-loader`"
                ) from exc
            _declare(lib)
            # The data path must always be passed: the built-in default is the folder of the
            # machine that built the wheel. Without DONT_EXIT a bad path kills the process.
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, c_path(data_path), _INITIALIZE_DONT_EXIT
            )
            if rate <= 0:
                raise EngineError(
                    f"eSpeak NG failed to start with its data at {data_path} (code {rate}); "
                    "reinstall it with `pip install --force-reinstall espeakng-loader`"
                )
            callback = _SynthCallback(self._on_samples)
            lib.espeak_SetSynthCallback(callback)
            self._callback = callback
            self.sample_rate = int(rate)
            self.data_path = data_path
            self.voice_files = self._list_voices(lib)
            self.variants = frozenset(
                p.name.lower() for p in (Path(data_path) / "voices" / "!v").iterdir()
            )
            self._lib = lib
            log.info(
                "eSpeak NG ready: %d Hz, %d voices, %d variants (data: %s)",
                self.sample_rate,
                len(self.voice_files),
                len(self.variants),
                data_path,
            )

    @staticmethod
    def _list_voices(lib: ctypes.CDLL) -> frozenset[str]:
        """Voice file names (``en``, ``en-us``, ``fr``...), which name voices for eSpeak."""
        names: set[str] = set()
        voices = lib.espeak_ListVoices(None)
        i = 0
        while voices and voices[i]:
            identifier = voices[i].contents.identifier
            if identifier:
                names.add(identifier.decode(errors="replace").rsplit("/", 1)[-1].lower())
            i += 1
        return frozenset(names)

    def accepts(self, spec: str) -> bool:
        """Whether ``VOICE[+VARIANT]`` names an installed voice and variant.

        eSpeak itself is asked about the voice (it knows its own naming rules); variants are
        checked against the installed files, because eSpeak ignores an unknown one silently.
        """
        voice, plus, variant = spec.partition("+")
        if plus and variant.lower() not in self.variants:
            return False
        with self.lock:
            lib = self._lib
            return lib is not None and lib.espeak_SetVoiceByName(voice.encode()) == _EE_OK

    def _on_samples(self, wav: Any, count: int, _events: int | None) -> int:
        """Synth callback (runs inside ``espeak_Synth`` on the calling thread)."""
        if self._sink is not None and wav and count > 0:
            # Copy the samples as bytes. np.ctypeslib.as_array(wav, shape=(count,)) would make
            # (and cache forever) a new ctypes array type for every distinct count: ~5 KB
            # each, tens of MB over a long stream (found by bench/flood.py --trace-memory).
            raw = ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short))
            self._sink.append(np.frombuffer(raw, dtype=np.int16))
        # Returning 1 aborts the synthesis: this is how a skip lands mid-sentence.
        return 1 if self._stop is not None and self._stop() else 0

    def synth(self, text: str, spec: str, rate: int, pitch: int, should_stop: StopCheck) -> Audio:
        """Render one piece of text with the given settings, as float32 samples.

        Raises:
            EngineError: When eSpeak rejects the voice or fails.
        """
        with self.lock:
            lib = self._lib
            if lib is None:
                raise EngineError("the eSpeak NG engine is not loaded")
            if lib.espeak_SetVoiceByName(spec.encode()) != _EE_OK:
                raise EngineError(f"eSpeak NG has no voice {spec!r}")
            lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            data = text.encode("utf-8", errors="ignore") + b"\x00"
            sink: list[np.ndarray] = []
            self._sink, self._stop = sink, should_stop
            try:
                status = lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
                )
                if status == _EE_OK:
                    status = lib.espeak_Synchronize()
            finally:
                self._sink, self._stop = None, None
            if status != _EE_OK and not should_stop():
                raise EngineError(f"eSpeak NG failed to speak this text (code {status})")
        if not sink:
            return np.zeros(0, dtype=np.float32)
        pcm = np.concatenate(sink)
        return (pcm.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def _declare(lib: ctypes.CDLL) -> None:
    """Give ctypes the C signatures (pointer widths matter on 64-bit)."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))


_LIBRARY = _Library()


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    """The eSpeak settings one bot voice speaks with.

    Attributes:
        spec: ``LANG+VARIANT`` passed to ``espeak_SetVoiceByName``.
        rate: Words per minute.
        pitch: eSpeak pitch, 0-99.
    """

    spec: str
    rate: int
    pitch: int

    def describe(self) -> str:
        """Short human-readable form for voice lists and logs."""
        return f"eSpeak NG {self.spec}, {self.rate} wpm, pitch {self.pitch}"


def map_voice(name: str, cfg: EspeakConfig) -> EspeakVoice:
    """Map a bot voice name to eSpeak settings, the same way on every run and machine.

    ``default`` speaks exactly as configured. Any other name keeps the configured language and
    gets a variant, pitch and rate offset from a BLAKE2 hash of the name (Python's ``hash()``
    is salted per process, so it would give a viewer a new voice after every restart).
    ``engine.espeak.voices.<name>`` then overrides whichever of voice, rate and pitch it sets.

    Args:
        name: The bot voice name (already validated; case does not matter).
        cfg: ``engine.espeak``.
    """
    key = name.lower()
    if key == BUILTIN_VOICE:
        mapped = EspeakVoice(cfg.voice, cfg.rate, cfg.pitch)
    else:
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        language = cfg.voice.partition("+")[0]
        variant = VARIANT_POOL[digest % len(VARIANT_POOL)]
        digest //= len(VARIANT_POOL)
        pitch_offset = digest % (2 * _PITCH_SPREAD + 1) - _PITCH_SPREAD
        digest //= 2 * _PITCH_SPREAD + 1
        rate_factor = 1.0 + ((digest % 201) - 100) / 100 * _RATE_SPREAD
        mapped = EspeakVoice(
            spec=f"{language}+{variant}",
            rate=min(450, max(80, round(cfg.rate * rate_factor))),
            pitch=min(99, max(0, cfg.pitch + pitch_offset)),
        )
    override = cfg.voices.get(key)
    if override is None:
        return mapped
    return EspeakVoice(
        spec=override.voice if override.voice is not None else mapped.spec,
        rate=override.rate if override.rate is not None else mapped.rate,
        pitch=override.pitch if override.pitch is not None else mapped.pitch,
    )


def _clean(text: str) -> str:
    """Drop control and format characters (a NUL would end the C string early)."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append("\n" if ch in "\n\r" else " " if ch == "\t" else "")
        else:
            out.append(ch)
    return "".join(out)


def split_sentences(text: str) -> list[str]:
    """Split at sentence ends and line breaks, so a skip lands between pieces."""
    return [part.strip() for part in _SENTENCE_END.split(text) if _SPEAKABLE.search(part)]


def _check_installed(key: str, spec: str) -> None:
    """Refuse an eSpeak voice that is not installed, naming the config key to fix.

    Raises:
        EngineError: Saying whether the voice or the variant is unknown, with suggestions.
    """
    if _LIBRARY.accepts(spec):
        return
    lang, _, variant = spec.lower().partition("+")
    if _LIBRARY.accepts(lang):
        known, what = _LIBRARY.variants, f"variant {variant!r}"
        wrong = variant
    else:
        known, what = _LIBRARY.voice_files, f"voice {lang!r}"
        wrong = lang
    close = difflib.get_close_matches(wrong, sorted(known), n=4, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise EngineError(
        f"{key}: {spec!r} is not installed: unknown {what}{hint}; use VOICE or "
        "VOICE+VARIANT, e.g. en-us+klatt3 or en+klatt4 (British English is 'en'); the "
        f"voices are the files under {_LIBRARY.data_path}/lang, the variants those in "
        "voices/!v"
    )


def c_path(path: str, *, ansi_codec: str = "mbcs") -> bytes:
    r"""``path`` as the bytes eSpeak NG's C library opens with ``fopen``.

    Windows' ``fopen`` reads a ``char*`` in the ANSI code page, not UTF-8, so a data folder
    under ``C:\Users\José`` must be encoded with it (Python's "mbcs" codec, which exists only
    on Windows); a name the code page cannot spell goes by its 8.3 short name, plain ASCII.
    Elsewhere (no such codec) the file system encoding is what ``fopen`` takes. Detecting the
    codec rather than the OS keeps this the engine's own decision (it cannot ask the bot).

    Args:
        path: The folder.
        ansi_codec: The codec of the ANSI code page (tests pass another to simulate one).

    Raises:
        EngineError: On Windows, when neither form exists (8.3 names switched off).
    """
    try:
        codecs.lookup(ansi_codec)
    except LookupError:
        return os.fsencode(path)
    try:
        return path.encode(ansi_codec, "strict")
    except UnicodeEncodeError:
        short = _short_path(path)
        if short is not None:
            with contextlib.suppress(UnicodeEncodeError):
                return short.encode("ascii")
    raise EngineError(
        f"eSpeak NG cannot open its data at {path}: the folder's name has characters this "
        "Windows code page cannot write and it has no short name; install the bot in a folder "
        "with a plain name (for example C:\\ishowtts)"
    )


def _short_path(path: str) -> str | None:
    """Windows' 8.3 short form of ``path`` (None where there is none or off Windows)."""
    windll = getattr(ctypes, "windll", None)
    if windll is None:
        return None
    size = windll.kernel32.GetShortPathNameW(path, None, 0)
    if not size:
        return None
    buffer = ctypes.create_unicode_buffer(size)
    if not windll.kernel32.GetShortPathNameW(path, buffer, size):
        return None
    return str(buffer.value)


class EspeakEngine(Engine):
    """Speaks with eSpeak NG; every bot voice maps to its own eSpeak voice.

    Construction does no I/O: ``load()`` loads and initialises the library (once per process)
    and checks the configured voice against the installed ones.
    """

    name = "espeak"

    def __init__(self, cfg: EspeakConfig, voices: VoicesConfig) -> None:
        """Create the engine.

        Args:
            cfg: ``engine.espeak`` (default voice, rate, pitch).
            voices: ``voices`` (the folder whose voice names are mapped, and the default).
        """
        self.cfg = cfg
        self.voices_cfg = voices
        self.sample_rate = 22_050
        self.library = VoiceLibrary(voices)
        self._loaded = False

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        """Initialise eSpeak NG and check the configured voices.

        Raises:
            EngineError: When the library cannot start, or ``engine.espeak.voice`` or an
                ``engine.espeak.voices.<name>.voice`` is not installed.
        """
        progress(EngineState.LOADING, "starting eSpeak NG")
        _LIBRARY.ensure_loaded()
        _check_installed("engine.espeak.voice", self.cfg.voice)
        for name, override in self.cfg.voices.items():
            if override.voice is not None:
                _check_installed(f"engine.espeak.voices.{name}.voice", override.voice)
        self.sample_rate = _LIBRARY.sample_rate
        self._loaded = True
        count = len(self._scan())
        progress(EngineState.WARMING, f"eSpeak NG voice {self.cfg.voice}")
        log.info("eSpeak NG engine: %d voices mapped onto %s", count, self.cfg.voice)

    def _scan(self) -> dict[str, VoiceSpec]:
        """Bot voices: the built-in ``default`` plus every validly named voice folder."""
        return {
            name: spec for name, spec in self.library.scan().items() if VOICE_NAME_RE.match(name)
        }

    def voice_settings(self, voice: str) -> EspeakVoice:
        """The eSpeak settings ``voice`` speaks with (the default voice's for unknown names).

        Names are looked up case-insensitively in the voice library (which rescans once on
        an unknown name, so a folder added while the bot runs is found) and in
        ``engine.espeak.voices``; nothing from chat reaches eSpeak except through this mapping.
        """
        spec = self.library.lookup(voice)
        if spec is not None and VOICE_NAME_RE.match(spec.name):
            return map_voice(spec.name, self.cfg)
        if voice.lower() in self.cfg.voices:
            return map_voice(voice, self.cfg)
        fallback = self.library.default_name
        log.info("unknown voice %r: speaking with the default voice %r", voice[:40], fallback)
        return map_voice(fallback, self.cfg)

    def voices(self) -> list[VoiceInfo]:
        """The bot's voices, each with the eSpeak voice it maps to.

        These are the voice folders, the built-in ``default`` and any name configured only
        under ``engine.espeak.voices``. A voice whose clip or transcript has a problem still
        speaks here (eSpeak needs neither); the problem is mentioned so it can be fixed
        before F5-TTS is used.
        """
        notes: dict[str, str] = {name: "" for name in self.cfg.voices}
        for name, spec in self._scan().items():
            notes[name] = f" (for F5-TTS: {spec.problem})" if spec.problem is not None else ""
        return [
            VoiceInfo(name, map_voice(name, self.cfg).describe() + notes[name])
            for name in sorted(notes, key=lambda n: (n != BUILTIN_VOICE, n))
        ]

    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, *, speed: float = 1.0
    ) -> Iterator[Audio]:
        """Speak ``text`` sentence by sentence; a stop request aborts the current sentence.

        ``speed`` multiplies the voice's words per minute (kept within 80-1800). The library
        is stateful, so every sentence sets the rate again: the next request speaks at its
        own speed whatever this one asked for.

        Raises:
            EngineError: When the engine is not loaded or eSpeak fails.
        """
        if not self._loaded:
            raise EngineError("the eSpeak NG engine is not loaded")
        settings = self.voice_settings(voice)
        rate = settings.rate
        if speed != 1.0:
            rate = min(_RATE_MAX, max(_RATE_MIN, round(settings.rate * speed)))
        for sentence in split_sentences(_clean(text)):
            if should_stop():
                return
            audio = _LIBRARY.synth(sentence, settings.spec, rate, settings.pitch, should_stop)
            if should_stop():
                return
            if audio.size:
                yield audio

    def close(self) -> None:
        """Stop serving; the library stays initialised for the process (it is shared)."""
        self._loaded = False
