"""One Euler step of ``CFM.sample``'s ODE on a bucket, and its capture as a CUDA graph.

The step mirrors ``DiT.forward(cfg_infer=True, cache=True)`` followed by the CFG mix and
torchdiffeq's Euler update. Everything it reads or writes lives in the bucket (or is a static
tensor passed in), so it can be captured once and replayed for every request of that length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.f5fast.buckets import Bucket
from engine.f5fast.model import Block, BlockConstants, Schedule, block_forward


@dataclass(slots=True)
class StepModel:
    """What a step needs besides the bucket: the model's parts and how to run a block.

    Attributes:
        dit: The DiT (input embedding, long skip, final norm and projection).
        blocks: Its blocks' weights (fused QKV).
        consts: Heads and epsilons.
        n_mel: Mel channels.
        cfg_strength: Classifier-free guidance strength.
        block_fn: The block function for padded buckets (compiled or ``block_forward``).
        attention: The key-masking kernel of single-request buckets ("flash", "cudnn", "sdpa").
        dynamic: Mark the hidden states' length dynamic for torch.compile.
        contiguous_hidden: Lay hidden states out by frame before the blocks (False only to
            measure the old layout in the benchmark).
    """

    dit: Any
    blocks: list[Block]
    consts: BlockConstants
    n_mel: int
    cfg_strength: float
    block_fn: Callable[..., Tensor] = block_forward
    attention: str = "sdpa"
    dynamic: bool = False
    contiguous_hidden: bool = True


def euler_step(model: StepModel, bucket: Bucket, mods: Tensor, final: Tensor, dt: Tensor) -> None:
    """One Euler step on ``bucket.x``, in place (both CFG branches, all blocks, mix, update)."""
    dit, n_mel, consts = model.dit, model.n_mel, model.consts
    bucket.inp[:, :, :n_mel].copy_(bucket.x.expand(2, -1, -1))
    h = dit.input_embed.proj(bucket.inp)
    h = dit.input_embed.conv_pos_embed(h, mask=bucket.conv_mask) + h
    if model.contiguous_hidden:
        # the sum takes the convolution's channels-first strides, and inductor keeps its
        # outputs' strides, so every block would read and write transposed activations
        # (uncoalesced norms and residual adds); one copy per step lays them out by frame
        h = h.contiguous()
    residual = h if dit.long_skip_connection is not None else None
    # compiled code serves the padded buckets (one dynamic-length graph); an unpadded
    # one-off length runs the same function uncompiled rather than compile mid-request
    block_fn = model.block_fn if bucket.padded else block_forward
    cudnn = bucket.padded and not bucket.packed and model.attention == "cudnn"
    if model.dynamic and bucket.padded:
        torch._dynamo.mark_dynamic(h, 1)
    bias = None if bucket.cu_seqlens is not None else bucket.attn_bias
    for i, block in enumerate(model.blocks):
        h = block_fn(
            h,
            mods[i][:, None, None, :],
            bucket.cos,
            bucket.sin,
            bias,
            bucket.cu_seqlens,
            block.w_qkv,
            block.b_qkv,
            block.w_o,
            block.b_o,
            block.w_ff1,
            block.b_ff1,
            block.w_ff2,
            block.b_ff2,
            block.q_norm,
            block.k_norm,
            consts.heads,
            consts.ln_eps,
            consts.rms_eps,
            cudnn,
            bucket.max_seqlen,
        )
    if residual is not None:
        h = dit.long_skip_connection(torch.cat((h, residual), dim=-1))
    scale, shift = final[0], final[1]
    h = F.layer_norm(h, (h.shape[-1],), eps=dit.norm_out.norm.eps) * (1 + scale) + shift
    out = dit.proj_out(h)
    pred, null_pred = out[:1], out[1:]
    flow = pred + (pred - null_pred) * model.cfg_strength
    bucket.x.add_(dt * flow)


def run_steps(
    model: StepModel, bucket: Bucket, schedule: Schedule, inputs: tuple[Tensor, Tensor, Tensor]
) -> None:
    """All steps of ``schedule`` on ``bucket``: graph replays, or eager steps without one.

    ``inputs`` are the static per-step tensors a per-step graph reads (mods, final, dt);
    a whole-loop graph reads the schedule itself and is replayed once.
    """
    graph = bucket.graph
    if graph is not None and bucket.stats.get("loop_graph"):
        graph.replay()
        return
    mods, final, dt = inputs
    for i in range(schedule.dt.shape[0]):
        if graph is not None:
            mods.copy_(schedule.mods[i])
            final.copy_(schedule.final[i])
            dt.copy_(schedule.dt[i])
            graph.replay()
        else:
            euler_step(model, bucket, schedule.mods[i], schedule.final[i], schedule.dt[i])


def capture(
    model: StepModel,
    bucket: Bucket,
    schedule: Schedule,
    inputs: tuple[Tensor, Tensor, Tensor],
    pool: Any,
    *,
    whole_loop: bool,
    warm_steps: int = 2,
) -> Any:
    """Warm ``bucket``'s step up on a side stream, then capture it as a CUDA graph.

    Args:
        model: The step's model parts.
        bucket: Its layout must already be set (every kernel then reads in-bounds rows).
        schedule: The time schedule.
        inputs: The static per-step tensors (filled with step 0 here).
        pool: The graph memory pool to share (None: a new one).
        whole_loop: Capture all steps in one graph (reading the schedule directly; one
            replay per request, no copies between steps) instead of one step.
        warm_steps: Eager steps before capturing (lazy initialisation must not happen in
            the capture); the first capture of a sampler needs more than later ones.

    Returns:
        The graph's memory pool (for the next capture).
    """
    mods, final, dt = inputs
    mods.copy_(schedule.mods[0])
    final.copy_(schedule.final[0])
    dt.copy_(schedule.dt[0])
    device = bucket.x.device
    saved = bucket.x.clone()
    stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warm_steps):
            euler_step(model, bucket, mods, final, dt)
    torch.cuda.current_stream(device).wait_stream(stream)
    if pool is None:
        pool = torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        if whole_loop:
            for i in range(schedule.dt.shape[0]):
                euler_step(model, bucket, schedule.mods[i], schedule.final[i], schedule.dt[i])
        else:
            euler_step(model, bucket, mods, final, dt)
    bucket.x.copy_(saved)
    bucket.graph = graph
    bucket.stats["loop_graph"] = 1.0 if whole_loop else 0.0
    return pool
