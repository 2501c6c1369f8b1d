"""Twitch channel events in the bot's words: :class:`bot.core.messages.ChannelEvent`.

Pure functions over twitchio's models of ``channel.chat.notification`` (subs, resubs, gifts,
raids), ``channel.follow``, ``channel.channel_points_custom_reward_redemption.add`` and the
cheer of a ``channel.chat.message``. They read defensively: a field of the wrong type raises
(the source logs it once and skips the event), a notice the bot does not announce gives None.
"""

from __future__ import annotations

from typing import Any

from bot.core.messages import ChannelEvent, ChannelEventKind, ChatUser, Platform
from bot.sources.twitch.normalize import roles_from_badges, speakable_text

SOURCE = "twitch"
_TIERS = {"1000": "1", "2000": "2", "3000": "3"}
_SHARED_PREFIX = "shared_chat_"


def _user(partial: Any, broadcaster_id: str, badges: Any = None) -> ChatUser:
    user_id = str(partial.id)
    return ChatUser(
        id=user_id,
        login=str(partial.name or "").lower(),
        display_name=str(getattr(partial, "display_name", None) or partial.name or ""),
        roles=roles_from_badges(
            [str(b.set_id) for b in (badges or [])], is_broadcaster=user_id == broadcaster_id
        ),
        platform=Platform.TWITCH,
    )


def _tier(data: Any) -> str:
    if getattr(data, "prime", False):
        return "prime"
    return _TIERS.get(str(getattr(data, "tier", "") or ""), "")


def notice_kind(notice_type: str, *, shared: bool) -> str | None:
    """The notice's own type, with ``shared_chat_`` removed when shared notices are read.

    A ``shared_chat_*`` notice happened in another channel of a shared-chat session; it is
    None unless ``shared`` (``twitch.shared_chat: all``).
    """
    if notice_type.startswith(_SHARED_PREFIX):
        return notice_type.removeprefix(_SHARED_PREFIX) if shared else None
    return notice_type


def from_notification(n: Any, broadcaster_id: str, *, shared: bool) -> ChannelEvent | None:
    """A sub, resub, gift or raid notice as a ChannelEvent; None for other notices.

    The single ``sub_gift`` notices that follow a ``community_sub_gift`` (one per recipient)
    give None: the community gift is announced once, with its total.
    """
    kind = notice_kind(str(n.notice_type), shared=shared)
    if kind is None:
        return None
    prefix = _SHARED_PREFIX if str(n.notice_type).startswith(_SHARED_PREFIX) else ""
    attr = {
        "sub": "sub",
        "resub": "resub",
        "sub_gift": "sub_gift",
        "community_sub_gift": "community_sub_gift",
        "raid": "raid",
    }.get(kind)
    if attr is None:
        return None
    twitchio_attr = f"shared_{attr}" if prefix else attr
    detail = getattr(n, twitchio_attr, None)
    if detail is None:
        raise ValueError(f"a {n.notice_type} notice without its {attr} details")
    anonymous = bool(getattr(n, "anonymous", False))
    user = None if anonymous else _user(n.chatter, broadcaster_id, getattr(n, "badges", None))
    common: dict[str, Any] = {
        "id": str(n.id),
        "user": user,
        "source": SOURCE,
        "platform": Platform.TWITCH,
    }
    if kind == "sub":
        return ChannelEvent(kind=ChannelEventKind.SUBSCRIPTION, tier=_tier(detail), **common)
    if kind == "resub":
        return ChannelEvent(
            kind=ChannelEventKind.RESUBSCRIPTION,
            months=max(0, int(detail.cumulative_months)),
            tier=_tier(detail),
            message=speakable_text(getattr(n, "fragments", None) or []),
            **common,
        )
    if kind == "sub_gift":
        if getattr(detail, "community_gift_id", None):
            return None  # one of a community gift's recipients: announced with the total
        recipient = detail.recipient
        return ChannelEvent(
            kind=ChannelEventKind.GIFT,
            count=1,
            tier=_tier(detail),
            recipient=str(getattr(recipient, "display_name", None) or recipient.name or ""),
            **common,
        )
    if kind == "community_sub_gift":
        return ChannelEvent(
            kind=ChannelEventKind.GIFT,
            count=max(1, int(detail.total)),
            tier=_tier(detail),
            **common,
        )
    raider = detail.user
    return ChannelEvent(
        kind=ChannelEventKind.RAID,
        viewers=max(0, int(detail.viewer_count)),
        **{**common, "user": _user(raider, broadcaster_id)},
    )


def from_follow(f: Any, broadcaster_id: str, event_id: str) -> ChannelEvent:
    """A ``channel.follow`` (it has no id of its own: the caller names it)."""
    return ChannelEvent(
        id=event_id,
        kind=ChannelEventKind.FOLLOW,
        user=_user(f.user, broadcaster_id),
        source=SOURCE,
        platform=Platform.TWITCH,
    )


def from_redemption(r: Any, broadcaster_id: str) -> ChannelEvent:
    """A channel-points redemption with its reward's title, cost and the viewer's input."""
    reward = r.reward
    return ChannelEvent(
        id=str(r.id),
        kind=ChannelEventKind.REDEMPTION,
        user=_user(r.user, broadcaster_id),
        source=SOURCE,
        platform=Platform.TWITCH,
        reward=str(getattr(reward, "title", "") or ""),
        amount=max(0, int(getattr(reward, "cost", 0) or 0)),
        unit="points",
        message=" ".join(str(getattr(r, "user_input", "") or "").split())[:500],
    )


def cheer(message_id: str, user: ChatUser, bits: int, text: str) -> ChannelEvent:
    """The cheer of a chat message (same id: deleting the message removes both)."""
    return ChannelEvent(
        id=message_id,
        kind=ChannelEventKind.CHEER,
        user=user,
        source=SOURCE,
        platform=Platform.TWITCH,
        amount=bits,
        unit="bits",
        message=text,
    )
