"""Static buffers per padded length ("buckets") and the CUDA graphs that replay a step on them.

A CUDA graph replays fixed kernels on fixed addresses, so every length a graph serves needs
buffers that stay put. Lengths are rounded up to buckets; all buckets of one kind share one
set of storage (each bucket views its first rows, which are contiguous and keep their
addresses), because buckets never run at the same time and every pass rewrites all of a
bucket's inputs. So 96 single-request buckets cost the memory of the largest, not of all.

Two kinds:

* single requests: multiples of ``bucket_frames`` up to ``max_frames`` (the padded keys
  excluded by the chosen attention kernel);
* packed batches (``engine.f5fast.layout``): sizes on a geometric ladder up to
  ``batch_frames``, attention by FlashAttention's varlen kernel with a fixed number of
  sequence slots (empty ones at the end), so one graph serves any number of requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from engine.f5fast.layout import GAP, Packing, ladder, pack, packed_frames

BATCH_RATIO = 1.08
"""Each batch bucket ~8% larger than the last: under 8% (about 4% on average) padding."""
BATCH_SMALLEST = 1024
BATCH_ALIGN = 64


@dataclass(slots=True)
class Bucket:
    """Static buffers of one padded length; CUDA graphs read and write only these."""

    frames: int
    padded: bool
    packed: bool
    x: Tensor  # [1, frames, n_mel] ODE state
    inp: Tensor  # [2, frames, 2 * n_mel + text_dim]: x | cond | text, cond branch first
    conv_mask: Tensor | None  # [2, frames] bool, True on valid frames
    attn_bias: Tensor | None  # [2, 1, 1, frames] or, packed on SDPA, [2, 1, frames, frames]
    cu_seqlens: Tensor | None  # int32 sequence starts for the varlen kernel
    cos: Tensor  # [frames, rot_dim] float32
    sin: Tensor
    max_seqlen: int = 0  # bound on cu_seqlens' longest sequence (0: frames)
    graph: Any = None  # torch.cuda.CUDAGraph once captured
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class StepInputs:
    """The per-step inputs every graph reads: this step's modulations and step size."""

    mods: Tensor  # [depth, 6, dim]
    final: Tensor  # [2, dim]
    dt: Tensor  # []


