"""Tiny F5-TTS checkpoints, built by the tests in the exact formats f5-tts reads.

The real weights (1.4 GB, non-commercial licence) are neither available nor needed here: the
engine must load a tiny DiT/CFM safetensors file with "ema_model." keys, a vocab.txt and a
Vocos folder (config.yaml + pytorch_model.bin) through the very code path the released
weights take. Random weights make noise, not speech; the tests assert shapes, lengths, rates,
caching and event order, never quality.

Fixtures:
    tiny_f5: (session) an ``engine.f5`` config mapping for the tiny model on local files.
    tiny_voices_dir: (session) a voices folder holding one extra voice, ``alice``.

Helpers for other tests:
    build_tiny_f5(folder) -> dict: create the files and return the ``engine.f5`` mapping.
    tiny_cfm(seed, **dit) -> CFM: a tiny model built in memory with f5-tts's own classes
        (the sampler tests, which need several architectures and no files).
    write_tiny_f5_config(tmp_path) -> Path: a complete config.yaml using the tiny model on
        the CPU, with a voices folder holding ``alice``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
import yaml

TINY_DIT: dict[str, Any] = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_dim": 32,
    "conv_layers": 1,
}
TINY_VOCOS = {"dim": 32, "intermediate_dim": 64, "num_layers": 1}
N_MEL = 100
EXTRA_VOICE = "alice"
BUILTIN_TRANSCRIPT = "Some call me nature, others call me mother nature."

# One symbol per line; index 0 must be the space (unknown characters map to 0).
VOCAB = [" ", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", *".,!?;:'\"-()"]


def build_tiny_f5(folder: Path, seed: int = 0) -> dict[str, Any]:
    """Write a tiny CFM checkpoint, vocab and Vocos folder; return the ``engine.f5`` mapping.

    The model is built with f5-tts's own classes and saved the way released checkpoints
    are (safetensors, every key prefixed "ema_model."), so loading it proves the real path.
    Weights are re-drawn (small normal values) because f5-tts zero-initialises the output
    layers, which would make the model ignore its inputs.
    """
    import torch
    from f5_tts.model import CFM, DiT
    from safetensors.torch import save_file
    from vocos import Vocos

    folder.mkdir(parents=True, exist_ok=True)
    vocab_path = folder / "vocab.txt"
    vocab_path.write_text("".join(f"{s}\n" for s in VOCAB), encoding="utf-8")

    generator = torch.Generator().manual_seed(seed)
    cfm = CFM(
        transformer=DiT(**TINY_DIT, text_num_embeds=len(VOCAB), mel_dim=N_MEL),
        mel_spec_kwargs={
            "n_fft": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "n_mel_channels": N_MEL,
            "target_sample_rate": 24000,
            "mel_spec_type": "vocos",
        },
        vocab_char_map={s: i for i, s in enumerate(VOCAB)},
    )
    with torch.no_grad():
        for param in cfm.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
    checkpoint = folder / "model_tiny.safetensors"
    save_file(state, str(checkpoint))

    vocoder_dir = folder / "vocos"
    vocoder_dir.mkdir(exist_ok=True)
    config = {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {
                "sample_rate": 24000,
                "n_fft": 1024,
                "hop_length": 256,
                "n_mels": N_MEL,
                "padding": "center",
            },
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {"input_channels": N_MEL, **TINY_VOCOS},
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {
                "dim": TINY_VOCOS["dim"],
                "n_fft": 1024,
                "hop_length": 256,
                "padding": "same",
            },
        },
    }
    (vocoder_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    vocos = Vocos.from_hparams(str(vocoder_dir / "config.yaml"))
    with torch.no_grad():
        for param in vocos.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    torch.save(vocos.state_dict(), vocoder_dir / "pytorch_model.bin")

    return {
        "model": dict(TINY_DIT),
        "checkpoint": str(checkpoint),
        "vocab": str(vocab_path),
        "vocoder": str(vocoder_dir),
        "nfe_step": 16,
    }


def builtin_clip() -> Path:
    """f5-tts's packaged English reference clip (5.3 s, 24 kHz mono)."""
    from engine.voices import builtin_clip as clip

    return clip()


