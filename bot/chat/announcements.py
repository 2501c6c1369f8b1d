"""Channel events spoken through templates: subs, gifts, raids, cheers, redemptions, follows.

A source turns a platform's event into a :class:`bot.core.messages.ChannelEvent`; the
:class:`Announcer` picks one of the event's templates (weighted at random), fills in its
variables and queues the line on the speaker in the event's voice. Events below their
minimum size (raid viewers, bits, gifted subs, months) are not spoken. What a viewer wrote
(a resub message, a reward's input) passes the chat filters first, like any chat line.

Everything is off unless ``announcements.enabled`` is true, so existing configurations
behave as before. Templates are checked when the config is loaded: an unknown variable or a
malformed brace is one error naming the key path (``announcements.raid.templates``).
"""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from bot.chat.filters import FilterChain, speakable_name
from bot.core.messages import ChannelEvent, ChannelEventKind, ChatMessage, ChatUser
from bot.core.text import clean_for_speech
from bot.speech.speaker import Speaker, SpeechItem
from engine.config import Section

log = logging.getLogger(__name__)

VOICE_PATTERN = r"^[A-Za-z0-9_+\-]{1,40}$"
MAX_ANNOUNCEMENT = 500
"""Longest announcement spoken (a template with a long resub message is capped)."""


class Template(Section):
    """One variant of an announcement; the weight makes it more or less likely."""

    text: str = Field(min_length=1, max_length=1000)
    weight: float = Field(default=1.0, gt=0, le=1_000_000)


