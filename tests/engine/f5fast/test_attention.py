"""Attention: the key-masked kernels equal attention over the valid frames; the choice on the CPU.

The fused kernels (FlashAttention's varlen, cuDNN) need CUDA in fp16/bf16, so on the CPU
every request resolves to torch's masked SDPA, and the checks that would let a fused kernel in
say no. What runs here is the arithmetic every choice must equal: a -inf key bias (single
requests) and a block-diagonal bias (packed batches) give exactly the attention of each
sequence alone.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.f5fast import attention as choice
from engine.f5fast.layout import pack
from engine.f5fast.model import attention
from tests.engine.f5fast.common import REF_FRAMES, TEXT, fast, ids, make, rel, stock

HEADS, HEAD_DIM = 2, 16


def _qkv(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, 2, frames, HEADS, HEAD_DIM, generator=gen).unbind(0)
    return q, k, v


def _alone(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def test_key_bias_equals_attention_over_the_valid_frames() -> None:
    q, k, v = _qkv(40)
    bias = torch.zeros(2, 1, 1, 40)
    bias[..., 29:] = -math.inf
    got = attention(q, k, v, bias, None, cudnn=False)
    want = _alone(q[:, :29], k[:, :29], v[:, :29])
    assert got.shape == (2, 40, HEADS * HEAD_DIM)
    assert rel(got[:, :29], want) < 1e-6
    # without the bias the padded keys join in: the valid rows change
    assert rel(attention(q, k, v, None, None, cudnn=False)[:, :29], want) > 1e-3


def test_block_diagonal_bias_keeps_packed_requests_apart() -> None:
    packing = pack([20, 35, 9], 96)
    q, k, v = _qkv(96, seed=1)
    bias = packing.segment_bias(torch.float32).view(1, 1, 96, 96).expand(2, -1, -1, -1)
    got = attention(q, k, v, bias, None, cudnn=False)
    for offset, length in zip(packing.offsets, packing.lengths, strict=True):
        part = slice(offset, offset + length)
        assert rel(got[:, part], _alone(q[:, part], k[:, part], v[:, part])) < 1e-6


@pytest.mark.parametrize("request_", ["flash", "cudnn", "sdpa", None])
def test_the_cpu_choice_is_always_sdpa(request_: str | None) -> None:
    stats: dict[str, float] = {}
    chosen = choice.choose(
        request_,
        device=torch.device("cpu"),
        dtype=torch.float16,
        heads=HEADS,
        head_dim=HEAD_DIM,
        max_frames=3072,
        stats=stats,
    )
    assert chosen == "sdpa"
    assert stats == {}  # nothing was timed


def test_fused_kernels_are_refused_off_cuda() -> None:
    args: dict[str, Any] = {"dtype": torch.float16, "heads": HEADS, "head_dim": HEAD_DIM}
    assert not choice.check_packed(device=torch.device("cpu"), slots=4, **args)
    assert not choice.check_packed(
        device=torch.device("cuda"), slots=4, heads=HEADS, head_dim=HEAD_DIM, dtype=torch.float32
    )


def test_unknown_attention_is_a_clear_error(model: Any) -> None:
    with pytest.raises(ValueError, match="attention must be one of flash, cudnn, sdpa"):
        make(model, attention="xformers")
    with pytest.raises(ValueError, match="attention must be one of flash, cudnn, sdpa"):
        choice.choose(
            "xformers",
            device=torch.device("cpu"),
            dtype=torch.float32,
            heads=HEADS,
            head_dim=HEAD_DIM,
            max_frames=3072,
            stats={},
        )


@pytest.mark.parametrize("attention_", ["flash", "cudnn", "sdpa", None])
def test_any_request_on_the_cpu_samples_like_stock(
    model: Any, cond: torch.Tensor, attention_: str | None
) -> None:
    """The sampler resolves its request to SDPA on the CPU, still exact, batches included."""
    sampler = make(model, bucket_frames=32, attention=attention_, max_batch=2)
    want = stock(model, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert sampler.attention == "sdpa"
    assert sampler.batch_attention == "sdpa"
    assert not sampler.use_varlen
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5
