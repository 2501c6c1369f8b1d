"""Identities across sources (issue 12.1): people of different platforms never mix.

Two layers, both on the real SQLite file:

* the store alone, with users shaped exactly as each source makes them (Twitch numeric ids,
  YouTube channel ids, ``http:NAME`` from the ingest, ``local`` from the terminal and the
  panel), over every pair of platforms;
* the real App: Twitch- and YouTube-shaped chat through the pipeline, the terminal's own
  ``local_user()``, and the HTTP ingest through the real aiohttp server and a real client.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bot.chat.pipeline import Action
from bot.core.messages import ChatUser, Platform, Role
from bot.sources.terminal import local_user
from bot.state.store import MIGRATIONS, HistoryEntry, Store, Target
from tests.support.chat_harness import Bot, make_config, start_bot


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def shaped(platform: Platform, login: str, n: int = 1) -> ChatUser:
    """A user as that platform's source builds it (id format included)."""
    ids = {
        Platform.TWITCH: f"{41000 + n}",
        Platform.YOUTUBE: f"UC{n:022d}",
        Platform.HTTP: f"http:{login}",
        Platform.TERMINAL: "local",
        Platform.PANEL: "local",
    }
    return ChatUser(id=ids[platform], login=login, display_name=login, platform=platform)


async def opened(path: Path, clock: Clock | None = None) -> Store:
    store = Store(path, clock=clock or Clock())
    await store.open()
    return store


