"""Named, configurable text filters that run on a message before it is spoken.

Each filter answers one question a streamer asks ("what does it do with links?", "with
zalgo?", "with that word?") and is configured under its own key in ``filters``. A filter either
returns the text it leaves (possibly unchanged) or ``None`` to drop the whole message; the chain
records which filter did what, so a dropped message can be explained in the log.

Filters never raise on any input (hypothesis checks this): chat is hostile, and one odd
message must not take the bot down. Everything here is pure CPU work on short strings, bounded
by a hard cap applied before any regular expression runs.
"""

from __future__ import annotations

import logging
import re
import string
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from bot.chat.roles import ROLE_BY_NAME
from bot.chat.settings import (
    BannedWordsFilter,
    CooldownFilter,
    EmojiFilter,
    EmotesFilter,
    FiltersConfig,
    IgnoreFilter,
    LengthFilter,
    LinksFilter,
    RepeatsFilter,
    ZalgoFilter,
)
from bot.core.messages import ChatMessage, ChatUser, Platform
from bot.core.text import cap_length, clean_for_speech, strip_unspeakable

log = logging.getLogger(__name__)

# The filters below never see more than this many characters per allowed character of output:
# it bounds the work any regular expression does on a pasted novel.
_PRECAP_FACTOR = 4

# -- links ----------------------------------------------------------------------------------
_TLDS = (
    "com|net|org|io|gg|tv|me|co|uk|de|fr|ru|jp|xyz|ly|be|info|app|dev|live|link|to|us|ca|"
    "au|nl|es|it|pl|br|in|cn|ai|sh|ws|cc|biz|site|online|store|shop|club|fm|gl|gd|page"
)
_LINK_RE = re.compile(
    r"(?:(?:https?|ftp)://|www\.)[^\s]+"  # explicit URLs
    r"|(?<![\w@.])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:" + _TLDS + r")"
    r"(?::\d{1,5})?(?:/[^\s]*)?(?![\w-])",  # bare domains with a known ending
    re.IGNORECASE,
)

# -- emoji ----------------------------------------------------------------------------------
# Python has no Emoji property; these blocks hold the pictographs chat actually uses.
_EMOJI_RANGES: tuple[tuple[int, int], ...] = (
    (0x1F000, 0x1FAFF),  # mahjong .. symbols and pictographs extended-A (incl. flags letters)
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2B00, 0x2BFF),  # arrows and stars (e.g. ⭐)
    (0x2300, 0x23FF),  # technical (⌚, ⏰)
    (0x2190, 0x21FF),  # arrows
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3299),
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25FE),
)
# Parts of emoji sequences that mean nothing on their own.
_EMOJI_JOINERS = frozenset({0x200D, 0xFE0E, 0xFE0F, 0x20E3})
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_TAGS = range(0xE0020, 0xE0080)
_REGIONAL = range(0x1F1E6, 0x1F200)


_EMOJI_CLASS = "".join(
    f"{chr(lo)}-{chr(hi)}" if hi > lo else chr(lo)
    for lo, hi in (
        *_EMOJI_RANGES,
        *((cp, cp) for cp in _EMOJI_JOINERS),
        (_SKIN_TONES.start, _SKIN_TONES.stop - 1),
        (_TAGS.start, _TAGS.stop - 1),
    )
)
# Every endpoint is a non-ASCII character, so none needs escaping inside the class.
_EMOJI_RE = re.compile(f"[{_EMOJI_CLASS}]")
# Tabs and line breaks become spaces, other ASCII controls vanish (the fast path for ASCII).


def is_emoji(ch: str) -> bool:
    """Whether ``ch`` is a pictograph (emoji) code point."""
    cp = ord(ch)
    return cp >= 0xA9 and any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES)


def _is_emoji_part(ch: str) -> bool:
    cp = ord(ch)
    return cp in _EMOJI_JOINERS or cp in _SKIN_TONES or cp in _TAGS


_EMOJI_NAMES = {"\u2764": "heart", "\u2665": "heart", "\U0001f5a4": "black heart"}


def describe_emoji(ch: str) -> str:
    """A speakable name for one emoji ("face with tears of joy"), or "" when it has none."""
    if ch in _EMOJI_NAMES:
        return _EMOJI_NAMES[ch]
    try:
        name = unicodedata.name(ch).lower()
    except ValueError:
        return ""
    return name.removeprefix("heavy ").strip()


# -- the filters ----------------------------------------------------------------------------
class TextFilter:
    """Base of every filter: a name for logs and config, and ``apply``."""

    name = "filter"

    def apply(self, text: str) -> str | None:
        """Return the text to keep (maybe unchanged), or None to drop the message."""
        raise NotImplementedError


