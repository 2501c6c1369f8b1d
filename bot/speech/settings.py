"""Settings of the audio output and the speech queue (``audio``, ``queue``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.config import Section


class AudioConfig(Section):
    """Output device and loudness (``audio``)."""

    device: str | int | None = None
    volume: float = Field(default=1.0, ge=0.0, le=1.0)
    gap_ms: int = Field(default=250, ge=0, le=10_000, description="pause between messages")
    block_ms: int = Field(default=20, ge=5, le=200)


class QueueConfig(Section):
    """The speech queue's bounds and policies (``queue``)."""

    max_size: int = Field(default=30, ge=1, le=10_000)
    overflow: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    per_user_limit: int = Field(default=3, ge=1, le=1000, description="pending messages per user")
    paid_first: bool = True
    prefetch_batch: int = Field(
        default=8,
        ge=1,
        le=64,
        description="queued messages synthesised together as one batch during a raid, with "
        "an engine that batches (F5 on CUDA); 1 turns it off",
    )
