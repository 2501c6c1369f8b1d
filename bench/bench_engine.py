"""Engine speed benchmark: stock f5-tts ``infer_batch_process`` vs this project's fast path.

Runs on a CUDA machine (the numbers that matter) and on the CPU with ``--device cpu --tiny``
(a smoke run of the same code). Prints ONE table: per message, stock vs fast (median, min and
max of several runs after warm-up), the ratio, first-chunk latency (long message, streamed),
the fidelity error (fast vs stock with identical noise), the card and the versions.

Weights: the real F5TTS_v1_Base checkpoint + Vocos when ``--ckpt``/``--vocoder-dir`` point at
them, else random weights of the real architectures (timing does not depend on the values;
f5's zero-initialised layers are re-initialised so the fidelity check compares real signals).

f5-tts is imported WITHOUT ``f5_tts.model.__init__`` (which imports the trainer: wandb,
accelerate, datasets, ...): ``light_f5_import()`` registers a bare ``f5_tts.model`` package
whose submodules (cfm, backbones.dit, modules, utils) load normally. Same code, fewer imports.

The table has three rows' worth of timings per message: stock, ``FastSampler`` alone (the
whole message in one piece, reference mel cached) and the bot's real path, ``F5Engine`` loading
this run's weights from disk in f5's formats (checkpoint, vocab, Vocos folder, a voice folder
with the reference) and ``synthesize`` with its own text planning (first chunk and whole).
On CUDA it also profiles one step's graph replay (torch.profiler: kernel time by kind) and one
whole request, times each masked-attention kernel alone, and compares the vocoder in fp32 with
an fp16 backbone.

On the GPU machine (no internet): the wheels in ``.whl/`` (f5-tts and its missing
dependencies) and ``.devf5/whl/`` (pydantic for ``bot.config``) travel with the call:
``pip install --no-index --no-deps --target /tmp/site .whl/*.whl .devf5/whl/pydantic*.whl
.devf5/whl/annotated_types*.whl .devf5/whl/typing_inspection*.whl; PYTHONPATH=/tmp/site``.

Usage (GPU):  python bench/bench_engine.py --runs 9 --out bench.json --profile-dir prof
Usage (CPU):  python bench/bench_engine.py --device cpu --tiny --runs 2
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("bench")

MESSAGES = {
    "short": "lol that was insane, do it again!",
    "typical": (
        "ok chat, that boss fight was actually wild. who wants to see me try the no-damage "
        "run next stream?!"
    ),
    "long": (
        "alright everyone, quick update before we keep going: the giveaway winner gets picked "
        "at the end of the stream. also huge thanks for the raid, you guys are amazing and i "
        "appreciate all of you."
    ),
}
EXPECTED_LEN = {"short": 33, "typical": 99, "long": 191}
REF_TEXT = "Some call me nature, others call me mother nature."
REF_SECONDS = 5.0
SR = 24_000
HOP = 256
TARGET_RMS = 0.1

TINY_DIT = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "ff_mult": 2,
    "text_dim": 32,
    "text_mask_padding": True,
    "conv_layers": 1,
    "pe_attn_head": None,
}


# ---------------------------------------------------------------------------- imports


def light_f5_import() -> types.ModuleType:
    """Import f5-tts's model code without its trainer (see module docstring)."""
    if "f5_tts.model" not in sys.modules:
        spec = importlib.util.find_spec("f5_tts")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("f5-tts is not installed")
        root = Path(next(iter(spec.submodule_search_locations)))
        pkg = types.ModuleType("f5_tts.model")
        pkg.__path__ = [str(root / "model")]
        sys.modules["f5_tts.model"] = pkg
        from f5_tts.model.backbones.dit import DiT
        from f5_tts.model.cfm import CFM

        pkg.CFM = CFM  # type: ignore[attr-defined]
        pkg.DiT = DiT  # type: ignore[attr-defined]
    return sys.modules["f5_tts.model"]


