"""Chat roles as the config writes them (``everyone`` ... ``broadcaster``).

One home for the mapping between the names in ``config.yaml`` and ``bot.core.messages.Role``:
the command declarations, the trigger and cooldown settings and the replies all use it.
"""

from __future__ import annotations

from typing import Literal

from bot.core.messages import Role

RoleName = Literal["everyone", "subscriber", "vip", "moderator", "broadcaster"]
"""A chat role as written in the config, lowest to highest."""

ROLE_BY_NAME: dict[str, Role] = {role.name.lower(): role for role in Role}
"""Config role names (``everyone`` ... ``broadcaster``) to roles."""


def role_name(role: Role) -> str:
    """The config name of ``role`` (``Role.VIP`` -> ``vip``)."""
    return role.name.lower()
