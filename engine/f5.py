"""The F5-TTS engine: voice cloning from a short reference clip, one chunk of text at a time.

Weights come from the Hugging Face hub (``hf://owner/repo/path``) or local paths, and are
loaded through f5-tts's own ``load_checkpoint``/``load_vocoder`` code, so tiny test
checkpoints exercise exactly the path the real ones take. The sampling step sits behind a
small sampler contract (``engine.sampling.Sampler``: ``StockSampler``, or
``engine.f5fast.FastSampler`` on CUDA) so the accelerated path can be swapped in without
touching the rest.

Each voice's reference (decoded, mixed to mono, loudness-normalised, resampled to 24 kHz,
turned into a mel spectrogram on the device) is computed once and cached under a hash of the
clip's content and transcript; a stat check per request notices edited files cheaply.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.resources
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import soxr
import torch
import yaml

from engine.base import (
    Audio,
    BatchChunk,
    Engine,
    EngineError,
    EngineState,
    StopCheck,
    SynthesisRequest,
    VoiceError,
    VoiceInfo,
)
from engine.config import BUILTIN_VOICE, F5Config, VoicesConfig
from engine.sampling import Sampler, SampleRequest, StockSampler
from engine.text import (
    HOP_LENGTH,
    SAMPLE_RATE,
    chunk_limit,
    duration_frames,
    prepare_reference_text,
    split_first_chunk,
    split_text,
)
from engine.voices import VoiceLibrary, VoiceSpec, load_reference, read_transcript
from engine.weights import WeightFiles, resolve_weights

log = logging.getLogger(__name__)

N_MEL = 100
TARGET_RMS = 0.1
"""Loudness every reference is normalised to (f5-tts's own target), so voices sound alike."""
MAX_GAIN = 30.0
FADE_S = 0.005
FIRST_CHUNK_CHARS = 40
"""Longest leading piece of a long message, synthesised alone so that speech starts early."""
SPLIT_ABOVE_CHARS = 120
"""Only messages longer than this get a separate leading piece."""
CACHE_ENTRIES = 32
WARMUP_TEXT = "Warming up the voice."


# -- model description and weights ----------------------------------------------------------


_BACKBONES = {
    "DiT": "f5_tts.model.backbones.dit",
    "UNetT": "f5_tts.model.backbones.unett",
    "MMDiT": "f5_tts.model.backbones.mmdit",
}


def model_architecture(model: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backbone class name and its arguments for ``engine.f5.model``.

    Args:
        model: An f5-tts config name (``f5_tts/configs/<name>.yaml`` in the installed
            package, e.g. ``F5TTS_v1_Base``) or a mapping of DiT arguments.

    Raises:
        EngineError: Unknown config name, a config that is not a vocos mel model, or
            arguments the engine sets itself.
    """
    if not isinstance(model, str):
        arch = dict(model)
        backbone = str(arch.pop("backbone", "DiT"))
    else:
        configs = importlib.resources.files("f5_tts").joinpath("configs")
        path = configs.joinpath(f"{model}.yaml")
        if not path.is_file():
            names = sorted(
                p.name.removesuffix(".yaml") for p in configs.iterdir() if p.name.endswith(".yaml")
            )
            raise EngineError(
                f"engine.f5.model: f5-tts has no model config {model!r} "
                f"(installed: {', '.join(names)}); or give a mapping of DiT arguments"
            )
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]
        mel = spec.get("mel_spec", {})
        if mel.get("mel_spec_type", "vocos") != "vocos" or mel.get("n_mel_channels", 100) != N_MEL:
            raise EngineError(f"engine.f5.model: {model} is not a 100-band vocos model")
        backbone = str(spec["backbone"])
        arch = dict(spec["arch"])
    for key in ("text_num_embeds", "mel_dim"):
        if key in arch:
            raise EngineError(
                f"engine.f5.model: remove {key!r}; it comes from the vocab and the mel settings"
            )
    if backbone not in _BACKBONES:
        raise EngineError(f"engine.f5.model: unknown backbone {backbone!r} (DiT, UNetT, MMDiT)")
    return backbone, arch


# -- cached references ----------------------------------------------------------------------


@dataclass
class CacheStats:
    """Counters proving what the reference cache did (tests and the status panel read them).

    Attributes:
        stat_checks: Requests that checked the files' stat (cheap, every request).
        file_reads: Times a clip's bytes were read from disk.
        preprocessed: Times a reference was decoded, normalised, resampled and turned into mel.
        hits: Requests served from the cache.
    """

    stat_checks: int = 0
    file_reads: int = 0
    preprocessed: int = 0
    hits: int = 0


@dataclass(frozen=True, slots=True)
class Reference:
    """A voice's conditioning, ready on the device.

    Attributes:
        key: Hash of the clip's bytes and transcript.
        cond: Reference mel [1, frames, n_mel] in the model's dtype on its device.
        frames: Mel frames of the reference.
        seconds: Reference length in seconds (24 kHz samples / 24000).
        transcript: The words spoken in the (possibly trimmed) reference.
        text: ``transcript`` formatted as f5-tts conditions on it.
    """

    key: str
    cond: torch.Tensor
    frames: int
    seconds: float
    transcript: str
    text: str


_Signature = tuple[tuple[int, int, int], ...]


class _ReferenceCache:
    """Content-keyed reference tensors with a per-voice stat shortcut."""

    def __init__(self, prepare: Callable[[bytes, str, str], Reference]) -> None:
        self._prepare = prepare
        self._entries: OrderedDict[str, Reference] = OrderedDict()
        self._seen: dict[Path, tuple[_Signature, str]] = {}
        self.stats = CacheStats()

    def get(self, spec: VoiceSpec) -> Reference:
        files = [spec.clip] + ([spec.transcript_file] if spec.transcript_file else [])
        self.stats.stat_checks += 1
        try:
            signature = tuple(_stat(p) for p in files)
        except OSError as exc:
            raise VoiceError(f"voice {spec.name!r}: cannot read {exc.filename}") from None
        seen = self._seen.get(spec.clip)
        if seen is not None and seen[0] == signature and seen[1] in self._entries:
            self.stats.hits += 1
            self._entries.move_to_end(seen[1])
            return self._entries[seen[1]]
        try:
            data = spec.clip.read_bytes()
        except OSError as exc:
            raise VoiceError(f"voice {spec.name!r}: cannot read {spec.clip.name}") from exc
        self.stats.file_reads += 1
        transcript = (
            read_transcript(spec.transcript_file)
            if spec.transcript_file is not None
            else spec.transcript or ""
        )
        digest = hashlib.sha256(data)
        digest.update(b"\0" + transcript.encode("utf-8"))
        key = digest.hexdigest()
        ref = self._entries.get(key)
        if ref is None:
            ref = self._prepare(data, transcript, f"{spec.name}/{spec.clip.name}")
            self.stats.preprocessed += 1
            self._entries[key] = ref
            while len(self._entries) > CACHE_ENTRIES:
                self._entries.popitem(last=False)
        else:
            self.stats.hits += 1
            self._entries.move_to_end(key)
        self._seen[spec.clip] = (signature, key)
        return ref

    def clear(self) -> None:
        self._entries.clear()
        self._seen.clear()


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# -- the engine -----------------------------------------------------------------------------


class ChunkPlan(NamedTuple):
    """One piece of a message and the number of mel frames it will be given."""

    text: str
    frames: int

    @property
    def samples(self) -> int:
        """Output samples at 24 kHz for this piece."""
        return self.frames * HOP_LENGTH


@dataclass(slots=True)
class _Stream:
    """One request of a batch in flight: its pieces and how far it got."""

    index: int
    ref: Reference
    plans: list[ChunkPlan]
    should_stop: StopCheck
    generator: torch.Generator | None
    next: int = 0

    @property
    def done(self) -> bool:
        return self.next >= len(self.plans)


class F5Engine(Engine):
    """F5-TTS behind the engine interface.

    Construction is free; ``load()`` resolves and loads the weights, picks the sampler and
    warms up. Only the engine thread calls the engine after that.
    """

    name = "f5"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        f5: F5Config,
        voices: VoicesConfig,
        device: Literal["auto", "cuda", "cpu"] = "auto",
        compile_cache: Path | None = None,
    ) -> None:
        """Remember the settings; nothing is loaded until ``load()``.

        Args:
            f5: The ``engine.f5`` settings.
            voices: The ``voices`` settings.
            device: ``engine.device``.
            compile_cache: Where the fast sampler keeps compiled kernels, so that later
                starts skip compilation (the bot's state folder; None: torch's default).
        """
        self._f5 = f5
        self._device_choice = device
        self._compile_cache = compile_cache
        self.library = VoiceLibrary(voices)
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.cfm: Any = None
        self.vocoder: Any = None
        self.sampler: Sampler | None = None
        self.chunks_generated = 0
        self._cache = _ReferenceCache(self._prepare_reference)
        self._to_ids: Callable[[str], torch.Tensor] | None = None

    @property
    def cache_stats(self) -> CacheStats:
        """What the reference cache did so far."""
        return self._cache.stats

    # -- loading ----------------------------------------------------------------------------
    def _pick_device(self) -> torch.device:
        choice = self._device_choice
        if choice == "cpu":
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if choice == "cuda":
            raise EngineError(
                "engine.device is 'cuda' but no CUDA GPU is usable "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "set engine.device to auto or cpu, or install a CUDA build of torch"
            )
        return torch.device("cpu")

    def _pick_dtype(self, device: torch.device) -> torch.dtype:
        precision = self._f5.precision
        if device.type != "cuda":
            if precision == "fp16":
                log.warning("engine.f5.precision fp16 needs CUDA; using fp32 on the CPU")
            return torch.float32
        return torch.float32 if precision == "fp32" else torch.float16

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        """Resolve and load the weights, choose the sampler and run a warm-up synthesis.

        Raises:
            EngineError: Missing weights (saying which files and which config keys point at
                local copies), a checkpoint that does not fit ``engine.f5.model``, or no GPU
                when ``engine.device`` is ``cuda``.
        """
        device = self._pick_device()
        dtype = self._pick_dtype(device)
        backbone, arch = model_architecture(self._f5.model)
        files = resolve_weights(self._f5, lambda msg: progress(EngineState.LOADING, msg))
        progress(EngineState.LOADING, f"loading F5-TTS on {device.type} ({_dtype_name(dtype)})")
        self.cfm = _load_cfm(backbone, arch, files, device, dtype)
        self.vocoder = _load_vocoder(files.vocoder, device)
        self._to_ids = _text_to_ids(self.cfm.vocab_char_map)
        self.device, self.dtype = device, dtype
        self.sampler = self._make_sampler(device)
        self._cache.clear()
        progress(EngineState.WARMING, "warming up F5-TTS")
        self._warm_up_sampler(lambda msg: progress(EngineState.WARMING, msg))
        self._warm_up()

    def _make_sampler(self, device: torch.device) -> Sampler:
        kwargs: dict[str, Any] = {
            "nfe_step": self._f5.nfe_step,
            "cfg_strength": self._f5.cfg_strength,
            "sway_sampling_coef": self._f5.sway_sampling_coef,
        }
        if device.type == "cuda" and self._f5.fast:
            try:
                from engine.f5fast import FastSampler

                return FastSampler(
                    self.cfm,
                    **kwargs,
                    cache_dir=self._compile_cache,
                    max_batch=self._f5.max_batch,
                    max_batch_frames=self._f5.max_batch_frames,
                    loop_graphs=self._f5.loop_graphs,
                    ready_frames=self._f5.ready_frames,
                )
            except ImportError:
                log.info("the accelerated sampler is not available; using f5-tts's own")
            except Exception:
                log.exception("the accelerated sampler failed to start; using f5-tts's own")
        return StockSampler(self.cfm, **kwargs)

    @property
    def max_batch(self) -> int:  # type: ignore[override]
        """Requests one sampling pass holds (the sampler's; 1 before loading)."""
        return self.sampler.max_batch if self.sampler is not None else 1

    def idle_work(self) -> bool:
        """Capture one more of the CUDA graphs left out of start-up (``ready_frames``)."""
        if self.sampler is None:
            return False
        return self.sampler.prepare_more()

    def _warm_up_sampler(self, report: Callable[[str], None]) -> None:
        """Let the sampler prepare itself (``Sampler.warmup``).

        The fast sampler compiles and captures CUDA graphs there; if that fails, the engine
        falls back to f5-tts's own sampler rather than failing to start.
        """
        assert self.sampler is not None
        try:
            self.sampler.warmup(progress=report)
        except Exception:
            log.exception("the accelerated sampler failed to warm up; using f5-tts's own")
            self.sampler = StockSampler(
                self.cfm,
                nfe_step=self._f5.nfe_step,
                cfg_strength=self._f5.cfg_strength,
                sway_sampling_coef=self._f5.sway_sampling_coef,
            )

    def _warm_up(self) -> None:
        """One synthesis so kernels, allocators and the default voice's cache are ready."""
        try:
            ref = self._cache.get(self._resolve_voice(self.library.default_name))
        except VoiceError as exc:
            log.warning("warming up without a voice: %s", exc)
            ref = self._silent_reference()
        for _ in self._generate(ref, self._plan(ref, WARMUP_TEXT), lambda: False, None):
            pass

    def _silent_reference(self) -> Reference:
        """A near-silent 1 s reference, so warm-up works even when no voice is usable."""
        noise = np.random.default_rng(0).normal(0, 1e-3, SAMPLE_RATE).astype(np.float32)
        return self._reference_from_audio(noise, "warm-up", "Hello.")

    # -- voices ------------------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        """Every voice found (scanning the folder again), with problems and notes."""
        infos = []
        for spec in self.library.scan().values():
            if spec.builtin:
                description = "f5-tts's packaged English sample (built in)"
            else:
                description = f"{spec.clip.parent.name}/{spec.clip.name}"
            if spec.note:
                description += f"; {spec.note}"
            infos.append(VoiceInfo(spec.name, description, spec.problem))
        return infos

    def _resolve_voice(self, name: str) -> VoiceSpec:
        """The voice to speak with: unknown names fall back to the default (logged)."""
        spec = self.library.lookup(name)
        if spec is None:
            default = self.library.lookup(self.library.default_name)
            if default is None or default.problem is not None:
                builtin = self.library.lookup(BUILTIN_VOICE)
                default = builtin if builtin is not None else default
            if default is None:
                raise VoiceError(f"no voice named {name[:40]!r} and no default voice")
            log.warning("unknown voice %r: speaking with %r instead", name[:40], default.name)
            spec = default
        if spec.problem is not None:
            raise VoiceError(f"voice {spec.name!r} cannot be used: {spec.problem}")
        return spec

    def reference(self, voice: str) -> Reference:
        """The cached conditioning for ``voice`` (after the unknown-voice fallback)."""
        self._require_loaded()
        return self._cache.get(self._resolve_voice(voice))

    def _prepare_reference(self, data: bytes, transcript: str, where: str) -> Reference:
        audio = load_reference(data, transcript, where)
        samples = audio.samples
        if audio.sample_rate != SAMPLE_RATE:
            samples = soxr.resample(samples, audio.sample_rate, SAMPLE_RATE, quality="HQ")
        return self._reference_from_audio(
            np.asarray(samples, dtype=np.float32), where, audio.transcript
        )

    def _reference_from_audio(self, samples: Audio, where: str, transcript: str) -> Reference:
        """Loudness-normalise 24 kHz mono samples and compute their mel on the device."""
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        if rms <= 0.0:
            raise VoiceError(f"{where} is silent")
        samples = samples * np.float32(min(MAX_GAIN, TARGET_RMS / rms))
        assert self.device is not None
        assert self.dtype is not None
        with torch.inference_mode():
            wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            wave = wave.unsqueeze(0).to(self.device)
            mel = self.cfm.mel_spec(wave).permute(0, 2, 1).to(self.dtype).contiguous()
        digest = hashlib.sha256(samples.tobytes() + transcript.encode("utf-8")).hexdigest()
        return Reference(
            key=digest,
            cond=mel,
            frames=int(mel.shape[1]),
            seconds=len(samples) / SAMPLE_RATE,
            transcript=transcript,
            text=prepare_reference_text(transcript),
        )

    # -- synthesis ---------------------------------------------------------------------------
    def _require_loaded(self) -> None:
        if self.cfm is None or self.sampler is None:
            raise EngineError("the F5 engine is not loaded")

    def _plan(self, ref: Reference, text: str, speed: float = 1.0) -> list[ChunkPlan]:
        assert self._to_ids is not None
        # A request's speed scales the configured one: f5-tts divides the generated duration
        # by it (infer_process), and fits as many more characters into a piece. At 1.0 the
        # configured speed is used as it is, so the arithmetic is the one it always was.
        pace = self._f5.speed if speed == 1.0 else self._f5.speed * speed
        limit = chunk_limit(ref.text, ref.seconds, self._f5.max_chunk_chars, pace)
        plans = []
        # A short leading piece (cut at a pause) is synthesised alone, so playback starts
        # after a fraction of the whole message's compute; the rest follows while it plays.
        # Messages that fit one fast pass (chat's usual lines) stay whole: splitting them would
        # start audio ~25 ms earlier but finish ~40 ms later (measured, BENCHMARKS.md run 5).
        lead = (
            split_first_chunk(text, FIRST_CHUNK_CHARS) if len(text) > SPLIT_ABOVE_CHARS else [text]
        )
        pieces = [piece for part in lead for piece in split_text(part, limit)]
        for piece in pieces:
            frames = duration_frames(piece, ref.transcript, ref.seconds, pace)
            # CFM.sample never generates fewer frames than text tokens + 1; plan the same.
            tokens = int(self._to_ids(ref.text + piece).shape[1])
            frames = max(frames, tokens + 1 - ref.frames)
            plans.append(ChunkPlan(piece, frames))
        return plans

    def plan(self, text: str, voice: str, *, speed: float = 1.0) -> list[ChunkPlan]:
        """How ``text`` will be split and how many frames each piece gets, in ``voice``."""
        return self._plan(self.reference(voice), text, speed)

    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, *, speed: float = 1.0
    ) -> Iterator[Audio]:
        """Speak ``text`` in ``voice``, one chunk per text piece, each yielded when ready.

        ``speed`` multiplies ``engine.f5.speed``: the generated duration is divided by it,
        as f5-tts's own ``infer_process`` does.

        Raises:
            VoiceError: The voice (or, for unknown names, the default) cannot be used.
            EngineError: The engine is not loaded.
        """
        ref = self.reference(voice)
        plans = self._plan(ref, text, speed)
        yield from self._generate(ref, plans, should_stop, self._generator())

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> Iterator[BatchChunk]:
        """Speak several requests in rounds of one sampling pass (see ``engine.base``).

        Round ``r`` renders the ``r``-th piece of every request still going, all in one
        ``Sampler.sample_batch`` call (up to ``engine.f5.max_batch`` per pass); a request's
        audio (at its own speed) equals its ``synthesize`` audio up to fp16 rounding, with
        the same seed. An unusable voice fails that request alone; a request whose
        ``should_stop`` turns True is dropped before the next round.

        Raises:
            EngineError: The engine is not loaded.
        """
        self._require_loaded()
        streams: list[_Stream] = []
        for index, request in enumerate(requests):
            try:
                ref = self.reference(request.voice)
                plans = self._plan(ref, request.text, request.speed)
            except EngineError as exc:
                yield BatchChunk(index, last=True, error=exc)
                continue
            streams.append(_Stream(index, ref, plans, request.should_stop, self._generator()))
        while streams:
            live = []
            for stream in streams:
                if stream.should_stop() or stream.done:
                    yield BatchChunk(stream.index, last=True)
                else:
                    live.append(stream)
            if not live:
                return
            pieces = [(s.ref, s.plans[s.next], s.generator) for s in live]
            for stream, audio in zip(live, self._render(pieces), strict=True):
                stream.next += 1
                yield BatchChunk(stream.index, audio, last=stream.done)
            streams = [s for s in live if not s.done]

    def _generator(self) -> torch.Generator | None:
        if self._f5.seed is None:
            return None
        assert self.device is not None
        return torch.Generator(device=self.device).manual_seed(self._f5.seed)

    def _generate(
        self,
        ref: Reference,
        plans: list[ChunkPlan],
        should_stop: StopCheck,
        generator: torch.Generator | None,
    ) -> Iterator[Audio]:
        for plan in plans:
            if should_stop():
                return
            (audio,) = self._render([(ref, plan, generator)])
            yield audio

    def _render(
        self, pieces: Sequence[tuple[Reference, ChunkPlan, torch.Generator | None]]
    ) -> list[Audio]:
        """Sample and vocode pieces (of one or several requests) in one sampler call."""
        assert self._to_ids is not None
        assert self.dtype is not None
        assert self.sampler is not None
        requests = []
        for ref, plan, generator in pieces:
            duration = ref.frames + plan.frames
            noise = None
            if generator is not None:
                noise = torch.randn(
                    (1, duration, N_MEL),
                    generator=generator,
                    device=ref.cond.device,
                    dtype=self.dtype,
                )
            requests.append(
                SampleRequest(ref.cond, self._to_ids(ref.text + plan.text), duration, noise)
            )
        with torch.inference_mode():
            mels = self.sampler.sample_batch(requests)
            waves = [
                self.vocoder.decode(mel[:, ref.frames :, :].float().permute(0, 2, 1))
                for (ref, _, _), mel in zip(pieces, mels, strict=True)
            ]
        audios = []
        for wave in waves:
            audio = wave.squeeze(0).float().cpu().numpy().astype(np.float32, copy=False)
            self.chunks_generated += 1
            audios.append(_fade(audio))
        return audios

    def close(self) -> None:
        """Drop the model, vocoder and cached tensors (freeing GPU memory)."""
        self._cache.clear()
        on_cuda = self.device is not None and self.device.type == "cuda"
        self.cfm = self.vocoder = self.sampler = None
        self._to_ids = None
        if on_cuda:
            torch.cuda.empty_cache()


def _fade(audio: Audio) -> Audio:
    """Short raised-cosine fades so chunk edges never click."""
    n = min(len(audio) // 2, round(FADE_S * SAMPLE_RATE))
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float32))).astype(np.float32)
        audio = audio.copy()
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def _dtype_name(dtype: torch.dtype) -> str:
    return "fp16" if dtype == torch.float16 else "fp32"


