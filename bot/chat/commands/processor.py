"""Running commands: recognise a command line, guard it (role, cooldown), parse, run, reply.

Commands are never spoken. Names, aliases, the prefix and each command's minimum role come
from the ``commands`` config over the declarations' defaults; unknown or disabled commands are
swallowed silently (they are not read out, and nobody is told off in chat). Replies go back
through ``message.reply`` so every chat source answers in its own way, capped to the chat's
message length.

Nothing a viewer types can raise out of here: arguments are validated with messages meant for
chat, a voice name is only ever compared with the engine's own list (never turned into a
path), and a failed database write is reported instead of acknowledged.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.chat.arguments import COMMAND_NAME_RE, CommandError, parse_command
from bot.chat.commands.builtin import COMMANDS, COMPONENTS
from bot.chat.commands.config import CommandsConfig
from bot.chat.commands.core import Command, Component, Context, Speak
from bot.chat.controls import Controls
from bot.chat.roles import ROLE_BY_NAME, role_name
from bot.chat.voices import VoiceListUnavailable
from bot.core.messages import ChatMessage, Role
from bot.state.store import StoreError

UNSAVED_NOTE = "(not saved: the state database is read-only; this lasts until the bot stops)"
"""Added to the replies of changes while the database could only be opened read-only."""

log = logging.getLogger(__name__)


class CommandStatus(enum.StrEnum):
    """What became of a command line."""

    OK = "ok"
    """It ran."""
    DENIED = "denied"
    """Above the author's role."""
    UNKNOWN = "unknown"
    """No such command (or switched off): swallowed."""
    COOLDOWN = "cooldown"
    """Used too recently in the channel: ignored."""
    INVALID = "invalid"
    """Bad arguments: the author was told why."""
    ERROR = "error"
    """It could not be done (the database or the voice list failed): the author was told."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of a command line.

    Attributes:
        key: The command's key, or None when unknown.
        status: What happened.
        speak: For ``!tts``: the text to speak (the pipeline filters and queues it).
    """

    key: str | None
    status: CommandStatus
    speak: str | None = None


@dataclass(frozen=True, slots=True)
class _Active:
    """A command as this config has it: its declaration, role, cooldown and handler's owner."""

    command: Command
    role: Role
    cooldown_s: float
    component: Component


class CommandProcessor:
    """Recognises commands in chat lines, guards them, runs them and replies."""

    def __init__(
        self,
        cfg: CommandsConfig,
        controls: Controls,
        *,
        tts_command: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the name table from the declarations and the config.

        Args:
            cfg: The ``commands`` section.
            controls: What the commands act on.
            tts_command: Whether ``!tts`` is a trigger (``triggers.command``); when not, the
                commands that speak do not exist.
            clock: Monotonic clock for command cooldowns.
        """
        self.cfg = cfg
        self._clock = clock
        self._last_used: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self._active: dict[str, _Active] = {}
        self._controls = controls
        components = {cls: cls(controls) for cls in COMPONENTS}
        for cmd in COMMANDS:
            spec = cfg.spec(cmd.key)
            if not spec.enabled or (cmd.speaks and not tts_command):
                continue
            assert cmd.owner is not None
            self._active[cmd.key] = _Active(
                command=cmd,
                role=ROLE_BY_NAME[spec.min_role] if spec.min_role is not None else cmd.role,
                cooldown_s=spec.cooldown_s if spec.cooldown_s is not None else cmd.cooldown_s,
                component=components[cmd.owner],
            )
            for word in (spec.name or cmd.key, *spec.aliases):
                self._names[word] = cmd.key

    @property
    def prefix(self) -> str:
        """The command prefix."""
        return self.cfg.prefix

    def name_of(self, key: str) -> str:
        """What a viewer types for the command ``key`` (prefix included)."""
        return self.cfg.typed_name(key)

    def lookup(self, name: str) -> str | None:
        """The command key for a typed name or alias, or None."""
        if not COMMAND_NAME_RE.match(name):
            return None
        return self._names.get(name)

    def min_role(self, key: str) -> Role:
        """Who may use the active command ``key`` in this config."""
        return self._active[key].role

    def allowed(self, key: str, role: Role) -> bool:
        """Whether someone whose highest role is ``role`` may use ``key``."""
        return role >= self._active[key].role

    async def handle(self, message: ChatMessage) -> CommandResult | None:
        """Run the command in ``message``.

        Returns:
            None when the message is not a command (it may be spoken); otherwise what
            happened. Any command-looking line, known or not, is never spoken except the
            text that ``!tts`` hands back.
        """
        if not self.cfg.enabled:
            return None
        line = parse_command(message.text, self.prefix)
        if line is None:
            return None
        key = self.lookup(line.name)
        if key is None:
            log.debug("unknown command %r from %s", line.name, message.user.login)
            return CommandResult(None, CommandStatus.UNKNOWN)
        active = self._active[key]
        if not self.allowed(key, message.user.role):
            log.info("%s may not use %s", message.user.login, key)
            if self.cfg.reply_denied:
                await self.reply(
                    message, f"{self.name_of(key)} is for {role_name(active.role)}s and up"
                )
            return CommandResult(key, CommandStatus.DENIED)
        if self._cooling(active, message.user.role):
            log.debug("%s is cooling down; %s ignored", key, message.user.login)
            return CommandResult(key, CommandStatus.COOLDOWN)
        ctx = Context(
            message=message,
            line=line,
            command=active.command,
            replier=self.reply,
            acknowledge=self.cfg.acknowledge,
            names=self.name_of,
            reply_limit=self.cfg.reply_max_chars,
        )
        try:
            values = active.command.parse(line)
            if values is None:
                raise ctx.usage()
            if self._unsaved(active.command, values):
                ctx = replace(ctx, note=UNSAVED_NOTE)
            said = await active.command.callback(active.component, ctx, *values)
        except CommandError as exc:
            await self.reply(message, str(exc))
            return CommandResult(key, CommandStatus.INVALID)
        except StoreError as exc:
            log.error("%s failed: %s", key, exc)
            await self.reply(message, f"{self.name_of(key)} failed: could not save the change")
            return CommandResult(key, CommandStatus.ERROR)
        except VoiceListUnavailable as exc:
            await self.reply(message, str(exc))
            return CommandResult(key, CommandStatus.ERROR)
        speak = said.text if isinstance(said, Speak) else None
        return CommandResult(key, CommandStatus.OK, speak=speak)

    def _unsaved(self, command: Command, values: list[Any]) -> bool:
        """Whether this use changes saved state that the read-only database cannot keep."""
        if not command.saves or not self._controls.store.read_only:
            return False
        return not command.params or any(v is not None for v in values)

    def _cooling(self, active: _Active, role: Role) -> bool:
        """Whether the command was used too recently (moderators and up are never held back)."""
        seconds = active.cooldown_s
        if seconds <= 0 or role >= Role.MODERATOR:
            return False
        key = active.command.key
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
