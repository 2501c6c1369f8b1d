"""The arithmetic of f5-tts's DiT, restated for the fast sampler: weights, time schedule, block.

Everything here mirrors f5-tts 1.1.22 op for op, so the fast sampler computes the function
stock computes, up to rounding; what differs is only *when* things are computed (per-step
constants once per sampler, per-request constants once per request) and that padded or
packed frames are excluded exactly (see :func:`attention`). No graphs, no compilation: the
other modules of this package decide how these functions run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTION_BACKENDS = ("flash", "cudnn", "sdpa")
"""Ways attention can exclude padded keys (see :func:`attention`)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One DiT block's weights in the form the step function uses (views, plus fused QKV)."""

    w_qkv: Tensor
    b_qkv: Tensor
    w_o: Tensor
    b_o: Tensor
    w_ff1: Tensor
    b_ff1: Tensor
    w_ff2: Tensor
    b_ff2: Tensor
    q_norm: Tensor | None
    k_norm: Tensor | None


@dataclass(slots=True)
class Schedule:
    """Everything that depends on the time steps alone, for all steps at once."""

    t: Tensor  # [S + 1] model dtype, exactly CFM.sample's grid
    dt: Tensor  # [S] model dtype, t[i + 1] - t[i] as torchdiffeq computes it
    mods: Tensor  # [S, depth, 6, dim]: shift/scale/gate (attn), shift/scale/gate (ff)
    final: Tensor  # [S, 2, dim]: scale, shift of the final AdaLN


def rotate_half(x: Tensor) -> Tensor:
    """x_transformers' ``rotate_half``: pairs (a, b) -> (-b, a) along the last axis."""
    pairs = x.unflatten(-1, (-1, 2))  # type: ignore[no-untyped-call]
    first, second = pairs.unbind(dim=-1)
    return torch.stack((-second, first), dim=-1).flatten(-2)


