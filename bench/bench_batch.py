"""Batched synthesis benchmark (issue 17): one packed sampling pass vs one request at a time.

For each batch size N, N chat lines (the three benchmark messages of ``bench_engine.py``, in
turn, each with its own fixed noise) are synthesised twice in the same process, on the same
fast sampler and vocoder:

* **one at a time**: ``FastSampler.sample`` then the vocoder, request after request (what the
  engine does today for a queue of N lines);
* **batched**: ``FastSampler.sample_batch`` (every request packed into passes of up to
  ``--max-batch``), then the vocoder per request.

Reported per N: wall time of each (median of ``--runs`` after one warm-up), throughput as
seconds of audio produced per second, the speed-up, how many packed passes ran, the fidelity
of every batched request against its own single-request output (relative L2, same noise) and
of the first three against stock ``CFM.sample`` (same noise), and on CUDA the peak GPU memory.
Also: the time to capture the batch buckets' CUDA graphs, and the engine's first-chunk latency
of a lone request through ``synthesize`` and through ``synthesize_batch`` (the path a batching
server takes for a request that arrives alone), so a regression there shows.

With ``--engine`` it also times ``F5Engine.synthesize_batch`` against ``synthesize`` one after
another (planning, pieces, vocoder and all): the time until every request has its first
chunk and until all are done.

Usage (GPU):  python bench/bench_batch.py --sizes 1,4,16,32 --runs 5 --engine --out batch.json
Usage (CPU):  python bench/bench_batch.py --device cpu --tiny --sizes 1,3 --runs 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_engine as be  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("bench.batch")

ORDER = ("short", "typical", "long")


def _texts(count: int) -> list[str]:
    return [be.MESSAGES[name] for name in itertools.islice(itertools.cycle(ORDER), count)]


def _requests(fast: be.FastPath, texts: list[str], seed: int) -> list[Any]:
    from engine.sampling import SampleRequest

    gen = torch.Generator(device="cpu").manual_seed(seed)
    requests = []
    for text in texts:
        frames = fast.duration(text)
        noise = torch.randn(frames, 100, generator=gen).to(fast.device, fast.cond.dtype)
        requests.append(SampleRequest(fast.cond, fast.text_ids(text), frames, noise))
    return requests


def _vocode(fast: be.FastPath, mel: torch.Tensor) -> np.ndarray:
    wave = fast.vocoder.decode(mel[:, fast.ref_frames :].float().permute(0, 2, 1))
    return np.asarray(wave.squeeze().cpu().numpy())


def _one_at_a_time(fast: be.FastPath, requests: list[Any]) -> tuple[list[torch.Tensor], float]:
    be.sync(fast.device)
    t0 = time.perf_counter()
    mels = []
    with torch.inference_mode():
        for r in requests:
            mel = fast.sampler.sample(r.cond, r.text_ids, r.duration, r.noise)
            _vocode(fast, mel)
            mels.append(mel)
    be.sync(fast.device)
    return mels, (time.perf_counter() - t0) * 1e3


def _batched(fast: be.FastPath, requests: list[Any]) -> tuple[list[torch.Tensor], float]:
    be.sync(fast.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        mels = fast.sampler.sample_batch(requests)
        for mel in mels:
            _vocode(fast, mel)
    be.sync(fast.device)
    return mels, (time.perf_counter() - t0) * 1e3


def _stock_mel(cfm: Any, request: Any, nfe: int) -> torch.Tensor:
    from engine.sampling import StockSampler

    stock = StockSampler(cfm, nfe_step=nfe, cfg_strength=2.0, sway_sampling_coef=-1.0)
    with torch.inference_mode():
        return stock.sample(request.cond, request.text_ids, request.duration, request.noise)


def _packed_lengths(sampler: Any, requests: list[Any]) -> list[int]:
    """Frames of each packed pass ``sample_batch`` will run for these requests."""
    from engine.f5fast.layout import packed_frames

    jobs = [sampler._job(r) for r in requests]
    groups = sampler._groups(jobs)
    return [packed_frames([jobs[i].frames for i in g]) for g in groups if len(g) > 1]


def measure_size(
    fast: be.FastPath, cfm: Any, count: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One batch size: both ways, median of ``args.runs`` after one warm-up, and fidelity."""
    sampler = fast.sampler
    requests = _requests(fast, _texts(count), seed=1000 + count)
    audio_s = sum(fast.duration(t) - fast.ref_frames for t in _texts(count)) * be.HOP / be.SR
    on_cuda = fast.device.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    _one_at_a_time(fast, requests)
    single_ms = []
    for _ in range(args.runs):
        singles, ms = _one_at_a_time(fast, requests)
        single_ms.append(ms)
    _batched(fast, requests)
    passes_before = sampler.stats.get("packed_passes", 0.0)
    batch_ms = []
    for _ in range(args.runs):
        batched, ms = _batched(fast, requests)
        batch_ms.append(ms)
    passes = (sampler.stats.get("packed_passes", 0.0) - passes_before) / max(1, args.runs)
    packed = _packed_lengths(sampler, requests)
    buckets = [sampler.store.batch_size(n) or n for n in packed]
    padding = 1 - sum(packed) / sum(buckets) if packed else 0.0
    r = fast.ref_frames
    vs_single = [be.rel_l2(b[:, r:], s[:, r:]) for b, s in zip(batched, singles, strict=True)]
    vs_stock = [
        be.rel_l2(b[:, r:], _stock_mel(cfm, q, args.nfe)[:, r:])
        for b, q in zip(batched[:3], requests[:3], strict=False)
    ]
    one, many = statistics.median(single_ms), statistics.median(batch_ms)
    res: dict[str, Any] = {
        "requests": count,
        "audio_s": audio_s,
        "one_at_a_time_ms": one,
        "batched_ms": many,
        "one_at_a_time_runs_ms": [round(t, 2) for t in single_ms],
        "batched_runs_ms": [round(t, 2) for t in batch_ms],
        "one_at_a_time_audio_per_s": audio_s / (one / 1e3),
        "batched_audio_per_s": audio_s / (many / 1e3),
        "speedup": one / many,
        "packed_passes": passes,
        "batch_padding": padding,
        "rel_l2_vs_single_max": max(vs_single),
        "rel_l2_vs_stock_max": max(vs_stock),
        "finite": bool(all(torch.isfinite(m).all() for m in batched)),
    }
    if on_cuda:
        res["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def lone_latency(engine: Any, text: str, runs: int, device: str) -> dict[str, float]:
    """A lone request's first chunk through ``synthesize`` and through ``synthesize_batch``."""
    from engine.base import SynthesisRequest

    def through_single() -> float:
        t0 = time.perf_counter()
        next(engine.synthesize(text, "bench", lambda: False))
        return (time.perf_counter() - t0) * 1e3

    def through_batch() -> float:
        t0 = time.perf_counter()
        events = engine.synthesize_batch([SynthesisRequest(text, "bench", lambda: False)])
        next(e for e in events if e.audio is not None)
        return (time.perf_counter() - t0) * 1e3

    res = {}
    for name, fn in (("synthesize", through_single), ("synthesize_batch", through_batch)):
        fn()
        times = []
        for _ in range(runs):
            be.sync(device)
            times.append(fn())
        res[f"{name}_first_ms"] = statistics.median(times)
    return res


def engine_rows(engine: Any, sizes: list[int], runs: int, device: str) -> list[dict[str, Any]]:
    """``synthesize_batch`` vs ``synthesize`` one after another: first chunks and all done."""
    from engine.base import SynthesisRequest

    rows = []
    for count in sizes:
        texts = _texts(count)

        def sequential(texts: list[str] = texts) -> tuple[float, float]:
            t0 = time.perf_counter()
            firsts = []
            for text in texts:
                for i, _chunk in enumerate(engine.synthesize(text, "bench", lambda: False)):
                    if i == 0:
                        firsts.append(time.perf_counter() - t0)
            return max(firsts) * 1e3, (time.perf_counter() - t0) * 1e3

        def batched(texts: list[str] = texts) -> tuple[float, float]:
            t0 = time.perf_counter()
            firsts: dict[int, float] = {}
            requests = [SynthesisRequest(t, "bench", lambda: False) for t in texts]
            for event in engine.synthesize_batch(requests):
                if event.audio is not None:
                    firsts.setdefault(event.index, time.perf_counter() - t0)
            return max(firsts.values()) * 1e3, (time.perf_counter() - t0) * 1e3

        row: dict[str, Any] = {"requests": count}
        for name, fn in (("sequential", sequential), ("batched", batched)):
            fn()
            results = []
            for _ in range(runs):
                be.sync(device)
                results.append(fn())
            row[f"{name}_all_first_ms"] = statistics.median(r[0] for r in results)
            row[f"{name}_all_done_ms"] = statistics.median(r[1] for r in results)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny DiT + Vocos (CPU smoke run)")
    ap.add_argument("--ckpt", help="F5TTS_v1_Base model_*.safetensors (else random weights)")
    ap.add_argument("--vocab", help="vocab.txt (default: the one f5-tts ships)")
    ap.add_argument("--vocoder-dir", help="folder with Vocos config.yaml + pytorch_model.bin")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fp32", action="store_true", help="fp32 weights on CUDA")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--max-frames", type=int, default=3072)
    ap.add_argument("--sizes", default="1,4,16,32", help="batch sizes (requests) to measure")
    ap.add_argument("--max-batch", type=int, default=32, help="most requests per packed pass")
    ap.add_argument("--max-batch-frames", type=int, default=24576)
    ap.add_argument(
        "--batch-ratio",
        type=float,
        default=1.08,
        help="batch buckets grow by this factor (fewer graphs vs less padding)",
    )
    ap.add_argument("--engine", action="store_true", help="also time F5Engine batch vs single")
    ap.add_argument("--out", help="write all numbers as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from engine.f5fast import FastSampler

    device = args.device
    on_cuda = device.startswith("cuda")
    dtype = torch.float16 if on_cuda and not args.fp32 else torch.float32
    sizes = [int(n) for n in args.sizes.split(",") if n]
    cfm, model_info = be.build_cfm(args, device, dtype)
    vocoder = be.build_vocoder(args, device)
    ref_audio = be.load_reference(device)
    results: dict[str, Any] = {"model": model_info, "sizes": sizes, "dtype": str(dtype)}
    results["card"] = torch.cuda.get_device_name() if on_cuda else "cpu"
    results["versions"] = {"torch": torch.__version__, "cuda": torch.version.cuda}

    sampler = FastSampler(
        cfm,
        nfe_step=args.nfe,
        cfg_strength=2.0,
        sway_sampling_coef=-1.0,
        compile=False if args.no_compile else None,
        max_frames=args.max_frames,
        max_batch=args.max_batch,
        max_batch_frames=args.max_batch_frames,
        batch_ratio=args.batch_ratio,
        bucket_frames=None if on_cuda else 32,
    )
    t0 = time.perf_counter()
    sampler.warmup()
    be.sync(device)
    results["warmup_singles_s"] = time.perf_counter() - t0
    fast = be.FastPath(cfm, vocoder, sampler, ref_audio, device)
    memory_before = torch.cuda.memory_allocated() / 2**30 if on_cuda else 0.0
    batch_frames = sorted(
        {n for count in sizes for n in _packed_lengths(sampler, _requests(fast, _texts(count), 0))}
    )
    captures_before = sampler.stats.get("capture_s", 0.0)
    t0 = time.perf_counter()
    sampler.warmup(frames=[], batch_frames=batch_frames)
    be.sync(device)
    results["batch_buckets"] = sorted({sampler.store.batch_size(n) for n in batch_frames})
    results["batch_ladder"] = len(sampler.store.batch_sizes)
    results["warmup_batches_s"] = time.perf_counter() - t0
    results["batch_capture_s"] = sampler.stats.get("capture_s", 0.0) - captures_before
    if on_cuda:
        results["batch_graphs_gpu_gb"] = torch.cuda.memory_allocated() / 2**30 - memory_before
    results["batch_attention"] = sampler.batch_attention
    results["attention"] = sampler.attention
    log.info("sampler ready: %s", {k: v for k, v in results.items() if k != "model"})

    results["rows"] = []
    for count in sizes:
        row = measure_size(fast, cfm, count, args)
        log.info("batch %d: %s", count, row)
        results["rows"].append(row)

    if args.engine:
        folder = Path(tempfile.mkdtemp(prefix="ishowtts-bench-batch-"))
        settings, voices = be.write_engine_files(cfm, vocoder, ref_audio, args, folder)
        settings = dict(settings, max_batch=args.max_batch, max_batch_frames=args.max_batch_frames)
        cache = folder / "inductor"
        engine, results["engine"] = be.load_engine(settings, voices, device, cache)
        if not on_cuda:  # the CPU engine runs f5's own sampler; batch through the fast one
            engine.sampler = FastSampler(
                engine.cfm,
                nfe_step=args.nfe,
                cfg_strength=2.0,
                sway_sampling_coef=-1.0,
                bucket_frames=32,
                max_batch=args.max_batch,
                max_batch_frames=args.max_batch_frames,
            )
        results["engine"]["max_batch"] = engine.max_batch
        results["lone"] = lone_latency(engine, be.MESSAGES["typical"], args.runs, device)
        results["engine_rows"] = engine_rows(engine, sizes, args.runs, device)
        engine.close()

    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print_table(results, args)


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The one table this benchmark prints (and the lines under it)."""
    lines = [
        "",
        f"card: {results['card']} | torch {results['versions']['torch']} "
        f"(CUDA {results['versions']['cuda']}) | {results['model']['weights']}, "
        f"{results['model']['params_M']} M params | {results['dtype']} | NFE {args.nfe} "
        f"| runs {args.runs} after 1 warm-up | max_batch {args.max_batch}, max_batch_frames "
        f"{args.max_batch_frames} | attention {results['attention']}, batches "
        f"{results['batch_attention']}",
    ]
    head = (
        "| requests | audio s | one-at-a-time ms | batched ms | one-at-a-time audio s/s "
        "| batched audio s/s | speed-up | packed passes | padding % | relL2 vs single (max) "
        "| relL2 vs stock (max) | peak GPU GB |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results["rows"]:
        gpu = f"{r['peak_gpu_gb']:.2f}" if "peak_gpu_gb" in r else "-"
        lines.append(
            f"| {r['requests']} | {r['audio_s']:.2f} | {r['one_at_a_time_ms']:.1f} "
            f"| {r['batched_ms']:.1f} | {r['one_at_a_time_audio_per_s']:.1f} "
            f"| {r['batched_audio_per_s']:.1f} | {r['speedup']:.2f}x | {r['packed_passes']:.0f} "
            f"| {100 * r['batch_padding']:.1f} "
            f"| {r['rel_l2_vs_single_max']:.2e} | {r['rel_l2_vs_stock_max']:.2e} | {gpu} |"
        )
    lines.append(
        f"start-up: single-request buckets {results['warmup_singles_s']:.1f} s; batch buckets "
        f"{results['batch_buckets']} of {results['batch_ladder']} (ratio {args.batch_ratio}) "
        f"{results['warmup_batches_s']:.1f} s (captures "
        f"{results['batch_capture_s']:.1f} s"
        + (
            f", {results['batch_graphs_gpu_gb']:.2f} GB GPU memory"
            if "batch_graphs_gpu_gb" in results
            else ""
        )
        + ")"
    )
    if lone := results.get("lone"):
        lines.append(
            f"lone typical request, engine first chunk: synthesize "
            f"{lone['synthesize_first_ms']:.1f} ms, synthesize_batch "
            f"{lone['synthesize_batch_first_ms']:.1f} ms"
        )
    for row in results.get("engine_rows", []):
        lines.append(
            f"engine, {row['requests']} requests: every first chunk after "
            f"{row['sequential_all_first_ms']:.1f} ms one by one vs "
            f"{row['batched_all_first_ms']:.1f} ms batched; all done "
            f"{row['sequential_all_done_ms']:.1f} vs {row['batched_all_done_ms']:.1f} ms"
        )
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
