"""FastSampler against f5-tts's own ``CFM.sample`` on tiny real f5 models (CPU).

The fast sampler must compute the same function as stock: same inputs, time steps and noise
give the same mel. On the CPU nothing is captured or compiled, but the step code that the
CUDA graphs replay runs here too, unpadded and padded (with the exact key masking), so these
tests check its arithmetic. Tolerances are fp32 rounding, far below the 1e-2 that fp16 on the
GPU is held to.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from f5_tts.model.backbones.dit import DiT
from f5_tts.model.cfm import CFM
from f5_tts.model.utils import list_str_to_idx

from engine.f5_fast import FastSampler, epss_time_grid

VOCAB = {c: i for i, c in enumerate(" abcdefghijklmnopqrstuvwxyz,.!?'")}
N_MEL = 100
REF_FRAMES = 48


def tiny_cfm(seed: int = 0, **dit_kwargs: object) -> CFM:
    """A tiny CFM built with f5-tts's own classes; every layer re-drawn (f5 zero-inits some)."""
    torch.manual_seed(seed)
    arch = {"dim": 64, "depth": 2, "heads": 2, "ff_mult": 2, "text_dim": 32, "conv_layers": 1}
    arch.update(dit_kwargs)
    dit = DiT(**arch, text_num_embeds=len(VOCAB), mel_dim=N_MEL)
    for module in dit.modules():
        if module is not dit and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    cfm = CFM(
        transformer=dit,
        mel_spec_kwargs={
            "n_fft": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "n_mel_channels": N_MEL,
            "target_sample_rate": 24000,
            "mel_spec_type": "vocos",
        },
        odeint_kwargs={"method": "euler"},
        vocab_char_map=VOCAB,
    )
    return cfm.eval()


def ids(text: str) -> torch.Tensor:
    return list_str_to_idx([text], VOCAB)


def stock(cfm: CFM, cond: torch.Tensor, text_ids: torch.Tensor, duration: int, **kw: object):
    params = {"steps": 16, "cfg_strength": 2.0, "sway_sampling_coef": -1.0}
    params.update(kw)
    torch.manual_seed(1234)
    with torch.inference_mode():
        out, _ = cfm.sample(cond=cond, text=text_ids, duration=duration, **params)
    return out


def fast(sampler: FastSampler, cond: torch.Tensor, text_ids: torch.Tensor, duration: int):
    torch.manual_seed(1234)
    with torch.inference_mode():
        return sampler.sample(cond, text_ids, duration)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def model() -> CFM:
    return tiny_cfm()


@pytest.fixture(scope="module")
def cond() -> torch.Tensor:
    return torch.randn(1, REF_FRAMES, N_MEL, generator=torch.Generator().manual_seed(7))


TEXT = "some call me nature. hello there, how are you today?"


def make(cfm: CFM, **kw: object) -> FastSampler:
    params: dict = {"nfe_step": 16, "cfg_strength": 2.0, "sway_sampling_coef": -1.0}
    params.update(kw)
    return FastSampler(cfm, **params)


def test_unpadded_matches_stock_exactly(model, cond):
    want = stock(model, cond, ids(TEXT), 150)
    got = fast(make(model), cond, ids(TEXT), 150)
    assert got.shape == want.shape == (1, 150, N_MEL)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5
    # the output is not trivial: generation moved far from the noise and from zero
    assert float(want[:, REF_FRAMES:].abs().mean()) > 0.1


@pytest.mark.parametrize("duration", [100, 128, 129, 150, 257])
def test_padded_buckets_match_stock(model, cond, duration):
    """Padding to a bucket with masked keys and convolutions changes nothing but rounding."""
    sampler = make(model, bucket_frames=32)
    assert sampler.bucket_for(duration) % 32 == 0
    want = stock(model, cond, ids(TEXT), duration)
    got = fast(sampler, cond, ids(TEXT), duration)
    assert got.shape == want.shape
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_padding_without_masks_would_differ(model, cond):
    """Guards the test above: the bucket really is padded, and padding does matter to f5.

    Running stock f5 on the padded length (its single-request path has no mask) gives a
    different mel for the same frames, so matching stock needs the masking.
    """
    sampler = make(model, bucket_frames=64)
    assert sampler.bucket_for(100) == 128
    want = stock(model, cond, ids(TEXT), 100)
    torch.manual_seed(1234)
    noise = torch.randn(100, N_MEL)
    padded_noise = torch.cat([noise, torch.zeros(28, N_MEL)])
    torch.manual_seed(0)
    with torch.inference_mode():
        plain = FastSampler(
            model, nfe_step=16, cfg_strength=2.0, sway_sampling_coef=-1.0, bucket_frames=0
        ).sample(cond, ids(TEXT), 128, noise=padded_noise)
    assert rel(plain[:, REF_FRAMES:100], want[:, REF_FRAMES:]) > 1e-3


def test_reference_frames_equal_cond(model, cond):
    got = fast(make(model, bucket_frames=32), cond, ids(TEXT), 140)
    assert torch.equal(got[:, :REF_FRAMES], cond)


def test_explicit_noise_same_as_seeded(model, cond):
    sampler = make(model, bucket_frames=32)
    seeded = fast(sampler, cond, ids(TEXT), 140)
    torch.manual_seed(1234)
    noise = torch.randn(140, N_MEL)
    with torch.inference_mode():
        flat = sampler.sample(cond, ids(TEXT), 140, noise=noise)
        batched = sampler.sample(cond, ids(TEXT), 140, noise=noise[None])
    assert torch.equal(flat, seeded)
    assert torch.equal(batched, seeded)
    with pytest.raises(ValueError, match="noise has 139 frames"):
        sampler.sample(cond, ids(TEXT), 140, noise=noise[:139])