class NormalizeFilter(TextFilter):
    """Unicode compatibility forms (NFKC): 𝓯𝓪𝓷𝓬𝔂 letters become plain ones.

    Runs first so that banned words and repeats cannot hide behind look-alike letters, and so
    the engine gets letters it knows.
    """

    name = "normalize"

    def apply(self, text: str) -> str | None:
        """Normalize to NFKC."""
        return unicodedata.normalize("NFKC", text)


class ZalgoFilterImpl(TextFilter):
    """Control and format characters go; combining marks are limited per letter.

    A couple of marks are real diacritics (Vietnamese stacks two); dozens are "zalgo" text
    that makes engines produce noise.
    """

    name = "zalgo"

    def __init__(self, cfg: ZalgoFilter) -> None:
        self._max = cfg.max_marks

    def apply(self, text: str) -> str | None:
        """Strip controls and excess combining marks (emoji joiners stay for the emoji filter)."""
        return strip_unspeakable(text, self._max, _EMOJI_JOINERS, collapse=False)


class LinksFilterImpl(TextFilter):
    """URLs and bare domains: say a word ("link"), remove them, keep them, or drop the message."""

    name = "links"

    def __init__(self, cfg: LinksFilter) -> None:
        self._action = cfg.action
        self._word = cfg.word

    def apply(self, text: str) -> str | None:
        """Apply the configured link policy."""
        if self._action == "keep" or not _LINK_RE.search(text):
            return text
        if self._action == "drop":
            return None
        replacement = self._word if self._action == "replace" else ""
        return _LINK_RE.sub(replacement, text)


class EmotesFilterImpl(TextFilter):
    """Emote names that reached the text (third-party emotes, typed emote codes)."""

    name = "emotes"

    def __init__(self, cfg: EmotesFilter) -> None:
        self._words = frozenset(cfg.words)
        self._pattern = re.compile(cfg.pattern) if cfg.pattern else None

    def _is_emote(self, token: str) -> bool:
        if token in self._words:
            return True
        return self._pattern is not None and self._pattern.fullmatch(token) is not None

    def apply(self, text: str) -> str | None:
        """Remove whole words that are configured emotes."""
        if not self._words and self._pattern is None:
            return text
        tokens = text.split()
        kept = [tok for tok in tokens if not self._is_emote(tok)]
        return text if len(kept) == len(tokens) else " ".join(kept)


class EmojiFilterImpl(TextFilter):
    """Emoji: drop them, keep them for the engine, or say their Unicode names.

    "describe" says each distinct emoji once per run ("😂😂😂" is one "face with tears of
    joy") and at most ``max_described`` of them per message; skin tones, joiners and
    variation selectors are never spoken.
    """

    name = "emoji"

    def __init__(self, cfg: EmojiFilter) -> None:
        self._action = cfg.action
        self._max = cfg.max_described

    def apply(self, text: str) -> str | None:
        """Apply the configured emoji policy."""
        if self._action == "keep" or text.isascii() or not _EMOJI_RE.search(text):
            return text
        out: list[str] = []
        described = 0
        last: str | None = None
        pending_flag = False
        for ch in text:
            if _is_emoji_part(ch):
                continue
            if ord(ch) in _REGIONAL:
                # Flags are pairs of regional letters: say "flag" once per pair.
                if self._action == "describe" and not pending_flag and described < self._max:
                    if last != "flag":
                        out.append(" flag ")
                        described += 1
                    last = "flag"
                pending_flag = not pending_flag
                continue
            pending_flag = False
            if is_emoji(ch):
                if self._action == "describe" and described < self._max and ch != last:
                    words = describe_emoji(ch)
                    if words:
                        out.append(f" {words} ")
                        described += 1
                last = ch
                continue
            if not ch.isspace():
                last = None
            out.append(ch)
        return "".join(out)


class BannedWordsFilterImpl(TextFilter):
    """Banned words: replace each with a bleep, or drop the whole message.

    Entries match whole words, case-insensitively; ``*`` stands for any letters, so
    ``heck*`` also catches "hecking". Matching runs after NFKC normalization, so fancy
    look-alike letters do not get past it.
    """

    name = "banned_words"

    def __init__(self, cfg: BannedWordsFilter) -> None:
        self._action = cfg.action
        self._bleep = cfg.bleep
        parts = [
            r"\w*".join(re.escape(p) for p in unicodedata.normalize("NFKC", w).split("*"))
            for w in cfg.words
            if w.strip("* ")
        ]
        self._re = (
            re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)
            if parts
            else None
        )

    def apply(self, text: str) -> str | None:
        """Bleep or drop on a banned word."""
        if self._re is None or not self._re.search(text):
            return text
        if self._action == "drop":
            return None
        return self._re.sub(self._bleep, text)


