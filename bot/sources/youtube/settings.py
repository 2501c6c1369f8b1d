"""Settings of the YouTube source (``youtube``); the OAuth client may come from the environment."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from engine.config import Section

DEFAULT_API_URL = "https://youtube.googleapis.com/"
DEFAULT_OAUTH_URL = "https://oauth2.googleapis.com/"


class YouTubeConfig(Section):
    """YouTube Live chat (``youtube``): the streamer's own Google OAuth client and quota budget."""

    enabled: bool = Field(
        default=False,
        description="read YouTube Live chat too (beside chat.source's Twitch or terminal)",
    )
    messages: Literal["all", "paid"] = Field(
        default="all",
        description="paid: only Super Chats, Super Stickers and memberships are read out"
        " (chat commands still work)",
    )
    client_id: str | None = Field(
        default=None, description="OAuth client of type 'TVs and Limited Input devices'"
    )
    client_secret: str | None = Field(default=None, description="that client's secret")
    video_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{11}$",
        description="read this live video's chat (default: the signed-in channel's live one)",
    )
    transport: Literal["auto", "stream", "poll"] = Field(
        default="auto",
        description="stream: server-streamed chat (5 units a connection); poll: list calls",
    )
    daily_quota: int = Field(
        default=10_000, ge=100, le=100_000_000, description="the Google project's units a day"
    )
    quota_hours: float = Field(
        default=4.0,
        gt=0,
        le=24,
        description="streaming hours a day the quota must last (sets the slowest poll rate)",
    )
    offline_check_s: float = Field(
        default=60.0,
        ge=0.01,
        le=3600,
        description="how often to look for a live broadcast (1 unit a look: 60 an hour at 60 s)",
    )
    stream_idle_s: float = Field(
        default=120.0, ge=5, le=3600, description="reopen a chat stream silent for this long"
    )
    quota_retry_s: float = Field(
        default=900.0, ge=0.01, le=86_400, description="wait after the daily quota ran out"
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=60, description="first wait after a failed call"
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, le=600, description="longest wait between retries"
    )
    api_url: str = Field(
        default=DEFAULT_API_URL,
        pattern=r"^https?://\S+/$",
        description="YouTube Data API root (tests and proxies only)",
    )
    oauth_url: str = Field(
        default=DEFAULT_OAUTH_URL,
        pattern=r"^https?://\S+/$",
        description="Google OAuth root (tests and proxies only)",
    )

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        return value or os.environ.get("ISHOWTTS_YOUTUBE_CLIENT_ID") or None

    @field_validator("client_secret")
    @classmethod
    def _client_secret(cls, value: str | None) -> str | None:
        return value or os.environ.get("ISHOWTTS_YOUTUBE_CLIENT_SECRET") or None

    @property
    def poll_floor_s(self) -> float:
        """The shortest wait between two ``liveChatMessages.list`` calls the quota allows.

        Polling spends at most 80 % of ``daily_quota`` over ``quota_hours`` of streaming (the
        rest is left for replies and broadcast look-ups): 10,000 units over 4 hours is one
        5-unit call every 9 s. YouTube's own ``pollingIntervalMillis`` applies when it is
        longer.
        """
        return 5.0 * self.quota_hours * 3600.0 / (0.8 * self.daily_quota)
