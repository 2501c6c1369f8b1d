"""A faster F5-TTS sampler that computes exactly what ``CFM.sample`` computes.

Stock f5-tts inference is bound by Python and kernel launches, not by the GPU: every one of
the 16 Euler steps launches ~1,000 small kernels, recomputes the same time-step modulations and
rotary tables, and syncs with the host inside torchdiffeq. This module removes that overhead
without changing the model's function:

* **Per-step constants once.** The time steps depend only on ``nfe_step`` and the sway
  coefficient, so the time embedding and every block's AdaLN modulation (a 1024x6144 matrix
  product per block per step) are computed once for all steps and kept.
* **Per-request constants once.** The text embeddings (cond and uncond) and the reference mel
  part of the input are built once per request, not once per step.
* **CUDA graphs per length bucket.** One Euler step (both CFG branches, all blocks, the CFG mix
  and the state update) is captured once per padded length. Padding normally changes what f5
  computes (single-request inference runs without a mask, so padded frames would join the
  attention). Here the padded frames are masked exactly: they are excluded as attention keys
  and zeroed before each position convolution, the same zeros that convolution padding gives
  an unpadded sequence, and the padded query rows are dropped at the end. So the valid frames
  get the same values as an unpadded run, up to floating-point rounding.
* **Optional torch.compile of the transformer block** (fused normalisation, modulation, RoPE
  and gating kernels) with dynamic sequence length, so one compilation serves all buckets and
  inductor's on-disk cache makes later start-ups fast.

On the CPU nothing is captured or compiled, but the same step code runs (with or without
padding), so CPU tests cover the arithmetic that the GPU graphs replay.

The sampler snapshots fused QKV weights and the per-step modulations when it is first used:
create a new sampler after changing the model's weights.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

_MAX_DURATION = 65536  # CFM.sample's own clamp
ATTENTION_BACKENDS = ("flash", "cudnn", "sdpa")
"""Ways a padded bucket's attention can exclude the padded keys (see ``_attention``)."""


@dataclass(frozen=True, slots=True)
class _Block:
    """One DiT block's weights in the form the step function uses (views, plus fused QKV)."""

    w_qkv: Tensor
    b_qkv: Tensor
    w_o: Tensor
    b_o: Tensor
    w_ff1: Tensor
    b_ff1: Tensor
    w_ff2: Tensor
    b_ff2: Tensor
    q_norm: Tensor | None
    k_norm: Tensor | None


@dataclass(slots=True)
class _Schedule:
    """Everything that depends on the time steps alone, for all steps at once."""

    t: Tensor  # [S + 1] model dtype, exactly CFM.sample's grid
    dt: Tensor  # [S] model dtype, t[i + 1] - t[i] as torchdiffeq computes it
    mods: Tensor  # [S, depth, 6, dim]: shift/scale/gate (attn), shift/scale/gate (ff)
    final: Tensor  # [S, 2, dim]: scale, shift of the final AdaLN


@dataclass(slots=True)
class _Bucket:
    """Static buffers of one padded length; CUDA graphs read and write only these."""

    frames: int
    padded: bool
    x: Tensor  # [1, frames, n_mel] ODE state
    inp: Tensor  # [2, frames, 2 * n_mel + text_dim]: x | cond | text, cond branch first
    conv_mask: Tensor | None  # [2, frames] bool, True on valid frames
    attn_bias: Tensor | None  # [2, 1, 1, frames] 0 on valid keys, -inf on padding
    cu_seqlens: Tensor | None  # int32 [5]: valid0 | pad0 | valid1 | pad1 (varlen kernel)
    cos: Tensor  # [frames, rot_dim] float32
    sin: Tensor
    mods: Tensor  # [depth, 6, dim] the current step's modulations (graph input)
    final: Tensor  # [2, dim]
    dt: Tensor  # [] current step size
    graph: Any = None  # torch.cuda.CUDAGraph once captured


def _rotate_half(x: Tensor) -> Tensor:
    """x_transformers' ``rotate_half``: pairs (a, b) -> (-b, a) along the last axis."""
    pairs = x.unflatten(-1, (-1, 2))  # type: ignore[no-untyped-call]
    first, second = pairs.unbind(dim=-1)
    return torch.stack((-second, first), dim=-1).flatten(-2)


