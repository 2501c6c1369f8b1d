"""Twitch payloads in the bot's words: roles from badges, speakable text from fragments.

Pure functions over twitchio's models (read defensively: a hostile or broken payload gives
an empty or bounded result, never an exception).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.core.messages import Role

MAX_TEXT = 5000
"""Longest text passed on (Twitch allows 500; this bounds a hostile or broken payload)."""
_DROPPED_FRAGMENTS = frozenset({"emote", "cheermote", "gif"})
_BADGE_ROLES: dict[str, Role] = {
    "broadcaster": Role.BROADCASTER,
    "moderator": Role.MODERATOR,
    "lead_moderator": Role.MODERATOR,
    "vip": Role.VIP,
    "subscriber": Role.SUBSCRIBER,
    "founder": Role.SUBSCRIBER,
}


def roles_from_badges(
    badge_set_ids: Iterable[str], *, is_broadcaster: bool = False
) -> frozenset[Role]:
    """Chat roles from Twitch badge set ids (``moderator``, ``vip``, ``subscriber``...).

    Args:
        badge_set_ids: The ``set_id`` of every badge the chatter shows.
        is_broadcaster: Whether the chatter is the channel owner (true even when the
            broadcaster hides their badge).
    """
    roles = {_BADGE_ROLES[s] for s in badge_set_ids if s in _BADGE_ROLES}
    if is_broadcaster:
        roles.add(Role.BROADCASTER)
    return frozenset(roles)


def speakable_text(fragments: Iterable[Any]) -> str:
    """The message text without emote, cheermote and GIF fragments, whitespace collapsed.

    Twitch splits every message into typed fragments, so emotes are removed by type, never by
    guessing at words: "Kappa" typed as an emote disappears, "kappa" typed as a word stays.
    """
    parts: list[str] = []
    size = 0
    for fragment in fragments:
        if getattr(fragment, "type", "text") in _DROPPED_FRAGMENTS:
            parts.append(" ")
            continue
        text = str(getattr(fragment, "text", "") or "")
        parts.append(text)
        size += len(text)
        if size > MAX_TEXT * 2:
            break
    return " ".join("".join(parts).split())[:MAX_TEXT].strip()
