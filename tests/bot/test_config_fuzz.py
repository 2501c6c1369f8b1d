"""Every value YAML can produce, at every key, is one clear line or a valid config (issue 12.5).

The generator writes YAML *text*, not Python values, so the loader meets what a streamer's
editor can produce: every scalar type of YAML 1.1 (base-60 numbers, timestamps, octal, hex,
``.inf``/``.nan``, integers of thousands of digits, ``!!binary``, ``!!set``, ``!!omap``,
``!!pairs``, explicit tags), quoted strings with any escape (NUL, lone surrogates, line
breaks), flow and block collections nested at random depth, anchors and aliases, repeated
keys and keys that are not text, placed at real key paths of the config models or beside
them. Whatever comes out: either a ``Config``, or a ``ConfigError`` whose every line names a
key path (or the file) and can be printed on any terminal; never another exception.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cli import main
from bot.config import Config, ConfigError, load_config
from tests.support import REPO

KEY_PATHS: list[str] = []


def _walk(model: type, prefix: str) -> None:
    from pydantic import BaseModel

    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        if info.exclude:
            continue
        path = f"{prefix}{name}"
        KEY_PATHS.append(path)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _walk(ann, path + ".")


_walk(Config, "")

SCALARS = [
    "0",
    "-0",
    "1",
    "1_000",
    "0x1F",
    "0o17",
    "017",
    "0b101",
    "08765",
    "1:30",
    "190:20:30",
    "1:30.5",
    "-1:00",
    "1e400",
    "-1e400",
    ".inf",
    "-.Inf",
    ".nan",
    "1.5",
    "1e-300",
    "3.",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "~",
    "null",
    "Null",
    "true",
    "False",
    "''",
    '""',
    "!!binary YWxpY2U=",
    "!!binary SGVsbG8gd29ybGQhIQ==",
    "!!str 12",
    "!!int '7'",
    "!!float '2'",
    "!!null ''",
    "!!bool yes",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!!timestamp 2002-12-14",
    "!!seq [1]",
    "!!map {a: 1}",
    '"\\0"',
    '"\\x01\\x7f"',
    '"\\ud800"',
    '"\\U0010FFFF"',
    '"a\\nb"',
    '"\\e[31mred"',
    '"\\u202e"',
    "'it''s'",
    "alice",
    "default",
    "auto",
    "twitch",
    "127.0.0.1",
    "0.0.0.0",
    "F5TTS_v1_Base",
    "hf://a/b/c",
    "../../etc/passwd",
    "'{name} says {text}'",
    "'{'",
    "[]",
    "{}",
    "[1, [2, [3, [4]]]]",
    "{a: {b: {c: {}}}}",
    "[a, {b: c}]",
]
HUGE = [
    "1" + "0" * 5000,
    "-" + "9" * 4400,
    "0x" + "f" * 5000,
    "1." + "5" * 6000,
    "1e" + "9" * 500,
    "'" + "a" * 50_000 + "'",
]


KEYS = ["a", "b", "1", "~", "alice", "name", "x y", '"\\ud800"', '"\\e[2Jx"', '"a\\nb"', "[1]"]


@st.composite
def yaml_value(draw: st.DrawFn, depth: int = 0) -> str:
    """The text of one YAML value, in flow style (fits on one line)."""
    choice = draw(st.integers(0, 9))
    if choice <= 4 or depth >= 4:
        return draw(st.sampled_from(SCALARS + HUGE))
    if choice == 5:
        text = draw(st.text(max_size=30))
        return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if choice == 6:
        items = draw(st.lists(yaml_value(depth + 1), max_size=4))
        return "[" + ", ".join(items) + "]"
    if choice == 7:
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=4))
        values = [draw(yaml_value(depth + 1)) for _ in keys]
        return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}"
    if choice == 8:
        return "&anchor " + draw(yaml_value(depth + 1))
    return "[&x " + draw(yaml_value(depth + 1)) + ", *x, *x]"


def nest(path: str, value: str, extra: list[tuple[str, str]]) -> str:
    """Block YAML placing ``value`` at dotted ``path``, plus sibling lines."""
    parts = path.split(".")
    lines = []
    for depth, part in enumerate(parts[:-1]):
        lines.append("  " * depth + f"{part}:")
    indent = "  " * (len(parts) - 1)
    lines.append(f"{indent}{parts[-1]}: {value}")
    for key, other in extra:
        lines.append(f"{indent}{key}: {other}")
    return "\n".join(lines) + "\n"


_LINE = re.compile(r"^  [^\s:][^:]*: (got |unknown key)")


def check_error(error: ConfigError) -> None:
    """One message a person can read: a first line, then one line per bad key."""
    text = str(error)
    text.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogates
    assert not any(ord(c) < 32 and c not in "\n" for c in text), repr(text[:200])
    lines = text.split("\n")
    assert len(text) < 20_000
    if len(lines) > 1:
        assert lines[0].endswith("has problems:"), lines[0]
        for line in lines[1:]:
            assert _LINE.match(line), line


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    path=st.sampled_from([*KEY_PATHS, "nope", "audio.nope", "engine.f5.nope"]),
    value=yaml_value(),
    siblings=st.lists(
        st.tuples(st.sampled_from(["x", "enabled", *KEYS]), yaml_value()), max_size=2
    ),
)
def test_any_yaml_value_at_any_key_is_a_config_or_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, path: str, value: str, siblings: list[tuple[str, str]]
) -> None:
    folder = tmp_path_factory.mktemp("cfg", numbered=True)
    config = folder / "config.yaml"
    config.write_text(nest(path, value, siblings), encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        check_error(exc)
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=yaml_value())
def test_any_whole_document_is_a_config_or_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, document: str
) -> None:
    config = tmp_path_factory.mktemp("doc", numbered=True) / "config.yaml"
    config.write_text(document + "\n", encoding="utf-8")
    try:
        load_config(config)
    except ConfigError as exc:
        check_error(exc)


@pytest.mark.parametrize("value", [*HUGE, "1:30", "2001-12-14", "!!binary YWxpY2U=", '"\\ud800"'])
@pytest.mark.parametrize(
    "path", ["audio.volume", "queue.max_size", "voices.default", "twitch.rewards"]
)
def test_the_hardest_values_name_their_key_and_exit_2(
    tmp_path: Path, path: str, value: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(nest(path, value, []), encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["--config", str(config), "voices"]) == 2
    message = err.getvalue()
    assert f"  {path}: got " in message
    assert "Traceback" not in message


def test_a_repeated_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("audio:\n  volume: 0.5\nqueue: {}\naudio:\n  gap_ms: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 4.*'audio' appears twice.*line 1"):
        load_config(config)


def test_base60_numbers_are_refused_not_silently_converted(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("queue:\n  max_size: 1:30\n", encoding="utf-8")  # YAML 1.1: 90
    with pytest.raises(
        ConfigError, match=r"queue\.max_size: got 1:30 \(YAML reads this as a base-60"
    ):
        load_config(config)


def test_a_file_too_large_to_be_a_config_is_refused_before_parsing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# " + "x" * (2 * 1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(config)


def test_the_real_command_prints_one_line_per_key_for_a_file_of_hard_values(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "audio:\n  volume: " + HUGE[0] + "\n  gap_ms: 1:30\n"
        "voices:\n  default: 2001-12-14\n"
        "queue:\n  max_size: !!binary YWxpY2U=\n"
        'twitch:\n  channel: "\\ud800"\n',
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    for key in (
        "audio.volume",
        "audio.gap_ms",
        "voices.default",
        "queue.max_size",
        "twitch.channel",
    ):
        assert f"  {key}: got " in out.stderr
