"""FastSampler: ``CFM.sample`` for one request or a packed batch, much faster on CUDA.

It composes the units of this package: the DiT arithmetic (``model``), the attention choice
(``attention``), compilation with its scoped cache (``compiler``), buckets and graphs
(``buckets``, ``step``), packing (``layout``) and the text embedding (``textembed``). This
module decides only what runs when: preparation at start-up (and the rest while idle), and
per request or batch the inputs written, the steps replayed and the outputs cut out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.f5fast import attention as attention_choice
from engine.f5fast.buckets import BATCH_RATIO, Bucket, BucketStore
from engine.f5fast.compiler import block_error, compile_block
from engine.f5fast.layout import Packing, pack, packed_frames
from engine.f5fast.model import (
    ATTENTION_BACKENDS,
    BlockConstants,
    Schedule,
    block_forward,
    check_supported,
    prepare_schedule,
    prepare_weights,
)
from engine.f5fast.step import StepModel, capture, euler_step, run_steps
from engine.f5fast.textembed import text_embeddings, text_rows
from engine.sampling import Progress, Sampler, SampleRequest

log = logging.getLogger(__name__)

MAX_DURATION = 65536  # CFM.sample's own clamp


@dataclass(slots=True)
class _Job:
    """One request, validated: its inputs as the pass writes them."""

    cond: Tensor
    text_ids: Tensor
    frames: int
    noise: Tensor


class FastSampler:
    """Drop-in replacement for ``CFM.sample(...)[0]`` (before the vocoder), for one or many.

    Args:
        cfm: An f5-tts ``CFM`` with a ``DiT`` backbone, loaded, in eval mode, on its device and
            dtype.
        nfe_step: Euler steps (EPSS time steps for the counts f5 knows, like f5-tts 1.1.22).
        cfg_strength: Classifier-free guidance strength.
        sway_sampling_coef: Sway sampling coefficient.
        bucket_frames: Padded lengths are multiples of this. None: 32 on CUDA, no padding on
            the CPU (tests pass a number to cover the padded path there too); 0: no padding.
        max_frames: Longest single-request bucket; longer requests run unpadded, without
            graphs, and never in a batch.
        cuda_graphs: Capture steps as CUDA graphs (None: on CUDA).
        compile: torch.compile the transformer block (None: on CUDA).
        compile_mode: torch.compile mode, e.g. "default" or "max-autotune-no-cudagraphs".
        cache_dir: Inductor's on-disk cache for fast later start-ups, used only while this
            sampler compiles; None leaves inductor's default (a per-user temp folder).
        attention: How padded single-request buckets exclude padded keys: "flash"
            (FlashAttention-2 variable-length kernel), "cudnn" (cuDNN fused attention with a
            key bias) or "sdpa" (torch's masked SDPA). None: on CUDA in fp16/bf16, "flash"
            and "cudnn" are checked and timed and the faster is used; "sdpa" otherwise. A
            named backend that fails its check falls back to "sdpa". The choice is in
            ``attention`` after the first ``warmup``/``sample``.
        max_batch: Most requests one packed pass of ``sample_batch`` holds (1: batches run
            one request at a time).
        max_batch_frames: Longest packed pass, in frames per CFG row (requests plus gaps);
            bounds the batch graphs' memory and capture time.
        batch_ratio: Batch buckets grow by about this factor (1.08: under 8% padding per
            pass, 46 buckets up to 24576 frames); larger means fewer graphs, more padding.
        loop_graphs: Capture all steps of a bucket as one CUDA graph (one replay per request,
            no copies between steps) instead of one graph per step; costs ``nfe_step`` times
            the capture time and graph memory of each bucket.
        ready_frames: ``warmup()`` captures single-request buckets up to this length; longer
            ones and the batch buckets are captured by ``prepare_more()`` calls (the engine
            makes them while idle). None: all single-request buckets at ``warmup()``.
    """

    def __init__(
        self,
        cfm: Any,
        *,
        nfe_step: int,
        cfg_strength: float,
        sway_sampling_coef: float,
        bucket_frames: int | None = None,
        max_frames: int = 3072,
        cuda_graphs: bool | None = None,
        compile: bool | None = None,
        compile_mode: str = "default",
        cache_dir: str | Path | None = None,
        attention: str | None = None,
        max_batch: int = 1,
        max_batch_frames: int = 24576,
        batch_ratio: float = BATCH_RATIO,
        loop_graphs: bool = False,
        ready_frames: int | None = None,
    ) -> None:
        if nfe_step < 1:
            raise ValueError("nfe_step must be at least 1")
        if attention is not None and attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION_BACKENDS)} or None, "
                f"got {attention!r}"
            )
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if batch_ratio <= 1.0:
            raise ValueError("batch_ratio must be above 1")
        self.cfm = cfm
        self.nfe_step = int(nfe_step)
        self.cfg_strength = float(cfg_strength)
        self.sway_sampling_coef = float(sway_sampling_coef)
        param = next(cfm.parameters())
        self.device: torch.device = param.device
        self.dtype: torch.dtype = param.dtype
        on_cuda = self.device.type == "cuda"
        default_bucket = 32 if on_cuda else 0
        self.bucket_frames = default_bucket if bucket_frames is None else max(0, int(bucket_frames))
        self.max_frames = int(max_frames)
        self.use_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs and on_cuda)
        self.use_compile = on_cuda if compile is None else bool(compile)
        self.compile_mode = compile_mode
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_limit = int(max_batch)
        """The ``max_batch`` asked for; ``max_batch`` says what this sampler can do."""
        self.max_batch_frames = int(max_batch_frames)
        self.batch_ratio = float(batch_ratio)
        self.loop_graphs = bool(loop_graphs)
        self.ready_frames = ready_frames
        self._attention_request = attention
        self.attention = "sdpa"
        """The key-masking attention of single requests (resolved when first used)."""
        self.batch_attention: str | None = None
        """How packed batches attend ("flash", "sdpa"), None: batches run one by one."""
        self.contiguous_hidden = True  # False only to measure the old layout (bench)
        self._supported, self._why_not = check_supported(cfm)
        self._schedule: Schedule | None = None
        self._model: StepModel | None = None
        self._store: BucketStore | None = None
        self._pending: list[tuple[str, int]] = []
        self._captures = 0
        self._compile_checked = False
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up

    @property
    def max_batch(self) -> int:
        """Most requests one pass holds: ``batch_limit``, or 1 where batches cannot pack.

        Known once the sampler is prepared (``warmup``): 1 when the model is not one the
        fast path mirrors, or when the GPU's packed attention failed its check; a caller
        that batches for throughput then keeps each request's first audio early instead.
        """
        if not self._supported or (self._model is not None and self.batch_attention is None):
            return 1
        return self.batch_limit

    @property
    def use_varlen(self) -> bool:
        """True when padded single-request keys go through FlashAttention's varlen kernel."""
        return self.attention == "flash"

    @property
    def store(self) -> BucketStore:
        """The buckets (created by the first ``warmup``/``sample``)."""
        self._ensure_ready()
        assert self._store is not None
        return self._store

    def bucket_for(self, frames: int) -> int:
        """The padded length a single request of ``frames`` total frames runs at."""
        if self.bucket_frames <= 0 or frames > self.max_frames:
            return frames
        return -(-frames // self.bucket_frames) * self.bucket_frames

    def _ensure_ready(self) -> None:
        if self._model is not None:
            return
        dit = self.cfm.transformer
        attn = dit.transformer_blocks[0].attn
        heads, head_dim = int(attn.heads), int(attn.inner_dim // attn.heads)
        self.attention = attention_choice.choose(
            self._attention_request,
            device=self.device,
            dtype=self.dtype,
            heads=heads,
            head_dim=head_dim,
            max_frames=self.max_frames,
            stats=self.stats,
        )
        if self.batch_limit > 1:
            if self.device.type == "cpu":
                self.batch_attention = "sdpa"  # block-diagonal bias: CPU-sized passes
            elif attention_choice.check_packed(
                device=self.device,
                dtype=self.dtype,
                heads=heads,
                head_dim=head_dim,
                slots=self.batch_limit,
            ):
                self.batch_attention = "flash"
        self._schedule = prepare_schedule(self.cfm, self.nfe_step, self.sway_sampling_coef)
        block_fn: Callable[..., Tensor] = block_forward
        if self.use_compile:
            block_fn = compile_block(self.compile_mode, self.cache_dir)
            self.use_compile = block_fn is not block_forward
        self._model = StepModel(
            dit=dit,
            blocks=prepare_weights(self.cfm),
            consts=BlockConstants.of(dit),
            n_mel=int(self.cfm.num_channels),
            cfg_strength=self.cfg_strength,
            block_fn=block_fn,
            attention=self.attention,
            dynamic=self.use_compile,
            contiguous_hidden=self.contiguous_hidden,
        )
        self._store = self._new_store()

    def _new_store(self) -> BucketStore:
        return BucketStore(
            self.cfm.transformer,
            int(self.cfm.num_channels),
            self.device,
            self.dtype,
            bucket_frames=self.bucket_frames,
            max_frames=self.max_frames,
            varlen=self.use_varlen,
            batch_frames=self.max_batch_frames if self.batch_attention is not None else 0,
            batch_slots=self.batch_limit,
            batch_varlen=self.batch_attention == "flash",
            dynamic=self.use_compile,
            batch_ratio=self.batch_ratio,
        )

    def _inputs(self) -> tuple[Tensor, Tensor, Tensor]:
        store = self.store
        return store.step.mods, store.step.final, store.step.dt

    # ------------------------------------------------------------------ warm-up

    @torch.inference_mode()
    def warmup(
        self,
        frames: Sequence[int] | None = None,
        progress: Progress | None = None,
        batch_frames: Sequence[int] | None = None,
    ) -> None:
        """Precompute the schedule, compile, and capture CUDA graphs before the first request.

        Call it once at start-up (the F5 engine does, while WARMING): afterwards no request
        compiles anything and single requests up to ``ready_frames`` capture nothing.

        Args:
            frames: Single-request total frame counts to prepare; None prepares every bucket
                up to ``ready_frames`` (or ``max_frames``) and leaves the rest to
                ``prepare_more()`` (on the CPU: nothing beyond the schedule).
            progress: Called with a short human-readable status now and then.
            batch_frames: Packed batch lengths to prepare now as well (the benchmark uses it);
                None leaves batch buckets to ``prepare_more()``.
        """
        if not self._supported:
            log.info("fast sampler falls back to CFM.sample: %s", self._why_not)
            return
        started = time.monotonic()
        self._ensure_ready()
        store = self.store
        graphs_or_compile = self.use_graphs or self.use_compile
        if frames is None:
            sizes = store.single_sizes() if graphs_or_compile else []
            later = []
            if self.ready_frames is not None:
                later = [s for s in sizes if s > self.ready_frames]
                sizes = [s for s in sizes if s <= self.ready_frames]
            self._pending = [("single", s) for s in reversed(later)]
            if self.use_graphs:
                self._pending += [("batch", s) for s in store.batch_sizes]
        else:
            sizes = sorted({store.single_size(int(n)) for n in frames})
        batches = sorted({b for n in (batch_frames or []) if (b := store.batch_size(n))})
        self._pending = [p for p in self._pending if p[0] != "batch" or p[1] not in batches]
        if self.use_compile and (sizes or batches):
            self._first_compile(sizes[-1] if sizes else max(store.single_sizes(), default=None))
        try:
            self._prepare([("single", s) for s in reversed(sizes)], progress)
        except Exception as exc:
            if not self._leave_cudnn("capturing the CUDA graphs", exc):
                raise
            self._prepare([("single", s) for s in reversed(sizes)], progress)
        self._prepare([("batch", s) for s in batches], progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats["warmup_s"] = time.monotonic() - started
        log.info(
            "fast sampler warm: %d buckets (%d left for idle time), graphs=%s, compile=%s, %.1f s",
            len(sizes) + len(batches),
            len(self._pending),
            self.use_graphs,
            self.use_compile,
            self.stats["warmup_s"],
        )

    def prepare_more(self) -> bool:
        """Capture one bucket that ``warmup`` left for later; False once none is left.

        Each call takes one capture (tens of ms for a single request's bucket, up to a few
        hundred for the largest batch): the engine calls it between jobs.
        """
        if not self._pending:
            return False
        kind, size = self._pending.pop(0)
        with torch.inference_mode():
            try:
                self._prepare([(kind, size)], None)
            except Exception:
                log.exception(
                    "capturing the %s bucket of %d frames failed; it runs uncaptured", kind, size
                )
        return bool(self._pending)

    @property
    def pending(self) -> int:
        """Buckets still left for ``prepare_more``."""
        return len(self._pending)

    def _bucket(self, kind: str, size: int) -> Bucket:
        store = self.store
        return store.single(size) if kind == "single" else store.batch(size)

    def _prepare(self, work: list[tuple[str, int]], progress: Progress | None) -> None:
        # largest first where it matters: the shared graph pool is then sized once
        schedule = self._schedule
        model = self._model
        assert schedule is not None
        assert model is not None
        store = self.store
        for done, (kind, size) in enumerate(work):
            bucket = self._bucket(kind, size)
            store.set_layout(bucket, store.full_layout(bucket))
            if self.use_graphs and bucket.graph is None:
                self._capture(bucket)
            elif self.use_compile:
                euler_step(model, bucket, schedule.mods[0], schedule.final[0], schedule.dt[0])
            if progress is not None and done % 16 == 0:
                progress(f"fast sampler: {done + 1}/{len(work)} lengths ready")

    def _capture(self, bucket: Bucket) -> None:
        schedule, model, store = self._schedule, self._model, self.store
        assert schedule is not None
        assert model is not None
        started = time.monotonic()
        store.pool = capture(
            model,
            bucket,
            schedule,
            self._inputs(),
            store.pool,
            whole_loop=self.loop_graphs,
            warm_steps=2 if self._captures == 0 else 1,
        )
        self._captures += 1
        bucket.stats["capture_s"] = time.monotonic() - started
        self.stats["captures"] = float(self._captures)
        self.stats["capture_s"] = self.stats.get("capture_s", 0.0) + bucket.stats["capture_s"]

    def _leave_cudnn(self, during: str, error: BaseException) -> bool:
        """Switch from cuDNN attention, which failed inside the model, to FlashAttention or SDPA.

        Its stand-alone check passed, so this is unexpected (``error`` is logged);
        dropping the buckets made so far (their graphs hold the old kernel) and carrying on is
        better than losing the sampler.
        """
        if self.attention != "cudnn":
            return False
        model = self._model
        assert model is not None
        attn = self.cfm.transformer.transformer_blocks[0].attn
        flash_ok = (
            attention_choice.check(
                "flash",
                device=self.device,
                dtype=self.dtype,
                heads=int(attn.heads),
                head_dim=int(attn.inner_dim // attn.heads),
                max_frames=self.max_frames,
                timed=False,
            )
            is not None
        )
        fallback = "flash" if flash_ok else "sdpa"
        log.error(
            "cuDNN attention failed while %s; using %s instead", during, fallback, exc_info=error
        )
        self.attention = fallback
        model.attention = fallback
        self._store = self._new_store()
        self._captures = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return True

    def _first_compile(self, size: int | None) -> None:
        """Compile the block once and check it; if that fails, log it and run uncompiled.

        ``size`` is a single-request bucket to compile and check on (None: unpadded only,
        nothing to check). Once is enough: later ``warmup`` calls skip it.
        """
        if size is None or self._compile_checked:
            return
        self._compile_checked = True
        started = time.monotonic()
        model, schedule = self._model, self._schedule
        assert model is not None
        assert schedule is not None
        for _ in range(2):
            try:
                store = self.store
                bucket = store.single(size)
                store.set_layout(bucket, store.full_layout(bucket))
                euler_step(model, bucket, schedule.mods[0], schedule.final[0], schedule.dt[0])
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                err = self._compiled_block_error(bucket)
                self.stats["compiled_block_rel_err"] = err
                if not err < (3e-2 if self.dtype == torch.bfloat16 else 1e-2):
                    message = f"compiled block differs from the eager one ({err:.2e})"
                    if self.attention == "cudnn":
                        raise RuntimeError(message)
                    # FlashAttention and SDPA inside the compiled block are what the
                    # benchmark's end-to-end fidelity check has covered; keep them, but say so
                    log.warning("%s; kept (attention %s)", message, self.attention)
                break
            except Exception as exc:
                if self._leave_cudnn("compiling", exc):
                    model = self._model
                    assert model is not None
                    continue
                log.exception("torch.compile failed; the fast sampler runs uncompiled")
                self.use_compile = False
                model.block_fn = block_forward
                model.dynamic = False
                break
        self.stats["compile_s"] = time.monotonic() - started

    def _compiled_block_error(self, bucket: Bucket) -> float:
        """The compiled block vs the eager one on ``bucket`` (all frames valid)."""
        model, schedule, store = self._model, self._schedule, self.store
        assert model is not None
        assert schedule is not None
        store.set_layout(bucket, pack([bucket.frames], bucket.frames))
        bias = None if bucket.cu_seqlens is not None else bucket.attn_bias
        return block_error(
            model.block_fn,
            dit=model.dit,
            block=model.blocks[0],
            consts=model.consts,
            mods=schedule.mods[0][0][:, None, None, :],
            cos=bucket.cos,
            sin=bucket.sin,
            attn_bias=bias,
            cu_seqlens=bucket.cu_seqlens,
            cudnn=self.attention == "cudnn",
            dynamic=self.use_compile,
        )

    # ------------------------------------------------------------------ sampling

    @torch.inference_mode()
    def sample(
        self,
        cond: Tensor,
        text_ids: Tensor,
        duration: int,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Generate the mel for ``duration`` frames, reference part included.

        Args:
            cond: Reference mel, [1, T_ref, n_mel], model dtype, on the model's device.
            text_ids: f5 ``list_str_to_idx`` ids of reference + new text, [1, T_text], -1
                padded; on the CPU (no host sync) or the model's device.
            duration: Total frames including the reference. Raised, as f5 does, to at least
                max(text length, reference length) + 1.
            noise: Initial noise [duration, n_mel] or [1, duration, n_mel]; None draws it from
                torch's global generator exactly as ``CFM.sample`` does.

        Returns:
            [1, duration, n_mel] in the model dtype: what ``CFM.sample(...)[0]`` returns.
        """
        return self.sample_batch([SampleRequest(cond, text_ids, duration, noise)])[0]

    @torch.inference_mode()
    def sample_batch(self, requests: Sequence[SampleRequest]) -> list[Tensor]:
        """Each request's ``sample`` output, up to ``max_batch`` of them per packed pass.

        Requests are packed in the order given, as many per pass as ``max_batch`` and
        ``max_batch_frames`` allow; a request longer than ``max_frames`` (or a pass of one)
        runs on the single-request path. Noise left None is drawn in request order, as
        successive ``sample`` calls would draw it.
        """
        if not self._supported:
            return [self._stock(r) for r in requests]
        self._ensure_ready()
        jobs = [self._job(r) for r in requests]
        outs: list[Tensor | None] = [None] * len(jobs)
        for group in self._groups(jobs):
            if len(group) == 1:
                outs[group[0]] = self._run_single(jobs[group[0]])
            else:
                for index, out in zip(
                    group, self._run_packed([jobs[i] for i in group]), strict=True
                ):
                    outs[index] = out
        return [out for out in outs if out is not None]

    def _stock(self, request: SampleRequest) -> Tensor:
        out, _ = self.cfm.sample(
            cond=request.cond,
            text=request.text_ids.to(request.cond.device),
            duration=request.duration,
            steps=self.nfe_step,
            cfg_strength=self.cfg_strength,
            sway_sampling_coef=self.sway_sampling_coef,
        )
        return out  # type: ignore[no-any-return]

    def _job(self, request: SampleRequest) -> _Job:
        cond, text_ids = request.cond, request.text_ids
        if cond.ndim != 3 or cond.shape[0] != 1:
            raise ValueError(f"cond must be [1, T_ref, n_mel], got {tuple(cond.shape)}")
        if text_ids.ndim != 2 or text_ids.shape[0] != 1:
            raise ValueError(f"text_ids must be [1, T_text], got {tuple(text_ids.shape)}")
        n_mel = int(self.cfm.num_channels)
        ref_frames = cond.shape[1]
        text_len = int((text_ids != -1).sum())  # host ids: no device sync
        frames = min(max(max(text_len, ref_frames) + 1, int(request.duration)), MAX_DURATION)
        noise = request.noise
        if noise is None:
            noise = torch.randn(frames, n_mel, device=self.device, dtype=self.dtype)
        noise = noise.reshape(-1, n_mel)
        if noise.shape[0] != frames:
            raise ValueError(f"noise has {noise.shape[0]} frames, expected {frames}")
        return _Job(cond.to(self.dtype), text_ids, frames, noise)

    def _groups(self, jobs: list[_Job]) -> list[list[int]]:
        """Requests packed together, in order, while they fit one pass.

        A request too long for a batch (over ``max_frames``) runs alone and does not end
        the pass being filled; the others are packed in the order given.
        """
        store = self.store
        groups: list[list[int]] = []
        current: list[int] = []
        for index, job in enumerate(jobs):
            if store.batch_frames == 0 or job.frames > self.max_frames:
                groups.append([index])
                continue
            lengths = [jobs[i].frames for i in [*current, index]]
            if current and (
                len(current) >= self.batch_limit or packed_frames(lengths) > store.batch_frames
            ):
                groups.append(current)
                current = []
            current.append(index)
        if current:
            groups.append(current)
        return groups

    def _run_single(self, job: _Job) -> Tensor:
        schedule, model, store = self._schedule, self._model, self.store
        assert schedule is not None
        assert model is not None
        bucket = store.single(job.frames)
        packing = pack([job.frames], bucket.frames)
        self._fill(bucket, packing, [job])
        if self.use_graphs and bucket.graph is None and bucket.padded:
            # a bucket warmup() did not prepare: capture it now (slow once)
            log.info("fast sampler: capturing an unprepared length (%d frames)", bucket.frames)
            self._pending = [p for p in self._pending if p != ("single", bucket.frames)]
            self._capture(bucket)
        run_steps(model, bucket, schedule, self._inputs())
        return self._output(bucket, packing, [job])[0]

    def _run_packed(self, jobs: list[_Job]) -> list[Tensor]:
        schedule, model, store = self._schedule, self._model, self.store
        assert schedule is not None
        assert model is not None
        lengths = [job.frames for job in jobs]
        bucket = store.batch(packed_frames(lengths))
        packing = pack(lengths, bucket.frames)
        self._fill(bucket, packing, jobs)
        # no graph yet: the compiled step runs eagerly (at batch sizes the GPU, not the
        # launches, sets the pace), and the capture stays queued for idle time
        run_steps(model, bucket, schedule, self._inputs())
        self.stats["packed_passes"] = self.stats.get("packed_passes", 0.0) + 1
        self.stats["packed_requests"] = self.stats.get("packed_requests", 0.0) + len(jobs)
        return self._output(bucket, packing, jobs)

    def _fill(self, bucket: Bucket, packing: Packing, jobs: list[_Job]) -> None:
        """Write every request's inputs into ``bucket`` and mark its layout.

        Per request: text embeddings exactly as ``DiT.get_input_embed`` builds them (at the
        request's own length), the reference mel in the cond branch, the initial noise.
        Everything else is zero.
        """
        n_mel = int(self.cfm.num_channels)
        te = self.cfm.transformer.text_embed
        rows = text_rows([job.text_ids for job in jobs], packing.lengths).to(self.device)
        emb = text_embeddings(te, rows, packing.lengths)  # [2k, L, text_dim]
        k = len(jobs)
        inp, x = bucket.inp, bucket.x
        inp.zero_()
        x.zero_()
        for i, (job, offset, length) in enumerate(
            zip(jobs, packing.offsets, packing.lengths, strict=True)
        ):
            part = slice(offset, offset + length)
            inp[0, part, 2 * n_mel :].copy_(emb[i, :length])
            inp[1, part, 2 * n_mel :].copy_(emb[k + i, :length])
            inp[0, offset : offset + job.cond.shape[1], n_mel : 2 * n_mel].copy_(job.cond[0])
            x[0, part].copy_(job.noise)
        self.store.set_layout(bucket, packing)

    @staticmethod
    def _output(bucket: Bucket, packing: Packing, jobs: list[_Job]) -> list[Tensor]:
        outs = []
        for job, offset, length in zip(jobs, packing.offsets, packing.lengths, strict=True):
            out = bucket.x[:, offset : offset + length].clone()
            out[:, : job.cond.shape[1]] = job.cond  # CFM.sample: torch.where(cond_mask, cond, out)
            outs.append(out)
        return outs


def _satisfies_the_contract(sampler: FastSampler) -> Sampler:
    """Never called: mypy checks here that ``FastSampler`` satisfies ``Sampler``."""
    return sampler
