"""Buckets: static buffers per padded length, shared storage, and the layout written into them.

CUDA graphs replay on fixed addresses, so what matters here is that every bucket of a kind
views the same storage, that each pass rewrites everything a step reads (no state left from
an earlier request), and that the masks and rotary tables say where each request is.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.f5fast.buckets import BATCH_SMALLEST, BucketStore
from engine.f5fast.layout import GAP, pack
from tests.engine.f5fast.common import TEXT, fast, ids, make
from tests.support.f5 import N_MEL


def _store(model: Any, **kw: Any) -> BucketStore:
    params: dict[str, Any] = {
        "bucket_frames": 32,
        "max_frames": 512,
        "varlen": False,
        "batch_frames": 2048,
        "batch_slots": 4,
        "batch_varlen": False,
        "dynamic": False,
    }
    params.update(kw)
    return BucketStore(model.transformer, N_MEL, torch.device("cpu"), torch.float32, **params)


def test_single_buckets_are_views_of_one_storage(model: Any) -> None:
    store = _store(model)
    small, large = store.single(100), store.single(300)
    assert (small.frames, large.frames) == (128, 320)
    assert small.x.data_ptr() == large.x.data_ptr()
    assert small.inp.data_ptr() == large.inp.data_ptr()
    assert store.single(120) is small  # kept: one bucket per padded length
    assert store.single_sizes() == list(range(32, 513, 32))
    # longer than max_frames: its own exact-size buffers, not kept
    odd = store.single(600)
    assert (odd.frames, odd.padded) == (600, False)
    assert store.single(600) is not odd


def test_batch_buckets_climb_a_ladder_and_share_their_own_storage(model: Any) -> None:
    store = _store(model)
    assert store.batch_sizes[0] == BATCH_SMALLEST
    assert store.batch_frames == store.batch_sizes[-1] >= 2048
    assert store.batch_size(BATCH_SMALLEST + 1) == store.batch_sizes[1]
    assert store.batch_size(store.batch_frames + 1) is None
    first, second = store.batch(10), store.batch(BATCH_SMALLEST + 1)
    assert first.packed
    assert second.packed
    assert first.x.data_ptr() == second.x.data_ptr()
    assert first.x.data_ptr() != store.single(100).x.data_ptr()
    with pytest.raises(ValueError, match="exceed the largest batch"):
        store.batch(store.batch_frames + 1)
    assert _store(model, batch_frames=0).batch_sizes == []


def test_a_single_layout_masks_the_padding(model: Any) -> None:
    store = _store(model)
    bucket = store.single(100)
    store.set_layout(bucket, pack([100], bucket.frames))
    assert bucket.conv_mask is not None
    assert bucket.attn_bias is not None
    assert bucket.conv_mask[:, :100].all()
    assert not bucket.conv_mask[:, 100:].any()
    assert torch.all(bucket.attn_bias[..., :100] == 0)
    assert torch.all(bucket.attn_bias[..., 100:] == -math.inf)
    with pytest.raises(ValueError, match="layout for 100 frames, bucket has 128"):
        store.set_layout(bucket, pack([100]))


def test_a_packed_layout_marks_requests_positions_and_blocks(model: Any) -> None:
    store = _store(model)
    lengths = [300, 200, 90]
    bucket = store.batch(sum(lengths) + 2 * GAP)
    packing = pack(lengths, bucket.frames)
    store.set_layout(bucket, packing)
    assert bucket.conv_mask is not None
    assert bucket.attn_bias is not None
    assert torch.equal(bucket.conv_mask[0], packing.valid())
    cos, _ = store.rope(300)
    second = packing.offsets[1]
    assert torch.equal(bucket.cos[second : second + 200], cos[:200])  # positions restart
    assert bucket.attn_bias.shape == (2, 1, bucket.frames, bucket.frames)
    assert float(bucket.attn_bias[0, 0, 0, second]) == -math.inf
    with pytest.raises(ValueError, match="5 requests exceed 4 slots"):
        store.set_layout(bucket, pack([10] * 5, bucket.frames))


def test_full_layouts_fill_the_bucket_for_captures(model: Any) -> None:
    store = _store(model)
    single = store.single(200)
    assert store.full_layout(single).lengths == (single.frames,)
    batch = store.batch(BATCH_SMALLEST)
    full = store.full_layout(batch)
    assert full.frames == batch.frames
    assert full.count <= store.batch_slots
    assert max(full.lengths) <= store.max_frames


def test_the_varlen_bound_covers_any_request_or_tail(model: Any) -> None:
    store = _store(model, batch_varlen=True)
    for size in store.batch_sizes:
        bucket = store.batch(size)
        assert bucket.cu_seqlens is not None
        assert bucket.cu_seqlens.numel() == 4 * 4 + 1
        assert bucket.max_seqlen >= store.max_frames
        store.set_layout(bucket, store.full_layout(bucket))
        assert store.full_layout(bucket).longest_sequence() <= bucket.max_seqlen


def test_bucket_reuse_leaves_no_state_behind(model: Any, cond: torch.Tensor) -> None:
    """Shared buffers are fully rewritten per request: order of requests does not matter."""
    sampler = make(model, bucket_frames=64)
    first = fast(sampler, cond, ids(TEXT), 120)
    fast(sampler, cond, ids("gg"), 70)  # same bucket (128), shorter text and duration
    fast(sampler, cond, ids(TEXT * 2), 250)  # another bucket sharing the same storage
    again = fast(sampler, cond, ids(TEXT), 120)
    assert torch.equal(first, again)
    assert torch.equal(again, fast(make(model, bucket_frames=64), cond, ids(TEXT), 120))


def test_the_batch_ratio_trades_buckets_for_padding(model: Any) -> None:
    fine, coarse = (
        _store(model, batch_frames=24576),
        _store(model, batch_frames=24576, batch_ratio=1.5),
    )
    assert len(coarse.batch_sizes) < len(fine.batch_sizes)
    assert coarse.batch_sizes[-1] >= 24576
    with pytest.raises(ValueError, match="batch_ratio must be above 1"):
        make(model, batch_ratio=1.0)
    sampler = make(model, bucket_frames=32, max_batch=2, max_batch_frames=2048, batch_ratio=1.5)
    assert sampler.store.batch_sizes == [1024, 1536, 2304]


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_a_full_layout_fits_its_bucket_with_few_slots(model: Any, slots: int) -> None:
    """One request alone may fill a whole bucket (no gap before the first)."""
    store = _store(model, batch_slots=slots, max_frames=3072, batch_frames=4096)
    for size in store.batch_sizes:
        bucket = store.batch(size)
        full = store.full_layout(bucket)
        store.set_layout(bucket, full)
        assert full.used <= bucket.frames
        assert full.count <= slots
