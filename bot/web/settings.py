"""Settings of the overlay and control panel server (``web``)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

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


class WebConfig(Section):
    """The OBS overlay and control panel server (``web``); loopback only unless allowed."""

    enabled: bool = True
    allow_remote: bool = Field(
        default=False, description="allow web.host to be reachable from other machines"
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8765, ge=0, le=65535, description="0 picks a free port")
    history: int = Field(default=50, ge=0, le=1000, description="recent messages on the panel")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_remote", False) and not _is_loopback(value):
            raise ValueError(
                "is reachable from other machines; use 127.0.0.1, or set "
                "web.allow_remote: true if you really want the panel on the network"
            )
        return value