def f5_root() -> Path:
    spec = importlib.util.find_spec("f5_tts")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------- models


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Re-initialise every layer with torch defaults (undoes f5's zero-init of AdaLN/out)."""
    torch.manual_seed(seed)
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()  # type: ignore[operator]


def build_cfm(
    args: argparse.Namespace, device: str, dtype: torch.dtype
) -> tuple[Any, dict[str, Any]]:
    light_f5_import()
    import yaml
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM
    from f5_tts.model.utils import get_tokenizer

    vocab_file = args.vocab or str(f5_root() / "infer/examples/vocab.txt")
    vocab_map, vocab_size = get_tokenizer(vocab_file, "custom")
    if args.tiny:
        arch = dict(TINY_DIT)
    else:
        cfg = yaml.safe_load((f5_root() / "configs/F5TTS_v1_Base.yaml").read_text())
        arch = dict(cfg["model"]["arch"])
    mel_kwargs = dict(
        n_fft=1024,
        hop_length=HOP,
        win_length=1024,
        n_mel_channels=100,
        target_sample_rate=SR,
        mel_spec_type="vocos",
    )
    with torch.device(device):
        cfm = CFM(
            transformer=DiT(**arch, text_num_embeds=vocab_size, mel_dim=100),
            mel_spec_kwargs=mel_kwargs,
            odeint_kwargs=dict(method="euler"),
            vocab_char_map=vocab_map,
        )
    if args.ckpt:
        from f5_tts.infer.utils_infer import load_checkpoint

        cfm = load_checkpoint(cfm, args.ckpt, device, dtype=dtype, use_ema=True)
        weights = f"checkpoint {Path(args.ckpt).name}"
    else:
        randomize_(cfm.transformer, seed=1234)
        weights = "random (tiny)" if args.tiny else "random (F5TTS_v1_Base arch)"
    cfm = cfm.to(dtype).to(device).eval()
    n_params = sum(p.numel() for p in cfm.transformer.parameters())
    return cfm, {"weights": weights, "arch": arch, "params_M": round(n_params / 1e6, 1)}


def build_vocoder(args: argparse.Namespace, device: str) -> Any:
    """Vocos 24 kHz (fp32, as f5-tts runs it): real weights from a folder, else random."""
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    if args.vocoder_dir:
        light_f5_import()
        from f5_tts.infer.utils_infer import load_vocoder

        return load_vocoder("vocos", is_local=True, local_path=args.vocoder_dir, device=device)
    dim, inter, layers = (32, 64, 1) if args.tiny else (512, 1536, 8)
    with torch.device(device):
        voc = Vocos(
            feature_extractor=MelSpectrogramFeatures(
                sample_rate=SR, n_fft=1024, hop_length=HOP, n_mels=100, padding="center"
            ),
            backbone=VocosBackbone(
                input_channels=100, dim=dim, intermediate_dim=inter, num_layers=layers
            ),
            head=ISTFTHead(dim=dim, n_fft=1024, hop_length=HOP, padding="center"),
        )
    return voc.eval().to(device)


def load_reference(device: str) -> torch.Tensor:
    """The reference clip f5-tts ships with its transcript, trimmed to 5.0 s, mono fp32."""
    import soundfile as sf

    data, sr = sf.read(str(f5_root() / "infer/examples/basic/basic_ref_en.wav"), dtype="float32")
    if data.ndim > 1:
        data = data.mean(axis=1)
    assert sr == SR, sr
    data = data[: int(REF_SECONDS * SR)]
    return torch.from_numpy(np.ascontiguousarray(data))[None]


# ---------------------------------------------------------------------------- paths


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class FastPath:
    """What this project's F5 engine does per request, with the reference features cached."""

    def __init__(self, cfm: Any, vocoder: Any, sampler: Any, ref_audio: torch.Tensor, device: str):
        from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

        self._pinyin = convert_char_to_pinyin
        self._to_idx = list_str_to_idx
        self.cfm, self.vocoder, self.sampler, self.device = cfm, vocoder, sampler, device
        audio = ref_audio
        rms = torch.sqrt(torch.mean(torch.square(audio)))
        self.rms = float(rms)
        if rms < TARGET_RMS:
            audio = audio * TARGET_RMS / rms
        audio = audio.to(device)
        with torch.inference_mode():
            mel = cfm.mel_spec(audio).permute(0, 2, 1)  # what CFM.sample does with a waveform
        self.cond = mel.to(next(cfm.parameters()).dtype).contiguous()
        # stock cuts the output at audio_len // hop (468 for 5 s); the mel has one frame more
        self.ref_frames = audio.shape[-1] // HOP
        # infer_batch_process appends a space to a transcript ending in a 1-byte character
        # BEFORE measuring its length for the duration rule
        self.ref_text = REF_TEXT + (" " if len(REF_TEXT[-1].encode("utf-8")) == 1 else "")
        self.timings: dict[str, float] = {}

    def duration(self, text: str) -> int:
        """infer_batch_process's duration rule (same work as stock)."""
        ref_len = len(self.ref_text.encode("utf-8"))
        gen_len = len(text.encode("utf-8"))
        speed = 0.3 if gen_len < 10 else 1.0
        return self.ref_frames + int(self.ref_frames / ref_len * gen_len / speed)

    def text_ids(self, text: str) -> torch.Tensor:
        final = self._pinyin([self.ref_text + text])
        ids: torch.Tensor = self._to_idx(final, self.cfm.vocab_char_map)
        return ids.to(self.device)

    def mel(self, text: str, noise: torch.Tensor | None = None) -> torch.Tensor:
        mel: torch.Tensor = self.sampler.sample(
            self.cond, self.text_ids(text), self.duration(text), noise
        )
        return mel

    def __call__(self, text: str) -> np.ndarray:
        t0 = time.perf_counter()
        with torch.inference_mode():
            mel = self.mel(text)
            sync(self.device)
            t1 = time.perf_counter()
            gen = mel[:, self.ref_frames :].float().permute(0, 2, 1)
            wave = self.vocoder.decode(gen)
            if self.rms < TARGET_RMS:
                wave = wave * self.rms / TARGET_RMS
            out = wave.squeeze().cpu().numpy()
        t2 = time.perf_counter()
        self.timings = {"sample_ms": (t1 - t0) * 1e3, "vocoder_ms": (t2 - t1) * 1e3}
        return np.asarray(out)


class StockPath:
    def __init__(self, cfm: Any, vocoder: Any, ref_audio: torch.Tensor, nfe: int, device: str):
        light_f5_import()
        from f5_tts.infer.utils_infer import infer_batch_process

        self.fn = infer_batch_process
        self.cfm, self.vocoder, self.ref_audio, self.nfe, self.device = (
            cfm,
            vocoder,
            ref_audio,
            nfe,
            device,
        )

    def __call__(self, text: str) -> np.ndarray:
        gen = self.fn(
            (self.ref_audio, SR),
            REF_TEXT,
            [text],
            self.cfm,
            self.vocoder,
            nfe_step=self.nfe,
            device=self.device,
            progress=None,
        )
        wave, _sr, _spec = next(gen)
        return wave  # type: ignore[no-any-return]


def time_runs(fn: Any, text: str, runs: int, warmup: int, device: str) -> dict[str, Any]:
    for _ in range(warmup):
        fn(text)
    times = []
    out = None
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        out = fn(text)
        times.append((time.perf_counter() - t0) * 1e3)
    assert out is not None
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs_ms": [round(t, 2) for t in times],
        "audio_s": len(out) / SR,
        "finite": bool(np.isfinite(out).all()),
    }


