"""Where requests sit in a pass: offsets, gaps, sequence starts, positions, masks, buckets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from engine.f5fast.layout import GAP, ladder, pack, packed_frames


def test_one_request_gives_the_single_request_starts() -> None:
    packing = pack([100], 128)
    assert packing.offsets == (0,)
    assert packing.cu_seqlens() == [0, 100, 128, 228, 256]
    assert packing.used == 100
    assert packing.longest_sequence() == 100


def test_requests_are_packed_a_gap_apart() -> None:
    packing = pack([50, 30, 20])
    assert packing.offsets == (0, 50 + GAP, 80 + 2 * GAP)
    assert packing.frames == packed_frames([50, 30, 20]) == 100 + 2 * GAP
    # per row: request, filler after it; the last filler is the (empty) tail
    f = packing.frames
    assert packing.cu_seqlens() == [
        *(0, 50, 66, 96, 112, 132),
        *(f, f + 50, f + 66, f + 96, f + 112, f + 132),
        2 * f,
    ]


def test_empty_slots_keep_one_sequence_table_for_any_request_count() -> None:
    short = pack([40, 40], 200).cu_seqlens(5)
    full = pack([40, 40, 10, 10, 10], 200).cu_seqlens(5)
    assert len(short) == len(full) == 4 * 5 + 1
    assert short[-13:] == [400] * 13  # three empty slots at the end, both rows
    with pytest.raises(ValueError, match="3 requests do not fit 2 slots"):
        pack([10, 10, 10]).cu_seqlens(2)


def test_positions_restart_for_each_request_and_masks_mark_only_requests() -> None:
    packing = pack([5, 3], 30)
    pos = packing.positions()
    valid = packing.valid()
    assert pos[:5].tolist() == [0, 1, 2, 3, 4]
    assert pos[5 + GAP : 8 + GAP].tolist() == [0, 1, 2]
    assert int(valid.sum()) == 8
    assert not valid[5 : 5 + GAP].any()
    assert not valid[8 + GAP :].any()


def test_segment_bias_is_block_diagonal() -> None:
    packing = pack([4, 3], 4 + GAP + 3 + 5)
    bias = packing.segment_bias(torch.float32)
    assert bias.shape == (packing.frames, packing.frames)
    assert torch.all(bias[:4, :4] == 0)
    a, b = 4 + GAP, 4 + GAP + 3
    assert torch.all(bias[a:b, a:b] == 0)
    assert torch.all(bias[:4, a:b] == -math.inf)
    assert torch.all(bias[a:b, 4:a] == -math.inf)  # a request never sees the gap before it
    assert packing.longest_sequence() == GAP


def test_bad_layouts_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        pack([])
    with pytest.raises(ValueError, match="at least one request"):
        pack([10, 0])
    with pytest.raises(ValueError, match="need 36 frames, the row has 35"):
        pack([10, 10], 35)


def test_the_ladder_pads_by_less_than_its_ratio() -> None:
    sizes = ladder(1024, 24576, 1.08, 64)
    assert sizes[0] == 1024
    assert sizes[-1] >= 24576 > sizes[-2]
    assert all(size % 64 == 0 for size in sizes)
    for small, large in itertools.pairwise(sizes):
        assert small < large <= max(small + 64, math.ceil(small * 1.08 / 64) * 64)
    with pytest.raises(ValueError, match="ratio must be above 1"):
        ladder(1, 2, 1.0, 1)
