"""Where each request's frames sit in one sampling pass: single requests and packed batches.

A pass holds both CFG branches as two rows of ``frames`` each (cond row first, then uncond, as
``DiT.forward(cfg_infer=True)`` lays them out). One request fills the start of each row and
the rest is padding. A batch packs several requests one after another in each row, with a gap
of :data:`GAP` masked frames between them, so that nothing crosses from one request to the
next:

* attention: every request's frames, every gap and the tail are separate sequences of the
  variable-length kernel (``cu_seqlens``), or blocks of a block-diagonal bias (SDPA);
* the position convolutions (kernel 31): masked frames are zeroed before and after each
  convolution layer, and a gap of at least 15 zeros is exactly what convolution padding
  gives a request run alone;
* rotary positions restart at 0 for each request;
* everything else (projections, norms, gating, the CFG mix, the Euler update) is per frame.

The text embedding is built per request at its own length (``engine.f5fast.textembed``) and
copied in, so its convolutions and normalisation never see another request either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

GAP = 16
"""Masked frames between packed requests: at least the position convolution's half-width."""


@dataclass(frozen=True, slots=True)
class Packing:
    """The frames of one pass: request ``i`` occupies ``offsets[i] : offsets[i] + lengths[i]``.

    Attributes:
        offsets: First frame of each request in its row.
        lengths: Total frames of each request (reference + generated).
        frames: Row length of the pass (the bucket), at least ``used``.
    """

    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    frames: int

    @property
    def used(self) -> int:
        """Frames up to the end of the last request."""
        return self.offsets[-1] + self.lengths[-1]

    @property
    def count(self) -> int:
        """Requests in the pass."""
        return len(self.lengths)

    def cu_seqlens(self, slots: int | None = None) -> list[int]:
        """Sequence starts over both rows for the variable-length attention kernel.

        Per row: each request, then the masked frames after it (the gap, or for the last
        request the padding up to ``frames``). ``slots`` (at least ``count``) pads the list
        with empty sequences at the end, so one captured graph serves any request count.
        One request gives ``[0, n, frames, frames + n, 2 * frames]``.
        """
        slots = self.count if slots is None else slots
        if slots < self.count:
            raise ValueError(f"{self.count} requests do not fit {slots} slots")
        starts: list[int] = []
        for row in range(2):
            base = row * self.frames
            for offset, length in zip(self.offsets, self.lengths, strict=True):
                starts += [base + offset, base + offset + length]
        starts.append(2 * self.frames)
        starts += [2 * self.frames] * (4 * (slots - self.count))
        return starts

    def longest_sequence(self) -> int:
        """The longest sequence ``cu_seqlens`` describes (a request, a gap or the tail)."""
        ends = self.next_starts()
        fillers = [b - (a + n) for a, n, b in zip(self.offsets, self.lengths, ends, strict=True)]
        return max([*self.lengths, *fillers])

    def next_starts(self) -> list[int]:
        """Where the sequence after each request's filler starts (the next request, or the end)."""
        return [*self.offsets[1:], self.frames]

    def valid(self, device: torch.device | str = "cpu") -> Tensor:
        """[frames] bool, True on the requests' frames."""
        mask = torch.zeros(self.frames, dtype=torch.bool)
        for offset, length in zip(self.offsets, self.lengths, strict=True):
            mask[offset : offset + length] = True
        return mask.to(device)

    def positions(self) -> Tensor:
        """[frames] long: each frame's rotary position within its request (0 elsewhere)."""
        pos = torch.zeros(self.frames, dtype=torch.long)
        for offset, length in zip(self.offsets, self.lengths, strict=True):
            pos[offset : offset + length] = torch.arange(length)
        return pos

    def segment_bias(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
        """[frames, frames] additive bias: 0 within a sequence, -inf across (SDPA's mask).

        Quadratic in ``frames``: for the CPU and small passes only.
        """
        seg = torch.empty(self.frames, dtype=torch.long)
        ends = self.next_starts()
        for i, (offset, length) in enumerate(zip(self.offsets, self.lengths, strict=True)):
            seg[offset : offset + length] = 2 * i + 1
            seg[offset + length : ends[i]] = 2 * i + 2
        same = seg[:, None] == seg[None, :]
        bias = torch.zeros(self.frames, self.frames, dtype=dtype)
        bias.masked_fill_(~same, -math.inf)
        return bias.to(device)


def packed_frames(lengths: list[int] | tuple[int, ...]) -> int:
    """Frames needed to pack these requests with their gaps."""
    return sum(lengths) + GAP * (len(lengths) - 1)


def pack(lengths: list[int] | tuple[int, ...], frames: int | None = None) -> Packing:
    """Lay requests out one after another, :data:`GAP` frames apart, in rows of ``frames``.

    Raises:
        ValueError: No requests, an empty request, or rows too short for them.
    """
    if not lengths or min(lengths) < 1:
        raise ValueError("a pass needs at least one request of at least one frame")
    offsets, at = [], 0
    for length in lengths:
        offsets.append(at)
        at += length + GAP
    need = packed_frames(lengths)
    frames = need if frames is None else frames
    if frames < need:
        raise ValueError(f"{len(lengths)} requests need {need} frames, the row has {frames}")
    return Packing(tuple(offsets), tuple(int(n) for n in lengths), int(frames))


def ladder(smallest: int, largest: int, ratio: float, align: int) -> list[int]:
    """Bucket sizes from ``smallest`` up to the first one at or above ``largest``.

    Each size is about ``ratio`` times the one before, rounded up to a multiple of ``align``
    (at least ``align`` more), so a pass is padded by less than ``ratio - 1`` of its frames.
    """
    if ratio <= 1.0:
        raise ValueError("ratio must be above 1")
    size = -(-smallest // align) * align
    sizes = [size]
    while sizes[-1] < largest:
        nxt = max(sizes[-1] + align, -(-int(sizes[-1] * ratio) // align) * align)
        sizes.append(nxt)
    return sizes
