"""What the fast-sampler tests share: stock f5-tts runs, the fast sampler's, and the error.

Every comparison runs f5-tts's own ``CFM.sample`` on a tiny real model
(``tests.support.f5.tiny_cfm``) with the same inputs, time steps and initial noise as the
fast sampler. Tolerances are fp32 rounding (< 1e-5 relative L2), far below the 1e-2 that
fp16 on the GPU is held to.
"""

from __future__ import annotations

from typing import Any

import torch
from f5_tts.model.utils import list_str_to_idx

from engine.f5fast import FastSampler
from engine.sampling import SampleRequest, StockSampler
from tests.support.f5 import N_MEL, SAMPLER_VOCAB

REF_FRAMES = 48
TEXT = "some call me nature. hello there, how are you today?"
SEED = 1234
SETTINGS: dict[str, Any] = {"nfe_step": 16, "cfg_strength": 2.0, "sway_sampling_coef": -1.0}


def ids(text: str) -> torch.Tensor:
    """f5's ``list_str_to_idx`` ids [1, T] of ``text`` for the tiny vocabulary."""
    ids_: torch.Tensor = list_str_to_idx([text], SAMPLER_VOCAB)
    return ids_


def reference(seed: int, frames: int = REF_FRAMES) -> torch.Tensor:
    """A reference mel [1, frames, n_mel] (random: the tests compare samplers, not voices)."""
    return torch.randn(1, frames, N_MEL, generator=torch.Generator().manual_seed(seed))


def noise_for(frames: int, seed: int = SEED) -> torch.Tensor:
    """Initial noise [frames, n_mel], as ``CFM.sample`` draws it after ``manual_seed(seed)``."""
    torch.manual_seed(seed)
    return torch.randn(frames, N_MEL)


def stock(cfm: Any, cond: torch.Tensor, text_ids: torch.Tensor, duration: int, **kw: Any):
    """f5-tts's ``CFM.sample`` output with the noise of ``manual_seed(SEED)``."""
    params: dict[str, Any] = {"steps": 16, "cfg_strength": 2.0, "sway_sampling_coef": -1.0}
    params.update(kw)
    torch.manual_seed(SEED)
    with torch.inference_mode():
        out, _ = cfm.sample(cond=cond, text=text_ids, duration=duration, **params)
    return out


def stock_with(cfm: Any, request: SampleRequest) -> torch.Tensor:
    """Stock ``CFM.sample`` on one request with its own noise (``StockSampler``'s hook)."""
    with torch.inference_mode():
        return StockSampler(cfm, **SETTINGS).sample(
            request.cond, request.text_ids, request.duration, request.noise
        )


def fast(sampler: FastSampler, cond: torch.Tensor, text_ids: torch.Tensor, duration: int):
    """The fast sampler's output with the noise of ``manual_seed(SEED)``."""
    torch.manual_seed(SEED)
    with torch.inference_mode():
        return sampler.sample(cond, text_ids, duration)


def make(cfm: Any, **kw: Any) -> FastSampler:
    """A fast sampler with the engine's settings (16 steps, CFG 2, sway -1) plus ``kw``."""
    params = dict(SETTINGS)
    params.update(kw)
    return FastSampler(cfm, **params)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of ``a`` against ``b``."""
    return float((a.double() - b.double()).norm() / b.double().norm())
