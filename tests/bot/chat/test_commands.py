"""Chat commands through the real App: configuration, permission matrix, each command's effect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.chat.commands import BY_KEY, COMMAND_KEYS, COMMANDS, CommandStatus
from bot.chat.pipeline import Action
from bot.config import ConfigError, parse_config
from bot.core.messages import ChatUser, Role
from bot.state.store import Target
from tests.support.chat_harness import (
    MOD,
    STREAMER,
    VIEWER,
    Bot,
    make_config,
    person,
    start_bot,
)

TARGET = person("target")


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    b = await start_bot(make_config(tmp_path))
    yield b
    await b.close()


# -- configuration -------------------------------------------------------------------------------
def test_duplicate_command_names_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used by both"):
        parse_config({"commands": {"mute": {"name": "skip"}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"commands\.voice\.name"):
        parse_config({"commands": {"voice": {"name": "no spaces"}}}, tmp_path)


async def test_prefix_names_aliases_and_roles_are_configurable(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        commands={
            "prefix": "?",
            "skip": {"name": "next", "aliases": ["n"], "min_role": "vip"},
            "voice": {"aliases": ["v"]},
            "clear": {"enabled": False},
        },
    )
    bot = await start_bot(cfg)
    try:
        vip = person("vippy", Role.VIP)
        decision, replies = await bot.send("?n", vip)
        assert decision.command is not None
        assert (decision.command.key, decision.command.status) == ("skip", CommandStatus.OK)
        assert replies == ["nothing is playing"]
        decision, _ = await bot.send("?next", VIEWER)
        assert decision.command is not None
        assert decision.command.status is CommandStatus.DENIED
        decision, replies = await bot.send("?v alice", VIEWER)
        assert replies == ["your voice is now alice"]
        # The old name and a disabled command are unknown; unknown commands are swallowed.
        for text in ("?skip", "?clear"):
            decision, replies = await bot.send(text, STREAMER)
            assert decision.action is Action.COMMAND
            assert decision.command is not None
            assert decision.command.status is CommandStatus.UNKNOWN
            assert replies == []
        # The "!" prefix is plain text now (and not another bot's prefix by config).
        assert bot.app.chat.commands.lookup("next") == "skip"
    finally:
        await bot.close()


# -- the permission matrix ---------------------------------------------------------------------
async def _prepare(bot: Bot, key: str) -> None:
    """Put the bot in a state where the command has a visible effect."""
    if key == "unmute":
        await bot.store.mute(Target.of(TARGET), until=None, by="x")
    elif key == "resume":
        await bot.app.chat.set_paused(True)
    elif key == "ttson":
        await bot.app.chat.set_enabled(False)
    elif key == "skip":
        bot.player.hold.clear()
        await bot.send("a message long enough to play", TARGET)
        await bot.wait_for(lambda: bot.app.speaker.current is not None and bool(bot.started()))
    elif key == "unsay":
        await bot.app.chat.set_pronunciation("gg", "good game", by="x")
    elif key == "clear":
        bot.app.speaker.pause()
        await bot.send("one queued message", TARGET)
        await bot.send("another queued message", person("other"))


def _spoken_or_queued(bot: Bot) -> list[str]:
    texts = [it.text for it in bot.app.queue.snapshot()]
    if bot.app.speaker.current is not None:
        texts.append(bot.app.speaker.current.text)
    return texts + [text for _k, _l, text, _o in bot.events]


Effect = Callable[[Bot, ChatUser], bool]
EFFECTS: dict[str, tuple[str, Effect]] = {
    "voice": ("!voice alice", lambda b, u: b.store.voice_of(u) == "alice"),
    "voices": ("!voices", lambda b, u: False),  # answers only: checked through the replies
    "tts": ("!tts hello there", lambda b, u: "hello there" in " ".join(_spoken_or_queued(b))),
    "mute": ("!mute @target 10m", lambda b, u: b.store.mute_of(TARGET) is not None),
    "unmute": ("!unmute @target", lambda b, u: b.store.mute_of(TARGET) is None),
    "skip": (
        "!skip",
        lambda b, u: (
            ("target", "target says a message long enough to play", "skipped") in b.finished()
        ),
    ),
    "clear": ("!clear", lambda b, u: len(b.app.queue) == 0),
    "pause": ("!pause", lambda b, u: b.app.speaker.paused),
    "resume": ("!resume", lambda b, u: not b.app.speaker.paused),
    "volume": ("!volume 30", lambda b, u: b.player.volume == pytest.approx(0.3)),
    "ttsoff": ("!ttsoff", lambda b, u: not b.app.chat.enabled),
    "ttson": ("!ttson", lambda b, u: b.app.chat.enabled),
    "setvoice": ("!setvoice @target Narrator", lambda b, u: b.store.voice_of(TARGET) == "Narrator"),
    "say": (
        "!say GG as good game",
        lambda b, u: b.app.chat.pronouncer.words.get("gg") == "good game",
    ),
    "unsay": ("!unsay GG", lambda b, u: "gg" not in b.app.chat.pronouncer.words),
}
ON = {"commands": {cmd.key: {"enabled": True} for cmd in COMMANDS if not cmd.enabled}}
"""The matrix switches on the commands that are off by default."""


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.name.lower())
@pytest.mark.parametrize("key", COMMAND_KEYS)
async def test_permission_matrix(tmp_path: Path, key: str, role: Role) -> None:
    """Every role against every command.

    Allowed: the command acts and answers. Not allowed: nothing changes and nothing is said.
    Either way the command line itself is never spoken.
    """
    bot = await start_bot(make_config(tmp_path, **ON))
    try:
        await _prepare(bot, key)
        issuer = person(f"user_{role.name.lower()}", role)
        text, effect = EFFECTS[key]
        before = effect(bot, issuer)
        calls_before = len(bot.engine.calls)
        decision, replies = await bot.send(text, issuer)
        assert decision.command is not None
        assert decision.command.key == key
        if role >= BY_KEY[key].role:
            assert decision.command.status is CommandStatus.OK
            if key == "voices":
                assert replies
                assert "alice" in replies[0]
            else:
                assert not before
                await bot.wait_for(lambda: effect(bot, issuer))
            if key != "tts":
                assert replies
        else:
            assert decision.command.status is CommandStatus.DENIED
            assert replies == []
            assert effect(bot, issuer) == before
        if key == "tts" and role >= BY_KEY[key].role:
            assert decision.action is Action.QUEUED
            assert decision.item is not None
            assert decision.item.text.endswith("hello there")
            assert "!tts" not in decision.item.text
        else:
            assert decision.action is Action.COMMAND
        assert not any("!" in spoken for spoken, _v in bot.engine.calls[calls_before:])
    finally:
        await bot.close()


async def test_denied_commands_can_be_explained(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, commands={"reply_denied": True}))
    try:
        _, replies = await bot.send("!skip", VIEWER)
        assert replies == ["!skip is for moderators and up"]
    finally:
        await bot.close()


# -- voices ---------------------------------------------------------------------------------------
async def test_voice_is_case_insensitive_and_suggests(bot: Bot) -> None:
    _, replies = await bot.send("!voice")
    assert replies == ["your voice is default"]
    _, replies = await bot.send("!voice NARRATOR")
    assert replies == ["your voice is now Narrator"]
    assert bot.store.voice_of(VIEWER) == "Narrator"
    _, replies = await bot.send("!voice narator")
    assert replies == [
        "there is no voice called narator. Did you mean Narrator? !voices lists them"
    ]
    assert bot.store.voice_of(VIEWER) == "Narrator"
    _, replies = await bot.send("!voice zzzzzz")
    assert replies == ["there is no voice called zzzzzz. !voices lists them"]
    _, replies = await bot.send("!voice reset")
    assert replies == ["your voice is default again"]
    assert bot.store.voice_of(VIEWER) is None


async def test_voice_names_never_become_paths_and_broken_voices_are_hidden(bot: Bot) -> None:
    for name in ("../../etc/passwd", "/tmp/x", "a\\b", "ali ce"):
        decision, replies = await bot.send(f"!voice {name}")
        assert decision.command is not None
        assert decision.command.status is CommandStatus.INVALID
        assert bot.store.voice_of(VIEWER) is None
        assert replies
    _, replies = await bot.send("!voice ghost")  # has a problem in the engine's list
    assert replies[0].startswith("there is no voice called ghost")


async def test_a_voice_added_while_running_is_found(bot: Bot) -> None:
    _, replies = await bot.send("!voices")
    assert "newcomer" not in " ".join(replies)
    bot.engine.voice_names.append("newcomer")
    _, replies = await bot.send("!voice newcomer")
    assert replies == ["your voice is now newcomer"]


async def test_voices_are_listed_within_the_chat_limit(tmp_path: Path) -> None:
    from tests.support.chat_harness import ToneEngine

    names = ["default", *(f"character_voice_{i:03d}" for i in range(120))]
    bot = await start_bot(make_config(tmp_path), ToneEngine(names))
    try:
        _, replies = await bot.send("!voices")
        assert len(replies) > 2
        assert all(len(r) <= 500 for r in replies)
        listed = [n for r in replies for n in r.split(": ", 1)[1].split(", ")]
        assert sorted(listed) == sorted(names)
    finally:
        await bot.close()


async def test_setvoice_for_someone_who_never_chatted(bot: Bot) -> None:
    _, replies = await bot.send("!setvoice @NewFriend pirate_2", MOD)
    assert replies == ["newfriend's voice is now pirate_2"]
    decision, _ = await bot.send("hello", person("newfriend"))
    assert decision.item is not None
    assert decision.item.voice == "pirate_2"


# -- moderation ------------------------------------------------------------------------------------
async def test_mute_for_a_duration_purges_and_expires(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path))
    clock = [1_000_000.0]
    bot.store._clock = lambda: clock[0]
    try:
        bot.app.speaker.pause()
        await bot.send("queued before the mute", TARGET)
        await bot.send("someone else", VIEWER)
        _, replies = await bot.send("!mute @Target 10m", MOD)
        assert replies == ["muted target for 10 minutes (1 message removed)"]
        assert [it.message.user.login for it in bot.app.queue.snapshot()] == ["viewer"]
        decision, _ = await bot.send("am I muted", TARGET)
        assert (decision.action, decision.reason) == (Action.DROPPED, "muted")
        # Commands still work for a muted user.
        _, replies = await bot.send("!voice", TARGET)
        assert replies == ["your voice is default"]
        clock[0] += 601
        decision, _ = await bot.send("back again", TARGET)
        assert decision.action is Action.QUEUED
    finally:
        await bot.close()


async def test_mute_someone_who_has_not_chatted_yet(bot: Bot) -> None:
    _, replies = await bot.send("!mute @lurker", MOD)
    assert replies == ["muted lurker until unmuted"]
    decision, _ = await bot.send("first words", person("lurker", uid="999"))
    assert decision.reason == "muted"
    _, replies = await bot.send("!unmute @lurker", MOD)
    assert replies == ["unmuted lurker"]
    decision, _ = await bot.send("free now", person("lurker", uid="999"))
    assert decision.action is Action.QUEUED
    _, replies = await bot.send("!unmute @lurker", MOD)
    assert replies == ["lurker was not muted"]


async def test_mute_stops_the_playing_message(bot: Bot) -> None:
    bot.player.hold.clear()
    await bot.send("this one is playing now", TARGET)
    await bot.wait_for(lambda: bool(bot.started()))
    await bot.send("!mute @target", MOD)
    await bot.wait_for(lambda: bool(bot.finished()))
    assert bot.finished() == [("target", "target says this one is playing now", "removed")]


async def test_moderators_cannot_mute_each_other_but_the_streamer_can(bot: Bot) -> None:
    other_mod = person("othermod", Role.MODERATOR)
    await bot.send("hi", other_mod)
    await bot.idle()
    _, replies = await bot.send("!mute @othermod", MOD)
    assert replies == ["you can't mute othermod: they are a moderator"]
    assert bot.store.mute_of(other_mod) is None
    _, replies = await bot.send("!mute @othermod 30s", STREAMER)
    assert replies == ["muted othermod for 30 seconds"]


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("!mute", "usage: !mute @user [30s|10m|1h|2d]"),
        ("!mute @x soon", "durations look like 30s, 10m, 1h or 2d"),
        ("!mute ../../x", "that is not a user name (write @name)"),
        ("!setvoice @x", "usage: !setvoice @user NAME"),
        ("!volume loud", "volume is a number from 0 to 100 (or +10 / -10)"),
        ("!volume 101", "volume is a number from 0 to 100"),
        ("!volume nan", "volume is a number from 0 to 100 (or +10 / -10)"),
        ("!tts", "usage: !tts TEXT"),
    ],
)
async def test_bad_arguments_get_a_clear_reply(bot: Bot, text: str, reply: str) -> None:
    decision, replies = await bot.send(text, MOD)
    assert decision.command is not None
    assert decision.command.status is CommandStatus.INVALID
    assert replies == [reply]
    assert bot.store.mutes() == []


async def test_volume_absolute_relative_and_query(bot: Bot) -> None:
    _, replies = await bot.send("!volume", MOD)
    assert replies == ["volume is 100%"]
    await bot.send("!volume 50%", MOD)
    assert bot.player.volume == pytest.approx(0.5)
    _, replies = await bot.send("!volume -20", MOD)
    assert replies == ["volume 30%"]
    _, replies = await bot.send("!volume +90", MOD)
    assert replies == ["volume 100%"]
    assert bot.store.settings.volume == pytest.approx(1.0)


async def test_ttsoff_silences_everything_and_ttson_restores(bot: Bot) -> None:
    bot.player.hold.clear()
    await bot.send("playing when tts goes off", VIEWER)
    await bot.send("queued when tts goes off", TARGET)
    await bot.wait_for(lambda: bool(bot.started()))
    await bot.send("!ttsoff", MOD)
    await bot.wait_for(lambda: len(bot.finished()) == 2)
    assert {o for _l, _t, o in bot.finished()} == {"removed"}
    decision, _ = await bot.send("nobody hears this", VIEWER)
    assert decision.reason == "tts off"
    _, replies = await bot.send("cheer100 paid", VIEWER, bits=100)
    assert replies == ["TTS is off right now"]
    await bot.send("!ttson", MOD)
    bot.player.hold.set()
    decision, _ = await bot.send("heard again", VIEWER)
    assert decision.action is Action.QUEUED


async def test_pause_holds_the_queue_and_resume_plays_it(bot: Bot) -> None:
    await bot.send("!pause", MOD)
    await bot.send("waiting one", VIEWER)
    await bot.send("waiting two", TARGET)
    assert bot.started() == []
    assert len(bot.app.queue) == 2
    await bot.send("!resume", MOD)
    await bot.idle()
    assert bot.started() == ["viewer says waiting one", "target says waiting two"]


async def test_clear_leaves_the_playing_message(bot: Bot) -> None:
    bot.player.hold.clear()
    await bot.send("keeps playing", VIEWER)
    await bot.wait_for(lambda: bool(bot.started()))
    for i in range(5):
        await bot.send(f"queued number {i}", person(f"u{i}"))
    _, replies = await bot.send("!clear", MOD)
    assert replies == ["cleared 5 queued messages"]
    assert bot.app.speaker.current is not None
    bot.player.hold.set()
    await bot.idle()
    assert bot.finished()[-1] == ("viewer", "viewer says keeps playing", "played")


async def test_acknowledgements_can_be_switched_off(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, commands={"acknowledge": False}))
    try:
        _, replies = await bot.send("!pause", MOD)
        assert replies == []
        assert bot.app.speaker.paused
        # Questions are still answered.
        _, replies = await bot.send("!voice", VIEWER)
        assert replies == ["your voice is default"]
    finally:
        await bot.close()


async def test_a_failing_reply_does_not_break_the_command(bot: Bot) -> None:
    from bot.core.messages import ChatMessage

    async def broken(_text: str) -> None:
        raise ConnectionError("chat went away")

    msg = ChatMessage(id="x1", user=MOD, text="!pause", source="test", reply=broken)
    decision = await bot.app.chat.handle(msg)
    assert decision.command is not None
    assert decision.command.status is CommandStatus.OK
    assert bot.app.speaker.paused


async def test_a_failed_save_is_reported_not_acknowledged(bot: Bot) -> None:
    import sqlite3

    from bot.state.settings import database_path

    conn = sqlite3.connect(database_path(bot.app.cfg.storage))
    conn.execute(
        "CREATE TRIGGER no_users BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    conn.commit()
    conn.close()
    decision, replies = await bot.send("!voice alice", VIEWER)
    assert decision.command is not None
    assert decision.command.status is CommandStatus.ERROR
    assert replies == ["!voice failed: could not save the change"]
    assert bot.store.voice_of(VIEWER) is None


async def test_voices_has_a_channel_cooldown_that_moderators_skip(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, commands={"voice": {"cooldown_s": 5}}))
    now = [100.0]
    bot.app.chat.commands._clock = lambda: now[0]
    try:
        decision, replies = await bot.send("!voices", VIEWER)
        assert replies
        decision, replies = await bot.send("!voices", person("another"))
        assert decision.command is not None
        assert (decision.command.status, replies) == (CommandStatus.COOLDOWN, [])
        _, replies = await bot.send("!voices", MOD)
        assert replies
        now[0] += 31
        _, replies = await bot.send("!voices", person("another"))
        assert replies
        # A configured cooldown on another command.
        assert (await bot.send("!voice", VIEWER))[1] == ["your voice is default"]
        decision, _ = await bot.send("!voice alice", person("x"))
        assert decision.command is not None
        assert decision.command.status is CommandStatus.COOLDOWN
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{name} says", "must contain {text}"),
        ("{text.upper}", "may only use {name} and {text}"),
        ("{text!r}", "may only use {name} and {text}"),
        ("{user}: {text}", "may only use {name} and {text}"),
        ("{text", "not a valid template"),
    ],
)
def test_bad_templates_are_config_errors(tmp_path: Path, template: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"tts\.template") as err:
        parse_config({"tts": {"template": template}}, tmp_path)
    assert problem in str(err.value)
