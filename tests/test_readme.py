"""The README's promises hold: its two commands are the ones CI runs, and they exist.

A streamer copies the first code block of the README and nothing else. If CI ran something
different, a green build would say nothing about what the streamer runs; if a command the
README names does not exist, the first minute ends in an error. So: the README's first code
block holds exactly two commands, ``.ci/run`` executes the test one, both are executable
scripts that bash can parse, the run script starts the ``ishowtts`` console script that
``pyproject.toml`` declares, and every ``ishowtts SUBCOMMAND`` the README mentions is one the
command line accepts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

README = REPO / "README.md"
CI = REPO / ".ci" / "run"


def first_code_block(text: str) -> list[str]:
    """Commands in the README's first fenced block (comments and blank lines dropped)."""
    match = re.search(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    assert match, "the README has no code block"
    commands = []
    for line in match.group(1).splitlines():
        command = line.split(" #", 1)[0].strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def script_of(command: str) -> str:
    """The script a command line runs, relative to the repo root (``./x`` -> ``x``)."""
    words = shlex.split(command)
    if words and words[0] == "exec":
        words = words[1:]
    assert words, f"empty command {command!r}"
    return os.path.normpath(words[0])


def readme_commands() -> tuple[str, str]:
    commands = first_code_block(README.read_text(encoding="utf-8"))
    assert len(commands) == 2, f"the README's first code block should hold two commands: {commands}"
    run, test = commands
    return run, test


def test_the_readme_opens_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.index("```")
    before = text[:block]
    # Only the title (and at most a line or two) comes before the commands.
    assert len([line for line in before.splitlines() if line.strip()]) <= 3
    run, test = readme_commands()
    assert "run" in script_of(run)
    assert "test" in script_of(test)


def test_ci_runs_the_readmes_test_command() -> None:
    _, test = readme_commands()
    wanted = script_of(test)
    ci = CI.read_text(encoding="utf-8")
    # .ci/run must work from any directory: it moves to the repository first.
    assert re.search(r'^cd "\$\(dirname "\$0"\)/\.\."', ci, re.M), ci
    executed = [
        script_of(line)
        for line in ci.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    assert wanted in executed, f".ci/run executes {executed}, the README's test command is {test!r}"
    # Extra arguments CI passes go to pytest, after the README's own.
    line = next(x for x in ci.splitlines() if wanted in x)
    assert (
        shlex.split(test)[1:] == shlex.split(line.split(wanted, 1)[1])[: len(shlex.split(test)) - 1]
    )


@pytest.mark.parametrize("which", ["run", "test"])
def test_both_commands_are_executable_scripts_bash_can_parse(which: str) -> None:
    run, test = readme_commands()
    path = REPO / script_of(run if which == "run" else test)
    assert path.is_file(), f"{path} does not exist"
    assert os.access(path, os.X_OK), f"{path} is not executable (chmod +x)"
    assert path.read_text(encoding="utf-8").startswith("#!")
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert os.access(CI, os.X_OK)


def test_the_run_command_starts_the_declared_console_script() -> None:
    from importlib.metadata import entry_points

    run, test = readme_commands()
    script = (REPO / script_of(run)).read_text(encoding="utf-8")
    assert re.search(r"^exec \.venv/bin/ishowtts\b", script, re.M), script
    (declared,) = entry_points(group="console_scripts", name="ishowtts")
    assert callable(declared.load())
    assert (Path(sys.executable).parent / "ishowtts").is_file()  # what run.sh executes
    tests = (REPO / script_of(test)).read_text(encoding="utf-8")
    assert re.search(r"\bpytest\b", tests)


def mentioned_subcommands(text: str) -> set[tuple[str, ...]]:
    """``ishowtts WORD [WORD]`` as the README's code (blocks and inline spans) writes them."""
    code = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    found: set[tuple[str, ...]] = set()
    for snippet in code:
        for match in re.finditer(r"\bishowtts((?:[ \t]+[a-z][a-z-]*){1,2})", snippet):
            found.add(tuple(match.group(1).split()))
    return found


def test_every_subcommand_the_readme_names_exists(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    mentioned = mentioned_subcommands(README.read_text(encoding="utf-8"))
    assert mentioned, "the README names no ishowtts subcommand"
    for words in sorted(mentioned):
        with pytest.raises(SystemExit) as done:
            main([*words, "--help"])
        err = capsys.readouterr().err
        assert done.value.code == 0, f"`ishowtts {' '.join(words)}` is not a command: {err}"


def test_the_declared_python_is_the_one_the_readme_and_the_doctor_name() -> None:
    import tomllib

    from bot.setup.doctor import declared_python

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    major, minor = declared_python()
    assert spec == f">={major}.{minor}"
    readme = (REPO / "README.md").read_text()
    assert f"**Python {major}.{minor} or newer**" in readme
    assert f"Python older than {major}.{minor}," in readme
    ruff = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["target-version"]
    assert ruff == f"py{major}{minor}"


# -- chat commands: the tables are derived from the declarations ------------------------------
def _table_after(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table that starts with ``header`` (cells stripped)."""
    start = text.index(header)
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


def test_the_readme_command_table_is_the_declarations() -> None:
    """``python -m bot.chat.commands.docs`` prints what the README must hold."""
    from bot.chat.commands import docs

    text = README.read_text(encoding="utf-8")
    assert docs.command_table() in text, (
        "the README's chat-command table differs from the declarations; paste the table that "
        "`.venv/bin/python -m bot.chat.commands.docs` prints"
    )
    for row in docs.config_rows():
        assert row in text, f"README: the commands.* reference should read: {row}"
    flat = " ".join(text.split())
    assert docs.key_list() in flat, f"README: should say {docs.key_list()}"


def test_docs_commands_lists_every_command_with_its_usage_and_role() -> None:
    from bot.chat.commands import COMMANDS, docs
    from bot.chat.roles import role_name

    text = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    rows = _table_after(text, "| Command | Who (default) | What it does |")
    listed = [(usage, who) for usage, who, _what in rows]
    declared = [(f"`{docs.usage(cmd)}`", role_name(cmd.role)) for cmd in COMMANDS if cmd.enabled]
    assert listed == declared