def _block_forward(
    x: Tensor,
    mods: Tensor,
    cos: Tensor,
    sin: Tensor,
    attn_bias: Tensor | None,
    cu_seqlens: Tensor | None,
    w_qkv: Tensor,
    b_qkv: Tensor,
    w_o: Tensor,
    b_o: Tensor,
    w_ff1: Tensor,
    b_ff1: Tensor,
    w_ff2: Tensor,
    b_ff2: Tensor,
    q_norm: Tensor | None,
    k_norm: Tensor | None,
    heads: int,
    ln_eps: float,
    rms_eps: float,
    cudnn: bool = False,
) -> Tensor:
    """One f5 ``DiTBlock.forward`` with its AdaLN modulation precomputed.

    Mirrors f5-tts 1.1.22 op for op (LayerNorm, modulation, RoPE in float32 as x_transformers
    does, attention, gating, tanh-GELU feed-forward), so the result differs from the stock
    block only by rounding. Padded keys are excluded exactly, see ``_attention``.

    Args:
        x: Hidden states [2, frames, dim] (cond and uncond CFG branches).
        mods: This step's modulation [6, 1, 1, dim] for this block.
        cos: RoPE cosines [frames, rot_dim], float32 (x_transformers rotates in float32).
        sin: RoPE sines, same shape.
        attn_bias: [2, 1, 1, frames] additive key mask, or None.
        cu_seqlens: int32 [5] sequence starts for the varlen kernel, or None.
        w_qkv: Fused Q, K, V projection weight [3 * inner, dim]; b_qkv its bias.
        b_qkv: See w_qkv.
        w_o: Output projection; b_o its bias.
        b_o: See w_o.
        w_ff1: Feed-forward in; b_ff1 its bias.
        b_ff1: See w_ff1.
        w_ff2: Feed-forward out; b_ff2 its bias.
        b_ff2: See w_ff2.
        q_norm: RMSNorm weight for queries (qk_norm models) or None.
        k_norm: RMSNorm weight for keys or None.
        heads: Attention heads.
        ln_eps: LayerNorm epsilon.
        rms_eps: RMSNorm epsilon.
        cudnn: Run the key-masked attention on cuDNN's fused kernel (CUDA, ``attn_bias``).

    Returns:
        The block's output, like ``DiTBlock.forward``.
    """
    batch, frames, dim = x.shape
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.unbind(0)

    norm = F.layer_norm(x, (dim,), eps=ln_eps) * (1 + scale_msa) + shift_msa
    qkv = F.linear(norm, w_qkv, b_qkv)
    inner = w_qkv.shape[0] // 3
    head_dim = inner // heads
    query, key, value = qkv.view(batch, frames, 3, heads, head_dim).unbind(2)  # [b, n, h, d]
    if q_norm is not None:
        query = F.rms_norm(query, (head_dim,), weight=q_norm, eps=rms_eps)
    if k_norm is not None:
        key = F.rms_norm(key, (head_dim,), weight=k_norm, eps=rms_eps)
    dtype = query.dtype
    rot = cos.shape[-1]
    cos_b, sin_b = cos.view(1, frames, 1, rot), sin.view(1, frames, 1, rot)
    query = (query * cos_b + _rotate_half(query) * sin_b).to(dtype)
    key = (key * cos_b + _rotate_half(key) * sin_b).to(dtype)
    attn = _attention(query, key, value, attn_bias, cu_seqlens, cudnn)
    attn = F.linear(attn.to(dtype), w_o, b_o)
    x = x + gate_msa * attn

    norm = F.layer_norm(x, (dim,), eps=ln_eps) * (1 + scale_mlp) + shift_mlp
    hidden = F.gelu(F.linear(norm, w_ff1, b_ff1), approximate="tanh")
    return x + gate_mlp * F.linear(hidden, w_ff2, b_ff2)


def _attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_bias: Tensor | None,
    cu_seqlens: Tensor | None,
    cudnn: bool,
) -> Tensor:
    """Softmax attention over [batch, frames, heads, head_dim] inputs; [batch, frames, inner] out.

    Padded keys are excluded in one of three exact ways, all equal to attending over the valid
    frames alone (up to rounding):

    * ``cu_seqlens`` (CUDA fp16/bf16): FlashAttention-2's variable-length kernel, with the
      valid and the padded frames of each CFG branch as separate sequences;
    * ``cudnn`` with ``attn_bias``: cuDNN's fused attention with the -inf key bias (on Hopper
      it uses the chip's matrix instructions, which FlashAttention-2 does not);
    * ``attn_bias`` alone: whichever SDPA backend torch picks for a masked call.

    Neither a bias nor ``cu_seqlens``: no padding, the stock unmasked call.
    """
    batch, frames, heads, head_dim = query.shape
    inner = heads * head_dim
    if cu_seqlens is not None:
        out = torch.ops.aten._flash_attention_forward(
            query.reshape(batch * frames, heads, head_dim),
            key.reshape(batch * frames, heads, head_dim),
            value.reshape(batch * frames, heads, head_dim),
            cu_seqlens,
            cu_seqlens,
            frames,
            frames,
            0.0,
            False,
            False,
        )[0]
        return out.view(batch, frames, inner)  # type: ignore[no-any-return]
    if cudnn and attn_bias is not None:
        out = torch.ops.aten._scaled_dot_product_cudnn_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_bias, False
        )[0]
        return out.transpose(1, 2).reshape(batch, frames, inner)  # type: ignore[no-any-return]
    attn = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=attn_bias
    )
    return attn.transpose(1, 2).reshape(batch, frames, inner)