def profile_steps(sampler: Any, fast: FastPath, text: str, device: str) -> dict[str, float]:
    """Per-step cost (one graph replay) and per-request text-embedding cost, for the notes."""
    if not device.startswith("cuda"):
        return {}
    ids, frames = fast.text_ids(text), fast.duration(text)
    dit = fast.cfm.transformer
    res: dict[str, float] = {"frames": frames}
    with torch.inference_mode():
        sampler.sample(fast.cond, ids, frames)
        bucket = sampler.store.single(frames)
        res["bucket"] = bucket.frames
        if bucket.graph is not None:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(20):
                bucket.graph.replay()
            sync(device)
            res["step_ms"] = (time.perf_counter() - t0) / 20 * 1e3
        sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            dit.text_embed(ids, seq_len=frames, drop_text=False)
            dit.text_embed(ids, seq_len=frames, drop_text=True)
        sync(device)
        res["text_embed_ms"] = (time.perf_counter() - t0) / 10 * 1e3
    return res


def run_variant(
    variant: str,
    cfm: Any,
    vocoder: Any,
    ref_audio: torch.Tensor,
    texts: dict[str, str],
    rows: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    fast: FastPath,
    info: dict[str, Any],
) -> None:
    """Time one configuration of the fast sampler (see ``configs``) in this process."""
    from engine.f5fast import FastSampler

    configs: dict[str, dict[str, Any]] = {
        "flash": {"attention": "flash"},  # compile + graphs, FlashAttention-2 varlen
        "cudnn": {"attention": "cudnn"},  # compile + graphs, cuDNN attention with key bias
        # the committed code of run 4: FlashAttention, hidden states in the convolution's
        # channels-first strides through all blocks (before the one contiguous copy per step)
        "run4": {"attention": "flash", "_contiguous_hidden": False},
        "strided": {"_contiguous_hidden": False},  # auto attention, channels-first blocks
        "graph": {"compile": False},  # CUDA graphs + auto attention, no compile
        "mask": {"attention": "sdpa"},  # compile + graphs, SDPA key mask
        "eager": {"compile": False, "cuda_graphs": False, "bucket_frames": 0},  # unpadded
        "autotune": {"compile_mode": "max-autotune-no-cudagraphs"},  # GEMM autotuning
    }
    config = dict(configs[variant])
    # "_name": a switch that exists only to measure old layouts, set as attribute ``name``
    private = {k[1:]: config.pop(k) for k in list(config) if k.startswith("_")}
    sampler = FastSampler(
        cfm,
        nfe_step=args.nfe,
        cfg_strength=2.0,
        sway_sampling_coef=-1.0,
        max_frames=args.max_frames,
        **config,
    )
    for key, value in private.items():  # switches that exist only to measure old layouts
        assert hasattr(sampler, key), key
        setattr(sampler, key, value)
    sampler.warmup(frames=[fast.duration(t) for t in texts.values()])
    info[variant] = {"attention": sampler.attention, "compile": sampler.use_compile}
    path = FastPath(cfm, vocoder, sampler, ref_audio, args.device)
    for name, text in texts.items():
        rows[name][variant] = time_runs(path, text, args.runs, 1, args.device)
        log.info("%s %s: %s", variant, name, rows[name][variant])


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def fidelity(
    fast: FastPath, cfm: Any, text: str, nfe: int, seed: int, ref32: Any
) -> dict[str, Any]:
    """Fast vs stock ``CFM.sample`` mel with identical inputs, time steps and initial noise."""
    ids = fast.text_ids(text)
    dur = fast.duration(text)
    kw = dict(steps=nfe, cfg_strength=2.0, sway_sampling_coef=-1.0)
    with torch.inference_mode():
        torch.manual_seed(seed)
        stock, _ = cfm.sample(cond=fast.cond, text=ids, duration=dur, **kw)
        torch.manual_seed(seed)
        noise = torch.randn(stock.shape[1], 100, device=fast.device, dtype=fast.cond.dtype)
        mel = fast.sampler.sample(fast.cond, ids, dur, noise=noise)
        torch.manual_seed(seed)
        again, _ = cfm.sample(cond=fast.cond, text=ids, duration=dur, **kw)
    r = fast.cond.shape[1]
    res = {
        "frames": int(stock.shape[1]),
        "rel_l2_gen": rel_l2(mel[:, r:], stock[:, r:]),
        "rel_l2_full": rel_l2(mel, stock),
        "stock_rerun_rel_l2": rel_l2(again[:, r:], stock[:, r:]),
        "finite": bool(torch.isfinite(mel).all() and torch.isfinite(stock).all()),
        "ref_part_equal": bool(torch.equal(mel[:, :r], stock[:, :r])),
    }
    if ref32 is not None:  # context: how far each fp16 path is from an fp32 run
        cfm32, cond32 = ref32
        with torch.inference_mode():
            torch.manual_seed(seed)
            base, _ = cfm32.sample(cond=cond32, text=ids, duration=dur, **kw)
        res["stock16_vs_fp32"] = rel_l2(stock[:, r:], base[:, r:])
        res["fast16_vs_fp32"] = rel_l2(mel[:, r:], base[:, r:])
    return res


# ---------------------------------------------------------------------------- the engine