def block_forward(
    x: Tensor,
    mods: Tensor,
    cos: Tensor,
    sin: Tensor,
    attn_bias: Tensor | None,
    cu_seqlens: Tensor | None,
    w_qkv: Tensor,
    b_qkv: Tensor,
    w_o: Tensor,
    b_o: Tensor,
    w_ff1: Tensor,
    b_ff1: Tensor,
    w_ff2: Tensor,
    b_ff2: Tensor,
    q_norm: Tensor | None,
    k_norm: Tensor | None,
    heads: int,
    ln_eps: float,
    rms_eps: float,
    cudnn: bool = False,
    max_seqlen: int = 0,
) -> Tensor:
    """One f5 ``DiTBlock.forward`` with its AdaLN modulation precomputed.

    Mirrors f5-tts 1.1.22 op for op (LayerNorm, modulation, RoPE in float32 as x_transformers
    does, attention, gating, tanh-GELU feed-forward), so the result differs from the stock
    block only by rounding. Padded keys are excluded exactly, see ``attention``.

    Args:
        x: Hidden states [2, frames, dim] (cond and uncond CFG branches).
        mods: This step's modulation [6, 1, 1, dim] for this block.
        cos: RoPE cosines [frames, rot_dim], float32 (x_transformers rotates in float32).
        sin: RoPE sines, same shape.
        attn_bias: [2, 1, 1, frames] additive key mask, or None.
        cu_seqlens: int32 [5] sequence starts for the varlen kernel, or None.
        w_qkv: Fused Q, K, V projection weight [3 * inner, dim]; b_qkv its bias.
        b_qkv: See w_qkv.
        w_o: Output projection; b_o its bias.
        b_o: See w_o.
        w_ff1: Feed-forward in; b_ff1 its bias.
        b_ff1: See w_ff1.
        w_ff2: Feed-forward out; b_ff2 its bias.
        b_ff2: See w_ff2.
        q_norm: RMSNorm weight for queries (qk_norm models) or None.
        k_norm: RMSNorm weight for keys or None.
        heads: Attention heads.
        ln_eps: LayerNorm epsilon.
        rms_eps: RMSNorm epsilon.
        cudnn: Run the key-masked attention on cuDNN's fused kernel (CUDA, ``attn_bias``).
        max_seqlen: Longest sequence ``cu_seqlens`` describes (0: the frame count); packed
            batches pass a bound so the kernel does not launch blocks for the whole row.

    Returns:
        The block's output, like ``DiTBlock.forward``.
    """
    batch, frames, dim = x.shape
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.unbind(0)

    norm = F.layer_norm(x, (dim,), eps=ln_eps) * (1 + scale_msa) + shift_msa
    qkv = F.linear(norm, w_qkv, b_qkv)
    inner = w_qkv.shape[0] // 3
    head_dim = inner // heads
    query, key, value = qkv.view(batch, frames, 3, heads, head_dim).unbind(2)  # [b, n, h, d]
    if q_norm is not None:
        query = F.rms_norm(query, (head_dim,), weight=q_norm, eps=rms_eps)
    if k_norm is not None:
        key = F.rms_norm(key, (head_dim,), weight=k_norm, eps=rms_eps)
    dtype = query.dtype
    rot = cos.shape[-1]
    cos_b, sin_b = cos.view(1, frames, 1, rot), sin.view(1, frames, 1, rot)
    query = (query * cos_b + rotate_half(query) * sin_b).to(dtype)
    key = (key * cos_b + rotate_half(key) * sin_b).to(dtype)
    attn = attention(query, key, value, attn_bias, cu_seqlens, cudnn, max_seqlen)
    attn = F.linear(attn.to(dtype), w_o, b_o)
    x = x + gate_msa * attn

    norm = F.layer_norm(x, (dim,), eps=ln_eps) * (1 + scale_mlp) + shift_mlp
    hidden = F.gelu(F.linear(norm, w_ff1, b_ff1), approximate="tanh")
    return x + gate_mlp * F.linear(hidden, w_ff2, b_ff2)


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_bias: Tensor | None,
    cu_seqlens: Tensor | None,
    cudnn: bool,
    max_seqlen: int = 0,
) -> Tensor:
    """Softmax attention over [batch, frames, heads, head_dim] inputs; [batch, frames, inner] out.

    Padded keys are excluded in one of three exact ways, all equal to attending over the valid
    frames alone (up to rounding):

    * ``cu_seqlens`` (CUDA fp16/bf16): FlashAttention-2's variable-length kernel, with the
      valid and the padded frames of each CFG branch as separate sequences (and, for a
      packed batch, each request's frames and the gaps between them; ``max_seqlen`` bounds
      the longest, 0 meaning the whole row);
    * ``cudnn`` with ``attn_bias``: cuDNN's fused attention with the -inf key bias (on Hopper
      it uses the chip's matrix instructions, which FlashAttention-2 does not);
    * ``attn_bias`` alone: whichever SDPA backend torch picks for a masked call; a packed
      batch passes a block-diagonal [batch, 1, frames, frames] bias (CPU-sized only).

    Neither a bias nor ``cu_seqlens``: no padding, the stock unmasked call.
    """
    batch, frames, heads, head_dim = query.shape
    inner = heads * head_dim
    if cu_seqlens is not None:
        out = torch.ops.aten._flash_attention_forward(
            query.reshape(batch * frames, heads, head_dim),
            key.reshape(batch * frames, heads, head_dim),
            value.reshape(batch * frames, heads, head_dim),
            cu_seqlens,
            cu_seqlens,
            max_seqlen or frames,
            max_seqlen or frames,
            0.0,
            False,
            False,
        )[0]
        return out.view(batch, frames, inner)  # type: ignore[no-any-return]
    if cudnn and attn_bias is not None:
        out = torch.ops.aten._scaled_dot_product_cudnn_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_bias, False
        )[0]
        return out.transpose(1, 2).reshape(batch, frames, inner)  # type: ignore[no-any-return]
    attn = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=attn_bias
    )
    return attn.transpose(1, 2).reshape(batch, frames, inner)


def epss_time_grid(
    nfe_step: int, sway_sampling_coef: float | None, device: Any, dtype: Any
) -> Tensor:
    """The time grid ``CFM.sample`` integrates over (EPSS steps, then sway), same dtype ops.

    Args:
        nfe_step: Number of Euler steps.
        sway_sampling_coef: f5's sway coefficient (None: no sway).
        device: Where the grid lives.
        dtype: The model's dtype; f5 builds the grid in it, so rounding matches.

    Returns:
        ``nfe_step + 1`` time points from 0 to 1.
    """
    from f5_tts.model.utils import get_epss_timesteps

    t: Tensor = get_epss_timesteps(nfe_step, device=device, dtype=dtype)
    if sway_sampling_coef is not None:
        t = t + sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


