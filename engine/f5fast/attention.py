"""Choosing the attention kernel that excludes padded keys: checked first, then timed.

The fused kernels are reached through private torch ops, so none is trusted blind: each is
checked against a float32 reference on the valid frames, and checked to replay inside a CUDA
graph (the sampler replays every step from one). Which is faster depends on the card and the
torch/cuDNN build, so when no backend is named, the candidates that pass are timed once at a
chat-length shape (~1 ms in all) and the faster is used for single requests. Packed batches
need the variable-length kernel (a block-diagonal bias would be quadratic in the batch's
frames), so FlashAttention is also checked on a packed layout with empty trailing slots.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.f5fast.layout import pack
from engine.f5fast.model import ATTENTION_BACKENDS, attention

log = logging.getLogger(__name__)

CHECK_FRAMES = 1376
"""Frames of the timing shape: the typical chat message (BENCHMARKS.md)."""


def _fused_ok(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


def choose(
    request: str | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
    heads: int,
    head_dim: int,
    max_frames: int,
    stats: dict[str, float],
) -> str:
    """The key-masking attention for single requests: "flash", "cudnn" or "sdpa".

    Args:
        request: A backend to use (checked; "sdpa" if it fails), or None to choose.
        device: The model's device.
        dtype: The model's dtype.
        heads: Attention heads.
        head_dim: Per-head width.
        max_frames: Longest padded bucket (bounds the timing shape).
        stats: Timings land here (``attention_<name>_ms``).
    """
    if request is not None and request not in ATTENTION_BACKENDS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_BACKENDS)} or None")
    if request == "sdpa" or not _fused_ok(device, dtype):
        if request not in (None, "sdpa"):
            log.info("attention %r needs CUDA and fp16/bf16; using torch's SDPA", request)
        return "sdpa"
    candidates = [request] if request is not None else ["flash", "cudnn"]
    timings: dict[str, float] = {}
    for name in candidates:
        ms = check(
            name,
            device=device,
            dtype=dtype,
            heads=heads,
            head_dim=head_dim,
            max_frames=max_frames,
            timed=request is None,
        )
        if ms is not None:
            timings[name] = ms
            stats[f"attention_{name}_ms"] = ms
    if not timings:
        log.info("no fused masked attention passed its check; using torch's SDPA")
        return "sdpa"
    chosen = min(timings, key=lambda name: timings[name])
    log.info(
        "attention for padded buckets: %s (%s)",
        chosen,
        ", ".join(f"{k} {v:.3f} ms" for k, v in timings.items()),
    )
    return chosen


def _in_graph(device: torch.device, run: Callable[[], Tensor]) -> tuple[Tensor, Tensor, object]:
    """Run once eagerly, then capture and replay; both results and the graph."""
    got = run()
    out = torch.empty_like(got)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        run()
    torch.cuda.current_stream(device).wait_stream(stream)
    with torch.cuda.graph(graph):
        out.copy_(run())
    out.fill_(math.nan)
    graph.replay()
    torch.cuda.synchronize(device)
    return got, out, graph


def check(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    heads: int,
    head_dim: int,
    max_frames: int,
    timed: bool,
) -> float | None:
    """Check one backend at a padded chat-length shape; ms per call (0.0 untimed), or None."""
    size = max(96, min(max_frames, CHECK_FRAMES))
    valid = size - 17
    gen = torch.Generator(device="cpu").manual_seed(0)
    # laid out as in the block: q and k fresh from RoPE, v a view into the fused QKV
    qkv = torch.randn(2, size, 3, heads, head_dim, generator=gen).to(device, dtype)
    query, key = qkv[:, :, 0].contiguous(), qkv[:, :, 1].contiguous()
    value = qkv[:, :, 2]
    bias = torch.zeros(2, 1, 1, size, device=device, dtype=dtype)
    bias[..., valid:] = -math.inf
    cu = None
    if name == "flash":
        cu = torch.tensor(pack([valid], size).cu_seqlens(), dtype=torch.int32).to(device)

    def run() -> Tensor:
        return attention(query, key, value, None if cu is not None else bias, cu, name == "cudnn")

    try:
        got, out, graph = _in_graph(device, run)
    except Exception:
        log.info("%s attention unavailable; not used", name, exc_info=True)
        return None
    want = F.scaled_dot_product_attention(
        query.float().transpose(1, 2),
        key.float().transpose(1, 2),
        value.float().transpose(1, 2),
        attn_mask=bias.float(),
    ).transpose(1, 2)
    want = want.reshape(2, size, heads * head_dim)[:, :valid]
    errors = [float((res[:, :valid].float() - want).norm() / want.norm()) for res in (got, out)]
    if not max(errors) < 1e-2 or not all(math.isfinite(e) for e in errors):
        log.warning("%s attention disagrees with the reference (%s); not used", name, errors)
        return None
    if not timed:
        return 0.0
    return _time_replays(graph)


def _time_replays(graph: object) -> float:
    replay = graph.replay  # type: ignore[attr-defined]
    for _ in range(3):
        replay()
    times = []
    for _ in range(15):
        begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        done = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        begin.record()
        replay()
        done.record()
        done.synchronize()
        times.append(float(begin.elapsed_time(done)))
    return float(sorted(times)[len(times) // 2])


def check_packed(
    *, device: torch.device, dtype: torch.dtype, heads: int, head_dim: int, slots: int
) -> bool:
    """Whether FlashAttention's varlen kernel computes a packed batch right, in a graph too.

    Three requests of different lengths with gaps, a padded tail and ``slots - 3`` empty
    trailing sequences (how batch buckets keep one graph for any request count); each
    request's output is compared with float32 attention over that request alone.
    """
    if not _fused_ok(device, dtype):
        return False
    lengths = [300, 517, 96]
    packing = pack(lengths, 1024)
    bound = 768
    gen = torch.Generator(device="cpu").manual_seed(2)
    qkv = torch.randn(2, packing.frames, 3, heads, head_dim, generator=gen).to(device, dtype)
    query, key = qkv[:, :, 0].contiguous(), qkv[:, :, 1].contiguous()
    value = qkv[:, :, 2]
    starts = packing.cu_seqlens(max(slots, packing.count))
    cu = torch.tensor(starts, dtype=torch.int32).to(device)

    def run() -> Tensor:
        return attention(query, key, value, None, cu, False, bound)

    try:
        got, out, _graph = _in_graph(device, run)
    except Exception:
        log.info(
            "packed FlashAttention unavailable; batches run one request at a time", exc_info=True
        )
        return False
    errors = []
    for row in range(2):
        for offset, length in zip(packing.offsets, packing.lengths, strict=True):
            part = slice(offset, offset + length)
            want = F.scaled_dot_product_attention(
                query[row : row + 1, part].float().transpose(1, 2),
                key[row : row + 1, part].float().transpose(1, 2),
                value[row : row + 1, part].float().transpose(1, 2),
            ).transpose(1, 2)
            want = want.reshape(length, heads * head_dim)
            for res in (got, out):
                errors.append(float((res[row, part].float() - want).norm() / want.norm()))
    if not max(errors) < 1e-2 or not all(math.isfinite(e) for e in errors):
        log.warning("packed FlashAttention disagrees with the reference (%s); not used", errors)
        return False
    return True
