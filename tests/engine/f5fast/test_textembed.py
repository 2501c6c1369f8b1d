"""The text embedding of many requests at once equals each request's own, whatever its neighbours.

f5's ``TextEmbedding`` looks along the sequence twice (a depthwise convolution and the GRN's
sequence norm), so a batch padded to its longest row could leak from one request into
another. Each row must equal f5's own module run on that request alone, at its own length.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.f5fast.textembed import text_embeddings, text_rows
from tests.engine.f5fast.common import TEXT, ids, rel
from tests.support.f5 import tiny_cfm

TEXTS = [TEXT, "hi", "hello there, friend"]
LENGTHS = [130, 40, 95]


def _alone(te: Any, text: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return (
            te(ids(text), seq_len=length, drop_text=False)[0],
            te(ids(text), seq_len=length, drop_text=True)[0],
        )


def _together(te: Any, texts: list[str], lengths: list[int]) -> torch.Tensor:
    rows = text_rows([ids(t) for t in texts], lengths)
    with torch.inference_mode():
        return text_embeddings(te, rows, lengths)


@pytest.mark.parametrize(
    "arch",
    [
        {},  # the released shape: ConvNeXt blocks with text masking
        {"conv_layers": 0},  # embedding lookup only
        {"text_mask_padding": False},  # f5's module per request (no masking to rely on)
        {"text_embedding_average_upsampling": True},  # ditto (f5's per-sample loop)
    ],
)
def test_each_row_equals_the_request_alone(arch: dict[str, Any]) -> None:
    te = tiny_cfm(seed=2, **arch).transformer.text_embed
    emb = _together(te, TEXTS, LENGTHS)
    k = len(TEXTS)
    assert emb.shape[:2] == (2 * k, max(LENGTHS))
    for i, (text, length) in enumerate(zip(TEXTS, LENGTHS, strict=True)):
        cond, uncond = _alone(te, text, length)
        assert rel(emb[i, :length], cond) < 1e-6
        assert rel(emb[k + i, :length], uncond) < 1e-6 or float(uncond.abs().max()) == 0.0


def test_a_request_does_not_depend_on_its_neighbours(model: Any) -> None:
    """The same request beside short and long neighbours: the same embedding, bit for bit close."""
    te = model.transformer.text_embed
    beside_short = _together(te, ["hello there, friend", "a"], [95, 20])
    beside_long = _together(te, ["hello there, friend", TEXT * 4], [95, 400])
    assert rel(beside_short[0, :95], beside_long[0, :95]) < 1e-6
    assert rel(beside_short[2, :95], beside_long[2, :95]) < 1e-6


def test_a_plain_padded_batch_would_leak(model: Any) -> None:
    """Guards the tests above: f5's module on a padded batch (its GRN over the whole row)
    does change a short request, so the per-row norm is what keeps requests apart."""
    te = model.transformer.text_embed
    cond, _ = _alone(te, "hello there, friend", 95)
    rows = text_rows([ids("hello there, friend"), ids(TEXT * 4)], [95, 400])
    with torch.inference_mode():
        plain = te(rows - 1, seq_len=400, drop_text=False)
    assert rel(plain[0, :95], cond) > 1e-4


def test_rows_are_shifted_ids_cut_to_each_length() -> None:
    rows = text_rows([ids("abc"), ids(TEXT)], [2, 10])
    assert rows.shape == (2, 10)
    assert rows[0].tolist() == [2, 3, 0, 0, 0, 0, 0, 0, 0, 0]  # ids + 1, 0 = filler
    assert rows[1].tolist() == (ids(TEXT)[0, :10] + 1).tolist()
