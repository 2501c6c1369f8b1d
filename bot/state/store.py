"""Persistent bot state in SQLite: voices, mutes, volume/pause/on-off, recent history.

Why it looks like this:

* One connection lives on one dedicated thread (a single-worker executor), so database work
  never blocks the event loop and sqlite3's thread rules hold without locks. Every write is a
  complete transaction run on that thread; the caller awaits its commit, so a command is only
  acknowledged in chat once its effect is on disk (WAL, ``synchronous=FULL``): a SIGKILL right
  after the acknowledgement loses nothing.
* Reads that happen for every chat message (is this user muted? which voice?) are answered
  from an in-memory copy of the small ``users`` table, refreshed with the rows each write
  returns, so the hot path does no I/O at all.
* The schema is versioned with ``PRAGMA user_version`` and upgraded by ordered migrations,
  each in its own transaction; a database from a newer version is refused with a clear
  message instead of being damaged.
* A user can be named before they ever chat (``!mute @login``): such a row holds only the
  login until the user shows up, then it is bound to their stable platform id, so a later
  rename does not escape a mute.
* Mute expiry is stored as wall-clock epoch seconds (``time.time``), because it has to mean
  the same thing after a restart; the monotonic clock restarts with the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from bot.core.messages import ChatUser

log = logging.getLogger(__name__)

T = TypeVar("T")


MIGRATIONS: tuple[str, ...] = (
    # 1: people with state (voice, mute), bot settings, recent history.
    """
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY,
        user_id     TEXT UNIQUE,
        login       TEXT NOT NULL,
        voice       TEXT,
        muted       INTEGER NOT NULL DEFAULT 0,
        muted_until REAL,
        muted_by    TEXT,
        muted_at    REAL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX users_login ON users(login);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE history (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         REAL NOT NULL,
        message_id TEXT,
        user_id    TEXT,
        login      TEXT NOT NULL,
        text       TEXT NOT NULL,
        voice      TEXT,
        outcome    TEXT NOT NULL,
        detail     TEXT NOT NULL DEFAULT ''
    );
    """,
)
"""Schema migrations in order; migration N brings the database to ``user_version`` N."""


class StoreError(RuntimeError):
    """The database cannot be used or a write failed; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Mute:
    """A mute on one user.

    Attributes:
        until: Epoch seconds when it ends, or None for "until unmuted".
        by: Login of who muted.
        at: Epoch seconds when it was set.
    """

    until: float | None
    by: str
    at: float

    def active(self, now: float) -> bool:
        """Whether the mute still holds at epoch time ``now``."""
        return self.until is None or self.until > now


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person the bot keeps state for (a row of ``users``).

    Attributes:
        row: The row id.
        user_id: Stable platform id, or None while only the login is known.
        login: Lower-case login.
        voice: Chosen voice, or None for the default.
        mute: The mute, if any (possibly expired; see ``Mute.active``).
        updated_at: Epoch seconds of the last change.
        seq: Write order, so an older answer never overwrites a newer one in memory.
    """

    row: int
    user_id: str | None
    login: str
    voice: str | None
    mute: Mute | None
    updated_at: float
    seq: int = 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message the bot handled, as kept in the ``history`` table."""

    at: float
    login: str
    text: str
    outcome: str
    user_id: str | None = None
    message_id: str | None = None
    voice: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """Bot-wide state that commands change and a restart restores.

    Attributes:
        volume: Player volume 0..1 set by ``!volume``, or None when never set (config wins).
        paused: Whether playback was paused with ``!pause``.
        enabled: False after ``!ttsoff``.
    """

    volume: float | None = None
    paused: bool = False
    enabled: bool = True


@dataclass
class _Changes:
    """Rows a write touched: upserted records, deleted row ids, the row as it was before."""

    records: list[UserRecord] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    before: UserRecord | None = None


_USER_COLUMNS = "id, user_id, login, voice, muted, muted_until, muted_by, muted_at, updated_at"


def _record(row: Sequence[Any], seq: int) -> UserRecord:
    mute = Mute(until=row[5], by=row[6] or "", at=row[7] or 0.0) if row[4] else None
    return UserRecord(
        row=int(row[0]),
        user_id=row[1],
        login=str(row[2]),
        voice=row[3],
        mute=mute,
        updated_at=float(row[8]),
        seq=seq,
    )


