"""f5's text embedding for one or many requests at once, each exactly as if it ran alone.

``DiT.get_input_embed`` runs ``TextEmbedding.forward`` twice per step (cond, then uncond with
the text dropped), at the request's own length. Per request the result is a constant, so the
fast sampler computes it once, and for both branches and all requests of a batch in one call.

Batching needs care, because two parts of the embedding look along the sequence: the
ConvNeXt blocks' depthwise convolution (kernel 7) and their GRN, which normalises by the L2
norm over the whole sequence. Rows of different lengths are padded to the longest; the
padded positions are already zeroed before every block (f5 masks everything past the text),
which is what convolution padding gives the shorter request alone, and the GRN's norm is
taken over each row's own length only. So every row equals its single-request embedding up
to rounding. Models outside that shape (no text masking, average upsampling) run f5's own
module once per request instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def text_rows(text_ids: Sequence[Tensor], lengths: Sequence[int]) -> Tensor:
    """f5's filler-shifted token rows [k, max(lengths)] (0 = filler), on the ids' device.

    Args:
        text_ids: Per request ``list_str_to_idx`` ids [1, T_text] (-1 padded).
        lengths: Per request total frames (the sequence length f5 embeds the text at).
    """
    width = max(lengths)
    rows = []
    for ids, length in zip(text_ids, lengths, strict=True):
        text = (ids.reshape(-1) + 1)[:length]
        rows.append(F.pad(text, (0, width - text.shape[0]), value=0))
    return torch.stack(rows)


def _grn_masked(grn: Any, x: Tensor, valid: Tensor | None) -> Tensor:
    """f5's ``GRN.forward`` with the sequence norm over each row's valid positions only."""
    gx = torch.norm(x if valid is None else x * valid, p=2, dim=1, keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    return grn.gamma * (x * nx) + grn.beta + x  # type: ignore[no-any-return]


def _convnext(block: Any, x: Tensor, valid: Tensor | None) -> Tensor:
    """f5's ``ConvNeXtV2Block.forward`` with a row-length-aware GRN."""
    if valid is None:
        return block(x)  # type: ignore[no-any-return]
    residual = x
    y: Tensor = block.dwconv(x.transpose(1, 2)).transpose(1, 2)
    y = block.act(block.pwconv1(block.norm(y)))
    y = block.pwconv2(_grn_masked(block.grn, y, valid))
    return residual + y


def text_embeddings(
    te: Any, rows: Tensor, lengths: Sequence[int], valid: Tensor | None = None
) -> Tensor:
    """Cond and uncond text embeddings [2k, L, text_dim] of k requests (cond rows first).

    Args:
        te: The DiT's ``TextEmbedding``.
        rows: :func:`text_rows` output [k, L].
        lengths: Each row's own sequence length (``L`` at most).
        valid: [k, L] bool, True below each row's length; None derives it from ``lengths``.
            Passing it (a static buffer) lets a CUDA graph replay this for new lengths.

    Returns:
        Row ``i`` (cond) and ``k + i`` (uncond) equal f5's ``te(ids_i, seq_len=lengths[i],
        drop_text=False/True)`` on their first ``lengths[i]`` positions; zeros or unused
        values beyond.
    """
    width = rows.shape[1]
    if te.average_upsampling or (te.extra_modeling and not te.mask_padding):
        return _one_by_one(te, rows, lengths, width)
    text_mask = rows == 0
    both = torch.cat((rows, torch.zeros_like(rows)))
    emb: Tensor = te.text_embed(both)
    if not te.extra_modeling:
        return emb
    emb = emb + te.freqs_cis[:width, :]
    fill = torch.cat((text_mask, text_mask)).unsqueeze(-1)
    emb = emb.masked_fill(fill, 0.0)
    row_valid: Tensor | None = None
    if valid is not None:
        row_valid = torch.cat((valid, valid)).unsqueeze(-1).to(emb.dtype)
    elif min(lengths) < width:
        mask = torch.arange(width, device=rows.device)[None, :] < torch.tensor(
            list(lengths), device=rows.device
        ).unsqueeze(1)
        row_valid = torch.cat((mask, mask)).unsqueeze(-1).to(emb.dtype)
    for block in te.text_blocks:
        emb = _convnext(block, emb, row_valid).masked_fill(fill, 0.0)
    return emb


def _one_by_one(te: Any, rows: Tensor, lengths: Sequence[int], width: int) -> Tensor:
    """f5's own module per request and branch, zero-padded to ``width``."""
    out = []
    for drop in (False, True):
        for row, length in zip(rows, lengths, strict=True):
            ids = (row[:length] - 1).unsqueeze(0)  # back to list_str_to_idx ids
            emb = te(ids, seq_len=length, drop_text=drop)
            out.append(F.pad(emb, (0, 0, 0, width - length)))
    return torch.cat(out)
