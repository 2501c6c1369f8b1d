"""torch.compile of the transformer block, with its on-disk cache scoped to this sampler.

The block is compiled once as a function of its weights (all 22 blocks and every bucket
length share one dynamic-length graph); inductor's on-disk cache then makes later start-ups
fast. Where that cache lives is the caller's choice (the bot's state folder), so it must not
leak into the process: inductor reads it from ``TORCHINDUCTOR_CACHE_DIR`` only, so the
variable is set just for the duration of each call that may compile (inductor's own
``temporary_cache_dir`` does this) and put back afterwards; the FX graph cache is switched on
through ``torch._inductor.config.patch`` in the same scope. Inductor also writes variables
itself while it compiles (its folder, the first time it looks it up; a pointer for the CPU
kernels it loads), so the scope puts the whole environment back as it was, folder or not.
Another sampler with another folder, or the rest of the process, is unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.f5fast.model import Block, BlockConstants, block_forward

log = logging.getLogger(__name__)

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
"""The one place inductor reads its on-disk cache folder from."""


@contextlib.contextmanager
def inductor_scope(cache_dir: Path | None) -> Iterator[None]:
    """Inductor's cache folder and FX graph cache for the calls inside this block only."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fx_graph_cache=True), _environment_kept():
        if cache_dir is None:
            yield
            return
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
        except ImportError:  # older torch: the same, by hand
            temporary_cache_dir = _temporary_cache_dir
        with temporary_cache_dir(str(cache_dir)):
            yield


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """Put the process environment back as it was when the block ends.

    Inductor writes variables of its own while it compiles and loads code (its cache folder
    when it first looks it up, ``_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR`` when it loads a
    CPU kernel library); both are read only during those calls, so none needs to outlive it.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in [key for key in os.environ if key not in before]:
            os.environ.pop(key, None)
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _temporary_cache_dir(directory: str) -> Iterator[None]:
    with _environment_kept():
        os.environ[CACHE_ENV] = directory
        yield


class CompiledBlock:
    """``block_forward`` compiled by torch.compile, each call inside :func:`inductor_scope`.

    Calls happen at warm-up and capture (CUDA graphs replay without calling Python) or, on
    the CPU, per step; the scope costs microseconds next to a block.
    """

    def __init__(self, mode: str, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self._fn = torch.compile(block_forward, mode=mode, fullgraph=True, dynamic=None)

    def __call__(self, *args: Any) -> Tensor:
        """``block_forward(*args)``, compiled (compiling first if these inputs need it)."""
        with inductor_scope(self.cache_dir):
            return self._fn(*args)  # type: ignore[no-any-return]


def compile_block(mode: str, cache_dir: Path | None) -> Callable[..., Tensor]:
    """The compiled block, or the eager one when torch.compile is unavailable (logged)."""
    try:
        return CompiledBlock(mode, cache_dir)
    except Exception:
        log.exception("torch.compile unavailable; the fast sampler runs uncompiled")
        return block_forward


def block_error(
    block_fn: Callable[..., Tensor],
    *,
    dit: Any,
    block: Block,
    consts: BlockConstants,
    mods: Tensor,
    cos: Tensor,
    sin: Tensor,
    attn_bias: Tensor | None,
    cu_seqlens: Tensor | None,
    cudnn: bool,
    dynamic: bool,
) -> float:
    """``block_fn`` vs the eager block with torch's SDPA, relative to what the block adds.

    Guards what the stand-alone kernel checks cannot see: the fused attention op inside
    inductor's graph (layouts, strides, dynamic length). All frames count as valid (the
    caller marks them so). Relative to the update, not the output, so a wrong attention
    cannot hide behind the residual.
    """
    param = block.w_qkv
    frames = cos.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(1)
    # a small residual: LayerNorm makes the update independent of the input's scale, and
    # the output's fp16 rounding (relative to |h + update|) stays small next to the update
    h = (torch.randn(2, frames, dit.dim, generator=gen) * 1e-2).to(param.device, param.dtype)
    common = (
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
    )
    if dynamic:
        torch._dynamo.mark_dynamic(h, 1)
    got = block_fn(h, mods, cos, sin, attn_bias, cu_seqlens, *common, cudnn)
    want = block_forward(h, mods, cos, sin, None, None, *common, False)
    delta = (want.double() - h.double()).norm()
    return float((got.double() - want.double()).norm() / delta.clamp_min(1e-30))
