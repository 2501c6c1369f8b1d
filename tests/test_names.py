"""Names are validated over the whole string (issue 12, item 6).

Python's ``re.match`` with ``$`` accepts a trailing newline ("alice\\n" matches ``^[a-z]+$``),
so a name with a newline could create a voice folder, a command or a login that looks like
another. Every name rule anchors with ``\\Z`` (or uses ``fullmatch``); these tests prove it
through the real entry points, for every kind of trailing or embedded whitespace, and a
source scan keeps new patterns from reintroducing ``$``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bot.chat.commands import CommandError, parse_login
from bot.config import ConfigError, parse_config
from bot.setup.voice_import import VoiceImportError, check_new_voice
from engine.config import VoicesConfig
from engine.voices import VoiceLibrary
from tests.support import REPO
from tests.support.f5 import write_alice

SPACES = ["\n", "\r\n", "\r", " ", "\t", "\x0b", "\x0c", "\u00a0", "\u2028"]


@pytest.mark.parametrize("tail", SPACES)
@pytest.mark.parametrize(
    ("section", "make"),
    [
        ("voices.default", lambda n: {"voices": {"default": n}}),
        ("commands.skip.name", lambda n: {"commands": {"skip": {"name": n}}}),
        ("commands.skip.aliases", lambda n: {"commands": {"skip": {"aliases": [n]}}}),
        ("engine.espeak.voices", lambda n: {"engine": {"espeak": {"voices": {n: {}}}}}),
        ("engine.espeak.voice", lambda n: {"engine": {"espeak": {"voice": n}}}),
        ("twitch.channel", lambda n: {"twitch": {"channel": n}}),
        ("commands.prefix", lambda n: {"commands": {"prefix": "!" + n}}),
    ],
)
def test_config_names_with_whitespace_are_refused_with_their_key(
    tmp_path: Path, section: str, make: object, tail: str
) -> None:
    assert callable(make)
    with pytest.raises(ConfigError) as info:
        parse_config(make("alice" + tail), tmp_path)
    assert section.split(".")[0] in str(info.value)


@pytest.mark.parametrize("tail", SPACES)
def test_voice_import_refuses_a_name_with_whitespace(tmp_path: Path, tail: str) -> None:
    voices = VoicesConfig.model_validate({"dir": str(tmp_path / "voices")})
    with pytest.raises(VoiceImportError, match="not a valid voice name"):
        check_new_voice(voices, "alice" + tail)
    assert not (tmp_path / "voices").exists() or not any((tmp_path / "voices").iterdir())


@pytest.mark.parametrize("tail", SPACES)
def test_a_folder_whose_name_ends_in_whitespace_is_not_a_voice(tmp_path: Path, tail: str) -> None:
    write_alice(tmp_path / "voices")
    weird = tmp_path / "voices" / ("bob" + tail)
    try:
        weird.mkdir()
    except OSError:
        pytest.skip("the filesystem refuses that name")
    library = VoiceLibrary(VoicesConfig.model_validate({"dir": str(tmp_path / "voices")}))
    specs = library.scan()
    assert specs["alice"].problem is None
    odd = [spec for name, spec in specs.items() if name.startswith("bob")]
    assert odd, "the folder is listed, so the streamer learns why it is ignored"
    assert all(spec.problem and "not a valid voice name" in spec.problem for spec in odd)
    assert library.lookup("bob" + tail) is None
    assert library.lookup("bob") is None


@pytest.mark.parametrize("tail", ["\n", "\x0b", "\u2028", "\x00"])
def test_logins_with_embedded_control_or_line_breaks_are_refused(tail: str) -> None:
    with pytest.raises(CommandError):
        parse_login("@bob" + tail + "x")
    assert parse_login("@Bob,") == "bob"


def _anchored_with_dollar(tree: ast.AST) -> list[int]:
    """Lines where a regex literal passed to re.compile/match/fullmatch/search ends in ``$``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in {"compile", "match"}:
            continue
        first = node.args[0]
        text = first.value if isinstance(first, ast.Constant) else None
        if isinstance(text, str) and text.startswith("^") and text.endswith("$"):
            found.append(node.lineno)
    return found


def test_no_name_pattern_in_the_code_is_anchored_with_dollar() -> None:
    offenders = []
    for root in ("bot", "engine"):
        for path in (REPO / root).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            offenders += [f"{path.relative_to(REPO)}:{n}" for n in _anchored_with_dollar(tree)]
    assert offenders == [], f"use \\Z (or fullmatch) instead of $: {offenders}"


def test_the_cli_refuses_a_voice_name_with_a_newline(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"not used: the name is refused first")
    out = subprocess.run(
        [sys.executable, "-m", "bot", "voices", "add", "narrator\n", str(clip), "--text", "hi"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "not a valid voice name" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "voices").exists()
