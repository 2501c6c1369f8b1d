"""Reading what people type: command lines and their arguments.

The parsers shared by everything that takes a user's words, so a chat command and a control
panel field accept the same input and refuse it with the same words: a command line
(``!mute @bob 10m``), an ``@user``, a duration, a volume, a voice name. Each parser either
returns a value or raises :class:`CommandError` with a message meant for the person who typed
it (chat or the panel); none touches the disk, the database or the engine, so the web server
and the command declarations can both import this without importing each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.text import clean_for_speech
from engine.config import VOICE_NAME_RE


class CommandError(ValueError):
    """Input that cannot be used; the message is meant for the person who typed it."""


COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,25}\Z")
"""What a command name or alias may be (without the prefix)."""

_LOGIN_RE = re.compile(r"^[a-z0-9_][a-z0-9_.\-]{0,39}\Z")
_DURATION_PART_RE = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([a-z]*)")
_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
_FOREVER = frozenset({"perm", "permanent", "forever", "0"})
MAX_MUTE_S = 365 * 86400.0


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """A chat line that looks like a command.

    Attributes:
        name: The word after the prefix, case-folded.
        args: The whitespace-separated words after it.
        rest: Everything after the name, stripped (the text of ``!tts``).
    """

    name: str
    args: tuple[str, ...]
    rest: str


def parse_command(text: str, prefix: str) -> ParsedCommand | None:
    """Split ``text`` into a command, or None when it does not start with ``prefix`` + a word.

    "! hello" (a space after the prefix) and the bare prefix are not commands.
    """
    stripped = text.strip()
    if not prefix or not stripped.startswith(prefix):
        return None
    body = stripped[len(prefix) :]
    if not body or body[0].isspace():
        return None
    parts = body.split(maxsplit=1)
    rest = parts[1].strip() if len(parts) > 1 else ""
    return ParsedCommand(parts[0].casefold(), tuple(rest.split()), rest)


def parse_login(arg: str) -> str:
    """``@SomeUser,`` -> ``someuser``.

    Raises:
        CommandError: When it cannot be a user name.
    """
    login = arg.strip().lstrip("@").rstrip(",:;!?").casefold()
    if not _LOGIN_RE.match(login):
        raise CommandError("that is not a user name (write @name)")
    return login


def parse_duration(arg: str) -> float | None:
    """``30s``, ``10m``, ``1h30m``, ``2d``, ``1w`` (a bare number is seconds) -> seconds.

    Returns:
        Seconds, or None for "until unmuted" (``perm``, ``forever``, ``0``).

    Raises:
        CommandError: When it is not a duration or longer than a year.
    """
    text = arg.strip().casefold()
    if text in _FOREVER:
        return None
    pos = 0
    total = 0.0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != pos:
            break
        unit = _UNITS.get(match.group(2))
        if unit is None:
            break
        total += float(match.group(1)) * unit
        pos = match.end()
    if pos != len(text) or not text or total <= 0 or not math.isfinite(total):
        raise CommandError("durations look like 30s, 10m, 1h or 2d")
    if total > MAX_MUTE_S:
        raise CommandError(
            "the longest mute is 365d (leave the duration out to mute until !unmute)"
        )
    return total


def format_duration(seconds: float) -> str:
    """Seconds in words, two units at most: ``5400`` -> "1 hour 30 minutes"."""
    seconds = max(1, round(seconds))
    parts: list[str] = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


@dataclass(frozen=True, slots=True)
class VolumeChange:
    """A volume as typed: ``40`` / ``40%`` (absolute) or ``+10`` / ``-10`` (relative).

    Attributes:
        value: Percent (absolute), or percentage points to add (relative).
        relative: Whether it was written with a sign.
    """

    value: float
    relative: bool

    def applied_to(self, current: float) -> float:
        """The new volume in percent, from ``current`` percent; a relative change is clamped."""
        if not self.relative:
            return self.value
        return min(100.0, max(0.0, current + self.value))


def parse_volume(arg: str) -> VolumeChange:
    """``40``, ``40%``, ``+10``, ``-10`` -> a :class:`VolumeChange`.

    Raises:
        CommandError: Not a number, or an absolute value outside 0-100.
    """
    raw = arg.rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise CommandError("volume is a number from 0 to 100 (or +10 / -10)") from None
    if not math.isfinite(value):
        raise CommandError("volume is a number from 0 to 100 (or +10 / -10)")
    relative = raw.startswith(("+", "-"))
    if not relative and not 0 <= value <= 100:
        raise CommandError("volume is a number from 0 to 100")
    return VolumeChange(value, relative)


def check_voice_name(arg: str) -> str:
    """A word that may name a voice (it is only ever compared with the engine's list).

    Raises:
        CommandError: When it has characters no voice name has (``..``, ``/``, spaces).
    """
    if not VOICE_NAME_RE.match(arg):
        raise CommandError("voice names are letters, digits, '-' and '_'")
    return arg


PRONOUNCED_WORD_RE = re.compile(r"^[^\s]{1,40}\Z")
"""A word the pronunciation dictionary may hold: 1-40 characters, no spaces."""
MAX_SPOKEN_CHARS = 200
"""The longest spoken form of a word."""


def parse_word(arg: str) -> str:
    """A word for the pronunciation dictionary (``GG``, ``PogChamp``, ``<3``).

    Raises:
        CommandError: It has spaces or is longer than 40 characters.
    """
    if not PRONOUNCED_WORD_RE.match(arg):
        raise CommandError("the word is 1-40 characters without spaces")
    return arg


def parse_spoken(arg: str) -> str:
    """How a word is said, as typed after it: ``as good game`` (the ``as`` is optional).

    Raises:
        CommandError: Nothing speakable, or longer than :data:`MAX_SPOKEN_CHARS`.
    """
    words = arg.split(maxsplit=1)
    if words and words[0].casefold() == "as":
        arg = words[1] if len(words) > 1 else ""
    spoken = clean_for_speech(arg, len(arg) + 1)  # no cap: a long form is refused, not cut
    if not spoken:
        raise CommandError("say what it should sound like: WORD as SPOKEN")
    if len(spoken) > MAX_SPOKEN_CHARS:
        raise CommandError(f"the spoken form is at most {MAX_SPOKEN_CHARS} characters")
    return spoken


def split_for_chat(head: str, items: Sequence[str], limit: int, more: str = "more: ") -> list[str]:
    """Join ``items`` with ", " into lines of at most ``limit`` characters.

    The first line starts with ``head``, later ones with ``more``. An item too long for a line
    on its own is cut (names are short; this keeps the promise for any input).
    """
    lines: list[str] = []
    current = head
    has_item = False
    for raw in items:
        lead = head if not lines else more
        item = raw[: max(1, limit - len(lead))]
        candidate = f"{current}, {item}" if has_item else f"{current}{item}"
        if len(candidate) <= limit:
            current, has_item = candidate, True
            continue
        if has_item:
            lines.append(current)
        current, has_item = f"{more}{item}"[:limit], True
    if has_item or not lines:
        lines.append(current[:limit])
    return lines
