"""The argument parsers shared by chat commands and the control panel (bot.chat.arguments)."""

from __future__ import annotations

import pytest

from bot.chat.arguments import (
    CommandError,
    VolumeChange,
    check_voice_name,
    format_duration,
    parse_command,
    parse_duration,
    parse_login,
    parse_volume,
    split_for_chat,
)


# -- command lines -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "name", "args", "rest"),
    [
        ("!voice alice", "voice", ("alice",), "alice"),
        ("  !VOICE   Alice  ", "voice", ("Alice",), "Alice"),
        ("!tts hello   there world", "tts", ("hello", "there", "world"), "hello   there world"),
        ("!skip", "skip", (), ""),
        ("!!!", "!!", (), ""),
    ],
)
def test_parse_command(text: str, name: str, args: tuple[str, ...], rest: str) -> None:
    parsed = parse_command(text, "!")
    assert parsed is not None
    assert (parsed.name, parsed.args, parsed.rest) == (name, args, rest)


@pytest.mark.parametrize("text", ["hello", "! voice", "!", "", "   ", "voice !x"])
def test_not_commands(text: str) -> None:
    assert parse_command(text, "!") is None


def test_other_prefixes() -> None:
    parsed = parse_command("??skip now", "??")
    assert parsed is not None
    assert parsed.name == "skip"
    assert parse_command("!skip", "??") is None


@pytest.mark.parametrize(
    ("arg", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("90", 90),
        ("1.5h", 5400),
        ("10MIN", 600),
        ("perm", None),
        ("forever", None),
    ],
)
def test_parse_duration(arg: str, seconds: float | None) -> None:
    assert parse_duration(arg) == seconds


@pytest.mark.parametrize("arg", ["soon", "10x", "-5m", "", "m", "1h-", "400d", "1e9", "inf"])
def test_bad_durations(arg: str) -> None:
    with pytest.raises(CommandError):
        parse_duration(arg)


def test_format_duration() -> None:
    assert format_duration(600) == "10 minutes"
    assert format_duration(5400) == "1 hour 30 minutes"
    assert format_duration(90061) == "1 day 1 hour"
    assert format_duration(1) == "1 second"


def test_parse_login() -> None:
    assert parse_login("@SomeUser,") == "someuser"
    assert parse_login("bob_42") == "bob_42"
    for bad in ("@", "../etc", "a b", "x" * 60, "<script>"):
        with pytest.raises(CommandError):
            parse_login(bad)


def test_split_for_chat_keeps_every_item_within_the_limit() -> None:
    names = [f"voice_{i:03d}" for i in range(200)]
    lines = split_for_chat("voices: ", names, 500)
    assert len(lines) > 1
    assert all(len(line) <= 500 for line in lines)
    assert lines[0].startswith("voices: ")
    seen = [n for line in lines for n in line.split(": ", 1)[1].split(", ")]
    assert seen == names


@pytest.mark.parametrize(
    ("arg", "change", "result_from_50"),
    [
        ("40", VolumeChange(40, relative=False), 40),
        ("40%", VolumeChange(40, relative=False), 40),
        ("0", VolumeChange(0, relative=False), 0),
        ("100", VolumeChange(100, relative=False), 100),
        ("+10", VolumeChange(10, relative=True), 60),
        ("-20%", VolumeChange(-20, relative=True), 30),
        ("+500", VolumeChange(500, relative=True), 100),
        ("-500", VolumeChange(-500, relative=True), 0),
    ],
)
def test_parse_volume(arg: str, change: VolumeChange, result_from_50: float) -> None:
    assert parse_volume(arg) == change
    assert change.applied_to(50) == result_from_50


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("loud", "volume is a number from 0 to 100 (or +10 / -10)"),
        ("nan", "volume is a number from 0 to 100 (or +10 / -10)"),
        ("inf", "volume is a number from 0 to 100 (or +10 / -10)"),
        ("101", "volume is a number from 0 to 100"),
        ("1e9", "volume is a number from 0 to 100"),
    ],
)
def test_bad_volumes(arg: str, message: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_volume(arg)
    assert str(err.value) == message


def test_voice_names_are_checked_before_any_lookup() -> None:
    assert check_voice_name("pirate_2") == "pirate_2"
    for bad in ("../x", "/tmp/x", "a\\b", "a" * 33, "alice\n", ""):
        with pytest.raises(CommandError, match="voice names are letters"):
            check_voice_name(bad)