def rows(path: Path) -> list[tuple[str, str | None, str, int]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT platform, user_id, login, muted FROM users").fetchall()
    return sorted(found, key=lambda r: (r[0], r[1] or "", r[2]))


PAIRS = list(itertools.permutations(list(Platform), 2))


# -- the store ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("home", "other"), PAIRS, ids=[f"{a.value}-{b.value}" for a, b in PAIRS])
async def test_a_login_only_entry_binds_only_on_its_own_platform(
    tmp_path: Path, home: Platform, other: Platform
) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.mute(Target(home, "troll"), until=None, by="mod")
    await store.set_voice(Target(home, "troll"), "pirate")
    intruder = shaped(other, "troll", 2)
    # The same login on another platform is someone else: not muted, default voice ...
    assert store.person(intruder).mute is None
    assert store.person(intruder).voice is None
    # ... and chatting there does not bind, move or copy the entry.
    store.seen(intruder)
    await store.flush()
    assert rows(path) == [(home.value, None, "troll", 1)]
    # The person of the entry's own platform gets it, and binds it, when they first appear.
    owner = shaped(home, "troll", 1)
    assert store.person(owner).muted
    assert store.person(owner).voice == "pirate"
    store.seen(owner)
    await store.flush()
    assert rows(path) == [(home.value, owner.id, "troll", 1)]
    await store.close()

    store = await opened(path)  # and all of it after a restart
    assert store.person(owner).muted
    assert store.person(intruder) == store.person(shaped(other, "nobody", 3))
    assert not store.person(intruder).muted
    await store.close()


async def test_an_ingest_message_under_a_twitch_login_never_changes_the_twitch_row(
    tmp_path: Path,
) -> None:
    """The escaped case: a Twitch mute by login, then one HTTP message under that login."""
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.mute(Target(Platform.TWITCH, "troll"), until=None, by="mod")
    ingest = shaped(Platform.HTTP, "troll")
    store.seen(ingest)  # before the fix this bound the Twitch row to "http:troll"
    await store.flush()
    assert rows(path) == [("twitch", None, "troll", 1)]
    twitch = shaped(Platform.TWITCH, "troll", 7)
    assert store.person(twitch).muted
    assert not store.person(ingest).muted
    # A mute given right after, by login on Twitch, lands on the Twitch row again.
    record = store.find_login(Platform.TWITCH, "troll")
    assert record is not None
    assert record.user_id is None
    await store.mute(Target(Platform.TWITCH, "troll"), until=2_000_000.0, by="mod2")
    assert rows(path) == [("twitch", None, "troll", 1)]
    assert store.find_login(Platform.HTTP, "troll") is None
    await store.close()


async def test_the_same_id_on_two_platforms_is_two_people(tmp_path: Path) -> None:
    store = await opened(tmp_path / "state.db")
    twitch = ChatUser(id="12345", login="ann", display_name="Ann", platform=Platform.TWITCH)
    youtube = ChatUser(id="12345", login="ann", display_name="Ann", platform=Platform.YOUTUBE)
    await store.set_voice(Target.of(twitch), "alice")
    await store.mute(Target.of(youtube), until=None, by="mod")
    assert store.person(twitch).voice == "alice"
    assert not store.person(twitch).muted
    assert store.person(youtube).voice is None
    assert store.person(youtube).muted
    await store.unmute(Target.of(twitch))  # lifts nothing of the YouTube person's
    assert store.person(youtube).muted
    await store.close()


@pytest.mark.parametrize("platform", list(Platform))
async def test_renames_still_follow_the_id(tmp_path: Path, platform: Platform) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    user = shaped(platform, "pest")
    await store.mute(Target.of(user), until=None, by="mod")
    renamed = replace(user, login="pest_2", display_name="pest_2")
    assert store.person(renamed).muted
    store.seen(renamed)
    await store.flush()
    record = store.find_login(platform, "pest_2")
    assert record is not None
    assert record.user_id == user.id
    # Whoever takes the old login later is not muted (their id differs) ...
    if platform not in (Platform.HTTP, Platform.TERMINAL, Platform.PANEL):
        newcomer = shaped(platform, "pest", 99)
        assert not store.person(newcomer).muted
    # ... nor is anyone of another platform under either name.
    for other in set(Platform) - {platform}:
        assert not store.person(shaped(other, "pest_2", 5)).muted
    await store.close()
    store = await opened(path)
    assert store.person(renamed).muted
    await store.close()


async def test_a_schema_1_database_is_migrated_by_the_shape_of_its_ids(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # what ishowtts with schema 1 wrote
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.executemany(
            "INSERT INTO users (user_id, login, voice, muted, muted_by, muted_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 1.0)",
            [
                ("12345", "tw", "alice", 0, None, None),  # a Twitch user id
                ("local", "streamer", "pirate", 0, None, None),  # the terminal (and panel)
                ("http:bob", "bob", "narrator", 0, None, None),  # an ingest name
                (None, "later", None, 1, "mod", 1.0),  # by login, before they chatted
                ("http:troll", "troll", None, 1, "mod", 1.0),  # a capture by the old bug
            ],
        )
        conn.execute(
            "INSERT INTO history (at, user_id, login, text, outcome) VALUES"
            " (1, '12345', 'tw', 'a', 'played'), (2, 'http:bob', 'bob', 'b', 'played'),"
            " (3, 'local', 'streamer', 'c', 'played'), (4, NULL, 'x', 'd', 'played')"
        )
    store = await opened(path)
    assert rows(path) == [
        ("http", "http:bob", "bob", 0),
        ("http", "http:troll", "troll", 1),
        ("terminal", "local", "streamer", 0),
        ("twitch", None, "later", 1),
        ("twitch", None, "troll", 1),  # the captured mute holds the Twitch login again
        ("twitch", "12345", "tw", 0),
    ]
    assert store.person(replace(shaped(Platform.TWITCH, "tw"), id="12345")).voice == "alice"
    assert store.person(shaped(Platform.TERMINAL, "streamer")).voice == "pirate"
    assert store.person(shaped(Platform.HTTP, "bob")).voice == "narrator"
    assert store.person(shaped(Platform.TWITCH, "later")).muted
    assert store.person(shaped(Platform.TWITCH, "troll")).muted
    assert not store.person(shaped(Platform.YOUTUBE, "troll")).muted
    history = await store.history(10)
    assert [h.platform for h in history] == [
        None,
        Platform.TERMINAL,
        Platform.HTTP,
        Platform.TWITCH,
    ]
    store.record_history(
        HistoryEntry(at=5, login="tw", text="e", outcome="played", platform=Platform.TWITCH)
    )
    assert (await store.history(1))[0].platform is Platform.TWITCH
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


# -- the real App, every source ---------------------------------------------------------------
MOD = ChatUser(
    id="41900", login="moddy", display_name="Moddy", roles=frozenset({Role.MODERATOR}),
    platform=Platform.TWITCH,
)  # fmt: skip
YT_MOD = ChatUser(
    id="UC" + "9" * 22, login="ytmod", display_name="YtMod", roles=frozenset({Role.MODERATOR}),
    platform=Platform.YOUTUBE,
)  # fmt: skip


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    b = await start_bot(make_config(tmp_path, web={"enabled": True, "port": 0}))
    yield b
    await b.close()


async def ingest(bot: Bot, user: str, text: str) -> dict[str, object]:
    """POST /api/ingest through the real server, as another stream tool would."""
    web = bot.app.web
    assert web is not None
    headers = {"Authorization": f"Bearer {web.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{web.base_url}/api/ingest", json={"user": user, "text": text}, headers=headers
        ) as res,
    ):
        assert res.status in (200, 202), await res.text()
        body: dict[str, object] = await res.json()
        return body


async def test_across_sources_an_ingest_name_never_takes_a_twitch_mute(bot: Bot) -> None:
    db = Path(bot.store.path)
    # 1. A Twitch moderator mutes @troll before troll ever chatted.
    _, replies = await bot.send("!mute @troll", MOD)
    assert replies == ["muted troll until unmuted"]
    # 2. The HTTP ingest sends a message under that login: a different person, spoken.
    assert (await ingest(bot, "troll", "hello from the ingest"))["status"] == "queued"
    await bot.store.flush()
    assert rows(db) == [("twitch", None, "troll", 1)]
    # 3. The Twitch account with that login is muted, and binds the entry.
    twitch_troll = shaped(Platform.TWITCH, "troll", 7)
    decision, _ = await bot.send("hi", twitch_troll)
    assert (decision.action, decision.reason) == (Action.DROPPED, "muted")
    await bot.store.flush()
    assert rows(db) == [("twitch", twitch_troll.id, "troll", 1)]
    # 4. YouTube's troll is someone else again.
    decision, _ = await bot.send("hi", shaped(Platform.YOUTUBE, "troll"))
    assert decision.action is Action.QUEUED
    # 5. The ingest troll keeps being read afterwards too.
    assert (await ingest(bot, "troll", "still me"))["status"] == "queued"


async def test_a_mute_right_after_an_ingest_message_lands_on_the_chat_identity(bot: Bot) -> None:
    db = Path(bot.store.path)
    pest = shaped(Platform.TWITCH, "pest", 3)
    decision, _ = await bot.send("first", pest)
    assert decision.action is Action.QUEUED
    assert (await ingest(bot, "pest", "an ingest line under the same name"))["status"] == "queued"
    _, replies = await bot.send("!mute @pest 10m", MOD)  # right after the ingest message
    assert replies[0].startswith("muted pest for 10 minutes")
    assert rows(db) == [("twitch", pest.id, "pest", 1)]
    decision, _ = await bot.send("again", pest)
    assert decision.reason == "muted"
    assert (await ingest(bot, "pest", "the ingest one is not muted"))["status"] == "queued"
    # The queue lost the Twitch pest's lines and kept the ingest one's.
    queued = [(it.message.user.platform, it.message.user.login) for it in bot.app.queue.snapshot()]
    assert (Platform.TWITCH, "pest") not in queued
    assert (Platform.HTTP, "pest") in queued
    # A rename on Twitch still follows the id.
    decision, _ = await bot.send("renamed", replace(pest, login="pest_2"))
    assert decision.reason == "muted"


async def test_setvoice_by_login_stays_on_the_platform_it_was_given_on(bot: Bot) -> None:
    _, replies = await bot.send("!setvoice @viewer alice", YT_MOD)
    assert replies == ["viewer's voice is now alice"]
    yt_viewer = shaped(Platform.YOUTUBE, "viewer", 4)
    decision, _ = await bot.send("hello", yt_viewer)
    assert decision.item is not None
    assert decision.item.voice == "alice"
    decision, _ = await bot.send("hello", shaped(Platform.TWITCH, "viewer", 4))
    assert decision.item is not None
    assert decision.item.voice == "default"
    body = await ingest(bot, "viewer", "hello")
    assert body["voice"] == "default"


async def test_the_mute_role_check_reads_the_named_platform(bot: Bot) -> None:
    """A recent ingest 'boss' (no role) must not let a moderator mute Twitch's moderator."""
    boss = ChatUser(
        id="41777", login="boss", display_name="Boss", roles=frozenset({Role.MODERATOR}),
        platform=Platform.TWITCH,
    )  # fmt: skip
    await bot.send("i moderate here", boss)
    await ingest(bot, "boss", "same name, no role")
    _, replies = await bot.send("!mute @boss", MOD)
    assert replies == ["you can't mute boss: they are a moderator"]
    assert not bot.store.person(boss).muted


async def test_the_terminal_and_the_panel_name_the_viewer_not_themselves(bot: Bot) -> None:
    streamer = local_user()
    assert streamer.platform is Platform.TERMINAL
    # Only the ingest knows "guest": the terminal's !mute means that person.
    await ingest(bot, "guest", "hi")
    _, replies = await bot.send("!mute @guest", streamer)
    assert replies == ["muted guest until unmuted (1 message removed)"]  # the ingest line
    assert bot.store.person(shaped(Platform.HTTP, "guest")).muted
    assert (await ingest(bot, "guest", "muted now"))["reason"] == "muted"
    # Known on Twitch and on the ingest: Twitch first, for the terminal and the panel alike.
    await bot.send("hi", shaped(Platform.TWITCH, "dual", 8))
    await ingest(bot, "dual", "hi")
    web = bot.app.web
    assert web is not None
    headers = {"Authorization": f"Bearer {web.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{web.base_url}/api/mute", json={"user": "dual"}, headers=headers
        ) as res:
            assert res.status == 200
        assert bot.store.person(shaped(Platform.TWITCH, "dual", 8)).muted
        assert not bot.store.person(shaped(Platform.HTTP, "dual")).muted
        # Naming the platform outright.
        async with http.post(
            f"{web.base_url}/api/mute", json={"user": "dual", "platform": "http"}, headers=headers
        ) as res:
            assert res.status == 200
        assert bot.store.person(shaped(Platform.HTTP, "dual")).muted
        async with http.post(
            f"{web.base_url}/api/mute", json={"user": "dual", "platform": "irc"}, headers=headers
        ) as res:
            assert res.status == 400
            assert "platform" in (await res.json())["error"]
        async with http.get(f"{web.base_url}/api/state", headers=headers) as res:
            mutes = (await res.json())["mutes"]
        assert sorted((m["user"], m["platform"]) for m in mutes) == [
            ("dual", "http"),
            ("dual", "twitch"),
            ("guest", "http"),
        ]
        async with http.post(
            f"{web.base_url}/api/unmute", json={"user": "dual", "platform": "http"}, headers=headers
        ) as res:
            assert res.status == 200
        assert not bot.store.person(shaped(Platform.HTTP, "dual")).muted
        assert bot.store.person(shaped(Platform.TWITCH, "dual", 8)).muted
