"""The sampler contract: what the F5 engine asks of whatever runs ``CFM.sample`` for it.

Two samplers satisfy it: :class:`StockSampler` (f5-tts's own ``CFM.sample``, one request at a
time) and ``engine.f5fast.FastSampler`` (the same function with per-step constants
precomputed, CUDA graphs, compilation and packed batches). The engine uses whichever applies
and does the rest (text ids, vocoder, trimming) itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SampleRequest:
    """One request of a batch: what ``Sampler.sample`` takes, as a value.

    Attributes:
        cond: Reference mel [1, T_ref, n_mel], in the model's dtype on its device.
        text_ids: Reference + new text as f5's ``list_str_to_idx`` ids [1, T_text] (-1
            padded); on the CPU or the model's device.
        duration: Total frames including the reference (raised, as f5 does, to at least
            ``max(text length, T_ref) + 1``).
        noise: Initial noise [duration, n_mel] or [1, duration, n_mel]; None draws it from
            torch's global generator as ``CFM.sample`` does (requests of a batch in order).
    """

    cond: Tensor
    text_ids: Tensor
    duration: int
    noise: Tensor | None = None


@runtime_checkable
class Sampler(Protocol):
    """Flow-matching sampling of reference + new speech as a mel spectrogram.

    Attributes:
        nfe_step: ODE steps.
        cfg_strength: Classifier-free guidance strength.
        sway_sampling_coef: Sway sampling coefficient of the time steps.
    """

    nfe_step: int
    cfg_strength: float
    sway_sampling_coef: float

    @property
    def max_batch(self) -> int:
        """Most requests ``sample_batch`` runs in one pass (1: one at a time)."""

    def warmup(self, frames: Sequence[int] | None = None, progress: Progress | None = None) -> None:
        """Prepare (compile, capture) so that the first request is as fast as any other."""

    def prepare_more(self) -> bool:
        """Do one more piece of deferred preparation; False once nothing is left."""

    def sample(
        self, cond: Tensor, text_ids: Tensor, duration: int, noise: Tensor | None = None
    ) -> Tensor:
        """The mel [1, duration, n_mel] whose first T_ref frames equal ``cond``."""

    def sample_batch(self, requests: Sequence[SampleRequest]) -> list[Tensor]:
        """Each request's ``sample`` result, in order.

        How many run together is the sampler's business; each output equals the request's
        ``sample`` output with the same noise, up to rounding.
        """


class _FixedNoise(TorchFunctionMode):
    """Hands a given tensor to CFM.sample's one ``torch.randn`` call (its initial noise).

    A torch function mode is scoped to this thread and this ``with`` block, so f5-tts's
    sampler runs unmodified while the caller chooses the noise (needed to compare samplers).
    """

    def __init__(self, noise: Tensor) -> None:
        super().__init__()
        self._noise = noise
        self.used = False

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.randn and not self.used:
            shape = tuple(int(a) for a in args)
            if shape != tuple(self._noise.shape[1:]):
                raise ValueError(
                    f"noise has shape {tuple(self._noise.shape)}, the sampler needs "
                    f"[1, {', '.join(map(str, shape))}]"
                )
            self.used = True
            return self._noise[0].to(device=kwargs.get("device"), dtype=kwargs.get("dtype"))
        return func(*args, **kwargs)


class StockSampler:
    """f5-tts's own flow-matching sampler (``CFM.sample``), behind the sampler contract.

    Batches run one request after another: f5's batched ``CFM.sample`` pads without an
    attention mask (``attn_mask_enabled`` is off), which would change each request's output.
    """

    max_batch = 1

    def __init__(
        self, cfm: Any, *, nfe_step: int, cfg_strength: float, sway_sampling_coef: float
    ) -> None:
        """Wrap a loaded ``f5_tts.model.CFM``.

        Args:
            cfm: The model, already on its device and in its dtype.
            nfe_step: Number of ODE steps (function evaluations).
            cfg_strength: Classifier-free guidance strength.
            sway_sampling_coef: Sway sampling coefficient for the time steps.
        """
        self.cfm = cfm
        self.nfe_step = nfe_step
        self.cfg_strength = cfg_strength
        self.sway_sampling_coef = sway_sampling_coef

    def warmup(self, frames: Sequence[int] | None = None, progress: Progress | None = None) -> None:
        """Nothing to prepare: f5-tts compiles and captures nothing."""

    def prepare_more(self) -> bool:
        """Nothing deferred."""
        return False

    def sample(
        self, cond: Tensor, text_ids: Tensor, duration: int, noise: Tensor | None = None
    ) -> Tensor:
        """Generate the mel spectrogram of reference + new speech.

        Args:
            cond: Reference mel, [1, T_ref, n_mel], in the model's dtype on its device.
            text_ids: Reference + new text as f5's ``list_str_to_idx`` ids, [1, T_text] long.
            duration: Total frames including the reference. CFM.sample raises it to at
                least ``max(T_text, T_ref) + 1``; callers pass at least that.
            noise: Initial noise [1, duration, n_mel] (or [duration, n_mel]); drawn from
                torch's global RNG, exactly as CFM.sample does, when None.

        Returns:
            The mel [1, duration, n_mel] whose first T_ref frames equal ``cond``.
        """
        kwargs: dict[str, Any] = {
            "cond": cond,
            "text": text_ids.to(cond.device),
            "duration": duration,
            "steps": self.nfe_step,
            "cfg_strength": self.cfg_strength,
            "sway_sampling_coef": self.sway_sampling_coef,
        }
        if noise is None:
            out, trajectory = self.cfm.sample(**kwargs)
        else:
            mode = _FixedNoise(noise if noise.ndim == 3 else noise.unsqueeze(0))
            with mode:
                out, trajectory = self.cfm.sample(**kwargs)
            if not mode.used:
                raise RuntimeError("CFM.sample drew no noise; f5-tts changed, update _FixedNoise")
        del trajectory
        result: Tensor = out
        return result

    def sample_batch(self, requests: Sequence[SampleRequest]) -> list[Tensor]:
        """Each request through ``sample``, one after another."""
        return [self.sample(r.cond, r.text_ids, r.duration, r.noise) for r in requests]


def _satisfies_the_contract(sampler: StockSampler) -> Sampler:
    """Never called: mypy checks here that ``StockSampler`` satisfies ``Sampler``."""
    return sampler