def vocos_config(args: argparse.Namespace) -> dict[str, Any]:
    """``config.yaml`` of the vocoder ``build_vocoder`` makes (Vocos.from_hparams format)."""
    dim, inter, layers = (32, 64, 1) if args.tiny else (512, 1536, 8)
    return {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {
                "sample_rate": SR,
                "n_fft": 1024,
                "hop_length": HOP,
                "n_mels": 100,
                "padding": "center",
            },
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {
                "input_channels": 100,
                "dim": dim,
                "intermediate_dim": inter,
                "num_layers": layers,
            },
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": dim, "n_fft": 1024, "hop_length": HOP, "padding": "center"},
        },
    }


def write_engine_files(
    cfm: Any, vocoder: Any, ref_audio: torch.Tensor, args: argparse.Namespace, folder: Path
) -> tuple[dict[str, Any], Path]:
    """Save this run's model, vocoder and reference as the F5 engine reads them from disk.

    Same formats as the released weights (and ``tests/support/f5.py``): a safetensors file
    with "ema_model." keys, f5's vocab.txt, a Vocos folder (config.yaml + pytorch_model.bin),
    and a voice folder holding the 5 s reference clip with its transcript.

    Returns:
        The ``engine.f5`` settings and the voices folder.
    """
    import soundfile as sf
    import yaml
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {
        f"ema_model.{k}": v.detach().to("cpu").contiguous() for k, v in cfm.state_dict().items()
    }
    checkpoint = folder / "model_bench.safetensors"
    save_file(state, str(checkpoint))
    vocoder_dir = folder / "vocos"
    vocoder_dir.mkdir(exist_ok=True)
    (vocoder_dir / "config.yaml").write_text(yaml.safe_dump(vocos_config(args)), encoding="utf-8")
    voc_state = {k: v.detach().to("cpu") for k, v in vocoder.state_dict().items()}
    torch.save(voc_state, vocoder_dir / "pytorch_model.bin")
    voices = folder / "voices"
    voice = voices / "bench"
    voice.mkdir(parents=True, exist_ok=True)
    sf.write(str(voice / "reference.wav"), ref_audio[0].numpy(), SR, subtype="FLOAT")
    (voice / "reference.txt").write_text(REF_TEXT + "\n", encoding="utf-8")
    settings = {
        "model": dict(TINY_DIT) if args.tiny else "F5TTS_v1_Base",
        "checkpoint": str(checkpoint),
        "vocab": args.vocab or str(f5_root() / "infer/examples/vocab.txt"),
        "vocoder": str(vocoder_dir),
        "nfe_step": args.nfe,
    }
    return settings, voices


def load_engine(
    settings: dict[str, Any], voices: Path, device: str, cache_dir: Path
) -> tuple[Any, dict[str, Any]]:
    """``engine.f5.F5Engine`` as the bot starts it (fast sampler on, warm-up included)."""
    from engine.config import F5Config, VoicesConfig
    from engine.f5 import F5Engine

    engine = F5Engine(
        F5Config(**settings, fast=True),
        VoicesConfig(dir=voices, default="bench"),
        device="cuda" if device.startswith("cuda") else "cpu",
        compile_cache=cache_dir,
    )
    t0 = time.perf_counter()
    engine.load(lambda state, msg: log.info("engine %s: %s", state.value, msg))
    sync(device)
    ref = engine.reference("bench")
    info = {
        "load_s": time.perf_counter() - t0,
        "sampler": type(engine.sampler).__name__,
        "attention": getattr(engine.sampler, "attention", None),
        "dtype": str(engine.dtype),
        "vocoder_dtype": str(next(engine.vocoder.parameters()).dtype),
        "ref_frames": ref.frames,
        "ref_seconds": ref.seconds,
    }
    return engine, info


def time_engine(engine: Any, text: str, runs: int, warmup: int, device: str) -> dict[str, Any]:
    """``F5Engine.synthesize`` from the text to each chunk's samples in host memory.

    First chunk: when the player could start. Whole: the last chunk is ready.
    """

    def once() -> tuple[float, float, list[np.ndarray]]:
        t0 = time.perf_counter()
        chunks = engine.synthesize(text, "bench", lambda: False)
        first = next(chunks)
        t1 = time.perf_counter()
        rest = list(chunks)
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t0) * 1e3, [first, *rest]

    for _ in range(warmup):
        once()
    firsts, wholes = [], []
    out: list[np.ndarray] = []
    for _ in range(runs):
        sync(device)
        first_ms, whole_ms, out = once()
        firsts.append(first_ms)
        wholes.append(whole_ms)
    plan = engine.plan(text, "bench")

    def summary(times: list[float]) -> dict[str, Any]:
        return {
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "runs_ms": [round(t, 2) for t in times],
        }

    return {
        "first": summary(firsts),
        "whole": summary(wholes),
        "pieces": [p.text for p in plan],
        "frames": [p.frames for p in plan],
        "chunk_audio_s": [len(c) / SR for c in out],
        "audio_s": sum(len(c) for c in out) / SR,
        "finite": bool(all(np.isfinite(c).all() for c in out)),
    }


# ---------------------------------------------------------------------------- where time goes


def _on_gpu(event: Any) -> bool:
    """A profiler event that ran on the GPU (a kernel, memcpy or memset)."""
    return str(event.device_type).endswith("CUDA")


def _kernel_kind(name: str) -> str:
    low = name.lower()
    if "flash" in low or "fmha" in low or "sdpa" in low or "attention" in low:
        return "attention"
    if any(k in low for k in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "gemv")):
        return "gemm"
    if "conv" in low or "winograd" in low:
        return "conv"
    if low.startswith("triton"):
        return "fused (inductor)"
    return "other"


