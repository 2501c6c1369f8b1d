"""Settings of the Twitch source (``twitch``); the client id may come from the environment."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config import Section


class AutomodConfig(Section):
    """Messages Twitch's AutoMod holds (``twitch.automod``).

    Twitch shows a held message in chat only once a moderator approves it, so by default an
    approved message is spoken like any other and a denied one never arrives. Watching the
    holds (``watch``; the signed-in account must moderate the channel and hold the
    ``moderator:manage:automod`` scope) lets the bot drop approved messages too, and makes
    sure a held message is never spoken while it is held.
    """

    watch: bool = Field(
        default=False, description="subscribe to AutoMod holds (needs moderator:manage:automod)"
    )
    approved: Literal["speak", "drop"] = Field(
        default="speak", description="what happens to a held message a moderator approves"
    )

    @model_validator(mode="after")
    def _drop_needs_watch(self) -> AutomodConfig:
        if self.approved == "drop" and not self.watch:
            raise ValueError(
                "approved: drop needs watch: true (the bot must see the holds to know which "
                "messages were held)"
            )
        return self


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
    automod: AutomodConfig = Field(default_factory=AutomodConfig)
    shared_chat: Literal["own", "all"] = Field(
        default="own",
        description="in a shared-chat session, read only this channel's chat (own) or all",
    )
    messages: Literal["all", "paid"] = Field(
        default="all",
        description="paid: only cheers (twitch.min_bits and up) and channel-point redemptions"
        " (twitch.rewards) are read out (chat commands still work)",
    )

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        return value or os.environ.get("ISHOWTTS_TWITCH_CLIENT_ID") or None