def write_voice(
    voices_dir: Path,
    name: str,
    samples: np.ndarray,
    rate: int,
    transcript: str | None,
    filename: str = "reference.wav",
) -> Path:
    """Create ``voices_dir/name/`` with a clip (format from ``filename``) and a transcript."""
    folder = voices_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / filename), samples, rate)
    if transcript is not None:
        (folder / "reference.txt").write_text(transcript + "\n", encoding="utf-8")
    return folder


def write_alice(voices_dir: Path) -> Path:
    """The extra voice: the packaged sample as 16 kHz stereo FLAC (so loading must mix down
    and resample), with its transcript."""
    audio, rate = sf.read(str(builtin_clip()), dtype="float32")
    mono16 = soxr.resample(audio, rate, 16000)
    stereo = np.stack([mono16, 0.5 * mono16], axis=1)
    return write_voice(voices_dir, EXTRA_VOICE, stereo, 16000, BUILTIN_TRANSCRIPT, "alice.flac")


def write_tiny_f5_config(
    tmp_path: Path, f5: Mapping[str, Any] | None = None, **f5_overrides: Any
) -> Path:
    """Write ``tmp_path/config.yaml`` for the tiny model on the CPU and return its path.

    Args:
        tmp_path: Folder to fill: weights (unless ``f5`` is given), ``voices/alice``, config.
        f5: An ``engine.f5`` mapping to reuse (e.g. the ``tiny_f5`` fixture), which saves
            building the weights again.
        **f5_overrides: Extra ``engine.f5`` keys (``max_chunk_chars=40``, ``seed=1``...).
    """
    f5_cfg = dict(f5) if f5 is not None else build_tiny_f5(tmp_path / "tiny_f5")
    f5_cfg.update(f5_overrides)
    write_alice(tmp_path / "voices")
    config = {
        "engine": {"name": "f5", "device": "cpu", "f5": f5_cfg},
        "voices": {"dir": "voices", "default": "default"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_f5(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ``engine.f5`` mapping for tiny weights built once per test session.

    Also limits torch to one CPU thread: on a small, shared CPU the tiny model runs several
    times faster that way (two OpenMP threads spin against other processes).
    """
    import torch

    torch.set_num_threads(1)
    return build_tiny_f5(tmp_path_factory.mktemp("tiny_f5"))


@pytest.fixture(scope="session")
def tiny_voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voices folder holding ``alice`` (do not modify it; copy it to edit voices)."""
    voices = tmp_path_factory.mktemp("voices")
    write_alice(voices)
    return voices


SAMPLER_VOCAB = {c: i for i, c in enumerate(" abcdefghijklmnopqrstuvwxyz,.!?'")}
"""The character map of :func:`tiny_cfm` models (index 0, the space, also takes unknowns)."""


def tiny_cfm(seed: int = 0, **dit_kwargs: Any) -> Any:
    """A tiny ``CFM`` with a ``DiT`` backbone, built with f5-tts's own classes, in eval mode.

    Every layer is re-drawn by its own ``reset_parameters`` (f5 zero-initialises some, which
    would make the model ignore its inputs), and parameters still all zero after that (the
    text ConvNeXt's GRN, which has no ``reset_parameters``, and norm biases) get small normal
    values, so every part of the model does something the tests can see. ``dit_kwargs``
    override the architecture (``qk_norm="rms_norm"``, ``long_skip_connection=True``,
    ``text_mask_padding=False``...).
    """
    import torch
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    torch.manual_seed(seed)
    arch: dict[str, Any] = {
        "dim": 64,
        "depth": 2,
        "heads": 2,
        "ff_mult": 2,
        "text_dim": 32,
        "conv_layers": 1,
    }
    arch.update(dit_kwargs)
    dit = DiT(**arch, text_num_embeds=len(SAMPLER_VOCAB), mel_dim=N_MEL)
    for module in dit.modules():
        if module is not dit and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    with torch.no_grad():
        for param in dit.parameters():
            if not param.any():
                param.normal_(0.0, 0.1)
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
        vocab_char_map=SAMPLER_VOCAB,
    )
    return cfm.eval()
