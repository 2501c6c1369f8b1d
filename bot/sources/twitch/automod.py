"""Messages Twitch's AutoMod holds, while a moderator decides (``twitch.automod``).

Twitch shows a held message in chat only once a moderator approves it; the bot, when it
watches the holds (``automod.message.hold`` / ``automod.message.update``), remembers each
held id, so that:

* a chat line carrying a held id that arrives before the decision is parked, never spoken
  while held;
* an approved one is spoken (or dropped, ``twitch.automod.approved: drop``);
* a denied or expired one is never spoken.

Bounded (LRU), so a bot that runs for days keeps constant memory.
"""

from __future__ import annotations

import enum
from typing import Any

from bot.core.lru import LRU


class Held(enum.Enum):
    """Where a held message stands."""

    HELD = "held"
    APPROVED = "approved"
    DENIED = "denied"


def decision(status: str) -> Held:
    """Twitch's ``status`` of an ``automod.message.update`` ("Approved", "Denied", "Expired")."""
    return Held.APPROVED if str(status).casefold() == "approved" else Held.DENIED


class HeldMessages:
    """Held message ids and their fate, with chat lines parked until the decision."""

    def __init__(self, size: int = 1024) -> None:
        """Remember up to ``size`` held messages."""
        self._state: LRU[str, Held] = LRU(size)
        self._parked: LRU[str, Any] = LRU(size)

    def hold(self, message_id: str) -> None:
        """AutoMod held ``message_id`` (a later decision wins over a late hold notice)."""
        if self._state.get(message_id) is None:
            self._state.put(message_id, Held.HELD)

    def decide(self, message_id: str, fate: Held) -> Any | None:
        """Record a moderator's decision; returns the chat line parked under it, if any."""
        self._state.put(message_id, fate)
        return self._parked.pop(message_id)

    def state(self, message_id: str) -> Held | None:
        """Where ``message_id`` stands (None: AutoMod never held it)."""
        return self._state.get(message_id)

    def park(self, message_id: str, item: Any) -> None:
        """Keep a chat line of a still-held message until its decision."""
        self._parked.put(message_id, item)