def template_fields(text: str) -> list[str]:
    """The variables a template uses, in order.

    Raises:
        ValueError: The braces are malformed, or a variable has a format spec or conversion.
    """
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc}); write {{{{ for a brace") from None
    names: list[str] = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or spec or conversion:
            raise ValueError(
                f"has {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}; write plain variables like {{name}}"
            )
        names.append(name)
    return names


class EventAnnouncement(Section):
    """What every kind of announcement has: on/off, a voice, templates."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("name",)
    DEFAULT: ClassVar[str] = "{name}"

    enabled: bool = True
    voice: str | None = Field(
        default=None, pattern=VOICE_PATTERN, description="voice for this event (default: all)"
    )
    templates: tuple[Template, ...] = Field(
        default=(),
        # One text stands for a list of one (the config walk of the tests reads this mark).
        json_schema_extra={"one_item_as_itself": True},
    )

    @field_validator("templates", mode="before")
    @classmethod
    def _strings_are_templates(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("templates")
    @classmethod
    def _known_variables(cls, value: tuple[Template, ...]) -> tuple[Template, ...]:
        allowed = ", ".join(f"{{{v}}}" for v in cls.VARIABLES)
        for i, template in enumerate(value):
            try:
                names = template_fields(template.text)
            except ValueError as exc:
                raise ValueError(f"template {i + 1} {exc}") from None
            unknown = [n for n in names if n not in cls.VARIABLES]
            if unknown:
                raise ValueError(
                    f"template {i + 1} uses {{{unknown[0]}}}, which this event does not have; "
                    f"allowed: {allowed}"
                )
        return value

    def choices(self) -> tuple[Template, ...]:
        """The configured templates, or the built-in one."""
        return self.templates or (Template(text=self.DEFAULT),)

    def big_enough(self, event: ChannelEvent) -> bool:
        """Whether the event reaches this announcement's minimum size."""
        return True


class SubAnnouncement(EventAnnouncement):
    """A new subscription (``announcements.sub``)."""

    VARIABLES = ("name", "tier")
    DEFAULT = "{name} just subscribed!"


class ResubAnnouncement(EventAnnouncement):
    """A resubscription with its message (``announcements.resub``)."""

    VARIABLES = ("name", "months", "tier", "message")
    DEFAULT = "{name} resubscribed for {months} months! {message}"

    min_months: int = Field(default=0, ge=0, le=1200)

    def big_enough(self, event: ChannelEvent) -> bool:
        """At least ``min_months`` months."""
        return event.months >= self.min_months


class GiftAnnouncement(EventAnnouncement):
    """Gifted subscriptions, one or to the community (``announcements.gift``).

    ``{subs}`` reads "a sub" or "5 subs"; ``{recipient}`` is empty for a community gift.
    """

    VARIABLES = ("name", "count", "subs", "tier", "recipient")
    DEFAULT = "{name} gifted {subs}!"

    min_count: int = Field(default=1, ge=1, le=100_000)

    def big_enough(self, event: ChannelEvent) -> bool:
        """At least ``min_count`` subs."""
        return event.count >= self.min_count


class RaidAnnouncement(EventAnnouncement):
    """An incoming raid (``announcements.raid``)."""

    VARIABLES = ("name", "viewers")
    DEFAULT = "{name} is raiding with {viewers} viewers!"

    min_viewers: int = Field(default=1, ge=0, le=10_000_000)

    def big_enough(self, event: ChannelEvent) -> bool:
        """At least ``min_viewers`` viewers."""
        return event.viewers >= self.min_viewers


class CheerAnnouncement(EventAnnouncement):
    """A cheer (``announcements.cheer``); the cheer's chat line is spoken as chat besides."""

    VARIABLES = ("name", "amount", "unit", "message")
    DEFAULT = "{name} cheered {amount} {unit}!"

    min_bits: int = Field(default=100, ge=1, le=10_000_000)

    def big_enough(self, event: ChannelEvent) -> bool:
        """At least ``min_bits`` (or the same amount of another unit)."""
        return event.amount >= self.min_bits


class RedemptionAnnouncement(EventAnnouncement):
    """A channel-points redemption (``announcements.redemption``).

    ``rewards`` limits it to some rewards (titles or ids, any case); empty means every one.
    """

    VARIABLES = ("name", "reward", "amount", "message")
    DEFAULT = "{name} redeemed {reward}!"

    rewards: tuple[str, ...] = ()

    def big_enough(self, event: ChannelEvent) -> bool:
        """One of ``rewards`` (or any reward when none is listed)."""
        if not self.rewards:
            return True
        wanted = {r.casefold() for r in self.rewards}
        return event.reward.casefold() in wanted


class FollowAnnouncement(EventAnnouncement):
    """A new follower (``announcements.follow``); off by default.

    Twitch only tells moderators of the channel about follows, with the
    ``moderator:read:followers`` scope (``ishowtts login`` asks for it when this is on).
    """

    VARIABLES = ("name",)
    DEFAULT = "Thanks for the follow, {name}!"

    enabled: bool = False


class AnnouncementsConfig(Section):
    """Channel events spoken aloud (``announcements``); off unless ``enabled``."""

    enabled: bool = Field(default=False, description="speak channel events at all")
    voice: str | None = Field(
        default=None, pattern=VOICE_PATTERN, description="voice of every event (default voice)"
    )
    first: bool = Field(default=True, description="speak events ahead of free chat messages")
    anonymous: str = Field(
        default="someone", min_length=1, max_length=60, description="name of anonymous gifters"
    )
    sub: SubAnnouncement = SubAnnouncement()
    resub: ResubAnnouncement = ResubAnnouncement()
    gift: GiftAnnouncement = GiftAnnouncement()
    raid: RaidAnnouncement = RaidAnnouncement()
    cheer: CheerAnnouncement = CheerAnnouncement()
    redemption: RedemptionAnnouncement = RedemptionAnnouncement()
    follow: FollowAnnouncement = FollowAnnouncement()

    def of(self, kind: ChannelEventKind) -> EventAnnouncement:
        """The settings of one kind of event."""
        announcement: EventAnnouncement = getattr(self, kind.value)
        return announcement

    @property
    def wanted(self) -> frozenset[ChannelEventKind]:
        """The kinds that are spoken (what a source subscribes to)."""
        if not self.enabled:
            return frozenset()
        return frozenset(k for k in ChannelEventKind if self.of(k).enabled)

    @property
    def wants_follows(self) -> bool:
        """Whether follows are announced (they need a moderator's scope on Twitch)."""
        return ChannelEventKind.FOLLOW in self.wanted


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


class Announcer:
    """Turns channel events into spoken lines on the speaker.

    Construction does no I/O. ``rng`` picks among weighted variants (pass a seeded one to
    make the choice repeatable).
    """

    def __init__(
        self,
        cfg: AnnouncementsConfig,
        speaker: Speaker,
        *,
        default_voice: str,
        filters: FilterChain,
        known_voices: Callable[[], Sequence[str] | None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        """Announce on ``speaker``; ``filters`` clean what viewers wrote.

        Args:
            cfg: The ``announcements`` section.
            speaker: Where announcements are queued.
            default_voice: The voice of events that name none (``voices.default``).
            filters: The chat filters, for what viewers wrote.
            known_voices: The engine's voice names when known (never waits; None: not yet);
                a configured voice it lacks falls back to ``default_voice``, said once.
            rng: Picks among weighted variants.
        """
        self.cfg = cfg
        self._speaker = speaker
        self._default_voice = default_voice
        self._filters = filters
        self._known_voices = known_voices
        self._rng = rng or random.Random()
        self._warned: set[str] = set()

    def wanted(self) -> frozenset[ChannelEventKind]:
        """The kinds that are announced."""
        return self.cfg.wanted

    def render(self, event: ChannelEvent) -> str | None:
        """The line to speak for ``event``; None when it is off or below its minimum."""
        if event.kind not in self.cfg.wanted:
            return None
        settings = self.cfg.of(event.kind)
        if not settings.big_enough(event):
            log.debug("%s %s is below its announcement minimum", event.kind.value, event.id)
            return None
        choices = settings.choices()
        template = self._rng.choices(choices, weights=[c.weight for c in choices])[0]
        text = template.text.format_map(self._variables(event))
        line = clean_for_speech(" ".join(text.split()), MAX_ANNOUNCEMENT)
        return line or None

    def _variables(self, event: ChannelEvent) -> Mapping[str, str]:
        user = event.user
        name = speakable_name(user.display_name, user.login) if user else self.cfg.anonymous
        message = self._filters.apply(event.message).text if event.message.strip() else ""
        return {
            "name": name,
            "months": str(event.months),
            "tier": event.tier,
            "message": message,
            "count": str(event.count),
            "subs": "a sub" if event.count == 1 else f"{event.count} subs",
            "recipient": speakable_name(event.recipient) if event.recipient else "",
            "viewers": str(event.viewers),
            "amount": _number(event.amount),
            "unit": event.unit,
            "reward": event.reward,
        }

    def voice_for(self, kind: ChannelEventKind) -> str:
        """The voice of ``kind``: its own, the section's, or the default if the engine lacks it."""
        voice = self.cfg.of(kind).voice or self.cfg.voice or self._default_voice
        known = self._known_voices()
        if voice == self._default_voice or known is None:
            return voice
        lowered = {name.casefold(): name for name in known}
        if voice.casefold() in lowered:
            return lowered[voice.casefold()]
        if voice not in self._warned:
            self._warned.add(voice)
            log.warning(
                "announcements: the engine has no voice %r; %s events use %r",
                voice,
                kind.value,
                self._default_voice,
            )
        return self._default_voice

    def announce(self, event: ChannelEvent) -> bool:
        """Queue ``event``'s announcement; whether it was queued."""
        line = self.render(event)
        if line is None:
            return False
        voice = self.voice_for(event.kind)
        user = event.user or ChatUser(
            id="anonymous", login="", display_name=self.cfg.anonymous, platform=event.platform
        )
        message = ChatMessage(
            id=event.id,
            user=user,
            text=line,
            source=event.source,
            received_at=event.received_at,
        )
        item = SpeechItem(message, line, voice, priority=1 if self.cfg.first else 0)
        queued = self._speaker.enqueue(item)
        if queued:
            log.info("announcing %s: %s", event.kind.value, line)
        return queued