def test_duration_raised_like_stock(model, cond):
    """Too short a duration is raised to max(text, reference) + 1, as CFM.sample does."""
    long_text = TEXT * 3  # 156 characters > 60 frames
    want = stock(model, cond, ids(long_text), 60)
    got = fast(make(model, bucket_frames=32), cond, ids(long_text), 60)
    assert got.shape == want.shape == (1, len(long_text) + 1, N_MEL)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_bucket_reuse_leaves_no_state_behind(model, cond):
    """Shared buffers are fully rewritten per request: order of requests does not matter."""
    sampler = make(model, bucket_frames=64)
    first = fast(sampler, cond, ids(TEXT), 120)
    fast(sampler, cond, ids("gg"), 70)  # same bucket (128), shorter text and duration
    fast(sampler, cond, ids(TEXT * 2), 250)  # another bucket sharing the same storage
    again = fast(sampler, cond, ids(TEXT), 120)
    assert torch.equal(first, again)
    assert torch.equal(again, fast(make(model, bucket_frames=64), cond, ids(TEXT), 120))


@pytest.mark.parametrize(
    ("nfe", "cfg", "sway"), [(7, 2.0, -1.0), (9, 2.0, -1.0), (16, 0.0, -1.0), (16, 2.0, 0.0)]
)
def test_other_settings_match_stock(model, cond, nfe, cfg, sway):
    """EPSS table sizes, plain linspace (9), no guidance (stock then skips the CFG batch)."""
    sampler = make(model, nfe_step=nfe, cfg_strength=cfg, sway_sampling_coef=sway, bucket_frames=32)
    want = stock(model, cond, ids(TEXT), 130, steps=nfe, cfg_strength=cfg, sway_sampling_coef=sway)
    got = fast(sampler, cond, ids(TEXT), 130)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_time_grid_is_f5s():
    from f5_tts.model.utils import get_epss_timesteps

    grid = epss_time_grid(16, -1.0, "cpu", torch.float16)
    base = get_epss_timesteps(16, device="cpu", dtype=torch.float16)
    assert grid.dtype == torch.float16
    assert grid.shape == (17,)
    assert torch.equal(grid, base + -1.0 * (torch.cos(torch.pi / 2 * base) - 1 + base))
    assert float(grid[0]) == 0.0
    assert abs(float(grid[-1]) - 1.0) < 1e-3  # f5's own fp16 rounding of cos(pi/2): 0.9995


def test_qk_norm_and_long_skip_models(cond):
    cfm = tiny_cfm(seed=3, qk_norm="rms_norm", long_skip_connection=True)
    want = stock(cfm, cond, ids(TEXT), 140)
    got = fast(make(cfm, bucket_frames=32), cond, ids(TEXT), 140)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_unsupported_model_falls_back_to_stock(cond):
    cfm = tiny_cfm(seed=4, pe_attn_head=1)
    sampler = make(cfm, bucket_frames=32)
    sampler.warmup()  # says why in the log, prepares nothing
    want = stock(cfm, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert torch.equal(got, want)


def test_fp16_model_on_cpu_runs_and_stays_close(model, cond):
    """fp16 weights (the GPU's dtype) on the CPU: same path, fp16 rounding only."""
    half = tiny_cfm().half()
    cond16 = cond.half()
    want = stock(model, cond, ids(TEXT), 140)  # fp32 reference
    got = fast(make(half, bucket_frames=32), cond16, ids(TEXT), 140)
    assert got.dtype == torch.float16
    assert torch.isfinite(got).all()
    assert rel(got[:, REF_FRAMES:].float(), want[:, REF_FRAMES:]) < 1e-2


def test_warmup_on_cpu_is_cheap_and_idempotent(model, cond):
    sampler = make(model, bucket_frames=32)
    messages: list[str] = []
    sampler.warmup(progress=messages.append)
    sampler.warmup(frames=[100, 140], progress=messages.append)
    assert not sampler.use_graphs
    assert not sampler.use_compile
    want = stock(model, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


@pytest.mark.parametrize("attention", ["flash", "cudnn", "sdpa", None])
def test_attention_choice_on_cpu_is_the_masked_sdpa(model, cond, attention):
    """The fused kernels need CUDA fp16: on the CPU any request resolves to SDPA, still exact."""
    sampler = make(model, bucket_frames=32, attention=attention)
    want = stock(model, cond, ids(TEXT), 140)
    got = fast(sampler, cond, ids(TEXT), 140)
    assert sampler.attention == "sdpa"
    assert not sampler.use_varlen
    assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-5


def test_unknown_attention_is_a_clear_error(model):
    with pytest.raises(ValueError, match="attention must be one of flash, cudnn, sdpa"):
        make(model, attention="xformers")


def test_bad_shapes_are_clear_errors(model, cond):
    sampler = make(model)
    with pytest.raises(ValueError, match="cond must be"):
        sampler.sample(cond[0], ids(TEXT), 140)
    with pytest.raises(ValueError, match="text_ids must be"):
        sampler.sample(cond, ids(TEXT)[0], 140)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor's CPU backend needs g++")
def test_compiled_block_one_graph_for_all_buckets(model, cond):
    """torch.compile path (dynamic length): one graph serves every bucket, same results."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    sampler = make(model, bucket_frames=32, compile=True)
    sampler.warmup(frames=[100, 140, 200])
    assert sampler.use_compile
    for duration in (100, 140, 200):
        want = stock(model, cond, ids(TEXT), duration)
        got = fast(sampler, cond, ids(TEXT), duration)
        assert rel(got[:, REF_FRAMES:], want[:, REF_FRAMES:]) < 1e-4
    assert counters["stats"]["unique_graphs"] == 1


# ---------------------------------------------------------------------- streaming helpers