class RepeatsFilterImpl(TextFilter):
    """Runs of the same character ("soooooo"), syllable ("hahahaha") or word ("lol lol lol").

    Digits are left alone: "1000000" is a number, not a run.
    """

    name = "repeats"

    def __init__(self, cfg: RepeatsFilter) -> None:
        self._max_chars = cfg.max_chars
        self._max_words = cfg.max_words
        if cfg.max_chars:
            n = cfg.max_chars
            self._char_re: re.Pattern[str] | None = re.compile(r"([^\d\s])\1{" + str(n) + ",}")
            self._unit_re: re.Pattern[str] | None = re.compile(
                r"([^\d\s]{2,6}?)\1{" + str(n) + ",}"
            )
        else:
            self._char_re = self._unit_re = None

    def apply(self, text: str) -> str | None:
        """Shorten runs to the configured limits."""
        if self._char_re is not None and self._unit_re is not None:
            n = self._max_chars
            text = self._char_re.sub(lambda m: m.group(1) * n, text)
            text = self._unit_re.sub(lambda m: m.group(1) * n, text)
        if self._max_words:
            text = self._collapse_words(text)
        return text

    def _collapse_words(self, text: str) -> str:
        words = text.split()
        limit = self._max_words
        if len(words) <= limit:
            return text
        keys = [w.casefold().translate(_PUNCTUATION) or w for w in words]
        if not any(any(map(str.__eq__, keys, keys[size:])) for size in range(1, 5)):
            return text  # no word equals one 1-4 places later: nothing can repeat (common)
        out: list[str] = []
        i = 0
        collapsed = False
        while i < len(words):
            run = _repeated_run(keys, i, limit)
            if run is None:
                out.append(words[i])
                i += 1
                continue
            size, reps = run
            out.extend(words[i : i + size * limit])
            i += size * reps
            collapsed = True
        return " ".join(out) if collapsed else text


# Punctuation does not make a word different ("lol!" repeats "lol"); translate is fast.
_PUNCTUATION = str.maketrans("", "", string.punctuation + "¡¿…“”‘’«»")


def _repeated_run(keys: list[str], start: int, limit: int) -> tuple[int, int] | None:
    """Find a phrase of 1-4 words repeated more than ``limit`` times back to back.

    Returns:
        (phrase size, repetitions) of the run starting at ``start``, or None.
    """
    for size in range(1, 5):
        unit = keys[start : start + size]
        if len(unit) < size:
            return None
        reps = 1
        while keys[start + reps * size : start + (reps + 1) * size] == unit:
            reps += 1
        if reps > limit:
            return size, reps
    return None


class LengthFilterImpl(TextFilter):
    """Messages over the length limit: cut at a word boundary, or dropped."""

    name = "length"

    def __init__(self, cfg: LengthFilter, default_max: int) -> None:
        self._max = cfg.max_chars or default_max
        self._action = cfg.action

    @property
    def max_chars(self) -> int:
        """The longest text this filter lets through."""
        return self._max

    def apply(self, text: str) -> str | None:
        """Truncate or drop long text."""
        if len(text) <= self._max:
            return text
        if self._action == "drop":
            return None
        return cap_length(text, self._max)


# -- the chain ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FilterResult:
    """What the filters made of a message.

    Attributes:
        text: What is left to speak; "" when the message was dropped.
        dropped_by: Name of the filter that dropped the message (``nothing_speakable`` when
            nothing pronounceable remained), or None when the text survived.
        changed_by: Names of the filters that altered the text, in order.
    """

    text: str
    dropped_by: str | None = None
    changed_by: tuple[str, ...] = ()

    @property
    def dropped(self) -> bool:
        """Whether nothing will be spoken."""
        return self.dropped_by is not None


class FilterChain:
    """Every text filter in a fixed, sensible order, built from ``filters`` config.

    Order: normalize, emoji, zalgo/control, links, emotes, banned words, repeats, length, and
    finally the always-on baseline of ``bot.core.text``. Emoji go before the control filter because
    emoji sequences are glued by format characters that the control filter removes.
    """

    def __init__(self, cfg: FiltersConfig, default_max_length: int) -> None:
        length = LengthFilterImpl(cfg.length, default_max_length)
        self._max = length.max_chars
        self.filters: tuple[TextFilter, ...] = (
            NormalizeFilter(),
            EmojiFilterImpl(cfg.emoji),
            ZalgoFilterImpl(cfg.zalgo),
            LinksFilterImpl(cfg.links),
            EmotesFilterImpl(cfg.emotes),
            BannedWordsFilterImpl(cfg.banned_words),
            RepeatsFilterImpl(cfg.repeats),
            length,
        )
        self._ignore = MessageIgnorer(cfg.ignore)

    def apply(self, text: str) -> FilterResult:
        """Run every filter over ``text``."""
        if len(text) > self._max * _PRECAP_FACTOR:
            # Bounded work, whatever was pasted; the length filter still sees "too long".
            text = text[: self._max * _PRECAP_FACTOR + 1]
        changed: list[str] = []
        for flt in self.filters:
            out = flt.apply(text)
            if out is None:
                return FilterResult("", flt.name, tuple(changed))
            if out != text:
                changed.append(flt.name)
            text = out
        final = clean_for_speech(text, self._max)
        if not final:
            return FilterResult("", "nothing_speakable", tuple(changed))
        return FilterResult(final, None, tuple(changed))

    def ignored(self, message: ChatMessage) -> str | None:
        """Why the message is never read (an ignored user or prefix), or None."""
        return self._ignore.reason(message)


