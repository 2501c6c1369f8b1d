"""Chat commands: parsing, permissions, and what each command does.

Commands are never spoken. Names, aliases, the prefix and each command's minimum role come
from the ``commands`` config; unknown or disabled commands are swallowed silently (they are
not read out, and nobody is told off in chat). Replies go back through ``message.reply`` so
every chat source answers in its own way, capped to the chat's message length.

Nothing a viewer types can raise out of here: arguments are validated with messages meant for
chat, a voice name is only ever compared with the engine's own list (never turned into a
path), and a failed database write is reported instead of acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.chat import actions
from bot.chat.filters import ROLE_BY_NAME
from bot.chat.settings import COMMAND_KEYS, COMMAND_NAME_RE, CommandsConfig
from bot.core.messages import ChatMessage, Role
from bot.speech.speaker import Speaker
from bot.state.store import Store, StoreError
from engine.config import VOICE_NAME_RE

log = logging.getLogger(__name__)

DEFAULT_ROLES: dict[str, Role] = {
    "voice": Role.EVERYONE,
    "voices": Role.EVERYONE,
    "tts": Role.EVERYONE,
    "mute": Role.MODERATOR,
    "unmute": Role.MODERATOR,
    "skip": Role.MODERATOR,
    "clear": Role.MODERATOR,
    "pause": Role.MODERATOR,
    "resume": Role.MODERATOR,
    "volume": Role.MODERATOR,
    "ttsoff": Role.MODERATOR,
    "ttson": Role.MODERATOR,
    "setvoice": Role.MODERATOR,
}
"""Who may use each command unless ``commands.<key>.min_role`` says otherwise."""

DEFAULT_COOLDOWNS: dict[str, float] = {"voices": 30.0}
"""Seconds between two uses of a command in the channel unless ``commands.<key>.cooldown_s``
says otherwise: a raid typing ``!voices`` must not flood chat with the list."""

USAGE: dict[str, str] = {
    "voice": "voice [NAME]",
    "voices": "voices",
    "tts": "tts TEXT",
    "mute": "mute @user [30s|10m|1h|2d]",
    "unmute": "unmute @user",
    "skip": "skip",
    "clear": "clear",
    "pause": "pause",
    "resume": "resume",
    "volume": "volume [0-100]",
    "ttsoff": "ttsoff",
    "ttson": "ttson",
    "setvoice": "setvoice @user NAME",
}

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


class CommandError(ValueError):
    """A command was used wrongly; the message is meant for chat."""


# -- parsing ----------------------------------------------------------------------------------
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


# -- the voice list ---------------------------------------------------------------------------
class VoiceListUnavailable(RuntimeError):
    """The engine could not say which voices it has (still loading, or failed)."""


class VoiceCatalog:
    """The engine's usable voice names, cached, refreshed on demand.

    The engine is the authority (it knows which voices actually load); asking it goes through
    the engine thread, which may be busy, so the answer is cached and a slow answer is
    reported instead of hanging a chat command.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Sequence[str]]],
        *,
        fallback: Callable[[], Awaitable[Sequence[str]]] | None = None,
        max_age_s: float = 300.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap ``fetch`` (returns the usable voice names) with a cache.

        Args:
            fetch: Asks the engine for its usable voice names.
            fallback: A cheaper answer while the engine is busy (e.g. still loading): the
                voice folders on disk. Used, never cached, when ``fetch`` is slow.
            max_age_s: Age after which the list is fetched again.
            timeout_s: How long a command waits for the engine's answer.
            clock: Monotonic clock.
        """
        self._fetch = fetch
        self._fallback = fallback
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._names: list[str] | None = None
        self._fetched_at = 0.0
        self._pending: asyncio.Task[list[str]] | None = None

    @property
    def cached(self) -> list[str] | None:
        """The last list fetched, or None before the first answer."""
        return list(self._names) if self._names is not None else None

    def invalidate(self) -> None:
        """Forget the list (voices were added or removed)."""
        self._names = None

    async def close(self) -> None:
        """Stop a fetch still waiting for the engine (the bot is shutting down)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending

    async def _load(self) -> list[str]:
        names = sorted({str(n) for n in await self._fetch()}, key=str.casefold)
        self._names = names
        self._fetched_at = self._clock()
        return names

    async def names(self, *, refresh: bool = False) -> list[str]:
        """The usable voice names, sorted.

        Raises:
            VoiceListUnavailable: The engine did not answer in time or failed.
        """
        fresh = self._names is not None and self._clock() - self._fetched_at < self._max_age_s
        if fresh and not refresh and self._names is not None:
            return list(self._names)
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._load(), name="voice-list")
        try:
            # shield: a timed-out command leaves the fetch running to fill the cache.
            return list(await asyncio.wait_for(asyncio.shield(self._pending), self._timeout_s))
        except TimeoutError:
            if self._names is not None:
                return list(self._names)
            if self._fallback is not None:
                try:
                    return sorted({str(n) for n in await self._fallback()}, key=str.casefold)
                except Exception as exc:
                    log.warning("voice folder scan failed: %s", exc)
            raise VoiceListUnavailable(
                "the voice engine is still starting; try again soon"
            ) from None
        except Exception as exc:
            if self._names is not None:
                return list(self._names)
            raise VoiceListUnavailable(f"the voice list is unavailable ({exc})") from exc

    async def resolve(self, name: str) -> tuple[str | None, str | None]:
        """Match ``name`` case-insensitively.

        Returns:
            (the voice's real name, None) when found, else (None, the closest name or None).
            An unknown name refreshes the list once, so a voice added while running is found.
        """
        wanted = name.casefold()
        for refresh in (False, True):
            names = await self.names(refresh=refresh)
            for candidate in names:
                if candidate.casefold() == wanted:
                    return candidate, None
        lowered = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(wanted, list(lowered), n=1, cutoff=0.5)
        return None, (lowered[close[0]] if close else None)


