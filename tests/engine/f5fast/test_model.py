"""The restated DiT arithmetic: f5's time grid, its per-step modulations, supported models."""

from __future__ import annotations

from typing import Any

import torch
from f5_tts.model.utils import get_epss_timesteps

from engine.f5fast.model import (
    BlockConstants,
    check_supported,
    epss_time_grid,
    prepare_schedule,
    prepare_weights,
)
from tests.support.f5 import tiny_cfm


def test_time_grid_is_f5s() -> None:
    grid = epss_time_grid(16, -1.0, "cpu", torch.float16)
    base = get_epss_timesteps(16, device="cpu", dtype=torch.float16)
    assert grid.dtype == torch.float16
    assert grid.shape == (17,)
    assert torch.equal(grid, base + -1.0 * (torch.cos(torch.pi / 2 * base) - 1 + base))
    assert float(grid[0]) == 0.0
    assert abs(float(grid[-1]) - 1.0) < 1e-3  # f5's own fp16 rounding of cos(pi/2): 0.9995


def test_schedule_holds_every_steps_modulation_as_the_blocks_compute_it(model: Any) -> None:
    schedule = prepare_schedule(model, 16, -1.0)
    dit = model.transformer
    assert schedule.dt.shape == (16,)
    assert schedule.mods.shape == (16, dit.depth, 6, dit.dim)
    assert schedule.final.shape == (16, 2, dit.dim)
    assert torch.allclose(schedule.dt.sum(), schedule.t[-1] - schedule.t[0])
    with torch.inference_mode():
        t = schedule.t[5].repeat(2)  # the CFG batch, as DiT.forward builds it
        temb = dit.time_embed(t)
        block = dit.transformer_blocks[1]
        emb = block.attn_norm.linear(block.attn_norm.silu(temb))[:1]
        want = torch.stack(torch.chunk(emb, 6, dim=1))[:, 0]
    assert torch.allclose(schedule.mods[5, 1], want, rtol=1e-6, atol=1e-7)


def test_weights_fuse_q_k_and_v(model: Any) -> None:
    blocks = prepare_weights(model)
    attn = model.transformer.transformer_blocks[0].attn
    assert len(blocks) == model.transformer.depth
    inner = attn.to_q.weight.shape[0]
    assert torch.equal(blocks[0].w_qkv[inner : 2 * inner], attn.to_k.weight)
    assert blocks[0].q_norm is None
    consts = BlockConstants.of(model.transformer)
    assert consts.heads == 2


def test_supported_models_and_why_not() -> None:
    assert check_supported(tiny_cfm()) == (True, "")
    assert check_supported(tiny_cfm(seed=1, pe_attn_head=1)) == (False, "pe_attn_head is set")
    assert check_supported(object())[0] is False