def _text_to_ids(vocab: dict[str, int]) -> Callable[[str], torch.Tensor]:
    """f5-tts's own text front end: pinyin/char conversion, then ``list_str_to_idx``.

    The ids stay in host memory (the samplers read their length there without a device
    sync, and copy them once), and the last few texts are remembered: planning a piece
    counts its tokens, and rendering it needs the same ids again.
    """
    from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

    @functools.lru_cache(maxsize=64)
    def to_ids(text: str) -> torch.Tensor:
        ids: torch.Tensor = list_str_to_idx(convert_char_to_pinyin([text]), vocab)
        return ids

    return to_ids


def _load_cfm(
    backbone: str,
    arch: dict[str, Any],
    files: WeightFiles,
    device: torch.device,
    dtype: torch.dtype,
) -> Any:
    """Build the CFM model as f5-tts's ``load_model`` does, then ``load_checkpoint`` it.

    ``load_model`` itself always picks fp16 on CUDA; building the same objects here lets
    ``engine.f5.precision`` choose the dtype before the weights are cast.
    """
    from f5_tts.model.cfm import CFM
    from f5_tts.model.utils import get_tokenizer

    with warnings.catch_warnings():
        # pydub warns about FFmpeg at import; the engine never uses pydub or FFmpeg.
        warnings.filterwarnings("ignore", message=".*ffmpeg", category=RuntimeWarning)
        from f5_tts.infer import utils_infer

    try:
        vocab_char_map, vocab_size = get_tokenizer(str(files.vocab), "custom")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError(f"engine.f5.vocab: cannot read {files.vocab}: {exc}") from None
    if vocab_size == 0:
        raise EngineError(f"engine.f5.vocab: {files.vocab} is empty")
    try:
        module = importlib.import_module(_BACKBONES[backbone])
        transformer = getattr(module, backbone)(
            **arch, text_num_embeds=vocab_size, mel_dim=utils_infer.n_mel_channels
        )
    except TypeError as exc:
        raise EngineError(f"engine.f5.model: bad {backbone} arguments: {exc}") from None
    cfm = CFM(
        transformer=transformer,
        mel_spec_kwargs={
            "n_fft": utils_infer.n_fft,
            "hop_length": utils_infer.hop_length,
            "win_length": utils_infer.win_length,
            "n_mel_channels": utils_infer.n_mel_channels,
            "target_sample_rate": utils_infer.target_sample_rate,
            "mel_spec_type": "vocos",
        },
        odeint_kwargs={"method": utils_infer.ode_method},
        vocab_char_map=vocab_char_map,
    ).to(device)
    try:
        cfm = utils_infer.load_checkpoint(
            cfm, str(files.checkpoint), str(device), dtype=dtype, use_ema=True
        )
    except Exception as exc:  # safetensors, torch.load and load_state_dict raise many types
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise EngineError(
            f"engine.f5.checkpoint: cannot load {files.checkpoint}: {reason} "
            "(does engine.f5.model describe this checkpoint, and engine.f5.vocab belong to it?)"
        ) from None
    return cfm.eval()


def _load_vocoder(folder: Path, device: torch.device) -> Any:
    """Load Vocos with f5-tts's ``load_vocoder`` from a local folder.

    The vocoder stays fp32: fp16 Vocos runs complex-half STFT code that torch marks
    experimental.
    """
    from f5_tts.infer.utils_infer import load_vocoder

    try:
        vocoder = load_vocoder(
            vocoder_name="vocos", is_local=True, local_path=str(folder), device=str(device)
        )
    except Exception as exc:  # yaml, torch.load and load_state_dict raise many types
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise EngineError(f"engine.f5.vocoder: cannot load {folder}: {reason}") from None
    return vocoder.float().eval()
