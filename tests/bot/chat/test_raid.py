"""Raid mode and the longest speaking time (issue 18.5), through the real App.

Raid mode is driven by the real speech queue: the speaker is paused so a burst stays queued,
each step is announced in the chat once, and resuming drains the queue, which ends raid mode
(announced once too). The fade at the longest speaking time is checked on the samples the
player received.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest

from bot.chat.pipeline import Action, Decision
from bot.chat.raid import RaidMode
from bot.chat.settings import RaidConfig, RaidStep
from bot.config import ConfigError, parse_config
from bot.core.messages import ChatMessage, ChatUser
from bot.speech.speaker import CUT_FADE_S
from tests.support.chat_harness import RATE, Bot, make_config, person, start_bot

STEPS = [
    {"queue": 3, "say_names": False},
    {"queue": 5, "max_chars": 20, "cooldown_s": 60},
    {"queue": 7, "paid_only": True},
]
NAMES = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jay", "kim", "lou"]
WORDS = " ".join(a + b + c for a, b, c in itertools.product("bcdfg", "aeiou", "klmnp"))
_ids = itertools.count()


class Chat:
    """The chat as the bot sees it: every line it sends back, in order, with a wait."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    async def _reply(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def send(self, text: str, user: ChatUser, *, bits: int = 0) -> Decision:
        message = ChatMessage(
            id=f"raid-{next(_ids)}",
            user=user,
            text=text,
            source="test",
            bits=bits,
            reply=self._reply,
        )
        return await self.bot.app.chat.handle(message)

    async def wait_lines(self, count: int) -> list[str]:
        async def watch() -> None:
            while len(self.lines) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(watch(), 5)
        await self.bot.app.chat.settled()
        return self.lines


def test_steps_add_up_and_only_a_drained_queue_ends_them() -> None:
    mode = RaidMode(RaidConfig(enabled=True, steps=tuple(RaidStep(**s) for s in STEPS)))
    assert mode.observe(2) is None
    first = mode.observe(3)
    assert first is not None
    assert (first.level, first.say_names) == (1, False)
    second = mode.observe(6)
    assert second is not None
    assert (second.level, second.say_names, second.max_chars, second.cooldown_s) == (
        2,
        False,
        20,
        60,
    )
    assert mode.observe(4) is None
    assert mode.rules.level == 2
    third = mode.observe(30)
    assert third is not None
    assert third.paid_only
    assert third.max_chars == 20
    assert mode.drained() is not None
    assert mode.rules.level == 0
    assert mode.drained() is None
    assert RaidMode(RaidConfig(steps=tuple(RaidStep(**s) for s in STEPS))).observe(99) is None


async def test_each_step_is_announced_once_and_a_drained_queue_ends_raid_mode(
    tmp_path: Path,
) -> None:
    bot = await start_bot(make_config(tmp_path, raid={"enabled": True, "steps": STEPS}))
    chat = Chat(bot)
    users = [person(name) for name in NAMES[:10]]
    try:
        bot.app.speaker.pause()
        texts = []
        for n in range(5):
            decision = await chat.send(f"hello number {n} from the raid", users[n])
            assert decision.item is not None
            texts.append(decision.item.text)
        assert texts[:3] == [f"{NAMES[n]} says hello number {n} from the raid" for n in range(3)]
        assert texts[3:] == ["hello number 3 from the raid", "hello number 4 from the raid"]
        # Step 2: messages are cut, and one person waits 60 s between messages.
        decision = await chat.send("a message much longer than twenty characters", users[5])
        assert decision.item is not None
        assert decision.item.text == "a message much"
        decision = await chat.send("me again", users[5])
        assert (decision.action, decision.reason) == (Action.DROPPED, "cooldown")
        decision = await chat.send("short one", users[6])
        assert decision.item is not None
        assert decision.item.text == "short one"
        # Step 3: only paid messages.
        decision = await chat.send("free message", users[7])
        assert (decision.action, decision.reason) == (Action.DROPPED, "raid: paid only")
        decision = await chat.send("a cheer", users[8], bits=100)
        assert decision.action is Action.QUEUED
        assert await chat.wait_lines(3) == [
            "raid mode 1 of 3: names are not read",
            "raid mode 2 of 3: names are not read, messages are cut to 20 characters,"
            " 60 s between messages of one person",
            "raid mode 3 of 3: names are not read, messages are cut to 20 characters,"
            " 60 s between messages of one person, only cheers and rewards are read",
        ]
        bot.app.speaker.resume()
        await bot.idle()
        lines = await chat.wait_lines(4)
        assert lines[3:] == ["raid mode off: reading chat as usual again"]
        assert bot.app.chat.raid.rules.level == 0
        decision = await chat.send("back to normal reading for everyone here", users[9])
        assert decision.item is not None
        assert decision.item.text == "jay says back to normal reading for everyone here"
        await bot.idle()
        await bot.app.chat.settled()
        assert len(chat.lines) == 4  # nothing announced twice
    finally:
        await bot.close()


