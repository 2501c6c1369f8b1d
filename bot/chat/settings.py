"""Settings of the chat pipeline: what is read, how, and the chat commands.

``chat``, ``commands``, ``filters``, ``triggers`` and ``tts``. The ``commands`` section is
generated from the command declarations (``bot.chat.commands.config``) and re-exported here,
so every section of the chat package is found in one place.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from bot.chat.arguments import MAX_SPOKEN_CHARS, PRONOUNCED_WORD_RE
from bot.chat.commands.config import CommandsConfig, CommandSpec
from bot.chat.roles import RoleName
from engine.config import VOICE_NAME_RE, Section, VoicesConfig

if TYPE_CHECKING:
    from bot.chat.sounds import SoundsConfig
    from bot.speech.settings import QueueConfig

__all__ = [
    "BannedWordsFilter",
    "ChatConfig",
    "CommandSpec",
    "CommandsConfig",
    "CooldownFilter",
    "EmojiFilter",
    "EmotesFilter",
    "FiltersConfig",
    "IgnoreFilter",
    "LengthFilter",
    "LinksFilter",
    "NewViewersConfig",
    "PipelineSettings",
    "PronunciationConfig",
    "PronunciationPattern",
    "RaidConfig",
    "RaidStep",
    "RepeatsFilter",
    "RoleName",
    "TriggersConfig",
    "TtsConfig",
    "VoicePartsConfig",
    "ZalgoFilter",
]


class ChatConfig(Section):
    """Where chat comes from (``chat``)."""

    source: Literal["auto", "terminal", "twitch"] = "auto"
    max_length: int = Field(default=500, ge=10, le=5000)


class LinksFilter(Section):
    """URLs in chat (``filters.links``): say a word instead, remove them, or drop the message."""

    action: Literal["replace", "remove", "drop", "keep"] = "replace"
    word: str = Field(default="link", max_length=40)


class EmotesFilter(Section):
    """Emote-like words left in the text (``filters.emotes``); platform emotes are already gone."""

    words: tuple[str, ...] = Field(default=(), description="exact words to remove")
    pattern: str | None = Field(default=None, description="regex: whole words to remove")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RepeatsFilter(Section):
    """Runs of the same character or word (``filters.repeats``); 0 switches a limit off."""

    max_chars: int = Field(default=3, ge=0, le=100)
    max_words: int = Field(default=2, ge=0, le=100)


class ZalgoFilter(Section):
    """Stacked combining marks (``filters.zalgo``); control characters always go."""

    max_marks: int = Field(default=2, ge=0, le=10, description="combining marks per letter")


class EmojiFilter(Section):
    """Emoji (``filters.emoji``): drop them, keep them, or say their names."""

    action: Literal["drop", "keep", "describe"] = "drop"
    max_described: int = Field(default=3, ge=0, le=50)


class BannedWordsFilter(Section):
    """Words nobody wants read out (``filters.banned_words``); ``*`` matches any ending."""

    words: tuple[str, ...] = ()
    action: Literal["bleep", "drop"] = "bleep"
    bleep: str = Field(default="bleep", max_length=40)


DEFAULT_IGNORED_USERS: tuple[str, ...] = (
    "nightbot",
    "streamelements",
    "streamlabs",
    "moobot",
    "fossabot",
    "wizebot",
    "soundalerts",
    "sery_bot",
)


class IgnoreFilter(Section):
    """Who and what is never read (``filters.ignore``): other bots, other bots' commands."""

    users: tuple[str, ...] = DEFAULT_IGNORED_USERS
    prefixes: tuple[str, ...] = ("!",)

    @field_validator("users")
    @classmethod
    def _users(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower().lstrip("@") for v in value)


class LengthFilter(Section):
    """Long messages (``filters.length``): cut them at a word, or drop them."""

    max_chars: int | None = Field(
        default=None, ge=1, le=5000, description="default: chat.max_length"
    )
    action: Literal["truncate", "drop"] = "truncate"


