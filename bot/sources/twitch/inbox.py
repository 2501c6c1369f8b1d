"""What the Twitch source holds between twitchio and the bot: typed inbox items and tombstones.

Control beats data from the socket on: a deletion, timeout/ban or chat clear is applied the
moment twitchio hands it over, on its own path, even while an earlier chat line is still
being handled (a ``!voice`` waiting for the engine's voice list can take seconds). Data (chat
lines, channel events) keeps Twitch's order on a second path. The ordering guarantee that a
delete is never overtaken by the message it deletes then rests on :class:`Tombstones`: every
moderation event is remembered, so a message that is still waiting on the data path, or that
arrives after its deletion (Twitch can deliver out of order around a reconnect), is dropped;
and one that was being handed to the bot while the moderation arrived is removed again right
after.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.core.lru import LRU
from bot.core.messages import ChatCleared, MessageDeleted, ModerationEvent, UserPurged

REORDER_WINDOW_S = 2.0
"""A message by a purged user that arrives this soon after the purge was sent before it."""


class IncomingKind(enum.Enum):
    """Which twitchio event a data item carries."""

    MESSAGE = "channel.chat.message"
    NOTIFICATION = "channel.chat.notification"
    REDEMPTION = "channel.channel_points_custom_reward_redemption.add"
    FOLLOW = "channel.follow"
    AUTOMOD_HOLD = "automod.message.hold"
    AUTOMOD_UPDATE = "automod.message.update"
    SHARED_CHAT = "channel.shared_chat"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One data event on its way to the bot, in Twitch's order.

    Attributes:
        session: The connection it came on (the source's session object).
        kind: What it is.
        payload: twitchio's model of the event (validated by twitchio; read defensively).
        seq: Arrival number, shared with moderation events (see :class:`Tombstones`).
        at: ``time.monotonic()`` of its arrival.
    """

    session: Any
    kind: IncomingKind
    payload: Any
    seq: int
    at: float


class Tombstones:
    """What moderation removed, so later or slower copies of it are dropped too.

    Bounded (an LRU per kind), so a bot that runs for days keeps constant memory; large
    enough that anything still on its way is remembered.
    """

    def __init__(self, size: int = 4096, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Remember up to ``size`` deleted messages and purged users (``clock``: monotonic)."""
        self._deleted: LRU[str, None] = LRU(size)
        self._purged: LRU[str, tuple[int, float]] = LRU(size)
        self._cleared = -1
        self._clock = clock

    def record(self, event: ModerationEvent, seq: int) -> None:
        """Remember a moderation event that arrived as number ``seq``."""
        if isinstance(event, MessageDeleted):
            self._deleted.put(event.message_id, None)
        elif isinstance(event, UserPurged):
            self._purged.put(event.user_id, (seq, self._clock()))
        elif isinstance(event, ChatCleared):
            self._cleared = max(self._cleared, seq)

    def removes(self, message_id: str, user_id: str | None, seq: int, at: float) -> bool:
        """Whether moderation removed a message that arrived as number ``seq`` at ``at``.

        True when the message was deleted (whenever that was), its author was purged after it
        arrived or at most :data:`REORDER_WINDOW_S` before, or the chat was cleared after it
        arrived.
        """
        if message_id in self._deleted or seq < self._cleared:
            return True
        if user_id is None:
            return False
        purge = self._purged.get(user_id)
        if purge is None:
            return False
        purged_seq, purged_at = purge
        return seq < purged_seq or 0.0 <= at - purged_at < REORDER_WINDOW_S
