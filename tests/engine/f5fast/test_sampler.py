"""FastSampler against f5-tts's own ``CFM.sample`` on tiny real f5 models (CPU).

The fast sampler must compute the same function as stock: same inputs, time steps and noise
give the same mel. On the CPU nothing is captured or compiled, but the step code that the
CUDA graphs replay runs here too, unpadded and padded (with the exact key masking), so these
tests check its arithmetic. Both samplers satisfy the ``engine.sampling.Sampler`` contract.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.f5fast import FastSampler
from engine.sampling import Sampler, SampleRequest, StockSampler
from tests.engine.f5fast.common import (
    REF_FRAMES,
    SEED,
    SETTINGS,
    TEXT,
    fast,
    ids,
    make,
    rel,
    stock,
)
from tests.support.f5 import N_MEL, tiny_cfm


def _takes_a_sampler(sampler: Sampler) -> int:
    """Type-checked use of the contract: mypy rejects a sampler that does not satisfy it."""
    return sampler.max_batch


def test_both_samplers_satisfy_the_protocol(model: Any) -> None:
    fast_sampler = make(model)
    stock_sampler = StockSampler(model, **SETTINGS)
    for sampler in (fast_sampler, stock_sampler):
        assert isinstance(sampler, Sampler)
        assert _takes_a_sampler(sampler) >= 1
    assert not isinstance(object(), Sampler)
    assert stock_sampler.max_batch == 1
    batching = make(model, max_batch=4)
    assert batching.max_batch == 4
    batching.warmup()
    assert (batching.max_batch, batching.batch_attention) == (4, "sdpa")


def test_stock_sampler_batch_is_one_request_after_another(model: Any, cond: torch.Tensor) -> None:
    sampler = StockSampler(model, **SETTINGS)
    torch.manual_seed(SEED)
    noises = [torch.randn(130, N_MEL), torch.randn(90, N_MEL)]
    requests = [
        SampleRequest(cond, ids(TEXT), 130, noises[0]),
        SampleRequest(cond, ids("hello"), 90, noises[1]),
    ]
    with torch.inference_mode():
        got = sampler.sample_batch(requests)
        alone = [sampler.sample(r.cond, r.text_ids, r.duration, r.noise) for r in requests]
    assert [tuple(g.shape) for g in got] == [(1, 130, N_MEL), (1, 90, N_MEL)]
    for a, b in zip(got, alone, strict=True):
        assert torch.equal(a, b)
    assert sampler.prepare_more() is False


def test_unpadded_matches_stock_exactly(model: Any, cond: torch.Tensor) -> None:
    want = stock(model, cond, ids(TEXT), 150)
    got = fast(make(model), cond, ids(TEXT), 150)
    assert got.shape == want.shape == (1, 150, N_MEL)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5
    # the output is not trivial: generation moved far from the noise and from zero
    assert float(want[:, REF_FRAMES:].abs().mean()) > 0.1


@pytest.mark.parametrize("duration", [100, 128, 129, 150, 257])
def test_padded_buckets_match_stock(model: Any, cond: torch.Tensor, duration: int) -> None:
    """Padding to a bucket with masked keys and convolutions changes nothing but rounding."""
    sampler = make(model, bucket_frames=32)
    assert sampler.bucket_for(duration) % 32 == 0
    want = stock(model, cond, ids(TEXT), duration)
    got = fast(sampler, cond, ids(TEXT), duration)
    assert got.shape == want.shape
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_padding_without_masks_would_differ(model: Any, cond: torch.Tensor) -> None:
    """Guards the test above: the bucket really is padded, and padding does matter to f5.

    Running f5's arithmetic on the padded length without a mask gives a different mel for
    the same frames, so matching stock needs the masking.
    """
    sampler = make(model, bucket_frames=64)
    assert sampler.bucket_for(100) == 128
    want = stock(model, cond, ids(TEXT), 100)
    torch.manual_seed(SEED)
    noise = torch.randn(100, N_MEL)
    padded_noise = torch.cat([noise, torch.zeros(28, N_MEL)])
    with torch.inference_mode():
        plain = make(model, bucket_frames=0).sample(cond, ids(TEXT), 128, noise=padded_noise)
    assert rel(plain[:, REF_FRAMES:100], want[:, REF_FRAMES:]) > 1e-3


def test_reference_frames_equal_cond(model: Any, cond: torch.Tensor) -> None:
    got = fast(make(model, bucket_frames=32), cond, ids(TEXT), 140)
    assert torch.equal(got[:, :REF_FRAMES], cond)


def test_explicit_noise_same_as_seeded(model: Any, cond: torch.Tensor) -> None:
    sampler = make(model, bucket_frames=32)
    seeded = fast(sampler, cond, ids(TEXT), 140)
    torch.manual_seed(SEED)
    noise = torch.randn(140, N_MEL)
    with torch.inference_mode():
        flat = sampler.sample(cond, ids(TEXT), 140, noise=noise)
        batched = sampler.sample(cond, ids(TEXT), 140, noise=noise[None])
    assert torch.equal(flat, seeded)
    assert torch.equal(batched, seeded)
    with pytest.raises(ValueError, match="noise has 139 frames"):
        sampler.sample(cond, ids(TEXT), 140, noise=noise[:139])


def test_duration_raised_like_stock(model: Any, cond: torch.Tensor) -> None:
    """Too short a duration is raised to max(text, reference) + 1, as CFM.sample does."""
    long_text = TEXT * 3  # 156 characters > 60 frames
    want = stock(model, cond, ids(long_text), 60)
    got = fast(make(model, bucket_frames=32), cond, ids(long_text), 60)
    assert got.shape == want.shape == (1, len(long_text) + 1, N_MEL)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


@pytest.mark.parametrize(
    ("nfe", "cfg", "sway"), [(7, 2.0, -1.0), (9, 2.0, -1.0), (16, 0.0, -1.0), (16, 2.0, 0.0)]
)
def test_other_settings_match_stock(
    model: Any, cond: torch.Tensor, nfe: int, cfg: float, sway: float
) -> None:
    """EPSS table sizes, plain linspace (9), no guidance (stock then skips the CFG batch)."""
    sampler = make(model, nfe_step=nfe, cfg_strength=cfg, sway_sampling_coef=sway, bucket_frames=32)
    want = stock(model, cond, ids(TEXT), 130, steps=nfe, cfg_strength=cfg, sway_sampling_coef=sway)
    got = fast(sampler, cond, ids(TEXT), 130)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_qk_norm_and_long_skip_models(cond: torch.Tensor) -> None:
    cfm = tiny_cfm(seed=3, qk_norm="rms_norm", long_skip_connection=True)
    want = stock(cfm, cond, ids(TEXT), 140)
    got = fast(make(cfm, bucket_frames=32), cond, ids(TEXT), 140)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_unsupported_model_falls_back_to_stock(cond: torch.Tensor) -> None:
    cfm = tiny_cfm(seed=4, pe_attn_head=1)
    sampler = make(cfm, bucket_frames=32, max_batch=4)
    assert sampler.max_batch == 1  # nothing to pack with: callers should not hold requests back
    sampler.warmup()  # says why in the log, prepares nothing
    want = stock(cfm, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert torch.equal(got, want)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        (batched,) = sampler.sample_batch([SampleRequest(cond, ids(TEXT), 140)])
    assert torch.equal(batched, want)


def test_fp16_model_on_cpu_runs_and_stays_close(model: Any, cond: torch.Tensor) -> None:
    """fp16 weights (the GPU's dtype) on the CPU: same path, fp16 rounding only."""
    half = tiny_cfm().half()
    cond16 = cond.half()
    want = stock(model, cond, ids(TEXT), 140)  # fp32 reference
    got = fast(make(half, bucket_frames=32), cond16, ids(TEXT), 140)
    assert got.dtype == torch.float16
    assert torch.isfinite(got).all()
    assert rel(got[:, REF_FRAMES:].float(), want[:, REF_FRAMES:]) < 1e-2


def test_warmup_on_cpu_is_cheap_and_idempotent(model: Any, cond: torch.Tensor) -> None:
    sampler = make(model, bucket_frames=32, max_batch=4, ready_frames=64)
    messages: list[str] = []
    sampler.warmup(progress=messages.append)
    sampler.warmup(frames=[100, 140], progress=messages.append)
    assert not sampler.use_graphs
    assert not sampler.use_compile
    assert sampler.pending == 0  # nothing to capture on the CPU, so nothing left for idle time
    assert sampler.prepare_more() is False
    want = stock(model, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_bad_arguments_are_clear_errors(model: Any, cond: torch.Tensor) -> None:
    sampler = make(model)
    with pytest.raises(ValueError, match="cond must be"):
        sampler.sample(cond[0], ids(TEXT), 140)
    with pytest.raises(ValueError, match="text_ids must be"):
        sampler.sample(cond, ids(TEXT)[0], 140)
    with pytest.raises(ValueError, match="nfe_step must be at least 1"):
        make(model, nfe_step=0)
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        make(model, max_batch=0)


def test_defaults_on_the_cpu_are_unpadded_uncompiled_and_graphless(model: Any) -> None:
    sampler = FastSampler(model, **SETTINGS)
    assert sampler.bucket_frames == 0
    assert not sampler.use_graphs
    assert not sampler.use_compile
    assert sampler.bucket_for(1000) == 1000
    assert make(model, bucket_frames=32, max_frames=256).bucket_for(257) == 257