class CooldownFilter(Section):
    """Per-user pause between spoken messages (``filters.cooldown``); 0 switches it off."""

    seconds: float = Field(default=0.0, ge=0.0, le=86_400.0)
    exempt: RoleName = Field(default="moderator", description="this role and above skip it")
    paid_exempt: bool = True


class FiltersConfig(Section):
    """What is removed from a message, or stops it, before it is spoken (``filters``)."""

    links: LinksFilter = LinksFilter()
    emotes: EmotesFilter = EmotesFilter()
    repeats: RepeatsFilter = RepeatsFilter()
    zalgo: ZalgoFilter = ZalgoFilter()
    emoji: EmojiFilter = EmojiFilter()
    banned_words: BannedWordsFilter = BannedWordsFilter()
    ignore: IgnoreFilter = IgnoreFilter()
    length: LengthFilter = LengthFilter()
    cooldown: CooldownFilter = CooldownFilter()


class TriggersConfig(Section):
    """Which chat messages are spoken (``triggers``); any enabled trigger is enough."""

    messages: bool = Field(default=True, description="every chat message")
    command: bool = Field(default=True, description="the tts command (!tts TEXT)")
    rewards: bool = Field(default=True, description="the rewards listed in twitch.rewards")
    cheers: bool = Field(default=True, description="cheers of at least twitch.min_bits")
    min_role: RoleName = Field(default="everyone", description="lowest role that is spoken")


class VoicePartsConfig(Section):
    """Several voices in one message (``tts.parts``): ``narrator: hello obama: hi chat``."""

    enabled: bool = False
    syntax: Literal["colon", "parens"] = Field(
        default="colon", description="colon: 'name: text'; parens: '(name) text'"
    )
    min_role: RoleName = Field(default="everyone", description="lowest role that may use it")
    max_parts: int = Field(default=5, ge=2, le=20, description="voice parts per message")
    pause_ms: int = Field(default=150, ge=0, le=2000, description="silence between two parts")


class NewViewersConfig(Section):
    """The voice of a viewer who chose none (``tts.new_viewers``)."""

    mode: Literal["default", "random", "stable"] = Field(
        default="default",
        description="default: voices.default; random: one from the pool, saved; stable: one"
        " derived from their user id, saved",
    )
    pool: tuple[str, ...] = Field(default=(), description="voice names (empty: every voice)")

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not VOICE_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a voice name (1-32 letters, digits, '-', '_')")
        return value


class TtsConfig(Section):
    """How a message is announced (``tts``)."""

    say_names: bool = True
    template: str = "{name} says {text}"
    name_again_after_s: float = Field(
        default=300.0, ge=0.0, description="repeat the name of a repeated speaker after this"
    )
    announce_broadcaster: bool = Field(default=False, description="say the streamer's name too")
    max_speaking_s: float | None = Field(
        default=None, gt=0.0, le=600.0, description="longest a message plays before a fade-out"
    )
    parts: VoicePartsConfig = VoicePartsConfig()
    new_viewers: NewViewersConfig = NewViewersConfig()

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        import string

        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"is not a valid template ({exc}); write {{{{ for a brace") from None
        fields = []
        for _literal, field, spec, conversion in parts:
            if field is None:
                continue
            if field not in ("name", "text") or spec or conversion:
                raise ValueError("may only use {name} and {text}")
            fields.append(field)
        if "text" not in fields:
            raise ValueError("must contain {text}")
        return value


class RaidStep(Section):
    """One step of raid mode (``raid.steps[N]``): from this queue length on, be leaner."""

    queue: int = Field(ge=1, le=10_000, description="queue length that starts this step")
    say_names: bool | None = Field(default=None, description="false: stop reading names")
    max_chars: int | None = Field(default=None, ge=10, le=5000, description="cut messages here")
    cooldown_s: float | None = Field(
        default=None, ge=0.0, le=86_400.0, description="per-user seconds between messages"
    )
    paid_only: bool = Field(default=False, description="read only cheers and rewards")

    @model_validator(mode="after")
    def _changes_something(self) -> RaidStep:
        unchanged = (self.say_names, self.max_chars, self.cooldown_s) == (None, None, None)
        if unchanged and not self.paid_only:
            raise ValueError(
                "a step must change something: say_names, max_chars, cooldown_s or paid_only"
            )
        return self