class BucketStore:
    """Creates, keeps and fills the buckets of one sampler (see the module docstring).

    Args:
        dit: The DiT (its sizes and rotary embedding).
        n_mel: Mel channels.
        device: Where buffers live.
        dtype: The model's dtype.
        bucket_frames: Single-request lengths are multiples of this (0: no padding).
        max_frames: Longest single-request bucket; longer requests run at their own length.
        varlen: Single requests use FlashAttention's ``cu_seqlens`` instead of a key bias.
        batch_frames: Longest packed batch (per CFG row), 0 for no batches.
        batch_slots: Most requests in one packed batch.
        batch_varlen: Packed batches use FlashAttention (else a block-diagonal SDPA bias,
            allocated per pass: CPU-sized passes only).
        dynamic: Mark lengths dynamic for torch.compile (one graph for all buckets).
        batch_ratio: Each batch bucket about this much larger than the one before: less
            padding per pass against more graphs to capture (chosen by ``bench_batch.py``).
    """

    def __init__(
        self,
        dit: Any,
        n_mel: int,
        device: torch.device,
        dtype: torch.dtype,
        *,
        bucket_frames: int,
        max_frames: int,
        varlen: bool,
        batch_frames: int,
        batch_slots: int,
        batch_varlen: bool,
        dynamic: bool,
        batch_ratio: float = BATCH_RATIO,
    ) -> None:
        self.dit, self.n_mel, self.device, self.dtype = dit, n_mel, device, dtype
        self.bucket_frames = bucket_frames
        self.max_frames = max_frames
        self.varlen = varlen
        self.batch_slots = batch_slots
        self.batch_varlen = batch_varlen
        self.dynamic = dynamic
        self.width = 2 * n_mel + dit.text_embed.text_embed.embedding_dim
        self.batch_sizes = (
            ladder(BATCH_SMALLEST, batch_frames, batch_ratio, BATCH_ALIGN) if batch_frames else []
        )
        self.batch_frames = self.batch_sizes[-1] if self.batch_sizes else 0
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.step = StepInputs(
            mods=torch.zeros(dit.depth, 6, dit.dim, **kw),
            final=torch.zeros(2, dit.dim, **kw),
            dt=torch.zeros((), **kw),
        )
        self.singles: dict[int, Bucket] = {}
        self.batches: dict[int, Bucket] = {}
        self.pool: Any = None
        self._shared: dict[str, Tensor] | None = None
        self._batch_shared: dict[str, Tensor] | None = None
        self._rope_cos: Tensor | None = None
        self._rope_sin: Tensor | None = None

    # -- sizes ---------------------------------------------------------------------------

    def single_size(self, frames: int) -> int:
        """The padded length a single request of ``frames`` runs at (itself if unpadded)."""
        if self.bucket_frames <= 0 or frames > self.max_frames:
            return frames
        return -(-frames // self.bucket_frames) * self.bucket_frames

    def single_sizes(self) -> list[int]:
        """Every padded single-request length."""
        if self.bucket_frames <= 0:
            return []
        return list(range(self.bucket_frames, self.max_frames + 1, self.bucket_frames))

    def batch_size(self, packed: int) -> int | None:
        """The batch bucket for ``packed`` frames, or None when it does not fit."""
        for size in self.batch_sizes:
            if size >= packed:
                return size
        return None

    # -- buffers -------------------------------------------------------------------------

    def rope(self, frames: int) -> tuple[Tensor, Tensor]:
        """Rotary cos/sin tables [frames, rot] float32, as x_transformers computes them."""
        top = max(frames, self.max_frames)
        if self._rope_cos is None or self._rope_cos.shape[0] < top:
            freqs, _ = self.dit.rotary_embed.forward_from_seq_len(top)
            self._rope_cos = freqs[0].cos().contiguous()
            self._rope_sin = freqs[0].sin().contiguous()
        assert self._rope_sin is not None
        return self._rope_cos[:frames], self._rope_sin[:frames]

    def single(self, frames: int) -> Bucket:
        """The bucket a single request of ``frames`` frames runs in (kept if padded)."""
        size = self.single_size(frames)
        bucket = self.singles.get(size)
        if bucket is not None:
            return bucket
        padded = self.bucket_frames > 0 and size <= self.max_frames
        bucket = self._new_single(size, padded)
        if padded:  # exact-size buckets serve one length; don't keep them
            self.singles[size] = bucket
        return bucket

    def _new_single(self, frames: int, padded: bool) -> Bucket:
        n_mel, width = self.n_mel, self.width
        kw: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        if not padded:
            cos, sin = self.rope(frames)
            return Bucket(
                frames=frames,
                padded=False,
                packed=False,
                x=torch.zeros(1, frames, n_mel, **kw),
                inp=torch.zeros(2, frames, width, **kw),
                conv_mask=None,
                attn_bias=None,
                cu_seqlens=None,
                cos=cos,
                sin=sin,
            )
        if self._shared is None:
            top = self.max_frames
            self._shared = {
                "x": torch.zeros(top * n_mel, **kw),
                "inp": torch.zeros(2 * top * width, **kw),
                "conv_mask": torch.ones(2 * top, dtype=torch.bool, device=self.device),
                "attn_bias": torch.zeros(2 * top, **kw),
                "cu_seqlens": torch.zeros(5, dtype=torch.int32, device=self.device),
            }
        sh = self._shared
        cos, sin = self.rope(frames)
        bucket = Bucket(
            frames=frames,
            padded=True,
            packed=False,
            x=sh["x"][: frames * n_mel].view(1, frames, n_mel),
            inp=sh["inp"][: 2 * frames * width].view(2, frames, width),
            conv_mask=sh["conv_mask"][: 2 * frames].view(2, frames),
            attn_bias=sh["attn_bias"][: 2 * frames].view(2, 1, 1, frames),
            cu_seqlens=sh["cu_seqlens"] if self.varlen else None,
            cos=cos,
            sin=sin,
        )
        self._mark_dynamic(bucket)
        return bucket

    def batch(self, packed: int) -> Bucket:
        """The batch bucket for ``packed`` frames (kept; views of shared storage).

        Raises:
            ValueError: ``packed`` exceeds the largest batch bucket.
        """
        size = self.batch_size(packed)
        if size is None:
            raise ValueError(f"{packed} frames exceed the largest batch ({self.batch_frames})")
        bucket = self.batches.get(size)
        if bucket is not None:
            return bucket
        n_mel, width = self.n_mel, self.width
        kw: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        if self._batch_shared is None:
            top = self.batch_frames
            rot = self.rope(1)[0].shape[-1]
            self._batch_shared = {
                "x": torch.zeros(top * n_mel, **kw),
                "inp": torch.zeros(2 * top * width, **kw),
                "conv_mask": torch.ones(2 * top, dtype=torch.bool, device=self.device),
                "cos": torch.ones(top * rot, dtype=torch.float32, device=self.device),
                "sin": torch.zeros(top * rot, dtype=torch.float32, device=self.device),
                "cu_seqlens": torch.zeros(
                    4 * self.batch_slots + 1, dtype=torch.int32, device=self.device
                ),
            }
        sh = self._batch_shared
        rot = sh["cos"].shape[0] // self.batch_frames
        bucket = Bucket(
            frames=size,
            padded=True,
            packed=True,
            x=sh["x"][: size * n_mel].view(1, size, n_mel),
            inp=sh["inp"][: 2 * size * width].view(2, size, width),
            conv_mask=sh["conv_mask"][: 2 * size].view(2, size),
            attn_bias=None,
            cu_seqlens=sh["cu_seqlens"] if self.batch_varlen else None,
            cos=sh["cos"][: size * rot].view(size, rot),
            sin=sh["sin"][: size * rot].view(size, rot),
            max_seqlen=self._batch_bound(size) if self.batch_varlen else 0,
        )
        self._mark_dynamic(bucket)
        self.batches[size] = bucket
        return bucket

    def _batch_bound(self, size: int) -> int:
        """Longest sequence a pass of this bucket can hold.

        A request (at most ``max_frames``) or the padded tail (shorter than the step from
        the previous bucket, since a smaller pass would have used that one).
        """
        index = self.batch_sizes.index(size)
        previous = self.batch_sizes[index - 1] if index else 0
        return min(size, max(self.max_frames, size - previous))

    def _mark_dynamic(self, bucket: Bucket) -> None:
        if self.dynamic:
            torch._dynamo.mark_dynamic(bucket.cos, 0)
            torch._dynamo.mark_dynamic(bucket.sin, 0)
            if bucket.attn_bias is not None:
                torch._dynamo.mark_dynamic(bucket.attn_bias, 3)

    def clear(self) -> None:
        """Forget every bucket and graph (after the attention kernel changed)."""
        self.singles.clear()
        self.batches.clear()
        self.pool = None

    # -- layouts -------------------------------------------------------------------------

    def set_layout(self, bucket: Bucket, packing: Packing) -> None:
        """Mark ``packing``'s requests valid in ``bucket`` and everything else masked.

        Also before warm-up steps and captures: the kernels then read only in-bounds rows
        (FlashAttention trusts ``cu_seqlens``; the shared buffer may hold a larger bucket's).
        """
        if not bucket.padded:
            return
        if packing.frames != bucket.frames:
            raise ValueError(f"layout for {packing.frames} frames, bucket has {bucket.frames}")
        assert bucket.conv_mask is not None
        if not bucket.packed:
            (frames,) = packing.lengths
            assert bucket.attn_bias is not None
            bucket.conv_mask.zero_()
            bucket.conv_mask[:, :frames] = True
            bucket.attn_bias.fill_(-math.inf)
            bucket.attn_bias[..., :frames] = 0
            if bucket.cu_seqlens is not None:
                # non_blocking: a plain copy from host memory waits for all queued work
                starts = torch.tensor(packing.cu_seqlens(), dtype=torch.int32)
                bucket.cu_seqlens.copy_(starts, non_blocking=True)
            return
        if packing.count > self.batch_slots:
            raise ValueError(f"{packing.count} requests exceed {self.batch_slots} slots")
        if bucket.max_seqlen and packing.longest_sequence() > bucket.max_seqlen:
            raise ValueError("a packed sequence exceeds the bucket's attention bound")
        valid = packing.valid().to(self.device, non_blocking=True)
        bucket.conv_mask.copy_(valid.expand(2, -1))
        table_cos, table_sin = self.rope(max(packing.lengths))
        positions = packing.positions().to(self.device, non_blocking=True)
        torch.index_select(table_cos, 0, positions, out=bucket.cos)
        torch.index_select(table_sin, 0, positions, out=bucket.sin)
        if bucket.cu_seqlens is not None:
            starts = torch.tensor(packing.cu_seqlens(self.batch_slots), dtype=torch.int32)
            bucket.cu_seqlens.copy_(starts, non_blocking=True)
        else:
            bias = packing.segment_bias(self.dtype, self.device)
            bucket.attn_bias = bias.view(1, 1, bucket.frames, bucket.frames).expand(2, -1, -1, -1)

    def full_layout(self, bucket: Bucket) -> Packing:
        """A layout that fills ``bucket``, for warm-up steps and captures.

        One request for a single bucket; for a batch bucket, requests of up to
        ``max_frames`` packed until the bucket is full (every row of it valid somewhere).
        """
        if not bucket.packed:
            return pack([bucket.frames], bucket.frames)
        each = min(self.max_frames, bucket.max_seqlen or self.max_frames)
        lengths: list[int] = []
        while len(lengths) < self.batch_slots:
            used = packed_frames(lengths) + GAP if lengths else 0
            room = bucket.frames - used
            if room < 1:
                break
            lengths.append(min(each, room))
        return pack(lengths, bucket.frames)