def profile_replay(sampler: Any, fast: FastPath, text: str, out_dir: Path | None) -> dict[str, Any]:
    """torch.profiler over graph replays of one step: kernel time by kind, busy vs wall.

    Also one full request (text to waveform) so the per-request work outside the 16 replays
    shows on the GPU timeline; the traces go to ``out_dir`` when given.
    """
    from torch.profiler import ProfilerActivity, profile

    ids, frames = fast.text_ids(text), fast.duration(text)
    res: dict[str, Any] = {}
    with torch.inference_mode():
        sampler.sample(fast.cond, ids, frames)
        bucket = sampler.store.single(frames)
        assert bucket.graph is not None
        sync("cuda")
        reps = 5
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                bucket.graph.replay()
            sync("cuda")
    kernels = [e for e in prof.events() if _on_gpu(e)]
    res["kernels_per_step"] = len(kernels) / reps
    by_kind: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        us = e.time_range.elapsed_us()
        by_kind[_kernel_kind(e.name)] = by_kind.get(_kernel_kind(e.name), 0.0) + us
        by_name.setdefault(e.name, []).append(us)
    res["kernel_ms_per_step"] = {k: round(v / reps / 1e3, 4) for k, v in by_kind.items()}
    res["kernel_sum_ms_per_step"] = round(sum(by_kind.values()) / reps / 1e3, 4)
    if kernels:
        span = max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)
        res["gpu_span_ms_per_step"] = round(span / reps / 1e3, 4)
    top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:40]
    res["top_kernels"] = [
        {
            "name": name[:160],
            "kind": _kernel_kind(name),
            "ms_per_step": round(sum(v) / reps / 1e3, 4),
            "calls_per_step": len(v) / reps,
        }
        for name, v in top
    ]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=60)
        (out_dir / "profile_replay.txt").write_text(table, encoding="utf-8")
    # one whole request: GPU busy time vs wall time, and the idle gaps
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        sync("cuda")
        t0 = time.perf_counter()
        fast(text)
        wall = (time.perf_counter() - t0) * 1e3
    kernels = sorted(
        (e for e in prof.events() if _on_gpu(e)),
        key=lambda e: e.time_range.start,
    )
    if kernels:
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
        span = (kernels[-1].time_range.end - kernels[0].time_range.start) / 1e3
        gaps = [
            (b.time_range.start - a.time_range.end) / 1e3 for a, b in itertools.pairwise(kernels)
        ]
        res["request"] = {
            "wall_ms_profiled": round(wall, 3),
            "gpu_busy_ms": round(busy, 3),
            "gpu_span_ms": round(span, 3),
            "kernels": len(kernels),
            "gaps_over_50us_ms": round(sum(g for g in gaps if g > 0.05), 3),
            "largest_gaps_ms": sorted((round(g, 3) for g in gaps), reverse=True)[:8],
        }
    if out_dir is not None:
        prof.export_chrome_trace(str(out_dir / "trace_request.json"))
    return res


