"""Compilation: inductor's cache folder is the sampler's alone, and the process keeps its own.

The old sampler set ``TORCHINDUCTOR_CACHE_DIR`` in its constructor, so the first sampler's
folder won for the whole process. Now the folder is set only around the calls that may
compile, and the environment is exactly as it was before and after.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._inductor.config as inductor_config
from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

from engine.f5fast.compiler import CACHE_ENV, CompiledBlock, block_error, inductor_scope
from engine.f5fast.layout import pack
from engine.f5fast.model import BlockConstants, block_forward, prepare_schedule, prepare_weights
from tests.engine.f5fast.common import REF_FRAMES, TEXT, fast, ids, make, rel, stock


def env() -> dict[str, str]:
    """The process environment, less the variable pytest itself rewrites per phase."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture
def environment() -> Any:
    """The process environment before the test; the test asserts it is the same after."""
    before = dict(os.environ)
    yield env()
    # leave no trace for other tests either, whatever the assertion said
    for key in set(os.environ) - set(before):
        del os.environ[key]
    os.environ.update(before)


def test_the_scope_sets_the_folder_inside_and_restores_everything(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    fx_before = inductor_config.fx_graph_cache
    folder = tmp_path / "inductor"
    with inductor_scope(folder):
        assert os.environ[CACHE_ENV] == str(folder)
        assert inductor_cache_dir() == str(folder)  # where inductor writes and reads
        assert inductor_config.fx_graph_cache is True
        assert folder.is_dir()
    assert env() == environment
    assert inductor_config.fx_graph_cache == fx_before


def test_the_scope_without_a_folder_undoes_inductors_own_write(
    environment: dict[str, str],
) -> None:
    """Inductor sets the variable the first time it looks its folder up; the scope undoes it."""
    os.environ.pop(CACHE_ENV, None)
    before = env()
    with inductor_scope(None):
        inductor_cache_dir()
        assert CACHE_ENV in os.environ
    assert env() == before


def test_an_existing_setting_survives_two_samplers_with_their_own_folders(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    os.environ[CACHE_ENV] = str(tmp_path / "the-process-own")
    before = env()
    seen = []
    for name in ("a", "b"):
        with inductor_scope(tmp_path / name):
            seen.append(inductor_cache_dir())
    assert seen == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert env() == before


def test_making_and_preparing_compiling_samplers_changes_no_environment(
    model: Any, tmp_path: Path, environment: dict[str, str]
) -> None:
    first = make(model, bucket_frames=32, compile=True, cache_dir=tmp_path / "one")
    second = make(model, bucket_frames=32, compile=True, cache_dir=tmp_path / "two")
    assert env() == environment
    for sampler, folder in ((first, "one"), (second, "two")):
        sampler.warmup(frames=[])  # builds the schedule, weights and the (lazy) compiled block
        assert sampler._model is not None
        block_fn = sampler._model.block_fn
        assert isinstance(block_fn, CompiledBlock)
        assert block_fn.cache_dir == tmp_path / folder
    assert env() == environment


def test_the_block_check_sees_a_wrong_block(model: Any) -> None:
    """``block_error`` (the compiled block's guard): 0 for the same block, large for another."""
    dit = model.transformer
    blocks = prepare_weights(model)
    schedule = prepare_schedule(model, 16, -1.0)
    freqs, _ = dit.rotary_embed.forward_from_seq_len(96)
    cos, sin = freqs[0].cos(), freqs[0].sin()
    common: dict[str, Any] = {
        "dit": dit,
        "block": blocks[0],
        "consts": BlockConstants.of(dit),
        "mods": schedule.mods[0][0][:, None, None, :],
        "cos": cos,
        "sin": sin,
        "cu_seqlens": None,
        "cudnn": False,
        "dynamic": False,
    }
    with torch.inference_mode():
        assert block_error(block_forward, attn_bias=None, **common) == 0.0
        bias = pack([80], 96).segment_bias(torch.float32)[None, None].expand(2, -1, -1, -1)
        assert block_error(block_forward, attn_bias=bias, **common) > 1e-3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor's CPU backend needs g++")
def test_compiled_block_one_graph_for_all_buckets(
    model: Any, cond: torch.Tensor, tmp_path: Path, environment: dict[str, str]
) -> None:
    """torch.compile path (dynamic length): one graph serves every bucket, same results.

    Buckets past ``ready_frames`` are left to ``prepare_more`` (the engine's idle time), one
    per call. The compiled artefacts land in the sampler's folder, and the environment is
    untouched.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    folder = tmp_path / "cache"
    sampler = make(
        model, bucket_frames=32, max_frames=256, compile=True, cache_dir=folder, ready_frames=128
    )
    sampler.warmup()
    assert sampler.use_compile
    assert sampler.stats["compiled_block_rel_err"] < 1e-4
    assert sampler.pending == 4  # 160, 192, 224 and 256 frames
    calls = 1
    while sampler.prepare_more():
        calls += 1
    assert (calls, sampler.pending) == (4, 0)
    assert sampler.prepare_more() is False
    for duration in (100, 140, 200):
        want = stock(model, cond, ids(TEXT), duration)
        got = fast(sampler, cond, ids(TEXT), duration)
        assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-4
    assert counters["stats"]["unique_graphs"] == 1
    assert any(folder.rglob("*")), "nothing was written to the sampler's cache folder"
    assert env() == environment
