"""Chat commands: each declared once, and what declares, configures and runs them.

``builtin`` holds the declarations, ``core`` the machinery that declares them, ``config`` the
``commands`` section they generate, and ``processor`` what runs them.

The argument parsers live one level up in ``bot.chat.arguments`` (the web panel uses them
too); they are re-exported here for callers that read a command line.
"""

from bot.chat.arguments import CommandError, ParsedCommand, parse_command, parse_login
from bot.chat.commands.builtin import BY_KEY, COMMAND_KEYS, COMMANDS
from bot.chat.commands.config import CommandsConfig, CommandSpec
from bot.chat.commands.core import Command, Component, Context, Speak, command
from bot.chat.commands.processor import CommandProcessor, CommandResult, CommandStatus

__all__ = [
    "BY_KEY",
    "COMMANDS",
    "COMMAND_KEYS",
    "Command",
    "CommandError",
    "CommandProcessor",
    "CommandResult",
    "CommandSpec",
    "CommandStatus",
    "CommandsConfig",
    "Component",
    "Context",
    "ParsedCommand",
    "Speak",
    "command",
    "parse_command",
    "parse_login",
]
