"""Settings of the overlay and control panel server (``web``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from engine.config import Section


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (so nothing else on the network can connect)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BrowserAudio(StrEnum):
    """Where speech plays (``web.browser_audio``): the local device, the overlay page, or both.

    ``only`` and ``also`` stream the speech to every open ``/overlay`` page (Web Audio), so the
    OBS browser source plays it and OBS mixes it like any source: a two-PC setup needs no
    audio cable. ``only`` opens no local audio device at all.
    """

    OFF = "off"
    ONLY = "only"
    ALSO = "also"


class WebConfig(Section):
    """The OBS overlay and control panel server (``web``); loopback only unless allowed."""

    enabled: bool = True
    allow_remote: bool = Field(
        default=False, description="allow web.host to be reachable from other machines"
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port")
    history: int = Field(default=50, ge=0, le=1000, description="recent messages on the panel")
    browser_audio: BrowserAudio = Field(
        default=BrowserAudio.OFF,
        description="speech in the OBS browser source: off (local device only), "
        "only (the overlay page instead of the device) or also (both)",
    )

    @field_validator("browser_audio", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false (and `on`/`yes` as true)
        if value is False:
            return BrowserAudio.OFF
        if value is True:
            raise ValueError(
                "say which: off, only (the overlay page instead of the device) or also"
            )
        return value

    @model_validator(mode="after")
    def _needs_the_server(self) -> WebConfig:
        if self.browser_audio is not BrowserAudio.OFF and not self.enabled:
            raise ValueError(
                f"browser_audio: {self.browser_audio.value} needs the web server; set "
                "web.enabled: true or web.browser_audio: off"
            )
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_remote", False) and not _is_loopback(value):
            raise ValueError(
                "is reachable from other machines; use 127.0.0.1, or set "
                "web.allow_remote: true if you really want the panel on the network"
            )
        return value