def attention_options(sampler: Any) -> dict[str, float | None]:
    """Each key-masking attention kernel alone at the chat-length shape, ms per call."""
    from engine.f5fast import attention as attention_choice

    attn = sampler.cfm.transformer.transformer_blocks[0].attn
    with torch.inference_mode():
        return {
            name: attention_choice.check(
                name,
                device=sampler.device,
                dtype=sampler.dtype,
                heads=int(attn.heads),
                head_dim=int(attn.inner_dim // attn.heads),
                max_frames=sampler.max_frames,
                timed=True,
            )
            for name in ("flash", "cudnn", "sdpa")
        }


def vocoder_precision(vocoder: Any, fast: FastPath, text: str, runs: int) -> dict[str, Any]:
    """Vocos as f5 runs it (fp32) vs its backbone in fp16 autocast (ISTFT head in fp32).

    For the notes only: the engine keeps fp32 unless the wave stays within 1e-2 and the
    time saved matters.
    """
    with torch.inference_mode():
        mel = fast.mel(text)
        gen = mel[:, fast.ref_frames :].float().permute(0, 2, 1).contiguous()

        def fp32() -> Any:
            return vocoder.decode(gen)

        def fp16() -> Any:
            with torch.autocast("cuda", dtype=torch.float16):
                x = vocoder.backbone(gen)
            return vocoder.head(x.float())

        res: dict[str, Any] = {}
        waves = {}
        for name, fn in (("fp32", fp32), ("fp16_backbone", fp16)):
            for _ in range(3):
                fn().cpu()
            times = []
            for _ in range(runs):
                sync("cuda")
                t0 = time.perf_counter()
                waves[name] = fn().squeeze().cpu()
                times.append((time.perf_counter() - t0) * 1e3)
            res[f"{name}_ms"] = statistics.median(times)
        res["rel_l2_wave"] = rel_l2(waves["fp16_backbone"], waves["fp32"])
    return res


# ---------------------------------------------------------------------------- start-up


def startup_child(args: argparse.Namespace) -> None:
    """Process start -> ready (model built, sampler warm). Prints STARTUP json."""
    from engine.f5fast import FastSampler

    t_import = time.perf_counter()
    device = args.device
    dtype = torch.float16 if device.startswith("cuda") and not args.fp32 else torch.float32
    cfm, _ = build_cfm(args, device, dtype)
    build_vocoder(args, device)
    sync(device)
    t_model = time.perf_counter()
    sampler = FastSampler(
        cfm,
        nfe_step=args.nfe,
        cfg_strength=2.0,
        sway_sampling_coef=-1.0,
        compile=None if not args.no_compile else False,
        compile_mode=args.compile_mode,
        max_frames=args.max_frames,
    )
    sampler.warmup()
    sync(device)
    t_ready = time.perf_counter()
    print(
        "STARTUP "
        + json.dumps(
            {
                "model_s": t_model - t_import,
                "warmup_s": t_ready - t_model,
                "after_imports_s": t_ready - t_import,
            }
        ),
        flush=True,
    )


def measure_startup(args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--startup-child",
        "--device",
        args.device,
    ]
    cmd += ["--nfe", str(args.nfe), "--compile-mode", args.compile_mode]
    cmd += ["--max-frames", str(args.max_frames)]
    for flag in ("tiny", "no_compile", "fp32"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    for flag in ("ckpt", "vocab", "vocoder_dir"):
        if getattr(args, flag):
            cmd += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir))
    result: dict[str, Any] = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        total = time.perf_counter() - t0
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STARTUP ")), None)
        if proc.returncode != 0 or line is None:
            result[label] = {"error": (proc.stderr or proc.stdout)[-2000:]}
            continue
        result[label] = dict(json.loads(line[len("STARTUP ") :]), total_s=total)
    return result


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny DiT + Vocos (CPU smoke run)")
    ap.add_argument("--ckpt", help="F5TTS_v1_Base model_*.safetensors (else random weights)")
    ap.add_argument("--vocab", help="vocab.txt (default: the one f5-tts ships)")
    ap.add_argument("--vocoder-dir", help="folder with Vocos config.yaml + pytorch_model.bin")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="fp32 weights on CUDA")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--max-frames", type=int, default=3072)
    ap.add_argument(
        "--variants",
        default="run4,flash,cudnn",
        help="extra fast-sampler configurations: run4,strided,flash,cudnn,graph,mask,eager,"
        "autotune,none",
    )
    ap.add_argument("--no-stock", action="store_true")
    ap.add_argument("--no-engine", action="store_true", help="skip the F5Engine rows")
    ap.add_argument("--no-fp32-ref", action="store_true")
    ap.add_argument("--no-profile", action="store_true", help="skip torch.profiler (CUDA)")
    ap.add_argument("--startup", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--cache-dir", default=None, help="inductor cache for the start-up runs")
    ap.add_argument("--out", help="write all numbers as JSON here")
    ap.add_argument("--profile-dir", help="profiler table and request trace go here")
    ap.add_argument("--deadline-s", type=float, default=1e9, help="skip extras after this")
    ap.add_argument("--startup-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    started = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.startup_child:
        startup_child(args)
        return

    def late(what: str) -> bool:
        if time.perf_counter() - started > args.deadline_s:
            results.setdefault("errors", []).append(f"{what}: skipped (deadline)")
            return True
        return False

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2, default=str))

    import torch._dynamo.config as dynamo_config

    from engine.f5fast import FastSampler
    from engine.text import split_first_chunk

    # main sampler, the engine's and each variant compile the block again in this process
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, knob):
            setattr(dynamo_config, knob, 64)

    device = args.device
    on_cuda = device.startswith("cuda")
    dtype = torch.float16 if on_cuda and not args.fp32 else torch.float32
    for name, text in MESSAGES.items():
        assert len(text) == EXPECTED_LEN[name], (name, len(text))
    results: dict[str, Any] = {"messages": MESSAGES}

    # start-up first: the cold child fills the inductor cache that this process then reuses
    cache_dir = Path(args.cache_dir or (Path(tempfile.gettempdir()) / "ishowtts-bench-inductor"))
    want_startup = args.startup == "yes" or (args.startup == "auto" and on_cuda)
    if want_startup:
        if cache_dir.exists() and args.cache_dir is None:
            import shutil

            shutil.rmtree(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("measuring start-up (cold, then warm) in child processes")
        results["startup"] = measure_startup(args, cache_dir)
        log.info("start-up: %s", results["startup"])
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))

    t0 = time.perf_counter()
    cfm, model_info = build_cfm(args, device, dtype)
    vocoder = build_vocoder(args, device)
    ref_audio = load_reference(device)
    log.info("models ready in %.1f s: %s", time.perf_counter() - t0, model_info)

    card = torch.cuda.get_device_name() if on_cuda else "cpu"
    import importlib.metadata as md

    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if on_cuda else None,  # type: ignore[no-untyped-call]
        "f5-tts": md.version("f5-tts"),
        "python": sys.version.split()[0],
    }
    results.update(card=card, versions=versions, model=model_info, nfe=args.nfe, dtype=str(dtype))

    compile_default = None if not args.no_compile else False
    t0 = time.perf_counter()
    attempts: list[dict[str, Any]] = [{"compile": compile_default}]
    attempts += [{"compile": False}, {"compile": False, "cuda_graphs": False}]
    main_sampler = None
    for attempt in attempts:  # a failure on the GPU still leaves numbers to look at
        try:
            main_sampler = FastSampler(
                cfm,
                nfe_step=args.nfe,
                cfg_strength=2.0,
                sway_sampling_coef=-1.0,
                compile_mode=args.compile_mode,
                max_frames=args.max_frames,
                **attempt,
            )
            main_sampler.warmup()
            sync(device)
            break
        except Exception as exc:
            log.exception("fast sampler %s failed", attempt)
            results.setdefault("errors", []).append(f"{attempt}: {exc!r}"[:500])
    assert main_sampler is not None
    results["fast_config"] = {
        "compile": main_sampler.use_compile,
        "compile_mode": args.compile_mode,
        "cuda_graphs": main_sampler.use_graphs,
        "attention": main_sampler.attention,
        "bucket_frames": main_sampler.bucket_frames,
        "max_frames": main_sampler.max_frames,
        "stats": main_sampler.stats,
    }
    try:
        from torch._dynamo.utils import counters

        results["dynamo_unique_graphs"] = counters["stats"]["unique_graphs"]
    except Exception:
        pass
    results["warmup_in_process_s"] = time.perf_counter() - t0
    fast = FastPath(cfm, vocoder, main_sampler, ref_audio, device)
    log.info(
        "fast sampler ready in %.1f s: %s", results["warmup_in_process_s"], results["fast_config"]
    )

    texts = dict(MESSAGES)
    pieces = split_first_chunk(MESSAGES["long"])
    texts_all = dict(texts, long_first=pieces[0])
    if len(pieces) > 1:
        texts_all["long_rest"] = pieces[1]
    results["long_pieces"] = pieces

    # fast path (FastSampler alone, the whole message in one piece)
    rows: dict[str, dict[str, Any]] = {}
    results["rows"] = rows
    for name, text in texts_all.items():
        rows[name] = {"fast": time_runs(fast, text, args.runs, args.warmup, device)}
        rows[name]["fast"]["breakdown_ms"] = {k: round(v, 2) for k, v in fast.timings.items()}
        rows[name]["frames"] = fast.duration(text)
        log.info("fast %s: %s", name, rows[name]["fast"])
    save()

    if on_cuda and main_sampler.use_graphs:
        try:
            results["profile_typical"] = profile_steps(
                main_sampler, fast, MESSAGES["typical"], device
            )
            log.info("per step: %s", results["profile_typical"])
            if not args.no_profile and not late("profiler"):
                out_dir = Path(args.profile_dir) if args.profile_dir else None
                results["profiler"] = profile_replay(
                    main_sampler, fast, MESSAGES["typical"], out_dir
                )
                log.info(
                    "profiler: %s",
                    {k: v for k, v in results["profiler"].items() if k != "top_kernels"},
                )
            results["attention_options_ms"] = attention_options(main_sampler)
            log.info("attention per call: %s", results["attention_options_ms"])
            results["vocoder_precision"] = vocoder_precision(
                vocoder, fast, MESSAGES["typical"], args.runs
            )
            log.info("vocoder: %s", results["vocoder_precision"])
        except Exception as exc:
            log.exception("profile failed")
            results.setdefault("errors", []).append(f"profile: {exc!r}"[:500])
        save()

    # the bot's own path: F5Engine loading the weights from disk, fast sampler, vocoder
    if not args.no_engine and not late("engine"):
        try:
            folder = Path(tempfile.mkdtemp(prefix="ishowtts-bench-engine-"))
            settings, voices = write_engine_files(cfm, vocoder, ref_audio, args, folder)
            engine, results["engine"] = load_engine(settings, voices, device, cache_dir)
            log.info("engine loaded: %s", results["engine"])
            for name, text in texts.items():
                rows[name]["engine"] = time_engine(engine, text, args.runs, args.warmup, device)
                log.info("engine %s: %s", name, rows[name]["engine"])
            engine.close()
            del engine
        except Exception as exc:
            log.exception("engine rows failed")
            results.setdefault("errors", []).append(f"engine: {exc!r}"[:500])
        save()

    # stock
    if not args.no_stock:
        stock = StockPath(cfm, vocoder, ref_audio, args.nfe, device)
        for name, text in texts.items():
            rows[name]["stock"] = time_runs(stock, text, args.runs, args.warmup, device)
            log.info("stock %s: %s", name, rows[name]["stock"])
        save()

    # fidelity: identical inputs, time steps and initial noise
    ref32 = None
    if on_cuda and dtype == torch.float16 and not args.no_fp32_ref:
        cfm32, _ = build_cfm(args, device, torch.float32)
        cfm32.load_state_dict(cfm.state_dict())  # the same (fp16-rounded) weights in fp32
        ref32 = (cfm32, fast.cond.float())
    for i, (name, text) in enumerate(texts.items()):
        rows[name]["fidelity"] = fidelity(fast, cfm, text, args.nfe, seed=100 + i, ref32=ref32)
        log.info("fidelity %s: %s", name, rows[name]["fidelity"])
    del ref32
    save()

    # other configurations of the fast sampler, same process (which technique bought what)
    variants = [v for v in args.variants.split(",") if v and v != "none"]
    results["variants"] = {}
    for variant in variants:
        if variant in ("graph", "mask", "autotune", "flash", "cudnn", "run4", "strided") and (
            not on_cuda or not main_sampler.use_compile
        ):
            continue
        if late(variant):
            continue
        try:
            run_variant(
                variant, cfm, vocoder, ref_audio, texts, rows, args, fast, results["variants"]
            )
        except Exception as exc:
            log.exception("variant %s failed", variant)
            results.setdefault("errors", []).append(f"{variant}: {exc!r}"[:500])

    # streaming: first chunk of the long message = its leading piece synthesised alone
    if "long_first" in rows:
        first = rows["long_first"]["fast"]
        rest = rows.get("long_rest", {}).get("fast")
        results["streaming"] = {
            "first_piece": pieces[0],
            "first_chunk_ms": first["median_ms"],
            "first_chunk_audio_s": first["audio_s"],
            "rest_ms": rest["median_ms"] if rest else 0.0,
            "rest_ready_before_first_ends": (rest["median_ms"] if rest else 0.0)
            < first["audio_s"] * 1e3,
        }

    if on_cuda:
        results["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    results["total_s"] = time.perf_counter() - started
    save()
    print_table(results, args)


def fmt(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    return f"{t['median_ms']:.1f} ({t['min_ms']:.1f}-{t['max_ms']:.1f})"


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = results["rows"]
    v = results["versions"]
    fc = results.get("fast_config", {})
    lines = [
        "",
        f"card: {results['card']} | torch {v['torch']} (CUDA {v['cuda']}, cuDNN {v.get('cudnn')}) "
        f"| f5-tts {v['f5-tts']} | python {v['python']} | {results['model']['weights']}, "
        f"{results['model']['params_M']} M params | {results['dtype']} | NFE {results['nfe']} "
        f"| ref {REF_SECONDS:.1f} s | runs {args.runs} after {args.warmup} warm-up "
        f"| attention {fc.get('attention')}",
    ]
    head = (
        "| message | chars | frames | audio s | stock ms | FastSampler ms | stock/fast "
        "| engine first chunk ms | engine whole ms | engine pieces | stock/engine whole "
        "| fidelity relL2 |"
    )
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for name in MESSAGES:
        r = rows[name]
        ratio = f"{r['stock']['median_ms'] / r['fast']['median_ms']:.1f}x" if "stock" in r else "-"
        eng = r.get("engine")
        eng_first = fmt(eng["first"]) if eng else "-"
        eng_whole = fmt(eng["whole"]) if eng else "-"
        eng_pieces = str(len(eng["pieces"])) if eng else "-"
        eng_ratio = (
            f"{r['stock']['median_ms'] / eng['whole']['median_ms']:.1f}x"
            if eng and "stock" in r
            else "-"
        )
        fid = r.get("fidelity", {})
        fid_s = f"{fid['rel_l2_gen']:.2e}" if fid else "-"
        lines.append(
            f"| {name} | {len(MESSAGES[name])} | {r['frames']} | {r['fast']['audio_s']:.2f} "
            f"| {fmt(r.get('stock'))} | {fmt(r['fast'])} | {ratio} | {eng_first} | {eng_whole} "
            f"| {eng_pieces} | {eng_ratio} | {fid_s} |"
        )
    var_names = [
        k
        for k in ("flash", "cudnn", "run4", "strided", "graph", "mask", "eager", "autotune")
        if any(k in rows[m] for m in MESSAGES)
    ]
    if var_names:
        lines.append(
            "same-process variants (median ms, short/typical/long): "
            + "; ".join(
                f"{k}: "
                + " / ".join(f"{rows[m][k]['median_ms']:.1f}" for m in MESSAGES if k in rows[m])
                for k in var_names
            )
        )
    if eng_info := results.get("engine"):
        lines.append(
            f"engine: {eng_info['sampler']} ({eng_info['attention']}), load+warm-up "
            f"{eng_info['load_s']:.1f} s in process, reference {eng_info['ref_seconds']:.2f} s "
            f"({eng_info['ref_frames']} frames), vocoder {eng_info['vocoder_dtype']}"
        )
        for name in MESSAGES:
            eng = rows[name].get("engine")
            if eng:
                lines.append(f"  {name}: pieces {eng['pieces']} frames {eng['frames']}")
    su = results.get("startup")
    if su:
        parts = []
        for label in ("cold", "warm"):
            d = su.get(label, {})
            if "error" in d:
                parts.append(f"{label}: FAILED")
            elif d:
                parts.append(
                    f"{label}: {d['total_s']:.1f} s to ready (warm-up {d['warmup_s']:.1f} s)"
                )
        lines.append("start-up (process start -> ready): " + "; ".join(parts))
    if "streaming" in results:
        s = results["streaming"]
        lines.append(
            f"streaming long (FastSampler): first piece {s['first_piece']!r} ready in "
            f"{s['first_chunk_ms']:.1f} ms; rest ready {s['rest_ms']:.1f} ms later, while the "
            f"first {s['first_chunk_audio_s']:.2f} s play"
        )
    fids = [r["fidelity"] for r in rows.values() if "fidelity" in r]
    if fids and "stock16_vs_fp32" in fids[0]:
        lines.append(
            "fp16 vs fp32 run (gen relL2): stock "
            + ", ".join(f"{f['stock16_vs_fp32']:.2e}" for f in fids)
            + " | fast "
            + ", ".join(f"{f['fast16_vs_fp32']:.2e}" for f in fids)
        )
    if prof := results.get("profile_typical"):
        lines.append(
            "typical, per step: "
            + ", ".join(f"{k} {v:.2f}" for k, v in prof.items() if isinstance(v, float))
            + f" (bucket {prof.get('bucket')} frames)"
        )
    if p := results.get("profiler"):
        lines.append(
            f"profiler, one step (graph replay): kernels {p.get('kernels_per_step')}, kernel sum "
            f"{p.get('kernel_sum_ms_per_step')} ms, GPU span {p.get('gpu_span_ms_per_step')} ms; "
            f"by kind {p.get('kernel_ms_per_step')}"
        )
        if req := p.get("request"):
            lines.append(f"profiler, one typical request: {req}")
    if a := results.get("attention_options_ms"):
        lines.append(f"attention alone per call (ms, chat shape): {a}")
    if vp := results.get("vocoder_precision"):
        lines.append(f"vocoder: {vp}")
    if on_cuda_mem := results.get("max_memory_gb"):
        lines.append(f"peak GPU memory allocated: {on_cuda_mem:.2f} GB")
    for err in results.get("errors", []):
        lines.append(f"ERROR: {err}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
