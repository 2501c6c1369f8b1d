"""Voices for new viewers (``tts.new_viewers``, issue 18.2) and ``!voice random``.

Through the real App and the real store on disk: an assigned voice is saved like ``!voice``
and is still there after a restart; a stable one is derived from the person's platform and
id with a hash that does not change between processes (Python's ``hash()`` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.chat.voices import stable_voice, voice_pool
from bot.config import Config, ConfigError, parse_config
from bot.core.messages import Platform
from tests.support.chat_harness import VIEWER, Bot, make_config, person, start_bot

ENGINE_VOICES = ["default", "alice", "Narrator", "pirate_2"]


async def start(cfg: Config) -> Bot:
    bot = await start_bot(cfg)
    await bot.app.voices.names()  # asked for when the engine is ready; wait for the answer
    return bot


def new_viewers(tmp_path: Path, mode: str, pool: list[str] | None = None) -> Config:
    section: dict[str, object] = {"mode": mode}
    if pool is not None:
        section["pool"] = pool
    return make_config(tmp_path, tts={"say_names": False, "new_viewers": section})


# -- the derivation ----------------------------------------------------------------------------
def test_a_stable_voice_is_the_same_in_every_process() -> None:
    # Pinned: a change here would give every regular a new voice.
    assert stable_voice(["d", "c", "b", "a"], "twitch:12345") == "a"
    assert stable_voice(ENGINE_VOICES, "twitch:id-viewer") == "Narrator"
    code = (
        "from bot.chat.voices import stable_voice;"
        f"print(stable_voice({ENGINE_VOICES!r}, 'twitch:id-viewer'))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "Narrator"
    # Every voice gets its share, and the order of the list does not matter.
    picks = {stable_voice(ENGINE_VOICES, f"twitch:{n}") for n in range(200)}
    assert picks == set(ENGINE_VOICES)
    assert stable_voice(list(reversed(ENGINE_VOICES)), "twitch:7") == stable_voice(
        ENGINE_VOICES, "twitch:7"
    )
    assert stable_voice([], "twitch:7") is None


def test_the_pool_keeps_the_engines_names_and_leaves_out_unknown_ones() -> None:
    assert voice_pool(ENGINE_VOICES, []) == ENGINE_VOICES
    assert voice_pool(ENGINE_VOICES, ["NARRATOR", "nobody", "alice"]) == ["Narrator", "alice"]


# -- end to end ------------------------------------------------------------------------------------
async def test_by_default_nobody_gets_a_voice_of_their_own(tmp_path: Path) -> None:
    bot = await start(make_config(tmp_path))
    try:
        await bot.send("hello")
        await bot.idle()
        await bot.app.chat.settled()
        assert bot.engine.calls == [("viewer says hello", "default")]
        assert bot.store.voice_of(VIEWER) is None
    finally:
        await bot.close()


async def test_stable_voices_follow_the_user_id_and_are_saved(tmp_path: Path) -> None:
    bot = await start(new_viewers(tmp_path, "stable"))
    expected = stable_voice(ENGINE_VOICES, f"{Platform.TWITCH.value}:{VIEWER.id}")
    try:
        await bot.send("first message")
        await bot.send("second message")
        await bot.idle()
        await bot.app.chat.settled()
        assert expected is not None
        assert bot.engine.calls == [
            ("first message", expected.lower()),
            ("second message", expected.lower()),
        ]
        assert bot.store.voice_of(VIEWER) == expected
    finally:
        await bot.close()
    # Another stream with a fresh database: the same person gets the same voice.
    fresh = tmp_path / "other-stream"
    fresh.mkdir()
    bot = await start(new_viewers(fresh, "stable"))
    try:
        await bot.send("next stream")
        await bot.idle()
        assert bot.engine.calls == [("next stream", expected.lower())]
    finally:
        await bot.close()


async def test_random_voices_come_from_the_pool_and_survive_a_restart(tmp_path: Path) -> None:
    pool = ["alice", "NARRATOR"]
    bot = await start(new_viewers(tmp_path, "random", pool))
    viewers = [person(f"viewer{n}") for n in range(12)]
    try:
        for viewer in viewers:
            await bot.send(f"hi from {viewer.login}", viewer)
        await bot.idle()
        await bot.app.chat.settled()
        given = {v.login: bot.store.voice_of(v) for v in viewers}
        assert set(given.values()) <= {"alice", "Narrator"}
        assert [voice.lower() for _t, voice in bot.engine.calls] == [
            str(given[v.login]).lower() for v in viewers
        ]
    finally:
        await bot.close()
    bot = await start(new_viewers(tmp_path, "random", pool))
    try:
        for viewer in viewers:
            await bot.send("again", viewer)
        await bot.idle()
        assert [voice for _t, voice in bot.engine.calls] == [
            str(given[v.login]).lower() for v in viewers
        ]
    finally:
        await bot.close()


async def test_a_chosen_voice_or_a_sources_voice_is_never_replaced(tmp_path: Path) -> None:
    bot = await start(new_viewers(tmp_path, "random", ["alice"]))
    chooser, visitor = person("chooser"), person("visitor")
    try:
        # Choosing the default on purpose is saved by name, so it is kept.
        _, replies = await bot.send("!voice default", chooser)
        assert replies == ["your voice is now default"]
        assert bot.store.voice_of(chooser) == "default"
        await bot.send("my own voice", chooser)
        # A voice the source asked for is used as it is, and nothing is assigned for it.
        await bot.send("through the panel", visitor, voice="pirate_2")
        await bot.idle()
        await bot.app.chat.settled()
        assert bot.engine.calls == [("my own voice", "default"), ("through the panel", "pirate_2")]
        assert bot.store.voice_of(visitor) is None
    finally:
        await bot.close()


async def test_a_pool_of_unknown_voices_falls_back_to_the_default(tmp_path: Path) -> None:
    bot = await start(new_viewers(tmp_path, "random", ["nobody"]))
    try:
        await bot.send("hello")
        await bot.idle()
        await bot.app.chat.settled()
        assert bot.engine.calls == [("hello", "default")]
        assert bot.store.voice_of(VIEWER) is None  # nothing saved that could stick
    finally:
        await bot.close()


async def test_voice_random_picks_from_the_pool_and_saves_it(tmp_path: Path) -> None:
    bot = await start(new_viewers(tmp_path, "default", ["alice", "pirate_2"]))
    try:
        for _ in range(6):
            _, replies = await bot.send("!voice random")
            (reply,) = replies
            voice = reply.removeprefix("your voice is now ")
            assert voice in {"alice", "pirate_2"}
            assert bot.store.voice_of(VIEWER) == voice
    finally:
        await bot.close()
    # Without a pool, any voice; a voice really called "random" is chosen by name.
    engine_voices = [*ENGINE_VOICES, "Random"]
    from tests.support.chat_harness import ToneEngine

    bot = await start_bot(make_config(tmp_path / "b"), ToneEngine(engine_voices))
    try:
        _, replies = await bot.send("!voice random")
        assert replies == ["your voice is now Random"]
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"mode": "sometimes"}, ["tts.new_viewers.mode", "'default', 'random' or 'stable'"]),
        ({"pool": ["../etc"]}, ["tts.new_viewers.pool", "not a voice name"]),
        ({"pool": "alice"}, ["tts.new_viewers.pool"]),
        ({"voices": ["alice"]}, ["tts.new_viewers.voices", "unknown key"]),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, section: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tts": {"new_viewers": section}}, tmp_path)
    for text in expected:
        assert text in str(info.value)
