"""The chat pipeline through the real App: triggers, template, voices, filters, cooldown,
queue policies under a burst, history, and state restored after a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.chat.commands import CommandStatus
from bot.chat.pipeline import Action, Trigger
from bot.core.messages import Role
from tests.support.audio import PulseServer
from tests.support.chat_harness import (
    MOD,
    STREAMER,
    VIEWER,
    Bot,
    make_config,
    person,
    start_bot,
)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    b = await start_bot(make_config(tmp_path))
    yield b
    await b.close()


# -- triggers ----------------------------------------------------------------------------------
async def test_every_message_mode_speaks_plain_chat(bot: Bot) -> None:
    decision, _ = await bot.send("hello everyone")
    assert (decision.action, decision.trigger) == (Action.QUEUED, Trigger.MESSAGE)
    assert decision.item is not None
    assert decision.item.text == "viewer says hello everyone"
    await bot.idle()
    assert bot.finished() == [("viewer", "viewer says hello everyone", "played")]


async def test_command_only_mode(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, triggers={"messages": False}))
    try:
        decision, _ = await bot.send("just chatting")
        assert (decision.action, decision.reason) == (Action.DROPPED, "no trigger")
        decision, _ = await bot.send("!tts read this please")
        assert (decision.action, decision.trigger) == (Action.QUEUED, Trigger.COMMAND)
        assert decision.item is not None
        assert decision.item.text == "viewer says read this please"
    finally:
        await bot.close()


async def test_without_the_command_trigger_tts_is_an_unknown_command(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, triggers={"command": False}))
    try:
        decision, replies = await bot.send("!tts read this")
        assert decision.action is Action.COMMAND
        assert decision.command is not None
        assert decision.command.status is CommandStatus.UNKNOWN
        assert replies == []
    finally:
        await bot.close()


async def test_rewards_and_cheers_only(tmp_path: Path) -> None:
    # The source decides what qualifies (twitch.rewards, twitch.min_bits); the pipeline only
    # decides which kinds of message are spoken at all.
    cfg = make_config(tmp_path, triggers={"messages": False, "command": False})
    bot = await start_bot(cfg)
    try:
        decision, _ = await bot.send("plain")
        assert decision.reason == "no trigger"
        decision, _ = await bot.send("right reward", reward="read my message")
        assert decision.trigger is Trigger.REWARD
        decision, _ = await bot.send("big cheer", person("rich"), bits=500)
        assert decision.trigger is Trigger.CHEER
        assert decision.item is not None
        assert decision.item.priority == 1
    finally:
        await bot.close()


async def test_cheers_can_be_switched_off(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, triggers={"messages": False, "command": False, "cheers": False})
    bot = await start_bot(cfg)
    try:
        decision, _ = await bot.send("big cheer", person("rich"), bits=500)
        assert decision.reason == "no trigger"
        decision, _ = await bot.send("reward", person("d"), reward="Any")
        assert decision.trigger is Trigger.REWARD
    finally:
        await bot.close()


async def test_triggers_combine_and_paid_messages_go_first(bot: Bot) -> None:
    bot.app.speaker.pause()
    await bot.send("free one", person("a"))
    await bot.send("free two", person("b"))
    await bot.send("paid", person("c"), bits=100)
    await bot.send("reward", person("d"), reward="Any")
    assert [it.text for it in bot.app.queue.snapshot()] == [
        "c says paid",
        "d says reward",
        "a says free one",
        "b says free two",
    ]


async def test_min_role_for_speech(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, triggers={"min_role": "subscriber"}))
    try:
        decision, _ = await bot.send("hi")
        assert decision.reason == "role"
        decision, _ = await bot.send("hi", person("sub", Role.SUBSCRIBER))
        assert decision.action is Action.QUEUED
    finally:
        await bot.close()


# -- the "NAME says" template --------------------------------------------------------------------
async def test_names_are_said_once_per_run_of_the_same_speaker(bot: Bot) -> None:
    bot.app.speaker.pause()
    alice, bob = person("alice_99", display="Alice_99"), person("bob", display="BobTheBuilder")
    for text, who in [("one", alice), ("two", alice), ("three", bob), ("four", alice)]:
        await bot.send(text, who)
    assert [it.text for it in bot.app.queue.snapshot()] == [
        "Alice 99 says one",
        "two",
        "Bob The Builder says three",
        "Alice 99 says four",
    ]
    bot.app.speaker.resume()
    await bot.idle()
    # Once played, the next message of the last speaker still skips the name.
    decision, _ = await bot.send("five", alice)
    assert decision.item is not None
    assert decision.item.text == "five"


async def test_the_name_comes_back_after_a_while(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, tts={"name_again_after_s": 60}))
    try:
        bot.app.speaker.pause()
        d1, _ = await bot.send("first", received_at=1000.0)
        bot.app.chat._clock = lambda: 1030.0
        d2, _ = await bot.send("second", received_at=1030.0)
        bot.app.chat._clock = lambda: 1100.0
        d3, _ = await bot.send("third", received_at=1100.0)
        texts = [d.item.text for d in (d1, d2, d3) if d.item is not None]
        assert texts == ["viewer says first", "second", "viewer says third"]
    finally:
        await bot.close()


async def test_template_is_configurable_and_can_be_switched_off(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, tts={"template": "{name}: {text}"}))
    try:
        decision, _ = await bot.send("hey {text} {name}")
        assert decision.item is not None
        assert decision.item.text == "viewer: hey {text} {name}"
    finally:
        await bot.close()
    bot = await start_bot(make_config(tmp_path / "b", tts={"say_names": False}))
    try:
        decision, _ = await bot.send("no name")
        assert decision.item is not None
        assert decision.item.text == "no name"
    finally:
        await bot.close()


async def test_the_streamer_is_not_announced_unless_asked(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path))
    try:
        decision, _ = await bot.send("my own line", STREAMER)
        assert decision.item is not None
        assert decision.item.text == "my own line"
    finally:
        await bot.close()
    bot = await start_bot(make_config(tmp_path / "b", tts={"announce_broadcaster": True}))
    try:
        decision, _ = await bot.send("my own line", STREAMER)
        assert decision.item is not None
        assert decision.item.text == "streamer says my own line"
    finally:
        await bot.close()


# -- voices ----------------------------------------------------------------------------------------
async def test_voice_choice_order(bot: Bot) -> None:
    decision, _ = await bot.send("default voice")
    assert decision.item is not None
    assert decision.item.voice == "default"
    await bot.send("!voice alice")
    decision, _ = await bot.send("chosen voice")
    assert decision.item is not None
    assert decision.item.voice == "alice"
    decision, _ = await bot.send("source voice", voice="Narrator")
    assert decision.item is not None
    assert decision.item.voice == "narrator"
    await bot.idle()
    assert ("viewer says default voice", "default") in bot.engine.calls
    assert ("chosen voice", "alice") in bot.engine.calls


# -- filters, mutes, ignores, on the pipeline --------------------------------------------------
async def test_filters_apply_in_the_pipeline(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        filters={"banned_words": {"words": ["darn"], "action": "drop"}},
        tts={"say_names": False},
    )
    bot = await start_bot(cfg)
    try:
        decision, _ = await bot.send("look https://example.com sooooo cool 😂")
        assert decision.item is not None
        assert decision.item.text == "look link sooo cool"
        decision, _ = await bot.send("darn it")
        assert decision.reason == "filter:banned_words"
        decision, _ = await bot.send("🔥🔥🔥")
        assert decision.reason == "filter:nothing_speakable"
    finally:
        await bot.close()


async def test_other_bots_and_their_commands_are_never_read(bot: Bot) -> None:
    decision, _ = await bot.send("Follow the stream!", person("nightbot"))
    assert (decision.action, decision.reason) == (Action.IGNORED, "ignored user")
    decision, replies = await bot.send("!voice alice", person("streamelements", Role.MODERATOR))
    assert decision.reason == "ignored user"
    assert replies == []
    decision, _ = await bot.send("!discord")  # another bot's command (and unknown to us)
    assert decision.action is Action.COMMAND
    assert decision.command is not None
    assert decision.command.status is CommandStatus.UNKNOWN


async def test_another_prefix_is_ignored(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, filters={"ignore": {"prefixes": ["!", "?"]}}))
    try:
        decision, _ = await bot.send("?songrequest never gonna")
        assert (decision.action, decision.reason) == (Action.IGNORED, "another bot's command")
    finally:
        await bot.close()


async def test_duplicate_message_ids_are_spoken_once(bot: Bot) -> None:
    first, _ = await bot.send("once", mid="same-id")
    again, _ = await bot.send("once", mid="same-id")
    assert first.action is Action.QUEUED
    assert (again.action, again.reason) == (Action.IGNORED, "duplicate")


async def test_cooldown_per_user(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, filters={"cooldown": {"seconds": 30}}))
    now = [500.0]
    bot.app.chat.cooldown._clock = lambda: now[0]
    try:
        assert (await bot.send("one"))[0].action is Action.QUEUED
        assert (await bot.send("two"))[0].reason == "cooldown"
        assert (await bot.send("other user", person("other")))[0].action is Action.QUEUED
        assert (await bot.send("paid", bits=100))[0].action is Action.QUEUED
        assert (await bot.send("mods skip it", MOD))[0].action is Action.QUEUED
        assert (await bot.send("mods skip it again", MOD))[0].action is Action.QUEUED
        # A dropped message does not start a cooldown.
        assert (await bot.send("😂", person("third")))[0].action is Action.DROPPED
        assert (await bot.send("third speaks", person("third")))[0].action is Action.QUEUED
        now[0] += 31
        assert (await bot.send("three"))[0].action is Action.QUEUED
    finally:
        await bot.close()


async def test_odd_messages_are_handled_without_raising(bot: Bot) -> None:
    from bot.core.messages import ChatMessage, ChatUser, Platform

    weird = ChatUser(id="", login="", display_name="\x00\u202e", platform=Platform.HTTP)
    texts = ["", "\x00", "!", "!voice " + "a" * 10_000, "!mute @ 99999999999d", "\ud800 hi"]
    for i, text in enumerate(texts):
        # The pipeline itself (not App.on_message's safety net) must cope.
        await bot.app.chat.handle(ChatMessage(id=f"w{i}", user=weird, text=text, source="t"))
    decision, _ = await bot.send("still fine")
    assert decision.action is Action.QUEUED


# -- the queue under a burst ---------------------------------------------------------------------
async def test_a_raid_burst_respects_bounds_per_user_limit_and_paid_priority(
    tmp_path: Path,
) -> None:
    cfg = make_config(
        tmp_path,
        queue={"max_size": 8, "per_user_limit": 2, "overflow": "drop_newest"},
        tts={"say_names": False},
    )
    bot = await start_bot(cfg)
    try:
        bot.app.speaker.pause()
        decisions = []
        for i in range(40):
            who = person(f"raider{i % 10}")
            decisions.append((await bot.send(f"raid message {i}", who))[0])
        paid = (await bot.send("paid during the raid", person("whale"), bits=1000))[0]
        queued = [d for d in decisions if d.action is Action.QUEUED]
        assert len(queued) == 8
        assert all(d.reason == "queue" for d in decisions if d.action is not Action.QUEUED)
        # drop_newest keeps the first eight arrivals, then the paid one evicts the newest free.
        assert paid.action is Action.QUEUED
        snapshot = [it.text for it in bot.app.queue.snapshot()]
        assert snapshot == ["paid during the raid"] + [f"raid message {i}" for i in range(7)]
        for login in {it.message.user.login for it in bot.app.queue.snapshot()}:
            assert bot.app.queue.pending_for(f"id-{login}") <= 2
        bot.app.speaker.resume()
        await bot.idle(30)
        assert bot.started() == snapshot
        dropped = [t for _l, t, o in bot.finished() if o == "dropped"]
        assert "raid message 7" in dropped
    finally:
        await bot.close()


async def test_drop_oldest_keeps_the_latest_chat(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        queue={"max_size": 3, "per_user_limit": 10, "overflow": "drop_oldest"},
        tts={"say_names": False},
    )
    bot = await start_bot(cfg)
    try:
        bot.app.speaker.pause()
        for i in range(6):
            await bot.send(f"message {i}", person(f"u{i}"))
        assert [it.text for it in bot.app.queue.snapshot()] == [
            "message 3",
            "message 4",
            "message 5",
        ]
    finally:
        await bot.close()


async def test_per_user_limit_stops_one_spammer_not_others(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, queue={"per_user_limit": 2}, tts={"say_names": False})
    bot = await start_bot(cfg)
    try:
        bot.app.speaker.pause()
        results = [(await bot.send(f"spam {i}"))[0].action for i in range(5)]
        assert results == [Action.QUEUED] * 2 + [Action.DROPPED] * 3
        assert (await bot.send("someone else", person("other")))[0].action is Action.QUEUED
    finally:
        await bot.close()


async def test_control_actions_beat_a_full_queue(tmp_path: Path) -> None:
    """Skip acts on the playing message at once, however much is queued behind it."""
    bot = await start_bot(make_config(tmp_path, tts={"say_names": False}))
    try:
        bot.player.hold.clear()
        await bot.send("the long playing message")
        for i in range(20):
            await bot.send(f"waiting {i}", person(f"w{i}"))
        await bot.wait_for(lambda: bool(bot.started()))
        await bot.send("!skip", MOD)
        await bot.wait_for(lambda: len(bot.finished()) >= 1)
        assert bot.finished()[0] == ("viewer", "the long playing message", "skipped")
        await bot.send("!clear", MOD)
        bot.player.hold.set()
        await bot.idle()
        played = [t for _l, t, o in bot.finished() if o == "played"]
        assert len(played) <= 1  # at most the one already started when clear came
    finally:
        await bot.close()


# -- history and restart -------------------------------------------------------------------------
async def test_history_records_what_happened(bot: Bot) -> None:
    await bot.send("for the record")
    await bot.idle()
    rows = await bot.store.history(10)
    assert [(r.login, r.text, r.outcome, r.voice) for r in rows] == [
        ("viewer", "viewer says for the record", "played", "default")
    ]


async def test_state_is_restored_after_a_restart(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    bot = await start_bot(cfg)
    try:
        for text, who in [
            ("!voice Narrator", VIEWER),
            ("!volume 35", MOD),
            ("!mute @pest 1h", MOD),
            ("!setvoice @newbie alice", MOD),
            ("!pause", MOD),
            ("!ttsoff", MOD),
        ]:
            decision, replies = await bot.send(text, who)
            assert decision.command is not None
            assert decision.command.status is CommandStatus.OK, replies
    finally:
        await bot.close()

    bot = await start_bot(cfg)
    try:
        assert bot.player.volume == pytest.approx(0.35)
        assert bot.app.speaker.paused
        assert not bot.app.chat.enabled
        assert bot.store.voice_of(VIEWER) == "Narrator"
        assert bot.store.mute_of(person("pest")) is not None
        await bot.send("!ttson", MOD)
        await bot.send("!resume", MOD)
        decision, _ = await bot.send("hello again")
        assert decision.item is not None
        assert decision.item.voice == "narrator"
        decision, _ = await bot.send("first words", person("newbie"))
        assert decision.item is not None
        assert decision.item.voice == "alice"
        assert (await bot.send("let me talk", person("pest")))[0].reason == "muted"
    finally:
        await bot.close()


async def test_a_broken_database_does_not_stop_the_bot(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "ishowtts.db").write_bytes(b"garbage" * 1000)
    bot = await start_bot(cfg)
    try:
        assert bot.store.path == ":memory:"
        _, replies = await bot.send("!voice alice")
        assert replies == ["your voice is now alice"]
        assert (await bot.send("still talking"))[0].action is Action.QUEUED
    finally:
        await bot.close()
    assert (state / "ishowtts.db").read_bytes() == b"garbage" * 1000


# -- the whole App on the real tiny F5 engine and the real player ------------------------------
@pytest.mark.slow
@pytest.mark.audio
async def test_voice_commands_and_speech_on_the_real_tiny_f5_engine(
    tmp_path: Path, tiny_f5: dict, pulse_server: PulseServer
) -> None:
    """Real f5-tts code (tiny weights), real engine thread, real player on the test sink."""
    import asyncio

    import yaml

    from bot.app import App
    from bot.config import load_config
    from engine.base import EngineState
    from tests.support.f5 import write_tiny_f5_config

    path = write_tiny_f5_config(tmp_path, tiny_f5, seed=3)
    data = yaml.safe_load(path.read_text())
    data["audio"] = {"device": pulse_server.device_name, "gap_ms": 0}
    data["storage"] = {"dir": "state"}
    data["web"] = {"enabled": False}
    path.write_text(yaml.safe_dump(data))
    app = App(load_config(path))
    events: list[tuple[str, str, str, str | None]] = []
    app.speaker.add_listener(
        lambda ev: events.append(
            (ev.kind.value, ev.item.text, ev.item.voice, ev.outcome.value if ev.outcome else None)
        )
    )
    harness = Bot(app, None, None)  # type: ignore[arg-type]
    await app.start()
    try:
        assert await asyncio.wait_for(app.worker.wait_ready(), 180) is EngineState.READY
        _, replies = await harness.send("!voices")
        assert replies == ["voices (!voice NAME): alice, default"]
        _, replies = await harness.send("!voice Alice")
        assert replies == ["your voice is now alice"]
        decision, _ = await harness.send("hi chat")
        assert decision.item is not None
        assert decision.item.voice == "alice"
        await asyncio.wait_for(app.speaker.wait_idle(), 180)
    finally:
        await app.close()
    assert events == [
        ("queued", "viewer says hi chat", "alice", None),
        ("started", "viewer says hi chat", "alice", None),
        ("finished", "viewer says hi chat", "alice", "played"),
    ]


async def test_end_of_input_while_paused_does_not_hang(tmp_path: Path) -> None:
    """A pause saved by an earlier session must not make a scripted run wait forever."""
    import asyncio
    import os

    from bot.sources.terminal import TerminalSource

    cfg = make_config(tmp_path)
    bot = await start_bot(cfg)
    await bot.send("!pause", MOD)
    await bot.close()

    bot = await start_bot(cfg)
    try:
        assert bot.app.speaker.paused
        read_fd, write_fd = os.pipe()
        os.write(write_fd, b"this stays queued\n")
        os.close(write_fd)
        status = await asyncio.wait_for(bot.app.run(TerminalSource(fd=read_fd)), 30)
        os.close(read_fd)
        assert status == 0
        assert [it.text for it in bot.app.queue.snapshot()] == ["this stays queued"]
        assert bot.started() == []
    finally:
        await bot.close()
