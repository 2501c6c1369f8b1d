"""Each chat command is one declaration: its usage, config keys, docs and panel wording follow.

Declarations (bot/chat/commands/builtin.py) are the one place a command is described; these
tests check what is derived from them: usage replies under configured names, the generated
``commands.<key>`` models, argument parsing from the handler's signature, refusals of
malformed declarations, and the control panel answering in the chat commands' words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.chat.arguments import CommandError, parse_command
from bot.chat.commands import BY_KEY, COMMAND_KEYS, COMMANDS, CommandsConfig, CommandStatus
from bot.chat.commands.core import Component, Context, Login, Text, command
from bot.config import ConfigError, parse_config
from bot.core.messages import Role
from tests.support.chat_harness import MOD, make_config, person, start_bot


def test_usage_is_derived_from_the_arguments() -> None:
    assert {c.key: c.usage(f"!{c.key}") for c in COMMANDS} == {
        "voice": "!voice [NAME]",
        "voices": "!voices",
        "tts": "!tts TEXT",
        "mute": "!mute @user [30s|10m|1h|2d]",
        "unmute": "!unmute @user",
        "skip": "!skip",
        "clear": "!clear",
        "pause": "!pause",
        "resume": "!resume",
        "volume": "!volume [0-100]",
        "ttsoff": "!ttsoff",
        "ttson": "!ttson",
        "setvoice": "!setvoice @user NAME",
        "say": "!say WORD as SPOKEN",
        "unsay": "!unsay WORD",
    }


def test_every_declared_command_has_its_config_section_and_nothing_else() -> None:
    section = {"enabled", "prefix", "acknowledge", "reply_denied", "reply_max_chars"}
    assert set(CommandsConfig.model_fields) == section | set(COMMAND_KEYS)
    assert list(CommandsConfig.model_fields)[len(section) :] == list(COMMAND_KEYS)
    cfg = parse_config({}, Path.cwd())
    for key in COMMAND_KEYS:
        spec = cfg.commands.spec(key)
        assert (spec.name, spec.aliases, spec.min_role, spec.cooldown_s) == (None, (), None, None)
        assert spec.enabled is BY_KEY[key].enabled


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"commands": {"shout": {}}}, "commands.shout: unknown key"),
        ({"commands": {"mute": {"min_role": "admin"}}}, "commands.mute.min_role"),
        ({"commands": {"mute": {"cooldown_s": -1}}}, "commands.mute.cooldown_s"),
        ({"commands": {"skip": {"name": "Two Words"}}}, "must be 1-25 letters"),
        ({"commands": {"skip": {"aliases": ["ok", "no way"]}}}, "alias 'no way' must be"),
        ({"commands": {"mute": {"name": "skip"}}}, "'skip' is used by both commands.mute and skip"),
        ({"commands": {"voice": {"colour": "red"}}}, "commands.voice.colour: unknown key"),
    ],
)
def test_bad_command_config_names_the_key(tmp_path: Path, data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path)
    assert expected in str(err.value)


def test_a_disabled_command_frees_its_name(tmp_path: Path) -> None:
    cfg = parse_config(
        {"commands": {"skip": {"enabled": False}, "clear": {"aliases": ["skip"]}}}, tmp_path
    )
    assert cfg.commands.spec("clear").aliases == ("skip",)


async def test_usage_replies_use_the_configured_name_and_prefix(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        commands={"prefix": "?", "mute": {"name": "silence"}, "setvoice": {"aliases": ["sv"]}},
    )
    bot = await start_bot(cfg)
    try:
        decision, replies = await bot.send("?silence", MOD)
        assert decision.command is not None
        assert decision.command.status is CommandStatus.INVALID
        assert replies == ["usage: ?silence @user [30s|10m|1h|2d]"]
        # An alias answers with the command's name, not the alias typed.
        _, replies = await bot.send("?sv @someone", MOD)
        assert replies == ["usage: ?setvoice @user NAME"]
        # Replies that name another command use its configured name too.
        _, replies = await bot.send("?pause", MOD)
        assert replies == ["paused; ?resume continues"]
    finally:
        await bot.close()


# -- the declaration machinery ------------------------------------------------------------------
class _Echo(Component):
    @command("echo", role=Role.EVERYONE, summary="says it back")
    async def echo(self, ctx: Context, login: Login, text: Text) -> None:
        await ctx.reply(f"{login}: {text}")


def test_arguments_come_from_the_signature() -> None:
    (echo,) = _Echo.commands
    assert echo.owner is _Echo
    assert echo.usage("!echo") == "!echo @user TEXT"
    line = parse_command("!echo @Bob,   hello   there  ", "!")
    assert line is not None
    assert echo.parse(line) == ["bob", "hello   there"]
    only_user = parse_command("!echo @bob", "!")
    assert only_user is not None
    assert echo.parse(only_user) is None  # a required argument is missing: usage
    bad = parse_command("!echo ../etc hi", "!")
    assert bad is not None
    with pytest.raises(CommandError, match="not a user name"):
        echo.parse(bad)


def test_malformed_declarations_are_refused_when_the_class_is_written() -> None:
    with pytest.raises(TypeError, match="annotate word"):

        class _Untyped(Component):
            @command("x", role=Role.EVERYONE, summary="")
            async def x(self, ctx: Context, word: str) -> None: ...

    with pytest.raises(TypeError, match="nothing can follow"):

        class _AfterRest(Component):
            @command("y", role=Role.EVERYONE, summary="")
            async def y(self, ctx: Context, text: Text, login: Login) -> None: ...

    with pytest.raises(TypeError, match="coroutine"):

        class _NotAsync(Component):
            @command("z", role=Role.EVERYONE, summary="")
            def z(self, ctx: Context) -> None: ...  # type: ignore[arg-type]


# -- the panel says what chat says ------------------------------------------------------------
async def test_the_panel_answers_in_the_chat_commands_words(tmp_path: Path) -> None:
    """The same action from chat and from the panel, in the same state, gives the same line."""
    bot = await start_bot(make_config(tmp_path, web={"enabled": True, "port": 0}))
    web = bot.app.web
    assert web is not None
    assert web.token is not None
    headers = {"Authorization": f"Bearer {web.token}"}

    async with aiohttp.ClientSession(headers=headers) as http:

        async def panel(path: str, body: dict[str, Any] | None = None) -> str:
            async with http.post(web.base_url + path, json=body or {}) as res:
                assert res.status == 200, await res.text()
                message = (await res.json())["message"]
                assert isinstance(message, str)
                return message

        async def chat(text: str) -> str:
            _, replies = await bot.send(text, MOD)
            assert len(replies) == 1, replies
            return replies[0]

        async def mute_pest() -> None:
            await chat("!mute @pest")

        async def nothing() -> None:
            pass

        try:
            # (chat line, panel call, body, what puts the bot in the same state before each)
            pairs: list[tuple[str, str, dict[str, Any] | None, Any]] = [
                ("!skip", "/api/skip", None, nothing),
                ("!pause", "/api/pause", None, nothing),
                ("!resume", "/api/resume", None, nothing),
                ("!volume 40", "/api/volume", {"volume": 40}, nothing),
                ("!ttsoff", "/api/tts", {"enabled": False}, nothing),
                ("!ttson", "/api/tts", {"enabled": True}, nothing),
                ("!mute @pest 10m", "/api/mute", {"user": "pest", "duration": "10m"}, nothing),
                ("!unmute @pest", "/api/unmute", {"user": "pest"}, mute_pest),
                ("!unmute @pest", "/api/unmute", {"user": "pest"}, nothing),  # not muted
            ]
            for text, path, body, prepare in pairs:
                await prepare()
                said = await chat(text)
                await prepare()
                assert await panel(path, body) == said, text
            # With something to remove: both remove the same way and say so the same way.
            bot.app.speaker.pause()
            for i in range(2):
                await bot.send(f"queued {i}", person(f"q{i}"))
            cleared = await chat("!clear")
            assert cleared == "cleared 2 queued messages"
            for i in range(2):
                await bot.send(f"queued again {i}", person(f"q{i}"))
            assert await panel("/api/clear") == cleared
            for who in ("chat", "panel"):
                await bot.send(f"pest speaks via {who}", person("pest"))
                if who == "chat":
                    said = await chat("!mute @pest 1h")
                else:
                    assert await panel("/api/mute", {"user": "pest", "duration": "1h"}) == said
                    assert said == "muted pest for 1 hour (1 message removed)"
                await chat("!unmute @pest")
        finally:
            await bot.close()