@dataclass(frozen=True, slots=True)
class BlockConstants:
    """The scalars every block call needs (the same for all 22 blocks of f5's DiT)."""

    heads: int
    ln_eps: float
    rms_eps: float

    @classmethod
    def of(cls, dit: Any) -> BlockConstants:
        """Read them off a DiT."""
        first = dit.transformer_blocks[0]
        q_norm = first.attn.q_norm
        return cls(
            heads=int(first.attn.heads),
            ln_eps=float(first.ff_norm.eps),
            rms_eps=float(q_norm.eps) if q_norm is not None else 1e-6,
        )


def check_supported(cfm: Any) -> tuple[bool, str]:
    """Whether the step code mirrors this model; if not, why (callers use ``CFM.sample``)."""
    dit: Any = getattr(cfm, "transformer", None)
    if type(dit).__name__ != "DiT":
        return False, f"backbone {type(dit).__name__} is not DiT"
    if getattr(cfm, "odeint_kwargs", {}).get("method", "euler") != "euler":
        return False, "ODE method is not euler"
    if getattr(dit, "checkpoint_activations", False):
        return False, "checkpoint_activations is on"
    for block in dit.transformer_blocks:
        proc = block.attn.processor
        if proc.pe_attn_head is not None:
            return False, "pe_attn_head is set"
        if proc.attn_backend != "torch":
            return False, f"attn_backend {proc.attn_backend}"
    if dit.rotary_embed.scale is not None:
        return False, "xpos rotary scale"
    return True, ""


def prepare_weights(cfm: Any) -> list[Block]:
    """Each block's weights as views, with Q, K and V fused into one matrix."""
    blocks = []
    for block in cfm.transformer.transformer_blocks:
        attn = block.attn
        blocks.append(
            Block(
                w_qkv=torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]).detach(),
                b_qkv=torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]).detach(),
                w_o=attn.to_out[0].weight.detach(),
                b_o=attn.to_out[0].bias.detach(),
                w_ff1=block.ff.ff[0][0].weight.detach(),
                b_ff1=block.ff.ff[0][0].bias.detach(),
                w_ff2=block.ff.ff[2].weight.detach(),
                b_ff2=block.ff.ff[2].bias.detach(),
                q_norm=attn.q_norm.weight.detach() if attn.q_norm is not None else None,
                k_norm=attn.k_norm.weight.detach() if attn.k_norm is not None else None,
            )
        )
    return blocks


@torch.inference_mode()
def prepare_schedule(cfm: Any, nfe_step: int, sway_sampling_coef: float) -> Schedule:
    """Time grid, steps and every modulation, computed as stock computes them per step.

    All requests share the time steps, so these are shared by every request of a batch too.
    """
    dit = cfm.transformer
    param = next(cfm.parameters())
    t = epss_time_grid(nfe_step, sway_sampling_coef, param.device, param.dtype)
    steps = t.shape[0] - 1
    dts, mods, finals = [], [], []
    for i in range(steps):
        t0, t1 = t[i], t[i + 1]
        dts.append(t1 - t0)
        temb = dit.time_embed(t0.repeat(1))
        temb = torch.cat((temb, temb), dim=0)  # CFG batch, as DiT.forward builds it
        per_block = []
        for block in dit.transformer_blocks:
            emb = block.attn_norm.linear(block.attn_norm.silu(temb))
            per_block.append(torch.stack(torch.chunk(emb[:1], 6, dim=1)))  # [6, 1, dim]
        mods.append(torch.stack(per_block))  # [depth, 6, 1, dim]
        emb = dit.norm_out.linear(dit.norm_out.silu(temb))
        finals.append(torch.stack(torch.chunk(emb[:1], 2, dim=1)))  # [2, 1, dim]
    return Schedule(
        t=t,
        dt=torch.stack(dts),
        mods=torch.stack(mods).squeeze(3).contiguous(),
        final=torch.stack(finals).squeeze(2).contiguous(),
    )
