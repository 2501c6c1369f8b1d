"""Batched sampling (issue 17): several requests through one packed pass, each exact.

Requests of different voices (reference mels), texts and lengths share one sampling pass;
each must equal what it gives alone with the same noise, both on the fast sampler's single
path and on stock ``CFM.sample`` (fp32, < 1e-5 relative L2). Convolutions and the text
embedding look along the sequence, so the tests also run the same request beside different
neighbours: its output must not change.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.f5fast import FastSampler
from engine.sampling import SampleRequest
from tests.engine.f5fast.common import TEXT, ids, make, noise_for, reference, rel, stock_with
from tests.support.f5 import N_MEL, tiny_cfm


def _request(text: str, frames: int, seed: int, ref_frames: int = 48) -> SampleRequest:
    """A request with its own voice (reference mel) and its own noise."""
    return SampleRequest(reference(seed, ref_frames), ids(text), frames, noise_for(frames, seed))


RAID = [
    _request(TEXT, 150, 1),
    _request("hi chat", 60, 2, ref_frames=30),
    _request("thanks for the raid, you are all amazing!", 211, 3, ref_frames=64),
    _request("ok", 49, 4, ref_frames=40),
]


def _batcher(cfm: Any, **kw: Any) -> FastSampler:
    params: dict[str, Any] = {"bucket_frames": 32, "max_batch": 8, "max_batch_frames": 2048}
    params.update(kw)
    return make(cfm, **params)


def _alone(sampler: FastSampler, request: SampleRequest) -> torch.Tensor:
    with torch.inference_mode():
        return sampler.sample(request.cond, request.text_ids, request.duration, request.noise)


def _generated(request: SampleRequest, mel: torch.Tensor) -> torch.Tensor:
    return mel[:, request.cond.shape[1] :]


def test_a_batch_equals_each_request_alone_and_stock(model: Any) -> None:
    sampler = _batcher(model)
    with torch.inference_mode():
        outs = sampler.sample_batch(RAID)
    assert sampler.stats["packed_passes"] == 1
    assert sampler.stats["packed_requests"] == len(RAID)
    single = make(model, bucket_frames=32)
    for request, out in zip(RAID, outs, strict=True):
        assert out.shape == (1, request.duration, N_MEL)
        assert torch.equal(out[:, : request.cond.shape[1]], request.cond)
        gen = _generated(request, out)
        assert rel(gen, _generated(request, _alone(single, request))) < 1e-5
        assert rel(gen, _generated(request, stock_with(model, request))) < 1e-5
        assert float(gen.abs().mean()) > 0.1  # not trivial


def test_a_request_is_the_same_beside_any_neighbours(model: Any) -> None:
    """Convolutions and the text embedding do not reach across requests."""
    target = RAID[1]
    sampler = _batcher(model)
    with torch.inference_mode():
        first = sampler.sample_batch([RAID[0], target, RAID[2]])[1]
        second = sampler.sample_batch([_request(TEXT * 3, 400, 9), target, RAID[3]])[1]
        last = sampler.sample_batch([RAID[3], RAID[2], target])[2]
    assert sampler.stats["packed_passes"] == 3
    alone = _alone(make(model, bucket_frames=32), target)
    for out in (first, second, last):
        assert rel(_generated(target, out), _generated(target, alone)) < 1e-5


def test_without_the_gap_neighbours_would_leak(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the test above: packed with no masked gap, a request's output does change."""
    import engine.f5fast.layout as layout

    monkeypatch.setattr(layout, "GAP", 0)
    sampler = _batcher(model)
    with torch.inference_mode():
        packed = sampler.sample_batch([RAID[0], RAID[1]])[1]
    alone = _alone(make(model, bucket_frames=32), RAID[1])
    assert rel(_generated(RAID[1], packed), _generated(RAID[1], alone)) > 1e-4