class MessageIgnorer:
    """Other bots and other bots' commands: messages that are never read at all."""

    name = "ignore"

    def __init__(self, cfg: IgnoreFilter) -> None:
        self._users = frozenset(cfg.users)
        self._prefixes = tuple(p for p in cfg.prefixes if p)

    def ignores_user(self, user: ChatUser) -> bool:
        """Whether this user's messages are never read (and their commands never run)."""
        return user.login.lower() in self._users

    def reason(self, message: ChatMessage) -> str | None:
        """Why the message is ignored, or None when it may be read."""
        if self.ignores_user(message.user):
            return "ignored user"
        if self._prefixes and message.text.lstrip().startswith(self._prefixes):
            return "another bot's command"
        return None


# -- names ----------------------------------------------------------------------------------
_CAMEL_RE = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")
_DIGITS_RE = re.compile(r"(?<=\D)(?=\d)|(?<=\d)(?=\D)")
_LONG_DIGITS = 4


def speakable_name(display_name: str, login: str = "") -> str:
    """A display name as a person would say it: "xX_Sniper_99" -> "xX Sniper 99".

    Underscores and dashes become spaces, camelCase and letter/digit boundaries split, runs of
    more than four digits (account-name noise like "user48213") are dropped when letters
    remain, and emoji and control characters go. Falls back to the login, then to "someone".
    """
    for candidate in (display_name, login):
        name = unicodedata.normalize("NFKC", candidate or "")
        name = "".join(
            ch
            for ch in name
            if not is_emoji(ch)
            and not _is_emoji_part(ch)
            and unicodedata.category(ch)[0] not in "CM"
        )
        name = re.sub(r"[_\-.]+", " ", name)
        name = _CAMEL_RE.sub(" ", name)
        name = _DIGITS_RE.sub(" ", name)
        words = name.split()
        if any(any(c.isalpha() for c in w) for w in words):
            words = [w for w in words if not (w.isdigit() and len(w) > _LONG_DIGITS)]
        spoken = " ".join(words)[:40].strip()
        if any(unicodedata.category(c)[0] in "LN" for c in spoken):
            return spoken
    return "someone"


# -- cooldown -------------------------------------------------------------------------------
class Cooldown:
    """A per-user pause between spoken messages, on the monotonic clock.

    Moderators (or the configured role and above) and paid messages skip it. Only messages
    that are actually queued start a cooldown, so a dropped message costs the viewer nothing.
    """

    _PRUNE_AT = 10_000

    def __init__(self, cfg: CooldownFilter, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = cfg.seconds
        self._exempt = ROLE_BY_NAME[cfg.exempt]
        self._paid_exempt = cfg.paid_exempt
        self._clock = clock
        self._last: dict[tuple[Platform, str], float] = {}

    def seconds(self, at_least: float | None = None) -> float:
        """The pause in force: the configured one, or ``at_least`` when longer (raid mode)."""
        return max(self._seconds, at_least or 0.0)

    def remaining(
        self, user: ChatUser, *, paid: bool = False, at_least: float | None = None
    ) -> float:
        """Seconds until ``user`` may be spoken again (0 when now).

        Args:
            user: The author.
            paid: Whether the message is a cheer or reward.
            at_least: A longer pause in force for now (raid mode), if any.
        """
        seconds = self.seconds(at_least)
        if seconds <= 0 or user.at_least(self._exempt) or (paid and self._paid_exempt):
            return 0.0
        last = self._last.get(user.identity)
        if last is None:
            return 0.0
        return max(0.0, last + seconds - self._clock())

    def mark(self, user: ChatUser, *, at_least: float | None = None) -> None:
        """Record that ``user`` was just queued for speech."""
        seconds = self.seconds(at_least)
        if seconds <= 0:
            return
        now = self._clock()
        self._last[user.identity] = now
        if len(self._last) > self._PRUNE_AT:
            cutoff = now - seconds
            self._last = {k: v for k, v in self._last.items() if v > cutoff}
