"""The ``commands`` config section, generated from the command declarations.

One ``commands.<key>`` entry per declared command (``bot.chat.commands.builtin``), so a new
command gets its config keys, their validation and their README rows by being declared; no
list of keys to keep in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model, field_validator, model_validator

from bot.chat.arguments import COMMAND_NAME_RE
from bot.chat.commands.builtin import COMMAND_KEYS, COMMANDS
from bot.chat.commands.core import Command
from bot.chat.roles import RoleName
from engine.config import Section


class CommandSpec(Section):
    """One chat command: what viewers type and who may use it (``commands.<key>``)."""

    name: str | None = Field(default=None, description="what follows the prefix (default: the key)")
    aliases: tuple[str, ...] = ()
    min_role: RoleName | None = Field(
        default=None, description="lowest role allowed (default: the command's own)"
    )
    enabled: bool = True
    cooldown_s: float | None = Field(
        default=None,
        ge=0.0,
        le=86_400.0,
        description="seconds between two uses in the channel (default: the command's own)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not COMMAND_NAME_RE.match(value):
            raise ValueError("must be 1-25 letters, digits or '_' (without the prefix)")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(v.lower() for v in value)
        for alias in out:
            if not COMMAND_NAME_RE.match(alias):
                raise ValueError(f"alias {alias!r} must be 1-25 letters, digits or '_'")
        return out


class CommandsSection(Section):
    """Chat commands (``commands``): prefix, replies, and one entry per command."""

    enabled: bool = True
    prefix: str = Field(default="!", pattern=r"^[^\s]{1,5}$")
    acknowledge: bool = Field(default=True, description="confirm moderator actions in chat")
    reply_denied: bool = Field(default=False, description="tell users a command is not theirs")
    reply_max_chars: int = Field(default=500, ge=50, le=10_000)

    def spec(self, key: str) -> CommandSpec:
        """The entry of the command ``key`` (one of COMMAND_KEYS)."""
        spec = getattr(self, key)
        assert isinstance(spec, CommandSpec)
        return spec

    def typed_name(self, key: str) -> str:
        """What a viewer types for the command ``key``, prefix included."""
        return self.prefix + (self.spec(key).name or key)

    @model_validator(mode="after")
    def _unique_names(self) -> CommandsSection:
        seen: dict[str, str] = {}
        for key in COMMAND_KEYS:
            spec = self.spec(key)
            if not spec.enabled:
                continue
            for word in (spec.name or key, *spec.aliases):
                if word in seen and seen[word] != key:
                    raise ValueError(f"{word!r} is used by both commands.{seen[word]} and {key}")
                seen[word] = key
        return self


def spec_model(cmd: Command) -> type[CommandSpec]:
    """The model of ``commands.<key>``: CommandSpec, with the command's own defaults.

    Only a command that is off unless switched on (a new command that could answer other
    bots' commands of the same name) needs a model of its own.
    """
    if cmd.enabled:
        return CommandSpec
    model: type[CommandSpec] = create_model(
        f"{cmd.key.title()}CommandSpec",
        __base__=CommandSpec,
        __module__=__name__,
        enabled=(bool, False),
    )
    return model


def _fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for cmd in COMMANDS:
        model = spec_model(cmd)
        fields[cmd.key] = (model, Field(default_factory=model))
    return fields


if TYPE_CHECKING:

    class CommandsConfig(CommandsSection):
        """Chat commands (``commands``): prefix, replies, and one entry per command."""

else:
    CommandsConfig = create_model(
        "CommandsConfig",
        __base__=CommandsSection,
        __module__=__name__,
        __doc__=CommandsSection.__doc__,
        **_fields(),
    )