def epss_time_grid(
    nfe_step: int, sway_sampling_coef: float | None, device: Any, dtype: Any
) -> Tensor:
    """The time grid ``CFM.sample`` integrates over (EPSS steps, then sway), same dtype ops.

    Args:
        nfe_step: Number of Euler steps.
        sway_sampling_coef: f5's sway coefficient (None: no sway).
        device: Where the grid lives.
        dtype: The model's dtype; f5 builds the grid in it, so rounding matches.

    Returns:
        ``nfe_step + 1`` time points from 0 to 1.
    """
    from f5_tts.model.utils import get_epss_timesteps

    t: Tensor = get_epss_timesteps(nfe_step, device=device, dtype=dtype)
    if sway_sampling_coef is not None:
        t = t + sway_sampling_coef * (torch.cos(torch.pi / 2 * t) - 1 + t)
    return t


class FastSampler:
    """Drop-in replacement for ``CFM.sample(...)[0]`` (before the vocoder), much faster on CUDA.

    Args:
        cfm: An f5-tts ``CFM`` with a ``DiT`` backbone, loaded, in eval mode, on its device and
            dtype.
        nfe_step: Euler steps (EPSS time steps for the counts f5 knows, like f5-tts 1.1.22).
        cfg_strength: Classifier-free guidance strength.
        sway_sampling_coef: Sway sampling coefficient.
        bucket_frames: Padded lengths are multiples of this. None: 32 on CUDA, no padding on
            the CPU (tests pass a number to cover the padded path there too); 0: no padding.
        max_frames: Longest bucket; longer requests run unpadded, without graphs.
        cuda_graphs: Capture one step per bucket as a CUDA graph (None: on CUDA).
        compile: torch.compile the transformer block (None: on CUDA).
        compile_mode: torch.compile mode, e.g. "default" or "max-autotune-no-cudagraphs".
        cache_dir: Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR) for fast later start-ups;
            None leaves inductor's default (a per-user folder under the temp dir).
        varlen_attention: False: never use FlashAttention's variable-length kernel (kept for
            callers of earlier versions; ``attention="sdpa"`` says the same).
        attention: How padded buckets exclude padded keys: "flash" (FlashAttention-2
            variable-length kernel), "cudnn" (cuDNN fused attention with a key bias) or "sdpa"
            (torch's masked SDPA). None: on CUDA in fp16/bf16, each of "flash" and "cudnn" is
            checked against a reference (values, and that it replays inside a CUDA graph) and
            timed at a chat-length shape, and the faster one is used; "sdpa" otherwise. A
            named backend that fails its check also falls back to "sdpa". The choice is in
            ``attention`` after the first ``warmup``/``sample``.
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
        varlen_attention: bool | None = None,
        attention: str | None = None,
    ) -> None:
        if nfe_step < 1:
            raise ValueError("nfe_step must be at least 1")
        if attention is not None and attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION_BACKENDS)} or None, "
                f"got {attention!r}"
            )
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
        if attention is None and varlen_attention is False:
            attention = "sdpa"
        self._attention_request = attention
        self.attention = "sdpa"
        """The key-masking attention in use (resolved by the first ``warmup``/``sample``)."""
        self._attention_checked = False
        self._contiguous_hidden = True  # False only to measure the old layout (bench)
        self.compile_mode = compile_mode
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._supported, self._why_not = self._check_supported(cfm)
        self._blocks: list[_Block] | None = None
        self._schedule: _Schedule | None = None
        self._buckets: dict[int, _Bucket] = {}
        self._block_fn: Callable[..., Tensor] = _block_forward
        self._compiled = False
        self._pool: Any = None
        self._shared: dict[str, Tensor] | None = None
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _check_supported(cfm: Any) -> tuple[bool, str]:
        """The step function mirrors f5's DiT; anything else falls back to ``cfm.sample``."""
        dit: Any = getattr(cfm, "transformer", None)
        if type(dit).__name__ != "DiT":
            return False, f"backbone {type(dit).__name__} is not DiT"
        if getattr(cfm, "odeint_kwargs", {}).get("method", "euler") != "euler":
            return False, "ODE method is not euler"
        if getattr(dit, "checkpoint_activations", False):
            return False, "checkpoint_activations is on"
        for block in dit.transformer_blocks:
            proc = block.attn.processor
            if proc.pe_attn_head is not None:
                return False, "pe_attn_head is set"
            if proc.attn_backend != "torch":
                return False, f"attn_backend {proc.attn_backend}"
        if dit.rotary_embed.scale is not None:
            return False, "xpos rotary scale"
        return True, ""

    def _prepare_weights(self) -> list[_Block]:
        blocks = []
        for block in self.cfm.transformer.transformer_blocks:
            attn = block.attn
            blocks.append(
                _Block(
                    w_qkv=torch.cat(
                        [attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]
                    ).detach(),
                    b_qkv=torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]).detach(),
                    w_o=attn.to_out[0].weight.detach(),
                    b_o=attn.to_out[0].bias.detach(),
                    w_ff1=block.ff.ff[0][0].weight.detach(),
                    b_ff1=block.ff.ff[0][0].bias.detach(),
                    w_ff2=block.ff.ff[2].weight.detach(),
                    b_ff2=block.ff.ff[2].bias.detach(),
                    q_norm=attn.q_norm.weight.detach() if attn.q_norm is not None else None,
                    k_norm=attn.k_norm.weight.detach() if attn.k_norm is not None else None,
                )
            )
        return blocks

    @torch.inference_mode()
    def _prepare_schedule(self) -> _Schedule:
        """Time grid, steps and every modulation, computed as stock computes them per step."""
        dit = self.cfm.transformer
        t = epss_time_grid(self.nfe_step, self.sway_sampling_coef, self.device, self.dtype)
        steps = t.shape[0] - 1
        dts, mods, finals = [], [], []
        for i in range(steps):
            t0, t1 = t[i], t[i + 1]
            dts.append(t1 - t0)
            temb = dit.time_embed(t0.repeat(1))
            temb = torch.cat((temb, temb), dim=0)  # CFG batch, as DiT.forward builds it
            per_block = []
            for block in dit.transformer_blocks:
                emb = block.attn_norm.linear(block.attn_norm.silu(temb))
                per_block.append(torch.stack(torch.chunk(emb[:1], 6, dim=1)))  # [6, 1, dim]
            mods.append(torch.stack(per_block))  # [depth, 6, 1, dim]
            emb = dit.norm_out.linear(dit.norm_out.silu(temb))
            finals.append(torch.stack(torch.chunk(emb[:1], 2, dim=1)))  # [2, 1, dim]
        return _Schedule(
            t=t,
            dt=torch.stack(dts),
            mods=torch.stack(mods).squeeze(3).contiguous(),
            final=torch.stack(finals).squeeze(2).contiguous(),
        )

    @property
    def use_varlen(self) -> bool:
        """True when padded keys go through FlashAttention's variable-length kernel."""
        return self.attention == "flash"

    def _ensure_ready(self) -> None:
        if not self._attention_checked:
            self._attention_checked = True
            self.attention = self._choose_attention()
        if self._blocks is None:
            self._blocks = self._prepare_weights()
        if self._schedule is None:
            self._schedule = self._prepare_schedule()
        if self.use_compile and not self._compiled:
            self._compile()

    @torch.inference_mode()
    def _choose_attention(self) -> str:
        """Pick the key-masking attention kernel: checked first, then the faster one.

        Both fused kernels are reached through private torch ops, so each one is checked here
        rather than trusted: its values against a float32 reference on the valid frames, and
        that it can be captured and replayed in a CUDA graph (the sampler replays every step
        from one). Which is faster depends on the card and the torch/cuDNN build, so when no
        backend is named both are timed once at a chat-length shape (~1 ms in all).
        """
        request = self._attention_request
        on_cuda = self.device.type == "cuda"
        half = self.dtype in (torch.float16, torch.bfloat16)
        if request == "sdpa" or not (on_cuda and half):
            if request not in (None, "sdpa"):
                log.info("attention %r needs CUDA and fp16/bf16; using torch's SDPA", request)
            return "sdpa"
        candidates = [request] if request is not None else ["flash", "cudnn"]
        timings: dict[str, float] = {}
        for name in candidates:
            ms = self._try_attention(name, timed=request is None)
            if ms is not None:
                timings[name] = ms
                self.stats[f"attention_{name}_ms"] = ms
        if not timings:
            log.info("no fused masked attention passed its check; using torch's SDPA")
            return "sdpa"
        chosen = min(timings, key=lambda name: timings[name])
        log.info(
            "attention for padded buckets: %s (%s)",
            chosen,
            ", ".join(f"{k} {v:.3f} ms" for k, v in timings.items()),
        )
        return chosen

    def _try_attention(self, name: str, timed: bool) -> float | None:
        """Check one backend; its median time per call in ms (0.0 when not timed), or None."""
        attn = self.cfm.transformer.transformer_blocks[0].attn
        heads, head_dim = attn.heads, attn.inner_dim // attn.heads
        size = max(96, min(self.max_frames, 1376))
        valid = size - 17
        gen = torch.Generator(device="cpu").manual_seed(0)
        # laid out as in the block: q and k fresh from RoPE, v a view into the fused QKV
        qkv = torch.randn(2, size, 3, heads, head_dim, generator=gen)
        qkv = qkv.to(self.device, self.dtype)
        query, key = qkv[:, :, 0].contiguous(), qkv[:, :, 1].contiguous()
        value = qkv[:, :, 2]
        bias = torch.zeros(2, 1, 1, size, device=self.device, dtype=self.dtype)
        bias[..., valid:] = -math.inf
        cu = None
        if name == "flash":
            starts = [0, valid, size, size + valid, 2 * size]
            cu = torch.tensor(starts, dtype=torch.int32).to(self.device)

        def run() -> Tensor:
            return _attention(
                query, key, value, None if cu is not None else bias, cu, name == "cudnn"
            )

        try:
            got = run()
            out = torch.empty_like(got)
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                run()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            with torch.cuda.graph(graph):
                out.copy_(run())
            out.fill_(math.nan)
            graph.replay()
            torch.cuda.synchronize(self.device)
        except Exception:
            log.info("%s attention unavailable; not used", name, exc_info=True)
            return None
        want = F.scaled_dot_product_attention(
            query.float().transpose(1, 2),
            key.float().transpose(1, 2),
            value.float().transpose(1, 2),
            attn_mask=bias.float(),
        ).transpose(1, 2)
        want = want.reshape(2, size, heads * head_dim)[:, :valid]
        errors = [float((res[:, :valid].float() - want).norm() / want.norm()) for res in (got, out)]
        if not max(errors) < 1e-2 or not all(math.isfinite(e) for e in errors):
            log.warning("%s attention disagrees with the reference (%s); not used", name, errors)
            return None
        if not timed:
            return 0.0
        times = []
        for _ in range(3):
            graph.replay()
        for _ in range(15):
            begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            done = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            begin.record()
            graph.replay()
            done.record()
            done.synchronize()
            times.append(float(begin.elapsed_time(done)))
        del graph
        return float(sorted(times)[len(times) // 2])

    def _compile(self) -> None:
        self._compiled = True
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.cache_dir))
        try:
            import torch._inductor.config as inductor_config

            inductor_config.fx_graph_cache = True
            self._block_fn = torch.compile(
                _block_forward, mode=self.compile_mode, fullgraph=True, dynamic=None
            )
        except Exception:
            log.exception("torch.compile unavailable; the fast sampler runs uncompiled")
            self._block_fn = _block_forward

    def bucket_for(self, frames: int) -> int:
        """The padded length a request of ``frames`` total frames runs at (itself if unpadded)."""
        if self.bucket_frames <= 0 or frames > self.max_frames:
            return frames
        return -(-frames // self.bucket_frames) * self.bucket_frames

    def _new_bucket(self, frames: int, padded: bool) -> _Bucket:
        """Buffers for one length. Padded buckets are views of one shared set of buffers.

        Buckets never run at the same time, and every request rewrites all of a bucket's
        inputs, so all padded buckets can share storage: views of the first ``frames`` rows
        are contiguous and keep fixed addresses, which is all a CUDA graph needs.
        """
        dit = self.cfm.transformer
        n_mel = self.cfm.num_channels
        text_dim = dit.text_embed.text_embed.embedding_dim
        dim, depth = dit.dim, dit.depth
        kw: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        width = 2 * n_mel + text_dim
        if padded:
            if self._shared is None:
                top = self.max_frames
                freqs, _ = dit.rotary_embed.forward_from_seq_len(top)
                self._shared = {
                    "x": torch.zeros(top * n_mel, **kw),
                    "inp": torch.zeros(2 * top * width, **kw),
                    "conv_mask": torch.ones(2 * top, dtype=torch.bool, device=self.device),
                    "attn_bias": torch.zeros(2 * top, **kw),
                    "cu_seqlens": torch.zeros(5, dtype=torch.int32, device=self.device),
                    "cos": freqs[0].cos().contiguous(),  # [top, rot] float32
                    "sin": freqs[0].sin().contiguous(),
                    "mods": torch.zeros(depth, 6, dim, **kw),
                    "final": torch.zeros(2, dim, **kw),
                    "dt": torch.zeros((), **kw),
                }
            sh = self._shared
            bucket = _Bucket(
                frames=frames,
                padded=True,
                x=sh["x"][: frames * n_mel].view(1, frames, n_mel),
                inp=sh["inp"][: 2 * frames * width].view(2, frames, width),
                conv_mask=sh["conv_mask"][: 2 * frames].view(2, frames),
                attn_bias=sh["attn_bias"][: 2 * frames].view(2, 1, 1, frames),
                cu_seqlens=sh["cu_seqlens"] if self.use_varlen else None,
                cos=sh["cos"][:frames],
                sin=sh["sin"][:frames],
                mods=sh["mods"],
                final=sh["final"],
                dt=sh["dt"],
            )
            if self.use_compile:
                for tensor, axis in ((bucket.cos, 0), (bucket.sin, 0), (bucket.attn_bias, 3)):
                    assert tensor is not None
                    torch._dynamo.mark_dynamic(tensor, axis)
            return bucket
        freqs, _ = dit.rotary_embed.forward_from_seq_len(frames)
        return _Bucket(
            frames=frames,
            padded=False,
            x=torch.zeros(1, frames, n_mel, **kw),
            inp=torch.zeros(2, frames, width, **kw),
            conv_mask=None,
            attn_bias=None,
            cu_seqlens=None,
            cos=freqs[0].cos(),
            sin=freqs[0].sin(),
            mods=torch.zeros(depth, 6, dim, **kw),
            final=torch.zeros(2, dim, **kw),
            dt=torch.zeros((), **kw),
        )

    # ------------------------------------------------------------------ the step

    def _step(self, bucket: _Bucket, mods: Tensor, final: Tensor, dt: Tensor) -> None:
        """One Euler step of CFM.sample's ODE on ``bucket.x``, in place.

        Mirrors ``DiT.forward(cfg_infer=True, cache=True)`` followed by the CFG mix and
        torchdiffeq's Euler update. Everything it reads or writes lives in ``bucket`` (or is
        passed as a static tensor), so it can be captured as a CUDA graph.
        """
        dit = self.cfm.transformer
        blocks = self._blocks
        assert blocks is not None
        n_mel = self.cfm.num_channels
        bucket.inp[:, :, :n_mel].copy_(bucket.x.expand(2, -1, -1))
        h = dit.input_embed.proj(bucket.inp)
        h = dit.input_embed.conv_pos_embed(h, mask=bucket.conv_mask) + h
        if self._contiguous_hidden:
            # the sum takes the convolution's channels-first strides, and inductor keeps its
            # outputs' strides, so every block would read and write transposed activations
            # (uncoalesced norms and residual adds); one copy per step lays them out by frame
            h = h.contiguous()
        residual = h if dit.long_skip_connection is not None else None
        ln_eps = dit.transformer_blocks[0].ff_norm.eps
        heads = dit.transformer_blocks[0].attn.heads
        q_norm_mod = dit.transformer_blocks[0].attn.q_norm
        rms_eps = float(q_norm_mod.eps) if q_norm_mod is not None else 1e-6
        # compiled code serves the padded buckets (one dynamic-length graph); an unpadded
        # one-off length runs the same function uncompiled rather than compile mid-request
        block_fn = self._block_fn if bucket.padded else _block_forward
        cudnn = bucket.padded and self.attention == "cudnn"
        if self.use_compile and bucket.padded:
            torch._dynamo.mark_dynamic(h, 1)
        for i, block in enumerate(blocks):
            h = block_fn(
                h,
                mods[i][:, None, None, :],
                bucket.cos,
                bucket.sin,
                None if bucket.cu_seqlens is not None else bucket.attn_bias,
                bucket.cu_seqlens,
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
                heads,
                ln_eps,
                rms_eps,
                cudnn,
            )
        if residual is not None:
            h = dit.long_skip_connection(torch.cat((h, residual), dim=-1))
        scale, shift = final[0], final[1]
        h = F.layer_norm(h, (h.shape[-1],), eps=dit.norm_out.norm.eps) * (1 + scale) + shift
        out = dit.proj_out(h)
        pred, null_pred = out[:1], out[1:]
        flow = pred + (pred - null_pred) * self.cfg_strength
        bucket.x.add_(dt * flow)

    def _capture(self, bucket: _Bucket) -> None:
        """Warm ``bucket``'s step up on a side stream, then capture it as a CUDA graph."""
        stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream(self.device))
        saved = bucket.x.clone()
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(bucket, bucket.mods, bucket.final, bucket.dt)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step(bucket, bucket.mods, bucket.final, bucket.dt)
        bucket.x.copy_(saved)
        bucket.graph = graph

    def _get_bucket(self, frames: int) -> _Bucket:
        size = self.bucket_for(frames)
        bucket = self._buckets.get(size)
        if bucket is None:
            bucket = self._new_bucket(
                size, padded=self.bucket_frames > 0 and size <= self.max_frames
            )
            if bucket.padded:  # exact-size buckets serve one length; don't keep them
                self._buckets[size] = bucket
        return bucket

    # ------------------------------------------------------------------ public API

    @torch.inference_mode()
    def warmup(
        self,
        frames: Sequence[int] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Precompute the schedule, compile, and capture a CUDA graph for every bucket.

        Call it once at start-up (the F5 engine does, while WARMING): afterwards no request
        compiles or captures anything, so the first chat line is as fast as the hundredth.

        Args:
            frames: Total frame counts to prepare; None prepares every bucket up to
                ``max_frames`` (on the CPU: nothing beyond the schedule).
            progress: Called with a short human-readable status now and then.
        """
        if not self._supported:
            log.info("fast sampler falls back to CFM.sample: %s", self._why_not)
            return
        started = time.monotonic()
        self._ensure_ready()
        if frames is None:
            if not (self.use_graphs or self.use_compile) or self.bucket_frames <= 0:
                return
            sizes = list(range(self.bucket_frames, self.max_frames + 1, self.bucket_frames))
        else:
            sizes = sorted({self.bucket_for(int(n)) for n in frames})
        schedule = self._schedule
        assert schedule is not None
        if self.use_compile and sizes:
            self._first_compile(sizes[-1], schedule)
        try:
            self._prepare_buckets(sizes, schedule, progress)
        except Exception as exc:
            if not self._leave_cudnn("capturing the CUDA graphs", exc):
                raise
            self._prepare_buckets(sizes, schedule, progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats["warmup_s"] = time.monotonic() - started
        log.info(
            "fast sampler warm: %d buckets, graphs=%s, compile=%s, %.1f s",
            len(sizes),
            self.use_graphs,
            self.use_compile,
            self.stats["warmup_s"],
        )

    def _prepare_buckets(
        self, sizes: list[int], schedule: _Schedule, progress: Callable[[str], None] | None
    ) -> None:
        # largest first: the shared graph pool is then sized once, by the biggest bucket
        for done, size in enumerate(reversed(sizes)):
            bucket = self._get_bucket(size)
            self._set_valid(bucket, bucket.frames)
            if self.use_graphs and bucket.graph is None:
                bucket.mods.copy_(schedule.mods[0])
                bucket.final.copy_(schedule.final[0])
                bucket.dt.copy_(schedule.dt[0])
                self._capture(bucket)
            elif self.use_compile:
                self._step(bucket, schedule.mods[0], schedule.final[0], schedule.dt[0])
            if progress is not None and done % 16 == 0:
                progress(f"fast sampler: {done + 1}/{len(sizes)} lengths ready")

    def _leave_cudnn(self, during: str, error: BaseException) -> bool:
        """Switch from cuDNN attention, which failed inside the model, to FlashAttention or SDPA.

        Its stand-alone check passed, so this is unexpected (``error`` is logged);
        dropping the buckets made so far (their graphs hold the old kernel) and carrying on is
        better than losing the sampler.
        """
        if self.attention != "cudnn":
            return False
        fallback = "flash" if self._try_attention("flash", timed=False) is not None else "sdpa"
        log.error(
            "cuDNN attention failed while %s; using %s instead", during, fallback, exc_info=error
        )
        self.attention = fallback
        self._buckets.clear()
        self._pool = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return True

    def _first_compile(self, size: int, schedule: _Schedule) -> None:
        """Compile the block once; if that fails, log it and carry on uncompiled."""
        started = time.monotonic()
        for _ in range(2):
            try:
                bucket = self._get_bucket(size)
                self._set_valid(bucket, bucket.frames)
                self._step(bucket, schedule.mods[0], schedule.final[0], schedule.dt[0])
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                err = self._compiled_block_error(bucket, schedule)
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
                    continue
                log.exception("torch.compile failed; the fast sampler runs uncompiled")
                self.use_compile = False
                self._block_fn = _block_forward
                break
        self.stats["compile_s"] = time.monotonic() - started

    def _compiled_block_error(self, bucket: _Bucket, schedule: _Schedule) -> float:
        """Compiled block vs the eager one with torch's SDPA: error relative to the update.

        Guards what the stand-alone kernel checks cannot see: the fused attention op inside
        inductor's graph (layouts, strides, dynamic length). All frames count as valid here.
        """
        blocks = self._blocks
        assert blocks is not None
        dit = self.cfm.transformer
        frames = bucket.frames
        gen = torch.Generator(device="cpu").manual_seed(1)
        # a small residual: LayerNorm makes the update independent of the input's scale, and
        # the output's fp16 rounding (relative to |h + update|) stays small next to the update
        h = torch.randn(2, frames, dit.dim, generator=gen) * 1e-2
        h = h.to(self.device, self.dtype)
        self._set_valid(bucket, frames)
        block = blocks[0]
        attn = dit.transformer_blocks[0].attn
        q_norm_mod = attn.q_norm
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
            attn.heads,
            dit.transformer_blocks[0].ff_norm.eps,
            float(q_norm_mod.eps) if q_norm_mod is not None else 1e-6,
        )
        mods = schedule.mods[0][0][:, None, None, :]
        if self.use_compile:
            torch._dynamo.mark_dynamic(h, 1)
        got = self._block_fn(
            h,
            mods,
            bucket.cos,
            bucket.sin,
            None if bucket.cu_seqlens is not None else bucket.attn_bias,
            bucket.cu_seqlens,
            *common,
            self.attention == "cudnn",
        )
        want = _block_forward(h, mods, bucket.cos, bucket.sin, None, None, *common, False)
        # relative to what the block adds, so a wrong attention cannot hide behind the residual
        delta = (want.double() - h.double()).norm()
        return float((got.double() - want.double()).norm() / delta.clamp_min(1e-30))

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
            text_ids: f5 ``list_str_to_idx`` ids of reference + new text, [1, T_text], -1 padded.
            duration: Total frames including the reference. Raised, as f5 does, to at least
                max(text length, reference length) + 1.
            noise: Initial noise [duration, n_mel] or [1, duration, n_mel]; None draws it from
                torch's global generator exactly as ``CFM.sample`` does.

        Returns:
            [1, duration, n_mel] in the model dtype: what ``CFM.sample(...)[0]`` returns.
        """
        if not self._supported:
            out, _ = self.cfm.sample(
                cond=cond,
                text=text_ids,
                duration=duration,
                steps=self.nfe_step,
                cfg_strength=self.cfg_strength,
                sway_sampling_coef=self.sway_sampling_coef,
            )
            return out  # type: ignore[no-any-return]
        if cond.ndim != 3 or cond.shape[0] != 1:
            raise ValueError(f"cond must be [1, T_ref, n_mel], got {tuple(cond.shape)}")
        if text_ids.ndim != 2 or text_ids.shape[0] != 1:
            raise ValueError(f"text_ids must be [1, T_text], got {tuple(text_ids.shape)}")
        self._ensure_ready()
        schedule = self._schedule
        assert schedule is not None
        n_mel = self.cfm.num_channels
        cond = cond.to(self.dtype)
        ref_frames = cond.shape[1]
        text_ids = text_ids.to(self.device)
        text_len = int((text_ids != -1).sum())
        frames = min(max(max(text_len, ref_frames) + 1, int(duration)), _MAX_DURATION)

        if noise is None:
            noise = torch.randn(frames, n_mel, device=self.device, dtype=self.dtype)
        noise = noise.reshape(-1, n_mel)
        if noise.shape[0] != frames:
            raise ValueError(f"noise has {noise.shape[0]} frames, expected {frames}")

        bucket = self._get_bucket(frames)
        # per request: text embeddings exactly as DiT.get_input_embed builds them (seq_len =
        # the unpadded length), written into the static input with zeros beyond
        text_both = self._text_embeddings(text_ids, frames)  # [2, frames, text_dim]
        inp = bucket.inp
        inp[:, frames:].zero_()
        inp[:, :frames, 2 * n_mel :].copy_(text_both)
        inp[:, :, n_mel : 2 * n_mel].zero_()
        inp[0, :ref_frames, n_mel : 2 * n_mel].copy_(cond[0])
        bucket.x.zero_()
        bucket.x[0, :frames].copy_(noise)
        self._set_valid(bucket, frames)

        if (
            self.use_graphs and bucket.graph is None and bucket.padded
        ):  # a bucket warmup() did not prepare: capture it now (slow once)
            self._capture_now(bucket, schedule)
        for i in range(schedule.dt.shape[0]):
            if bucket.graph is not None:
                bucket.mods.copy_(schedule.mods[i])
                bucket.final.copy_(schedule.final[i])
                bucket.dt.copy_(schedule.dt[i])
                bucket.graph.replay()
            else:
                self._step(bucket, schedule.mods[i], schedule.final[i], schedule.dt[i])

        out = bucket.x[:, :frames].clone()
        out[:, :ref_frames] = cond  # CFM.sample: torch.where(cond_mask, cond, out)
        return out

    def _text_embeddings(self, text_ids: Tensor, frames: int) -> Tensor:
        """Cond and uncond text embeddings [2, frames, text_dim], as DiT.get_input_embed makes them.

        f5 runs ``TextEmbedding.forward`` twice (drop_text False, then True). This runs the same
        ops once on a batch of both, halving the kernel launches; every op is per sample (the
        ConvNeXt GRN normalises over each sample's own sequence), so the result is the same.
        """
        te = self.cfm.transformer.text_embed
        if te.average_upsampling:  # per-sample Python loop in f5: keep its own code
            return torch.cat(
                [
                    te(text_ids, seq_len=frames, drop_text=False),
                    te(text_ids, seq_len=frames, drop_text=True),
                ]
            )
        text = text_ids + 1
        text = text[:, :frames]
        text = F.pad(text, (0, frames - text.shape[1]), value=0)
        text_mask = text == 0
        both = torch.cat((text, torch.zeros_like(text)))
        emb = te.text_embed(both)
        if te.extra_modeling:
            emb = emb + te.freqs_cis[:frames, :]
            if te.mask_padding:
                fill = torch.cat((text_mask, text_mask)).unsqueeze(-1)
                emb = emb.masked_fill(fill, 0.0)
                for block in te.text_blocks:
                    emb = block(emb).masked_fill(fill, 0.0)
            else:
                emb = te.text_blocks(emb)
        return emb  # type: ignore[no-any-return]

    @staticmethod
    def _set_valid(bucket: _Bucket, frames: int) -> None:
        """Mark the first ``frames`` frames of a padded bucket valid, the rest padding.

        Also before warm-up steps and captures: the kernels then read only in-bounds rows
        (FlashAttention trusts ``cu_seqlens``; the shared buffer may hold a larger bucket's).
        """
        if not bucket.padded:
            return
        assert bucket.conv_mask is not None
        assert bucket.attn_bias is not None
        bucket.conv_mask.zero_()
        bucket.conv_mask[:, :frames] = True
        bucket.attn_bias.fill_(-math.inf)
        bucket.attn_bias[..., :frames] = 0
        if bucket.cu_seqlens is not None:
            size = bucket.frames
            starts = [0, frames, size, size + frames, 2 * size]
            # non_blocking: a plain copy from host memory waits for all queued work
            bucket.cu_seqlens.copy_(torch.tensor(starts, dtype=torch.int32), non_blocking=True)

    def _capture_now(self, bucket: _Bucket, schedule: _Schedule) -> None:
        log.info("fast sampler: capturing an unprepared length (%d frames)", bucket.frames)
        saved = bucket.x.clone()
        bucket.mods.copy_(schedule.mods[0])
        bucket.final.copy_(schedule.final[0])
        bucket.dt.copy_(schedule.dt[0])
        self._capture(bucket)
        bucket.x.copy_(saved)
