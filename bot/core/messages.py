"""The project's one vocabulary for chat: every source turns platform events into these.

Commands, filters, moderation and the speech queue only ever see these types, so a new
chat source (Twitch, the terminal, an HTTP ingest) is a translation layer and nothing more.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class Role(enum.IntEnum):
    """Chat roles, ordered so that ``a >= b`` means "a may do what b may do"."""

    EVERYONE = 0
    SUBSCRIBER = 1
    VIP = 2
    MODERATOR = 3
    BROADCASTER = 4


class Platform(enum.StrEnum):
    """Where a person chats. Identities of different platforms never mix.

    A person is ``(platform, id)``: the Twitch account 12345, the HTTP-ingest name "bob" and
    the terminal's streamer are three people even when their logins match, so a mute or a
    voice set for one of them never reaches another (docs/commands.md, "Who is who").
    """

    TWITCH = "twitch"
    YOUTUBE = "youtube"
    TERMINAL = "terminal"
    HTTP = "http"
    PANEL = "panel"


Replier = Callable[[str], Awaitable[None]]
"""Sends a line back to the chat a message came from (each source provides one)."""


async def _no_reply(_text: str) -> None:
    """Default replier for messages whose source cannot answer (e.g. a test)."""


@dataclass(frozen=True, slots=True)
class ChatUser:
    """Who wrote a message, independent of the platform.

    Attributes:
        id: Stable user id on ``platform`` (with it, the key for mutes and voice choices).
        login: Lower-case login name, used by ``@user`` arguments.
        display_name: The name shown in chat, used by the "NAME says" template.
        roles: Every role the user holds in this channel.
        platform: Where they chat; required (keyword only) so that no source can forget it
            and leave identities of two platforms comparable by id or login alone.
    """

    id: str
    login: str
    display_name: str
    roles: frozenset[Role] = frozenset()
    platform: Platform = field(kw_only=True)

    @property
    def identity(self) -> tuple[Platform, str]:
        """Who this is, across platforms: ``(platform, id)``; compare people with this."""
        return (self.platform, self.id)

    @property
    def role(self) -> Role:
        """The user's highest role (EVERYONE when they hold none)."""
        return max(self.roles, default=Role.EVERYONE)

    def at_least(self, role: Role) -> bool:
        """Whether the user's highest role reaches ``role``."""
        return self.role >= role


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One normalized chat message.

    Attributes:
        id: Platform message id; moderation (delete) and de-duplication use it.
        user: The author.
        text: Plain text to consider for speech, emote and cheermote fragments already removed.
        source: Short name of the source ("terminal", "twitch", "http").
        bits: Bits cheered with the message (0 when none).
        reward: Title of the channel-points reward that carried the text, if any.
        is_reply: Whether the message answers another chat message.
        voice: A voice requested by the source itself (the HTTP ingest can set one).
        received_at: ``time.monotonic()`` when the source received it.
        reply: Sends a line back to the chat the message came from.
    """

    id: str
    user: ChatUser
    text: str
    source: str
    bits: int = 0
    reward: str | None = None
    is_reply: bool = False
    voice: str | None = None
    received_at: float = field(default_factory=time.monotonic)
    reply: Replier = field(default=_no_reply, compare=False, repr=False)

    @property
    def paid(self) -> bool:
        """Whether the message was paid for (cheer or channel-points reward)."""
        return self.bits > 0 or self.reward is not None


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """A moderator deleted one message: drop it, or stop it if it is playing."""

    message_id: str


@dataclass(frozen=True, slots=True)
class UserPurged:
    """A user was timed out or banned: drop everything of theirs, playing or queued."""

    user_id: str
    login: str = ""


@dataclass(frozen=True, slots=True)
class ChatCleared:
    """The whole chat was cleared: drop everything."""


ModerationEvent = MessageDeleted | UserPurged | ChatCleared


class ChannelEventKind(enum.StrEnum):
    """What happened in the channel; the values are the ``announcements`` config keys."""

    SUBSCRIPTION = "sub"
    RESUBSCRIPTION = "resub"
    GIFT = "gift"
    RAID = "raid"
    CHEER = "cheer"
    REDEMPTION = "redemption"
    FOLLOW = "follow"


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """Something viewers did for the channel (not a chat line), from any platform.

    One type for every platform: a Twitch sub and a YouTube membership are both a
    ``SUBSCRIPTION``; a Twitch cheer and a YouTube Super Chat both a ``CHEER`` with an amount
    and a unit. Fields that do not apply stay at their empty value.

    Attributes:
        id: Platform id of the event (de-duplication; for a cheer, its chat message's id, so
            deleting the message also removes its announcement).
        kind: What happened.
        user: Who did it; None when anonymous (an anonymous gift).
        source: Short name of the source ("twitch", "youtube").
        platform: Where it happened (required, as for :class:`ChatUser`).
        message: Text the viewer attached (resub message, cheer text, reward input), with
            emotes already removed; the announcer filters it like chat.
        months: Months subscribed in total (resubscriptions; 0 when unknown).
        tier: Subscription tier or level as the platform names it ("1", "2", "3", "prime",
            a membership level's name).
        count: How many subscriptions a gift was (1 for a single gift).
        recipient: Display name of the one receiver of a single gift ("" otherwise).
        viewers: Viewers a raid brought.
        amount: What was paid: bits for a cheer, points for a redemption, money for a Super
            Chat (see ``unit``).
        unit: What ``amount`` counts ("bits", "points", a currency code).
        reward: Title of the redeemed reward.
        received_at: ``time.monotonic()`` when the source received it.
    """

    id: str
    kind: ChannelEventKind
    user: ChatUser | None
    source: str
    platform: Platform = field(kw_only=True)
    message: str = ""
    months: int = 0
    tier: str = ""
    count: int = 0
    recipient: str = ""
    viewers: int = 0
    amount: float = 0
    unit: str = ""
    reward: str = ""
    received_at: float = field(default_factory=time.monotonic)


@runtime_checkable
class ChannelEventSink(Protocol):
    """A sink that also takes channel events (sources ask which kinds it wants first)."""

    def wanted_events(self) -> frozenset[ChannelEventKind]:
        """The kinds worth subscribing to (a source asks for nothing else)."""
        ...

    async def on_channel_event(self, event: ChannelEvent) -> None:
        """Handle one channel event; never raises for bad input."""
        ...
