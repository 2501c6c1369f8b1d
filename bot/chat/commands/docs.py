"""The README's and docs' tables of chat commands, derived from the declarations.

``tests/test_readme.py`` checks that README.md and docs/commands.md say what these functions
say, so the documentation cannot drift from the commands. After changing a declaration, run
``python -m bot.chat.commands.docs`` and paste what it prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.chat.commands.builtin import COMMANDS
from bot.chat.commands.core import Command
from bot.chat.roles import role_name

DEFAULT_PREFIX = "!"


def usage(cmd: Command, prefix: str = DEFAULT_PREFIX) -> str:
    """``!mute @user [30s|10m|1h|2d]`` as the tables write it (``|`` escaped for markdown)."""
    return cmd.usage(prefix + cmd.key).replace("|", "\\|")


def command_table(commands: Sequence[Command] = COMMANDS, *, enabled: bool = True) -> str:
    """The README's table of chat commands (``enabled=False``: of those off by default)."""
    lines = ["| command | who (default) | what it does |", "|---|---|---|"]
    lines += [
        f"| `{usage(cmd)}` | {role_name(cmd.role)} | {cmd.summary} |"
        for cmd in commands
        if cmd.enabled is enabled
    ]
    return "\n".join(lines)


def _keys(commands: Sequence[Command]) -> str:
    return ", ".join(f"`{cmd.key}`" for cmd in commands)


def _defaults(
    commands: Sequence[Command], value: Callable[[Command], object], show: Callable[[Any], str]
) -> str:
    """``"`X` for `a`, `b`; `Y` for the rest"``: the most common value is "the rest"."""
    groups: dict[object, list[Command]] = {}
    for cmd in commands:
        groups.setdefault(value(cmd), []).append(cmd)
    common = max(groups, key=lambda v: len(groups[v]))  # the first of the largest groups
    parts = [f"`{show(v)}` for {_keys(cmds)}" for v, cmds in groups.items() if v != common]
    if not parts:
        return f"`{show(common)}`"
    return "; ".join([*parts, f"`{show(common)}` for the rest"])


def role_defaults(commands: Sequence[Command] = COMMANDS) -> str:
    """The default of ``commands.<command>.min_role``: "`everyone` for ...; `moderator` ..."."""
    return _defaults(commands, lambda c: c.role, role_name)


def cooldown_defaults(commands: Sequence[Command] = COMMANDS) -> str:
    """The default of ``commands.<command>.cooldown_s``: "`30` for `voices`; `0` ..."."""
    return _defaults(commands, lambda c: c.cooldown_s, lambda s: f"{s:g}")


def off_by_default(commands: Sequence[Command] = COMMANDS) -> list[Command]:
    """Commands that exist only once switched on (``commands.<key>.enabled: true``)."""
    return [cmd for cmd in commands if not cmd.enabled]


def config_rows(commands: Sequence[Command] = COMMANDS) -> list[str]:
    """The README's rows of ``commands.<command>.*`` whose defaults come from declarations."""
    off = off_by_default(commands)
    enabled = f"`true`; `false` for {_keys(off)}" if off else "`true`"
    return [
        f"| `commands.<command>.min_role` | {role_defaults(commands)} | `everyone`, "
        "`subscriber`, `vip`, `moderator`, `broadcaster` |",
        f"| `commands.<command>.enabled` | {enabled} | `false` removes the command |",
        f"| `commands.<command>.cooldown_s` | {cooldown_defaults(commands)} | 0-86400: seconds "
        "between two uses in the channel; moderators and the broadcaster are never held back |",
    ]


def key_list(commands: Sequence[Command] = COMMANDS) -> str:
    """The sentence that names every ``<command>`` key."""
    *head, last = [f"`{cmd.key}`" for cmd in commands]
    return f"`<command>` is one of {', '.join(head)}, {last}."


def main() -> None:
    """Print what README.md should say."""
    print(command_table())
    print()
    print(command_table(enabled=False))
    print()
    print("\n".join(config_rows()))
    print()
    print(key_list())


if __name__ == "__main__":
    main()
