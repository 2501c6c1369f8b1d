"""The SQLite store on real files: persistence, login-only users, expiry, migrations, errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.core.messages import ChatUser, Platform
from bot.state.settings import database_path
from bot.state.store import MIGRATIONS, HistoryEntry, Store, StoreError, Target


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def chatter(login: str, uid: str) -> ChatUser:
    return ChatUser(id=uid, login=login, display_name=login, platform=Platform.TWITCH)


def T(login: str, uid: str | None) -> Target:
    """A Twitch person, by id when given."""
    return Target(Platform.TWITCH, login, uid)


async def opened(path: Path, clock: Clock | None = None, **kw: object) -> Store:
    store = Store(path, clock=clock or Clock(), **kw)  # type: ignore[arg-type]
    await store.open()
    return store


async def test_open_creates_a_wal_database_at_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = Store(path)
    assert not path.exists()  # the constructor does no I/O
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


async def test_voices_and_settings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.set_voice(T("alice", "id-a"), "narrator")
    await store.set_voice(T("bob", None), "pirate")  # bob has never chatted
    await store.set_volume(0.4)
    await store.set_paused(True)
    await store.set_enabled(False)
    await store.close()

    store = await opened(path)
    assert store.voice_of(chatter("alice", "id-a")) == "narrator"
    assert store.voice_of(chatter("bob", "id-b")) == "pirate"
    assert store.voice_of(chatter("carol", "id-c")) is None
    assert store.settings.volume == pytest.approx(0.4)
    assert store.settings.paused is True
    assert store.settings.enabled is False
    await store.close()


async def test_a_fresh_database_has_neutral_settings(tmp_path: Path) -> None:
    store = await opened(tmp_path / "state.db")
    assert store.settings.volume is None
    assert store.settings.paused is False
    assert store.settings.enabled is True
    await store.close()


async def test_resetting_a_voice_removes_the_row(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.set_voice(T("alice", "id-a"), "narrator")
    await store.set_voice(T("alice", "id-a"), None)
    assert store.voice_of(chatter("alice", "id-a")) is None
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    conn.close()


async def test_a_mute_by_login_binds_to_the_id_and_follows_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    clock = Clock()
    store = await opened(path, clock)
    await store.mute(T("Troll", None), until=None, by="mod")
    # Before the user ever chatted, the mute matches on the login.
    assert store.mute_of(chatter("troll", "id-t")) is not None
    store.seen(chatter("troll", "id-t"))
    await store.flush()
    record = store.find_login(Platform.TWITCH, "troll")
    assert record is not None
    assert record.user_id == "id-t"
    # A renamed account is still muted (matched on id) ...
    assert store.mute_of(chatter("troll_v2", "id-t")) is not None
    # ... and someone who later takes the old login is not.
    store.seen(chatter("troll_v2", "id-t"))
    await store.flush()
    assert store.mute_of(chatter("troll", "id-new")) is None
    await store.close()

    store = await opened(path, clock)
    assert store.mute_of(chatter("troll_v2", "id-t")) is not None
    assert store.mute_of(chatter("troll", "id-new")) is None
    await store.close()


async def test_state_set_by_login_merges_into_a_known_users_row(tmp_path: Path) -> None:
    clock = Clock()
    store = await opened(tmp_path / "state.db", clock)
    await store.set_voice(T("bob", "id-b"), "narrator")  # bob's own row, under his old login
    clock.now += 10
    await store.mute(T("rob", None), until=None, by="mod")  # a login-only row for the new name
    # bob, renamed to rob, chats: the login-only mute applies at once, before any write.
    rob = chatter("rob", "id-b")
    assert store.mute_of(rob) is not None
    assert store.voice_of(rob) == "narrator"
    store.seen(rob)
    await store.flush()
    rows = [
        r
        for r in [
            store.find_login(Platform.TWITCH, "rob"),
            store.find_login(Platform.TWITCH, "bob"),
        ]
        if r is not None
    ]
    assert len(rows) == 1
    assert rows[0].user_id == "id-b"
    assert rows[0].voice == "narrator"
    assert rows[0].mute
    await store.close()


async def test_mutes_expire_on_the_wall_clock_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    clock = Clock()
    store = await opened(path, clock)
    await store.mute(T("a", "id-a"), until=clock.now + 600, by="mod")
    await store.mute(T("b", "id-b"), until=None, by="mod")
    assert store.mute_of(chatter("a", "id-a")) is not None
    clock.now += 601
    assert store.mute_of(chatter("a", "id-a")) is None
    assert store.mute_of(chatter("b", "id-b")) is not None
    assert [r.login for r in store.mutes()] == ["b"]
    await store.close()

    store = await opened(path, clock)
    assert store.mute_of(chatter("a", "id-a")) is None
    assert store.find_login(Platform.TWITCH, "a") is None  # the expired mute was cleaned up
    assert await store.unmute(T("a", "id-a")) is False
    assert await store.unmute(T("b", None)) is True
    assert store.mute_of(chatter("b", "id-b")) is None
    await store.close()


async def test_history_is_written_in_batches_and_pruned(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path, history_limit=5)
    for i in range(12):
        store.record_history(HistoryEntry(at=float(i), login="a", text=f"m{i}", outcome="played"))
    rows = await store.history(limit=100)
    assert [r.text for r in rows] == ["m11", "m10", "m9", "m8", "m7"]
    store.record_history(HistoryEntry(at=99.0, login="b", text="last", outcome="skipped"))
    await store.close()  # pending history is written on close
    store = await opened(path, history_limit=5)
    rows = await store.history(limit=2)
    assert [(r.text, r.outcome) for r in rows] == [("last", "skipped"), ("m11", "played")]
    await store.close()


async def test_an_older_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.set_voice(T("alice", "id-a"), "narrator")
    await store.close()

    extra = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
    store = await opened(path, migrations=(*MIGRATIONS, extra))
    assert store.voice_of(chatter("alice", "id-a")) == "narrator"
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    conn.execute("SELECT count(*) FROM notes").fetchone()
    conn.close()


async def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.close()
    broken = "CREATE TABLE good (x INTEGER); CREATE TABLE users (x INTEGER);"
    with pytest.raises(StoreError):
        await opened(path, migrations=(*MIGRATIONS, broken))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "good" not in tables
    conn.close()


async def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer ishowtts"):
        await opened(path)


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable ishowtts database"):
        await opened(path)


async def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        await opened(blocker / "state.db")


async def test_the_in_memory_fallback_works(tmp_path: Path) -> None:
    store = Store(tmp_path / "file-that-is-a-dir")
    (tmp_path / "file-that-is-a-dir").mkdir()
    with pytest.raises(StoreError):
        await store.open()
    await store.open_memory()
    await store.set_voice(T("a", "id-a"), "narrator")
    assert store.voice_of(chatter("a", "id-a")) == "narrator"
    await store.close()


async def test_writes_wait_off_the_event_loop(tmp_path: Path) -> None:
    """A write blocked on a database lock must not stall the loop; it lands once freed."""
    path = tmp_path / "state.db"
    store = await opened(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # hold the write lock from another connection
    write = asyncio.create_task(store.set_voice(T("a", "id-a"), "narrator"))
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20
    assert not write.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(write, 10)
    assert store.voice_of(chatter("a", "id-a")) == "narrator"
    await store.close()


async def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await opened(path)
    await store.set_voice(T("a", "id-a"), "narrator")
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER no_updates BEFORE UPDATE ON users BEGIN SELECT RAISE(ABORT, 'nope'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="nope"):
        await store.set_voice(T("a", "id-a"), "pirate")
    assert store.voice_of(chatter("a", "id-a")) == "narrator"
    await store.close()


def test_database_path_defaults(tmp_path: Path) -> None:
    cfg = parse_config({"storage": {"dir": "state"}}, tmp_path)
    assert database_path(cfg.storage) == tmp_path / "state" / "ishowtts.db"
    cfg = parse_config({"storage": {"database": "x/my.db"}}, tmp_path)
    assert database_path(cfg.storage) == tmp_path / "x" / "my.db"
    cfg = parse_config({}, tmp_path)
    assert database_path(cfg.storage).name == "ishowtts.db"