# -- what commands act on ---------------------------------------------------------------------
class Controls(Protocol):
    """What commands change: implemented by ``bot.chat.pipeline.ChatPipeline``."""

    @property
    def store(self) -> Store:
        """The state database."""
        ...

    @property
    def speaker(self) -> Speaker:
        """The speech queue and playback."""
        ...

    @property
    def voices(self) -> VoiceCatalog:
        """The engine's voice list."""
        ...

    @property
    def enabled(self) -> bool:
        """Whether TTS is on."""
        ...

    @property
    def volume(self) -> float:
        """The player volume, 0..1."""
        ...

    @property
    def default_voice(self) -> str:
        """The voice used when a viewer chose none."""
        ...

    async def set_enabled(self, enabled: bool) -> None:
        """Turn TTS on/off (off also silences what is queued); persisted first."""
        ...

    async def set_paused(self, paused: bool) -> None:
        """Pause/resume playback; persisted first."""
        ...

    async def set_volume(self, volume: float) -> None:
        """Set the player volume (0..1); persisted first."""
        ...

    def recent_user(self, login: str) -> tuple[str, Role] | None:
        """(user id, role) of someone who chatted recently under ``login``, if any."""
        ...


# -- the processor ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of a command line.

    Attributes:
        key: The command (a COMMAND_KEYS entry), or None when unknown.
        status: ``ok``, ``denied``, ``unknown``, ``cooldown`` (used too recently; ignored),
            ``invalid`` (bad arguments) or ``error``.
        speak: For ``!tts``: the text to speak (the pipeline filters and queues it).
    """

    key: str | None
    status: str
    speak: str | None = None


@dataclass(frozen=True, slots=True)
class _Context:
    message: ChatMessage
    command: ParsedCommand
    key: str


Handler = Callable[["_Context"], Awaitable[CommandResult]]


class CommandProcessor:
    """Recognises commands in chat lines, checks roles, runs them and replies."""

    def __init__(
        self,
        cfg: CommandsConfig,
        controls: Controls,
        *,
        tts_command: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the name table from config.

        Args:
            cfg: The ``commands`` section.
            controls: What the commands act on.
            tts_command: Whether ``!tts`` is a trigger (``triggers.command``); when not, the
                command does not exist.
            clock: Monotonic clock for command cooldowns.
        """
        self.cfg = cfg
        self._controls = controls
        self._clock = clock
        self._cooldowns: dict[str, float] = {}
        self._last_used: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self.min_roles: dict[str, Role] = {}
        handlers: dict[str, Handler] = {
            "voice": self._voice,
            "voices": self._voices,
            "tts": self._tts,
            "mute": self._mute,
            "unmute": self._unmute,
            "skip": self._skip,
            "clear": self._clear,
            "pause": self._pause,
            "resume": self._resume,
            "volume": self._volume,
            "ttsoff": self._ttsoff,
            "ttson": self._ttson,
            "setvoice": self._setvoice,
        }
        self._handlers: dict[str, Handler] = {}
        for key in COMMAND_KEYS:
            spec = cfg.spec(key)
            if not spec.enabled or (key == "tts" and not tts_command):
                continue
            self._handlers[key] = handlers[key]
            self.min_roles[key] = (
                ROLE_BY_NAME[spec.min_role] if spec.min_role is not None else DEFAULT_ROLES[key]
            )
            self._cooldowns[key] = (
                spec.cooldown_s if spec.cooldown_s is not None else DEFAULT_COOLDOWNS.get(key, 0.0)
            )
            for word in (spec.name or key, *spec.aliases):
                self._names[word] = key

    @property
    def prefix(self) -> str:
        """The command prefix."""
        return self.cfg.prefix

    def name_of(self, key: str) -> str:
        """What a viewer types for the command ``key`` (prefix included)."""
        return self.prefix + (self.cfg.spec(key).name or key)

    def lookup(self, name: str) -> str | None:
        """The command key for a typed name or alias, or None."""
        if not COMMAND_NAME_RE.match(name):
            return None
        return self._names.get(name)

    def allowed(self, key: str, role: Role) -> bool:
        """Whether someone whose highest role is ``role`` may use ``key``."""
        return role >= self.min_roles[key]

    async def handle(self, message: ChatMessage) -> CommandResult | None:
        """Run the command in ``message``.

        Returns:
            None when the message is not a command (it may be spoken); otherwise what
            happened. Any command-looking line, known or not, is never spoken except the
            text that ``!tts`` hands back.
        """
        if not self.cfg.enabled:
            return None
        parsed = parse_command(message.text, self.prefix)
        if parsed is None:
            return None
        key = self.lookup(parsed.name)
        if key is None:
            log.debug("unknown command %r from %s", parsed.name, message.user.login)
            return CommandResult(None, "unknown")
        if not self.allowed(key, message.user.role):
            log.info("%s may not use %s", message.user.login, key)
            if self.cfg.reply_denied:
                role = self.min_roles[key].name.lower()
                await self.reply(message, f"{self.name_of(key)} is for {role}s and up")
            return CommandResult(key, "denied")
        if self._cooling(key, message.user.role):
            log.debug("%s is cooling down; %s ignored", key, message.user.login)
            return CommandResult(key, "cooldown")
        ctx = _Context(message, parsed, key)
        try:
            return await self._handlers[key](ctx)
        except CommandError as exc:
            await self.reply(message, str(exc))
            return CommandResult(key, "invalid")
        except StoreError as exc:
            log.error("%s failed: %s", key, exc)
            await self.reply(message, f"{self.name_of(key)} failed: could not save the change")
            return CommandResult(key, "error")
        except VoiceListUnavailable as exc:
            await self.reply(message, str(exc))
            return CommandResult(key, "error")

    def _cooling(self, key: str, role: Role) -> bool:
        """Whether ``key`` was used too recently (moderators and up are never held back)."""
        seconds = self._cooldowns[key]
        if seconds <= 0 or role >= Role.MODERATOR:
            return False
        now = self._clock()
        last = self._last_used.get(key)
        if last is not None and now - last < seconds:
            return True
        self._last_used[key] = now
        return False

    async def reply(self, message: ChatMessage, text: str) -> None:
        """Answer in the chat the message came from (capped; failures are logged, not raised)."""
        limit = self.cfg.reply_max_chars
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        try:
            await message.reply(text)
        except Exception as exc:  # a broken connection must not break the command
            log.warning("could not reply to %s: %s", message.user.login, exc)

    async def _ack(self, ctx: _Context, text: str) -> None:
        if self.cfg.acknowledge:
            await self.reply(ctx.message, text)

    def _usage(self, key: str) -> CommandError:
        usage = USAGE[key]
        name = self.cfg.spec(key).name or key
        return CommandError(f"usage: {self.prefix}{name}{usage[len(key) :]}")

    def _target(self, arg: str) -> tuple[str, str | None]:
        """(login, user id if known) for an ``@user`` argument."""
        login = parse_login(arg)
        return login, actions.user_id_for(self._controls, login)

    async def _checked_voice(self, name: str) -> str:
        if not VOICE_NAME_RE.match(name):
            raise CommandError("voice names are letters, digits, '-' and '_'")
        found, suggestion = await self._controls.voices.resolve(name)
        if found is None:
            hint = f" Did you mean {suggestion}?" if suggestion else ""
            raise CommandError(
                f"there is no voice called {name}.{hint} {self.name_of('voices')} lists them"
            )
        return found

    def _stored_voice(self, voice: str) -> str | None:
        """None for the default voice, so a changed default applies to these users too."""
        return None if voice.casefold() == self._controls.default_voice.casefold() else voice

    # -- everyone -----------------------------------------------------------------------------
    async def _voice(self, ctx: _Context) -> CommandResult:
        user = ctx.message.user
        store = self._controls.store
        if not ctx.command.args:
            current = store.voice_of(user) or self._controls.default_voice
            await self.reply(ctx.message, f"your voice is {current}")
            return CommandResult("voice", "ok")
        name = ctx.command.args[0]
        if name.casefold() == "reset":
            found, _ = await self._controls.voices.resolve(name)
            if found is None:
                await store.set_voice(user.login, user.id, None)
                await self.reply(ctx.message, f"your voice is {self._controls.default_voice} again")
                return CommandResult("voice", "ok")
        voice = await self._checked_voice(name)
        await store.set_voice(user.login, user.id, self._stored_voice(voice))
        await self.reply(ctx.message, f"your voice is now {voice}")
        return CommandResult("voice", "ok")

    async def _voices(self, ctx: _Context) -> CommandResult:
        names = await self._controls.voices.names()
        if not names:
            await self.reply(ctx.message, "no voices are available")
            return CommandResult("voices", "ok")
        lines = split_for_chat(
            f"voices ({self.name_of('voice')} NAME): ", names, self.cfg.reply_max_chars
        )
        for line in lines:
            await self.reply(ctx.message, line)
        return CommandResult("voices", "ok")

    async def _tts(self, ctx: _Context) -> CommandResult:
        if not ctx.command.rest:
            raise self._usage("tts")
        return CommandResult("tts", "ok", speak=ctx.command.rest)

    # -- moderators ---------------------------------------------------------------------------
    async def _mute(self, ctx: _Context) -> CommandResult:
        args = ctx.command.args
        if not args:
            raise self._usage("mute")
        login = parse_login(args[0])
        seconds = parse_duration(args[1]) if len(args) > 1 else None
        issuer = ctx.message.user
        recent = self._controls.recent_user(login)
        if (
            recent is not None
            and recent[1] >= issuer.role
            and issuer.role < Role.BROADCASTER
            and login != issuer.login
        ):
            raise CommandError(f"you can't mute {login}: they are a {recent[1].name.lower()}")
        removed = (
            await actions.mute_user(self._controls, login, seconds=seconds, by=issuer.login)
        ).removed
        span = f"for {format_duration(seconds)}" if seconds is not None else "until unmuted"
        extra = f" ({removed} message{'s' if removed != 1 else ''} removed)" if removed else ""
        await self._ack(ctx, f"muted {login} {span}{extra}")
        return CommandResult("mute", "ok")

    async def _unmute(self, ctx: _Context) -> CommandResult:
        if not ctx.command.args:
            raise self._usage("unmute")
        login = parse_login(ctx.command.args[0])
        lifted = await actions.unmute_user(self._controls, login)
        await self._ack(ctx, f"unmuted {login}" if lifted else f"{login} was not muted")
        return CommandResult("unmute", "ok")

    async def _skip(self, ctx: _Context) -> CommandResult:
        skipped = self._controls.speaker.skip()
        if skipped is None:
            await self._ack(ctx, "nothing is playing")
        else:
            await self._ack(ctx, f"skipped {skipped.message.user.login}'s message")
        return CommandResult("skip", "ok")

    async def _clear(self, ctx: _Context) -> CommandResult:
        removed = self._controls.speaker.clear()
        await self._ack(ctx, f"cleared {removed} queued message{'s' if removed != 1 else ''}")
        return CommandResult("clear", "ok")

    async def _pause(self, ctx: _Context) -> CommandResult:
        await self._controls.set_paused(True)
        await self._ack(ctx, f"paused; {self.name_of('resume')} continues")
        return CommandResult("pause", "ok")

    async def _resume(self, ctx: _Context) -> CommandResult:
        await self._controls.set_paused(False)
        await self._ack(ctx, "resumed")
        return CommandResult("resume", "ok")

    async def _volume(self, ctx: _Context) -> CommandResult:
        current = round(self._controls.volume * 100)
        if not ctx.command.args:
            await self.reply(ctx.message, f"volume is {current}%")
            return CommandResult("volume", "ok")
        raw = ctx.command.args[0].rstrip("%")
        try:
            value = float(raw)
        except ValueError:
            raise CommandError("volume is a number from 0 to 100 (or +10 / -10)") from None
        if not math.isfinite(value):
            raise CommandError("volume is a number from 0 to 100 (or +10 / -10)")
        if raw.startswith(("+", "-")):
            value = current + value
        if not 0 <= value <= 100:
            if raw.startswith(("+", "-")):
                value = min(100.0, max(0.0, value))
            else:
                raise CommandError("volume is a number from 0 to 100")
        await self._controls.set_volume(value / 100.0)
        await self._ack(ctx, f"volume {round(value)}%")
        return CommandResult("volume", "ok")

    async def _ttsoff(self, ctx: _Context) -> CommandResult:
        await self._controls.set_enabled(False)
        await self._ack(ctx, f"TTS is off; {self.name_of('ttson')} turns it back on")
        return CommandResult("ttsoff", "ok")

    async def _ttson(self, ctx: _Context) -> CommandResult:
        await self._controls.set_enabled(True)
        await self._ack(ctx, "TTS is on")
        return CommandResult("ttson", "ok")

    async def _setvoice(self, ctx: _Context) -> CommandResult:
        args = ctx.command.args
        if len(args) < 2:
            raise self._usage("setvoice")
        login, user_id = self._target(args[0])
        voice = await self._checked_voice(args[1])
        await self._controls.store.set_voice(login, user_id, self._stored_voice(voice))
        await self._ack(ctx, f"{login}'s voice is now {voice}")
        return CommandResult("setvoice", "ok")
