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

Usage (GPU):  python bench/bench_engine.py --runs 7 --out bench.json
Usage (CPU):  python bench/bench_engine.py --device cpu --tiny --runs 2
"""

from __future__ import annotations

import argparse
import importlib.util
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
            sub.reset_parameters()


def build_cfm(args: argparse.Namespace, device: str, dtype: torch.dtype) -> tuple[Any, dict]:
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
        return self._to_idx(final, self.cfm.vocab_char_map).to(self.device)

    def mel(self, text: str, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.sampler.sample(self.cond, self.text_ids(text), self.duration(text), noise)

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
        return out


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
        bucket = sampler._get_bucket(frames)
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
) -> None:
    """Time one technique alone (graph: CUDA graphs, no compile; eager: neither)."""
    from engine.f5_fast import FastSampler

    configs: dict[str, dict[str, Any]] = {
        "graph": {"compile": False},  # CUDA graphs + varlen, no compile
        "mask": {"varlen_attention": False},  # compile + graphs, SDPA key mask
        "eager": {"compile": False, "cuda_graphs": False, "bucket_frames": 0},  # unpadded
        "autotune": {"compile_mode": "max-autotune-no-cudagraphs"},  # GEMM autotuning
    }
    sampler = FastSampler(
        cfm,
        nfe_step=args.nfe,
        cfg_strength=2.0,
        sway_sampling_coef=-1.0,
        max_frames=args.max_frames,
        **configs[variant],
    )
    sampler.warmup(frames=[fast.duration(t) for t in texts.values()])
    path = FastPath(cfm, vocoder, sampler, ref_audio, args.device)
    for name, text in texts.items():
        rows[name][variant] = time_runs(path, text, args.runs, 1, args.device)
        log.info("%s %s: %s", variant, name, rows[name][variant])


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def fidelity(fast: FastPath, cfm: Any, text: str, nfe: int, seed: int, ref32: Any) -> dict:
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


# ---------------------------------------------------------------------------- start-up


def startup_child(args: argparse.Namespace) -> None:
    """Process start -> ready (model built, sampler warm). Prints STARTUP json."""
    from engine.f5_fast import FastSampler

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
        "--variants", default="graph,mask,eager", help="extra fast variants: graph,mask,eager,none"
    )
    ap.add_argument("--no-stock", action="store_true")
    ap.add_argument("--no-fp32-ref", action="store_true")
    ap.add_argument("--startup", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--cache-dir", default=None, help="inductor cache for the start-up runs")
    ap.add_argument("--out", help="write all numbers as JSON here")
    ap.add_argument("--deadline-s", type=float, default=1e9, help="skip variants after this")
    ap.add_argument("--startup-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    started = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.startup_child:
        startup_child(args)
        return

    from engine.f5_fast import FastSampler
    from engine.text import split_first_chunk

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
    log.info("fast sampler ready in %.1f s", results["warmup_in_process_s"])

    texts = dict(MESSAGES)
    pieces = split_first_chunk(MESSAGES["long"])
    texts_all = dict(texts, long_first=pieces[0])
    if len(pieces) > 1:
        texts_all["long_rest"] = pieces[1]
    results["long_pieces"] = pieces

    # fast path
    rows: dict[str, dict[str, Any]] = {}
    for name, text in texts_all.items():
        rows[name] = {"fast": time_runs(fast, text, args.runs, args.warmup, device)}
        rows[name]["fast"]["breakdown_ms"] = {k: round(v, 2) for k, v in fast.timings.items()}
        rows[name]["frames"] = fast.duration(text)
        log.info("fast %s: %s", name, rows[name]["fast"])

    try:
        results["profile_typical"] = profile_steps(main_sampler, fast, MESSAGES["typical"], device)
        log.info("profile: %s", results["profile_typical"])
    except Exception as exc:
        log.exception("profile failed")
        results.setdefault("errors", []).append(f"profile: {exc!r}"[:500])

    # stock
    if not args.no_stock:
        stock = StockPath(cfm, vocoder, ref_audio, args.nfe, device)
        for name, text in texts.items():
            rows[name]["stock"] = time_runs(stock, text, args.runs, args.warmup, device)
            log.info("stock %s: %s", name, rows[name]["stock"])

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
    results["rows"] = rows
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))

    # other variants of the fast sampler (for the notes: which technique bought what)
    variants = [v for v in args.variants.split(",") if v and v != "none"]
    for variant in variants:
        if variant in ("graph", "mask", "autotune") and (
            not on_cuda or not main_sampler.use_compile
        ):
            continue
        if time.perf_counter() - started > args.deadline_s:
            results.setdefault("errors", []).append(f"{variant}: skipped (deadline)")
            continue
        try:
            run_variant(variant, cfm, vocoder, ref_audio, texts, rows, args, fast)
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
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print_table(results, args)


def fmt(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    return f"{t['median_ms']:.1f} ({t['min_ms']:.1f}-{t['max_ms']:.1f})"


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = results["rows"]
    v = results["versions"]
    lines = [
        "",
        f"card: {results['card']} | torch {v['torch']} (CUDA {v['cuda']}) | f5-tts {v['f5-tts']} "
        f"| python {v['python']} | {results['model']['weights']}, "
        f"{results['model']['params_M']} M params | {results['dtype']} | NFE {results['nfe']} "
        f"| ref {REF_SECONDS:.1f} s | runs {args.runs} after {args.warmup} warm-up",
    ]
    names = ("graph", "mask", "eager", "autotune")
    variants = [k for k in names if any(k in r for r in rows.values())]
    head = "| message | chars | frames | audio s | stock ms med (min-max) | fast ms med (min-max) "
    head += "| stock/fast | first chunk ms | fidelity relL2 (gen) |"
    for var in variants:
        head += f" {var} ms |"
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for name in MESSAGES:
        r = rows[name]
        ratio = f"{r['stock']['median_ms'] / r['fast']['median_ms']:.1f}x" if "stock" in r else "-"
        first = "-"
        if name == "long" and "streaming" in results:
            s = results["streaming"]
            first = f"{s['first_chunk_ms']:.1f} ({s['first_chunk_audio_s']:.2f} s audio)"
        elif name != "long":
            first = f"{r['fast']['median_ms']:.1f} (whole)"
        fid = r.get("fidelity", {})
        fid_s = f"{fid['rel_l2_gen']:.2e}" if fid else "-"
        line = (
            f"| {name} | {len(MESSAGES[name])} | {r['frames']} | {r['fast']['audio_s']:.2f} "
            f"| {fmt(r.get('stock'))} | {fmt(r['fast'])} | {ratio} | {first} | {fid_s} |"
        )
        for var in variants:
            line += f" {fmt(r.get(var))} |"
        lines.append(line)
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
            f"streaming long: first piece {s['first_piece']!r} ready in {s['first_chunk_ms']:.1f} "
            f"ms; rest ready {s['rest_ms']:.1f} ms later, while the first "
            f"{s['first_chunk_audio_s']:.2f} s play"
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
    if on_cuda_mem := results.get("max_memory_gb"):
        lines.append(f"peak GPU memory allocated: {on_cuda_mem:.2f} GB")
    for err in results.get("errors", []):
        lines.append(f"ERROR: {err}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