class Store:
    """The bot's SQLite database behind an event-loop friendly interface.

    Construction does no I/O; ``open()`` creates or upgrades the file, ``close()`` flushes
    history and closes it. Reads used per chat message are synchronous and served from memory;
    writes are coroutines that return once committed.
    """

    _HISTORY_FLUSH_S = 0.5

    def __init__(
        self,
        path: Path | str,
        *,
        history_limit: int = 1000,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[str] = MIGRATIONS,
    ) -> None:
        """Describe a store; nothing is opened yet.

        Args:
            path: Database file, or ``":memory:"`` for a throwaway database.
            history_limit: Newest history rows to keep (0 keeps none).
            clock: Wall clock (epoch seconds) for mute expiry; tests pass their own.
            migrations: Schema migrations (tests use this to check upgrades).
        """
        self.path = str(path)
        self._history_limit = history_limit
        self._clock = clock
        self._migrations = tuple(migrations)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the store thread
        self._seq = 0  # touched only on the store thread
        self._records: dict[int, UserRecord] = {}
        self._by_id: dict[str, UserRecord] = {}
        self._by_login: dict[str, list[UserRecord]] = {}
        self._settings = Settings()
        self._history_buffer: list[HistoryEntry] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opened = False

    # -- life cycle -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether ``open()`` succeeded and ``close()`` was not called."""
        return self._opened

    async def open(self) -> None:
        """Create or upgrade the database and load the users and settings into memory.

        Raises:
            StoreError: The file cannot be created, is not a database, or is from a newer
                version of ishowtts.
        """
        if self._opened:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        try:
            records, settings = await self._run(self._open_sync)
        except BaseException:
            await self._shutdown_executor()
            raise
        for record in records:
            self._apply(record)
        self._settings = settings
        self._opened = True
        log.info("state database %s: %d user(s) with a voice or mute", self.path, len(records))

    async def open_memory(self) -> None:
        """Open a throwaway in-memory database instead (the file could not be used)."""
        if self._opened:
            return
        self.path = ":memory:"
        await self.open()

    async def close(self) -> None:
        """Write pending history and close the database."""
        if not self._opened:
            return
        self._opened = False
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        await self.flush()
        try:
            await self._run(self._close_sync)
        finally:
            await self._shutdown_executor()

    async def flush(self) -> None:
        """Wait for background writes (history, user binding) to be committed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._history_buffer and self._executor is not None:
            batch, self._history_buffer = self._history_buffer, []
            try:
                await self._run(self._insert_history_sync, batch)
            except StoreError as exc:
                log.error("could not write chat history: %s", exc)

    async def _shutdown_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the state database is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, UnicodeError) as exc:
            raise StoreError(f"state database {self.path}: {exc}") from exc

    # -- memory -----------------------------------------------------------------------------
    def _apply(self, record: UserRecord) -> None:
        old = self._records.get(record.row)
        if old is not None:
            if old.seq > record.seq:
                return  # a newer write already landed
            self._forget(record.row)
        self._records[record.row] = record
        if record.user_id is not None:
            self._by_id[record.user_id] = record
        self._by_login.setdefault(record.login, []).append(record)

    def _forget(self, row: int) -> None:
        old = self._records.pop(row, None)
        if old is None:
            return
        if old.user_id is not None and self._by_id.get(old.user_id) is old:
            del self._by_id[old.user_id]
        same = [r for r in self._by_login.get(old.login, []) if r.row != row]
        if same:
            self._by_login[old.login] = same
        else:
            self._by_login.pop(old.login, None)

    def _apply_changes(self, changes: _Changes) -> None:
        for row in changes.deleted:
            self._forget(row)
        for record in changes.records:
            self._apply(record)

    def _candidates(self, user: ChatUser) -> list[UserRecord]:
        """Rows that describe a chatting user.

        Their own row, and rows set by login before they were known (``seen`` merges those
        into their own row in the background).
        """
        out = [r for r in self._by_login.get(user.login.lower(), []) if r.user_id is None]
        own = self._by_id.get(user.id)
        if own is not None:
            out.append(own)
        return out

    def record_of(self, user: ChatUser) -> UserRecord | None:
        """The row kept for a chatting user (by id, else one set by their login), or None."""
        candidates = self._candidates(user)
        return max(candidates, key=lambda r: r.updated_at) if candidates else None

    def find_login(self, login: str) -> UserRecord | None:
        """The most recently changed record with this login (``@login`` arguments)."""
        records = self._by_login.get(login.lower().lstrip("@"), [])
        return max(records, key=lambda r: (r.user_id is not None, r.updated_at), default=None)

    def voice_of(self, user: ChatUser) -> str | None:
        """The voice ``user`` chose, or None for the default."""
        voiced = [r for r in self._candidates(user) if r.voice is not None]
        return max(voiced, key=lambda r: r.updated_at).voice if voiced else None

    def mute_of(self, user: ChatUser) -> Mute | None:
        """The active mute on ``user``, or None (expired mutes count as none)."""
        now = self._clock()
        for record in self._candidates(user):
            if record.mute is not None and record.mute.active(now):
                return record.mute
        return None

    def mutes(self) -> list[UserRecord]:
        """Every user with an active mute."""
        now = self._clock()
        return [r for r in self._records.values() if r.mute is not None and r.mute.active(now)]

    @property
    def settings(self) -> Settings:
        """Volume, paused and on/off state as last committed."""
        return self._settings

    def now(self) -> float:
        """The store's wall clock (epoch seconds)."""
        return self._clock()

    # -- writes -----------------------------------------------------------------------------
    async def set_voice(self, login: str, user_id: str | None, voice: str | None) -> UserRecord:
        """Choose ``voice`` for a user (None: back to the default); returns once committed.

        Raises:
            StoreError: The write failed; nothing changed.
        """
        changes = await self._run(self._update_user_sync, login, user_id, {"voice": voice})
        self._apply_changes(changes)
        return self._result(changes, login, user_id)

    async def mute(
        self, login: str, user_id: str | None, *, until: float | None, by: str
    ) -> UserRecord:
        """Mute a user until epoch time ``until`` (None: until unmuted); returns once committed.

        Raises:
            StoreError: The write failed; nothing changed.
        """
        fields = {
            "muted": 1,
            "muted_until": until,
            "muted_by": by,
            "muted_at": self._clock(),
        }
        changes = await self._run(self._update_user_sync, login, user_id, fields)
        self._apply_changes(changes)
        return self._result(changes, login, user_id)

    async def unmute(self, login: str, user_id: str | None) -> bool:
        """Lift a mute; returns whether an active mute was lifted (once committed).

        Raises:
            StoreError: The write failed; nothing changed.
        """
        fields = {"muted": 0, "muted_until": None, "muted_by": None, "muted_at": None}
        changes = await self._run(self._update_user_sync, login, user_id, fields)
        self._apply_changes(changes)
        before = changes.before
        return before is not None and before.mute is not None and before.mute.active(self._clock())

    def _result(self, changes: _Changes, login: str, user_id: str | None) -> UserRecord:
        if changes.records:
            return changes.records[-1]
        # The row was deleted because it holds nothing any more.
        return UserRecord(-1, user_id, login.lower(), None, None, self._clock())

    async def set_volume(self, volume: float) -> None:
        """Remember the player volume (0..1); returns once committed."""
        volume = min(1.0, max(0.0, float(volume)))
        await self._run(self._set_setting_sync, "volume", volume)
        self._settings = replace(self._settings, volume=volume)

    async def set_paused(self, paused: bool) -> None:
        """Remember whether playback is paused; returns once committed."""
        await self._run(self._set_setting_sync, "paused", bool(paused))
        self._settings = replace(self._settings, paused=bool(paused))

    async def set_enabled(self, enabled: bool) -> None:
        """Remember whether TTS is on; returns once committed."""
        await self._run(self._set_setting_sync, "enabled", bool(enabled))
        self._settings = replace(self._settings, enabled=bool(enabled))

    def seen(self, user: ChatUser) -> None:
        """Note that ``user`` chatted: binds a login-only row to their id, follows renames.

        Runs in the background (nothing waits for it); reads already match by login meanwhile.
        """
        if not self._opened:
            return
        by_id = self._by_id.get(user.id)
        login = user.login.lower()
        pending = any(r.user_id is None for r in self._by_login.get(login, []))
        if not pending and (by_id is None or by_id.login == login):
            return
        self._background(self._bind(user.id, login))

    async def _bind(self, user_id: str, login: str) -> None:
        try:
            changes = await self._run(self._bind_sync, user_id, login)
        except StoreError as exc:
            log.error("could not update user %s: %s", login, exc)
            return
        self._apply_changes(changes)

    def record_history(self, entry: HistoryEntry) -> None:
        """Add a history row; rows are written in batches in the background."""
        if not self._opened or self._history_limit <= 0:
            return
        self._history_buffer.append(entry)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_history_soon(), name="history")

    async def _flush_history_soon(self) -> None:
        await asyncio.sleep(self._HISTORY_FLUSH_S)
        batch, self._history_buffer = self._history_buffer, []
        if batch:
            try:
                await self._run(self._insert_history_sync, batch)
            except StoreError as exc:
                log.error("could not write chat history: %s", exc)

    async def history(self, limit: int = 50) -> list[HistoryEntry]:
        """The newest history rows, newest first (pending ones included)."""
        await self.flush()
        rows = await self._run(self._history_sync, limit)
        return [
            HistoryEntry(
                at=r[0],
                message_id=r[1],
                user_id=r[2],
                login=r[3],
                text=r[4],
                voice=r[5],
                outcome=r[6],
                detail=r[7],
            )
            for r in rows
        ]

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the store thread -------------------------------------------------------------------
    def _open_sync(self) -> tuple[list[UserRecord], Settings]:
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of {self.path}: {exc}") from None
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state database {self.path}: {exc}") from None
        try:
            # Read-only checks first: a file that is refused is left exactly as it was.
            self._check_intact(conn)
            self._check_version(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
            now = self._clock()
            conn.execute(
                "UPDATE users SET muted=0, muted_until=NULL, muted_by=NULL, muted_at=NULL"
                " WHERE muted=1 AND muted_until IS NOT NULL AND muted_until <= ?",
                (now,),
            )
            conn.execute("DELETE FROM users WHERE voice IS NULL AND muted=0")
            rows = conn.execute(f"SELECT {_USER_COLUMNS} FROM users").fetchall()
            settings = self._read_settings(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_locked(exc):
                raise StoreError(
                    f"{self.path} is in use by another program ({exc}); is another ishowtts"
                    " running with the same storage.dir? Stop it, or point storage.database"
                    " elsewhere"
                ) from None
            raise StoreError(
                f"{self.path} is not a usable ishowtts database ({exc}); move it away to start"
                " with a fresh one, or point storage.database elsewhere"
            ) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return [_record(r, 0) for r in rows], settings

    def _check_intact(self, conn: sqlite3.Connection) -> None:
        """Refuse a damaged file at start-up (one clear line) instead of failing writes later.

        SQLite only notices damaged pages when it reads them, so a file damaged by a disk or
        a copy error would open fine and then fail some commands at random. ``quick_check``
        reads every page once (milliseconds for the default history size).
        """
        if self.path == ":memory:":
            return
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            first = " ".join(" ".join(problems).split())[:200]
            raise sqlite3.DatabaseError(f"the file is damaged: {first}")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """Refuse a database from a newer ishowtts (its schema is unknown here)."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        latest = len(self._migrations)
        if version > latest:
            raise StoreError(
                f"{self.path} was written by a newer ishowtts (schema {version}; this version"
                f" knows up to {latest}); upgrade ishowtts or point storage.database elsewhere"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        self._check_version(conn)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        latest = len(self._migrations)
        for number in range(version + 1, latest + 1):
            script = self._migrations[number - 1]
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            log.info("state database %s upgraded to schema %d", self.path, number)

    @staticmethod
    def _read_settings(conn: sqlite3.Connection) -> Settings:
        values: dict[str, Any] = {}
        for key, raw in conn.execute("SELECT key, value FROM settings"):
            with contextlib.suppress(ValueError):
                values[key] = json.loads(raw)
        volume = values.get("volume")
        return Settings(
            volume=float(volume) if isinstance(volume, int | float) else None,
            paused=bool(values.get("paused", False)),
            enabled=bool(values.get("enabled", True)),
        )

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the state database is not open")
        return self._conn

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _fetch(self, conn: sqlite3.Connection, row: int) -> UserRecord | None:
        found = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id=?", (row,)).fetchone()
        return _record(found, self._next_seq()) if found is not None else None

    def _update_user_sync(
        self, login: str, user_id: str | None, fields: dict[str, Any]
    ) -> _Changes:
        conn = self._db()
        login = login.lower().lstrip("@")
        now = self._clock()
        changes = _Changes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if user_id is not None:
                row = self._merge_tx(conn, user_id, login, changes)
            else:
                found = conn.execute(
                    "SELECT id FROM users WHERE login=?"
                    " ORDER BY user_id IS NOT NULL DESC, updated_at DESC LIMIT 1",
                    (login,),
                ).fetchone()
                row = int(found[0]) if found is not None else None
            if row is None:
                cur = conn.execute(
                    "INSERT INTO users (user_id, login, updated_at) VALUES (?, ?, ?)",
                    (user_id, login, now),
                )
                row = int(cur.lastrowid or 0)
            else:
                changes.before = self._fetch(conn, row)
            assignments = ", ".join(f"{name}=?" for name in fields)
            conn.execute(
                f"UPDATE users SET {assignments}, updated_at=? WHERE id=?",
                (*fields.values(), now, row),
            )
            cur = conn.execute("DELETE FROM users WHERE id=? AND voice IS NULL AND muted=0", (row,))
            if cur.rowcount:
                changes.deleted.append(row)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if row not in changes.deleted:
            record = self._fetch(conn, row)
            if record is not None:
                changes.records.append(record)
        return changes

    def _merge_tx(
        self, conn: sqlite3.Connection, user_id: str, login: str, changes: _Changes
    ) -> int | None:
        """Inside a transaction: make one row hold everything known about this person.

        Rows created by login before the user was seen are bound to the id, or folded into
        the user's own row (the more recently changed state wins); a renamed user's row
        follows the new login. Returns the person's row, or None when there is none.
        """
        cols = _USER_COLUMNS
        own = conn.execute(f"SELECT {cols} FROM users WHERE user_id=?", (user_id,)).fetchone()
        loose = conn.execute(
            f"SELECT {cols} FROM users WHERE login=? AND user_id IS NULL ORDER BY updated_at DESC",
            (login,),
        ).fetchall()
        if own is None and not loose:
            return None
        if own is None:
            row = int(loose[0][0])
            conn.execute("UPDATE users SET user_id=? WHERE id=?", (user_id, row))
            extra = loose[1:]
        else:
            row = int(own[0])
            extra = loose
            if loose and float(loose[0][8]) > float(own[8]):
                newest = loose[0]
                voice = newest[3] if newest[3] is not None else own[3]
                mute = newest[4:8] if newest[4] else own[4:8]
                conn.execute(
                    "UPDATE users SET voice=?, muted=?, muted_until=?, muted_by=?,"
                    " muted_at=?, updated_at=? WHERE id=?",
                    (voice, *mute, float(newest[8]), row),
                )
            if own[2] != login:
                conn.execute("UPDATE users SET login=? WHERE id=?", (login, row))
        for extra_row in extra:
            conn.execute("DELETE FROM users WHERE id=?", (int(extra_row[0]),))
            changes.deleted.append(int(extra_row[0]))
        return row

    def _bind_sync(self, user_id: str, login: str) -> _Changes:
        conn = self._db()
        changes = _Changes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._merge_tx(conn, user_id, login, changes)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if row is not None:
            record = self._fetch(conn, row)
            if record is not None:
                changes.records.append(record)
        return changes

    def _set_setting_sync(self, key: str, value: Any) -> None:
        conn = self._db()
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    def _insert_history_sync(self, batch: list[HistoryEntry]) -> None:
        conn = self._db()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO history (at, message_id, user_id, login, text, voice, outcome,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.at,
                        _utf8(e.message_id),
                        _utf8(e.user_id),
                        _utf8(e.login),
                        _utf8(e.text),
                        _utf8(e.voice),
                        _utf8(e.outcome),
                        _utf8(e.detail),
                    )
                    for e in batch
                ],
            )
            conn.execute(
                "DELETE FROM history WHERE id <= (SELECT max(id) FROM history) - ?",
                (self._history_limit,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _history_sync(self, limit: int) -> list[tuple[Any, ...]]:
        return (
            self._db()
            .execute(
                "SELECT at, message_id, user_id, login, text, voice, outcome, detail"
                " FROM history ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()


def _is_locked(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _utf8(value: str | None) -> str | None:
    """Text that SQLite can store: lone surrogates (never valid UTF-8) become U+FFFD."""
    if value is None:
        return None
    return value.encode("utf-8", "replace").decode("utf-8")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3 runs one statement per execute)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
