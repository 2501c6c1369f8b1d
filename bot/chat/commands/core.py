"""How a chat command is declared: once, with everything that belongs to it.

In the style of twitchio's ``ext.commands``: commands are methods of a :class:`Component`
(a group of commands that act on the same things), and a decorator says everything else about
them where the code is::

    class Moderation(Component):
        @command("mute", role=Role.MODERATOR, summary="stop reading someone ...")
        async def mute(self, ctx: Context, login: Login, seconds: Duration = None) -> None:
            ...

The key (``commands.<key>`` in the config), the default role (the role guard), the
channel-wide cooldown, the summary (the README's table), the arguments and the handler live
together. Arguments are typed: each parameter after ``ctx`` is annotated with one of the
argument types below (``Login``, ``Duration``, ``VoiceWord``, ``Volume``, ``Text``), which
names its parser and its placeholder in the usage text; a parameter with a default is optional.
So the usage reply (``usage: !mute @user [30s|10m|1h|2d]``), the config models, the README and
the argument checks are all derived from the one declaration and cannot drift apart.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from bot.chat.arguments import (
    CommandError,
    ParsedCommand,
    VolumeChange,
    check_voice_name,
    parse_duration,
    parse_login,
    parse_spoken,
    parse_volume,
    parse_word,
)
from bot.chat.controls import Controls
from bot.core.messages import ChatMessage, ChatUser, Role


@dataclass(frozen=True, slots=True)
class Arg:
    """How one argument is read: its placeholder in the usage text and its parser.

    Attributes:
        metavar: What the usage text shows (``@user``, ``NAME``, ``TEXT``).
        parse: Turns the typed word into the value, or raises ``CommandError``.
        rest: Takes the rest of the line (spaces included) instead of one word.
    """

    metavar: str
    parse: Callable[[str], Any]
    rest: bool = False


def _text(value: str) -> str:
    return value


Login = Annotated[str, Arg("@user", parse_login)]
"""An ``@user`` argument: the login, lower case, validated."""
Duration = Annotated[float | None, Arg("30s|10m|1h|2d", parse_duration)]
"""A duration in seconds (None: ``perm``)."""
VoiceWord = Annotated[str, Arg("NAME", check_voice_name)]
"""A word that may name a voice (not yet looked up in the engine's list)."""
Volume = Annotated[VolumeChange, Arg("0-100", parse_volume)]
"""A volume: ``40``, ``40%``, ``+10``, ``-10``."""
Text = Annotated[str, Arg("TEXT", _text, rest=True)]
"""The rest of the line."""
Word = Annotated[str, Arg("WORD", parse_word)]
"""A word of the pronunciation dictionary."""
Spoken = Annotated[str, Arg("as SPOKEN", parse_spoken, rest=True)]
"""How a word is said: the rest of the line, after an optional ``as``."""


@dataclass(frozen=True, slots=True)
class Param:
    """One declared argument of a command."""

    name: str
    arg: Arg
    required: bool
    default: Any = None

    @property
    def usage(self) -> str:
        """``@user`` or ``[30s|10m|1h|2d]``."""
        return self.arg.metavar if self.required else f"[{self.arg.metavar}]"


@dataclass(frozen=True, slots=True)
class Speak:
    """A handler's answer that hands text on to be spoken (``!tts``)."""

    text: str


Callback = Callable[..., Awaitable[Speak | None]]


@dataclass(eq=False)
class Command:
    """One chat command, as declared.

    Attributes:
        key: Its key under ``commands`` in the config and its default name.
        role: Who may use it unless ``commands.<key>.min_role`` says otherwise.
        summary: What it does, in a few words (the README's command table).
        cooldown_s: Default seconds between two uses in the channel.
        aliases: Default other names.
        enabled: Whether it exists unless ``commands.<key>.enabled`` says otherwise.
        speaks: A speech trigger (``!tts``): it exists only while ``triggers.command`` is on.
        saves: It changes saved state (voices, mutes, settings, the dictionary) when given its
            arguments (or, with none declared, always); while the database is read-only its
            replies say the change lasts only until the bot stops.
        params: Its arguments, from the handler's signature.
        callback: The handler: ``(component, ctx, *arguments)``.
        owner: The Component class it belongs to (set when the class is created).
    """

    key: str
    role: Role
    summary: str
    callback: Callback
    params: tuple[Param, ...]
    cooldown_s: float = 0.0
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    speaks: bool = False
    saves: bool = False
    owner: type[Component] | None = field(default=None, repr=False)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if isinstance(owner, type) and issubclass(owner, Component):
            self.owner = owner

    @property
    def usage_args(self) -> str:
        """The arguments part of the usage text: ``@user [30s|10m|1h|2d]``."""
        return " ".join(p.usage for p in self.params)

    def usage(self, typed: str) -> str:
        """The whole usage line for the name people type (``!mute @user [30s|10m|1h|2d]``)."""
        return f"{typed} {self.usage_args}".rstrip()

    def parse(self, line: ParsedCommand) -> list[Any] | None:
        """The handler's arguments from a command line.

        Words are taken in order; a rest-of-line argument takes what is left. Extra words are
        ignored (chat adds them freely: ``!skip pls``).

        Returns:
            The values, or None when a required argument is missing (a usage error).

        Raises:
            CommandError: An argument is there but unusable (its parser's message).
        """
        remaining = line.rest
        values: list[Any] = []
        for param in self.params:
            if param.arg.rest:
                word, remaining = remaining.strip(), ""
            else:
                parts = remaining.split(maxsplit=1)
                word = parts[0] if parts else ""
                remaining = parts[1] if len(parts) > 1 else ""
            if not word:
                if param.required:
                    return None
                values.append(param.default)
                continue
            values.append(param.arg.parse(word))
        return values


def _arg_of(annotation: Any) -> Arg | None:
    """The Arg inside ``Annotated[T, Arg]`` (possibly wrapped in ``| None``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            found = _arg_of(member)
            if found is not None:
                return found
        return None
    if typing.get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Arg)), None)
    return None


def _params(func: Callback) -> tuple[Param, ...]:
    hints = typing.get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    names = list(signature.parameters)
    if names[:2] != ["self", "ctx"]:
        raise TypeError(f"{func.__qualname__}: a command takes (self, ctx, ...arguments)")
    params: list[Param] = []
    for name in names[2:]:
        parameter = signature.parameters[name]
        arg = _arg_of(hints.get(name))
        if arg is None:
            raise TypeError(f"{func.__qualname__}: annotate {name} with an argument type")
        if params and params[-1].arg.rest:
            raise TypeError(f"{func.__qualname__}: nothing can follow a rest-of-line argument")
        required = parameter.default is inspect.Parameter.empty
        params.append(Param(name, arg, required, None if required else parameter.default))
    return tuple(params)


def command(
    key: str,
    *,
    role: Role,
    summary: str,
    cooldown_s: float = 0.0,
    aliases: tuple[str, ...] = (),
    enabled: bool = True,
    speaks: bool = False,
    saves: bool = False,
) -> Callable[[Callback], Command]:
    """Declare a Component method as the chat command ``key`` (see the module docstring)."""

    def wrap(func: Callback) -> Command:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"command {key}: the handler must be a coroutine function")
        return Command(
            key=key,
            role=role,
            summary=summary,
            callback=func,
            params=_params(func),
            cooldown_s=cooldown_s,
            aliases=aliases,
            enabled=enabled,
            speaks=speaks,
            saves=saves,
        )

    return wrap


class Component:
    """A group of commands that act on the same things (twitchio's ``Component``).

    Subclasses declare commands with :func:`command`; they are collected, in the order
    written, into :attr:`commands`. An instance is made once per processor with the controls.
    """

    commands: ClassVar[tuple[Command, ...]] = ()

    def __init__(self, controls: Controls) -> None:
        """Keep what the commands act on."""
        self.controls = controls

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.commands = tuple(v for v in vars(cls).values() if isinstance(v, Command))


@dataclass(frozen=True, slots=True)
class Context:
    """One use of a command: who typed what, and how to answer.

    Attributes:
        message: The chat line.
        line: The parsed line (name and words).
        command: The declaration being run.
        replier: Sends a line back to the message's chat (capped, failures logged).
        acknowledge: Whether confirmations are sent (``commands.acknowledge``).
        names: What people type for a command key (``!resume``).
        reply_limit: The longest reply line (``commands.reply_max_chars``).
        note: Added to every reply (a change that cannot be saved says so).
    """

    message: ChatMessage
    line: ParsedCommand
    command: Command
    replier: Callable[[ChatMessage, str], Awaitable[None]]
    acknowledge: bool
    names: Callable[[str], str]
    reply_limit: int
    note: str = ""

    @property
    def user(self) -> ChatUser:
        """Who typed it."""
        return self.message.user

    async def reply(self, text: str) -> None:
        """Answer (questions like ``!voice`` are always answered)."""
        await self.replier(self.message, f"{text} {self.note}" if self.note else text)

    async def ack(self, text: str) -> None:
        """Confirm a change, unless confirmations are off."""
        if self.acknowledge:
            await self.reply(text)

    def name_of(self, key: str) -> str:
        """What people type for the command ``key``, prefix included."""
        return self.names(key)

    def usage(self) -> CommandError:
        """The usage error of this command, under the name it has in this config."""
        return CommandError(f"usage: {self.command.usage(self.name_of(self.command.key))}")