def test_noise_left_out_is_drawn_in_request_order(model: Any) -> None:
    requests = [SampleRequest(r.cond, r.text_ids, r.duration) for r in RAID[:3]]
    sampler = _batcher(model)
    torch.manual_seed(77)
    with torch.inference_mode():
        outs = sampler.sample_batch(requests)
        torch.manual_seed(77)
        one_by_one = [sampler.sample(r.cond, r.text_ids, r.duration) for r in requests]
    for out, want in zip(outs, one_by_one, strict=True):
        assert rel(out, want) < 1e-5


def test_passes_are_bounded_by_max_batch_and_frames(model: Any) -> None:
    by_count = _batcher(model, max_batch=2)
    with torch.inference_mode():
        outs = by_count.sample_batch(RAID)
    assert by_count.stats["packed_passes"] == 2
    by_frames = _batcher(model, max_batch_frames=2048)
    long_ones = [_request(TEXT, 900, 11), _request(TEXT, 900, 12), _request(TEXT, 900, 13)]
    with torch.inference_mode():
        by_frames.sample_batch(long_ones)
    assert by_frames.stats["packed_requests"] == 2  # the third did not fit: it ran alone
    single = make(model, bucket_frames=32)
    for request, out in zip(RAID, outs, strict=True):
        assert rel(_generated(request, out), _generated(request, _alone(single, request))) < 1e-5


def test_a_request_longer_than_max_frames_runs_alone(model: Any) -> None:
    sampler = _batcher(model, max_frames=128)
    with torch.inference_mode():
        outs = sampler.sample_batch(RAID)  # 150 and 211 frames are too long to pack
    assert sampler.stats["packed_requests"] == 2
    for request, out in zip(RAID, outs, strict=True):
        assert rel(_generated(request, out), _generated(request, stock_with(model, request))) < 1e-5


def test_max_batch_one_never_packs(model: Any) -> None:
    sampler = _batcher(model, max_batch=1)
    with torch.inference_mode():
        outs = sampler.sample_batch(RAID[:2])
    assert "packed_passes" not in sampler.stats
    assert sampler.batch_attention is None
    assert [o.shape[1] for o in outs] == [150, 60]


@pytest.mark.parametrize(
    "arch",
    [
        {"qk_norm": "rms_norm", "long_skip_connection": True},
        {"text_mask_padding": False},
        {"conv_layers": 0},
    ],
)
def test_other_architectures_batch_exactly(arch: dict[str, Any]) -> None:
    cfm = tiny_cfm(seed=5, **arch)
    sampler = _batcher(cfm)
    with torch.inference_mode():
        outs = sampler.sample_batch(RAID[:3])
    assert sampler.stats["packed_passes"] == 1
    for request, out in zip(RAID, outs, strict=False):
        assert rel(_generated(request, out), _generated(request, stock_with(cfm, request))) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs and FlashAttention: GPU")
def test_on_cuda_a_captured_packed_pass_matches_each_request_alone() -> None:
    """The GPU path: fp16, FlashAttention's varlen kernel, the batch bucket's CUDA graph."""
    from engine.f5fast.layout import packed_frames

    cfm = tiny_cfm().cuda().half()
    requests = [
        SampleRequest(r.cond.cuda().half(), r.text_ids, r.duration, r.noise.cuda().half())  # type: ignore[union-attr]
        for r in RAID
    ]
    sampler = make(cfm, max_batch=4, max_batch_frames=4096, compile=False)
    packed = packed_frames([r.duration for r in requests])
    sampler.warmup(frames=[r.duration for r in requests], batch_frames=[packed])
    assert sampler.batch_attention == "flash"
    assert sampler.store.batch(packed).graph is not None
    with torch.inference_mode():
        outs = sampler.sample_batch(requests)
    assert sampler.stats["packed_passes"] == 1
    single = make(cfm, compile=False)
    for request, out in zip(requests, outs, strict=True):
        gen = _generated(request, out).float()
        assert rel(gen, _generated(request, _alone(single, request)).float()) < 1e-2
        assert rel(gen, _generated(request, stock_with(cfm, request)).float()) < 1e-2
