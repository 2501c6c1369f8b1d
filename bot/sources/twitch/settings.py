"""Settings of the Twitch source (``twitch``); the client id may come from the environment."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from engine.config import Section


class TwitchConfig(Section):
    """Twitch connection (``twitch``); the client id may come from the environment."""

    channel: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{2,25}$")
    client_id: str | None = None
    rewards: tuple[str, ...] = ()
    min_bits: int = Field(default=100, ge=1)
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="first wait before rebuilding a lost connection"
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, le=600, description="longest wait between reconnection attempts"
    )

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        return value or os.environ.get("ISHOWTTS_TWITCH_CLIENT_ID") or None