DEFAULT_RAID_STEPS: tuple[RaidStep, ...] = (
    RaidStep(queue=10, say_names=False),
    RaidStep(queue=20, max_chars=100, cooldown_s=60.0),
    RaidStep(queue=28, paid_only=True),
)


class RaidConfig(Section):
    """Raid mode (``raid``): a long queue switches to leaner reading, a drained one back."""

    enabled: bool = False
    announce: bool = Field(default=True, description="say each step in chat, once")
    steps: tuple[RaidStep, ...] = DEFAULT_RAID_STEPS

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: tuple[RaidStep, ...]) -> tuple[RaidStep, ...]:
        if not value:
            raise ValueError("needs at least one step (or raid.enabled: false)")
        for before, after in itertools.pairwise(value):
            if after.queue <= before.queue:
                raise ValueError(
                    f"each step must start at a longer queue than the one before"
                    f" ({after.queue} after {before.queue})"
                )
        return value


def check_spoken(value: object, where: str) -> str:
    """A spoken form: text of 1-200 characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: the spoken form must be text")
    if len(value) > MAX_SPOKEN_CHARS:
        raise ValueError(f"{where}: the spoken form is over {MAX_SPOKEN_CHARS} characters")
    return value.strip()


class PronunciationPattern(Section):
    """A pattern and what to say instead (``pronunciation.patterns[N]``)."""

    match: str = Field(description="a regular expression, matched case-insensitively")
    say: str = Field(min_length=1, max_length=MAX_SPOKEN_CHARS, description="plain text")

    @field_validator("match")
    @classmethod
    def _match(cls, value: str) -> str:
        try:
            compiled = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.search(""):
            raise ValueError("matches empty text; it would be said between every letter")
        return value


class PronunciationConfig(Section):
    """How words are said (``pronunciation``): after the filters, before synthesis."""

    words: dict[str, str] = Field(
        default_factory=dict, description="whole words (any case) and what to say instead"
    )
    patterns: tuple[PronunciationPattern, ...] = ()

    @field_validator("words", mode="before")
    @classmethod
    def _words(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value  # pydantic reports the type
        out: dict[str, str] = {}
        seen: dict[str, str] = {}
        for word, spoken in value.items():
            if not isinstance(word, str) or not PRONOUNCED_WORD_RE.match(word):
                raise ValueError(f"{word!r} is not a word (1-40 characters, no spaces)")
            if word.casefold() in seen:
                raise ValueError(
                    f"{seen[word.casefold()]!r} and {word!r} are the same word (any case matches)"
                )
            seen[word.casefold()] = word
            out[word] = check_spoken(spoken, repr(word))
        return out


class PipelineSettings(Protocol):
    """The parts of the configuration the chat pipeline reads (``bot.config.Config`` has them).

    A protocol rather than the whole ``Config``: the chat package sits below the config loader,
    and naming what it reads keeps that visible.
    """

    @property
    def chat(self) -> ChatConfig:
        """``chat``: the longest message."""
        ...

    @property
    def commands(self) -> CommandsConfig:
        """``commands``."""
        ...

    @property
    def filters(self) -> FiltersConfig:
        """``filters``."""
        ...

    @property
    def triggers(self) -> TriggersConfig:
        """``triggers``."""
        ...

    @property
    def tts(self) -> TtsConfig:
        """``tts``: the "NAME says" template."""
        ...

    @property
    def voices(self) -> VoicesConfig:
        """``voices``: the default voice."""
        ...

    @property
    def queue(self) -> QueueConfig:
        """``queue``: whether paid messages go first."""
        ...

    @property
    def raid(self) -> RaidConfig:
        """``raid``: leaner reading while the queue is long."""
        ...

    @property
    def pronunciation(self) -> PronunciationConfig:
        """``pronunciation``: words and patterns said differently."""
        ...

    @property
    def sounds(self) -> SoundsConfig:
        """``sounds``: sound effects in messages (``bot.chat.sounds``)."""
        ...