async def test_raid_mode_can_stay_quiet_in_chat(tmp_path: Path) -> None:
    raid = {"enabled": True, "announce": False, "steps": [{"queue": 2, "say_names": False}]}
    bot = await start_bot(make_config(tmp_path, raid=raid))
    chat = Chat(bot)
    try:
        bot.app.speaker.pause()
        texts = []
        for n, name in enumerate(NAMES[:4]):
            decision = await chat.send(f"message {n}", person(name))
            assert decision.item is not None
            texts.append(decision.item.text)
        assert texts == ["ann says message 0", "bob says message 1", "message 2", "message 3"]
        bot.app.speaker.resume()
        await bot.idle()
        await bot.app.chat.settled()
        assert bot.app.chat.raid.rules.level == 0
        assert chat.lines == []
    finally:
        await bot.close()


async def test_without_raid_mode_a_long_queue_changes_nothing(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path))
    chat = Chat(bot)
    try:
        bot.app.speaker.pause()
        for n, name in enumerate(NAMES):
            decision = await chat.send(f"message {n}", person(name))
            assert decision.item is not None
            assert decision.item.text == f"{name} says message {n}"
        await bot.app.chat.settled()
        assert chat.lines == []
    finally:
        await bot.close()


# -- the longest speaking time -------------------------------------------------------------------
async def test_a_message_past_the_longest_speaking_time_is_cut_with_a_fade(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tts={"say_names": False, "max_speaking_s": 0.5})
    bot = await start_bot(cfg)
    try:
        text = WORDS[:299]  # 75 different words: 0.74 s of tone
        decision, _ = await bot.send(text)
        assert decision.item is not None
        await bot.send("short", person("other"))  # 10 ms: not touched
        await bot.idle()
        long_clip, short_clip = bot.player.audio
        limit, fade = int(0.5 * RATE), int(CUT_FADE_S * RATE)
        assert len(long_clip) == limit
        assert np.all(long_clip[: limit - fade] == np.float32(0.1))  # full level until the fade
        ramp = 0.1 * (limit - np.arange(limit - fade, limit)) / fade
        assert np.allclose(long_clip[limit - fade :], ramp, atol=1e-6)
        assert long_clip[-1] < 0.001
        assert np.all(short_clip == np.float32(0.1))
        assert len(short_clip) == RATE // 100
        assert decision.item.job is not None
        assert decision.item.job.cancelled
        history = await bot.store.history()
        by_text = {entry.text.strip(): (entry.outcome, entry.detail) for entry in history}
        assert by_text[text] == ("played", "cut after 0.5 s")
        assert by_text["short"] == ("played", "")
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"raid": {"steps": [{"queue": 10, "paid_only": True}, {"queue": 5, "max_chars": 50}]}},
            ["raid.steps", "longer queue"],
        ),
        ({"raid": {"steps": [{"queue": 0, "paid_only": True}]}}, ["raid.steps[0].queue"]),
        ({"raid": {"steps": [{"queue": 5}]}}, ["raid.steps[0]", "must change something"]),
        ({"raid": {"enabled": True, "steps": []}}, ["raid.steps", "at least one step"]),
        ({"raid": {"steps": [{"queue": 5, "names": False}]}}, ["raid.steps[0].names", "unknown"]),
        ({"raid": {"steps": [{"queue": 5, "max_chars": 2}]}}, ["raid.steps[0].max_chars"]),
        ({"raid": {"steps": [{"queue": 5, "cooldown_s": -1}]}}, ["raid.steps[0].cooldown_s"]),
        ({"tts": {"max_speaking_s": 0}}, ["tts.max_speaking_s", "greater than 0"]),
        ({"tts": {"max_speaking_s": "long"}}, ["tts.max_speaking_s"]),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, data: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, tmp_path)
    for text in expected:
        assert text in str(info.value)
