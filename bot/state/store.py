"""Persistent bot state in SQLite: voices, mutes, volume/pause/on-off, recent history.

Why it looks like this:

* One connection lives on one dedicated thread (a single-worker executor), so database work
  never blocks the event loop and sqlite3's thread rules hold without locks. Every write is a
  complete transaction run on that thread; the caller awaits its commit, so a command is only
  acknowledged in chat once its effect is on disk (WAL, ``synchronous=FULL``): a SIGKILL right
  after the acknowledgement loses nothing.
* Reads that happen for every chat message (is this user muted? which voice?) are answered
  from an in-memory copy of the small ``users`` table, refreshed with the rows each write
  returns, so the hot path does no I/O at all; :meth:`Store.person` answers both in one read.
* A person is ``(platform, id)`` (``bot.core.messages.Platform``): every row belongs to one
  platform, and nothing on one platform ever matches, binds to or merges with a row of
  another, whatever the logins. A user can be named before they ever chat (``!mute @login``):
  such a row holds only the platform and the login until that person first chats there, then
  it is bound to their stable id, so a later rename does not escape a mute.
* The schema is versioned with ``PRAGMA user_version`` and upgraded by ordered migrations,
  each in its own transaction; a database from a newer version is refused with a clear
  message instead of being damaged.
* A database that cannot be written (file permissions, an immutable file, a read-only mount or
  folder) is not "damaged": it is opened read-only, copied into memory and served from there,
  so its saved voices, mutes and settings keep applying; changes then hold for this session
  only and :attr:`Store.read_only` says so (commands word their replies from it). The file
  itself is never written.
* :func:`database_health` is the one place that judges a database file; the store's start-up
  and ``ishowtts doctor`` both use its probes, so they never disagree.
* Nobody else may read it: the state folder is created (or tightened to) 0700 and the
  database file is created 0600 before SQLite opens it (``bot.core.platform``: exact modes
  whatever the umask). SQLite gives its ``-wal`` and ``-shm`` files the database's own mode
  when it creates them (and sets it exactly, past the umask), so they are 0600 from their
  first moment too; leftovers from older versions are tightened before SQLite opens them.
* Mute expiry is stored as wall-clock epoch seconds (``time.time``), because it has to mean
  the same thing after a restart; the monotonic clock restarts with the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import errno
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from bot.core.messages import ChatUser, Platform
from bot.core.platform import create_private_file, inside, make_private_dir, tighten
from bot.core.tasks import TaskSet

log = logging.getLogger(__name__)

T = TypeVar("T")


_PLATFORM_OF_ID = (
    "CASE WHEN user_id IS NULL THEN NULL"
    " WHEN user_id = 'local' THEN 'terminal'"
    " WHEN user_id LIKE 'http:%' THEN 'http'"
    " ELSE 'twitch' END"
)
"""Schema 1 kept bare ids: "local" was the terminal (and the panel), "http:NAME" the HTTP
ingest, anything else a Twitch user id (the only other source that existed)."""

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
    # 2: every person belongs to one platform; identity is (platform, user_id).
    f"""
    CREATE TABLE users_v2 (
        id          INTEGER PRIMARY KEY,
        platform    TEXT NOT NULL,
        user_id     TEXT,
        login       TEXT NOT NULL,
        voice       TEXT,
        muted       INTEGER NOT NULL DEFAULT 0,
        muted_until REAL,
        muted_by    TEXT,
        muted_at    REAL,
        updated_at  REAL NOT NULL,
        UNIQUE (platform, user_id)
    );
    INSERT INTO users_v2 (id, platform, user_id, login, voice, muted, muted_until, muted_by,
                          muted_at, updated_at)
        SELECT id, coalesce({_PLATFORM_OF_ID}, 'twitch'), user_id, login, voice, muted,
               muted_until, muted_by, muted_at, updated_at
        FROM users;
    INSERT INTO users_v2 (platform, user_id, login, muted, muted_until, muted_by, muted_at,
                          updated_at)
        SELECT 'twitch', NULL, h.login, h.muted, h.muted_until, h.muted_by, h.muted_at,
               h.updated_at
        FROM users_v2 AS h
        WHERE h.platform = 'http' AND h.muted = 1 AND NOT EXISTS (
            SELECT 1 FROM users_v2 AS t WHERE t.platform = 'twitch' AND t.login = h.login
        );
    DROP TABLE users;
    ALTER TABLE users_v2 RENAME TO users;
    CREATE INDEX users_login ON users(platform, login);
    ALTER TABLE history ADD COLUMN platform TEXT;
    UPDATE history SET platform = {_PLATFORM_OF_ID};
    """,
    # 3: how words are said, as moderators set it from chat (!say WORD as SPOKEN).
    """
    CREATE TABLE pronunciations (
        word     TEXT PRIMARY KEY,
        spoken   TEXT NOT NULL,
        added_by TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL
    );
    """,
)
"""Schema migrations in order; migration N brings the database to ``user_version`` N.

Migration 2 gives every row a platform, inferred from the id's shape (``_PLATFORM_OF_ID``;
login-only rows were made by moderators in Twitch chat or the panel, so they are Twitch's).
Under schema 1 a login-only mute could be captured by an HTTP-ingest message under the same
login (the bug this schema fixes); such a mute is kept for the Twitch login as well, since
a mute that silences one person too many is the safe side of a mistake.
"""


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
class Target:
    """Whom a write is about: a person on one platform, by id when known, else by login.

    Attributes:
        platform: The platform the person chats on; a write never leaves it.
        login: Their login (``@`` and case do not matter).
        user_id: Their id on ``platform`` when known; None makes a login-only entry that
            binds to the first person who chats on ``platform`` under ``login``.
    """

    platform: Platform
    login: str
    user_id: str | None = None

    @classmethod
    def of(cls, user: ChatUser) -> Target:
        """The person who wrote a message."""
        return cls(user.platform, user.login, user.id)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person the bot keeps state for (a row of ``users``).

    Attributes:
        row: The row id.
        platform: The platform the person belongs to.
        user_id: Stable id on ``platform``, or None while only the login is known.
        login: Lower-case login.
        voice: Chosen voice, or None for the default.
        mute: The mute, if any (possibly expired; see ``Mute.active``).
        updated_at: Epoch seconds of the last change.
        seq: Write order, so an older answer never overwrites a newer one in memory.
    """

    row: int
    platform: Platform
    user_id: str | None
    login: str
    voice: str | None
    mute: Mute | None
    updated_at: float
    seq: int = 0


@dataclass(frozen=True, slots=True)
class PersonState:
    """What the store holds for one chatting person, read once per message.

    Attributes:
        voice: Their chosen voice, or None for the default.
        mute: Their active mute, or None (an expired mute counts as none).
    """

    voice: str | None = None
    mute: Mute | None = None

    @property
    def muted(self) -> bool:
        """Whether they are muted now."""
        return self.mute is not None


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
    platform: Platform | None = None


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


# -- judging a database file ------------------------------------------------------------------
class DatabaseState(enum.Enum):
    """What :func:`database_health` found."""

    OK = "ok"
    """It exists, is intact and can be written."""
    NEW = "new"
    """It does not exist yet and can be created."""
    READ_ONLY = "read-only"
    """It is intact but cannot be written: saved state applies, changes are not saved."""
    DAMAGED = "damaged"
    """It is not a usable SQLite database (move it away)."""
    NEWER = "newer"
    """A newer ishowtts wrote it."""
    UNUSABLE = "unusable"
    """It cannot be created or opened (not a file, folder not writable, in use)."""


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    """The verdict on a database file, worded for a person.

    Attributes:
        state: What was found.
        summary: One line saying it, naming the file.
        fix: What to do about it, or None when nothing needs doing.
        schema: The file's schema version, when it could be read.
    """

    state: DatabaseState
    summary: str
    fix: str | None = None
    schema: int | None = None


_FIX_PLACE = "set storage.dir (or storage.database) in config.yaml to a folder you can write"
_FIX_DAMAGED = (
    "move the file away; the bot creates a new one (viewers' voice choices and mutes start empty)"
)


def write_blocker(path: Path) -> str | None:
    """Why the existing database at ``path`` cannot be written, or None when it can.

    Both the file (opened for writing, nothing written) and its folder (where SQLite must
    create its ``-wal`` and ``-shm`` files; a file is created and removed) are tried, because
    only trying tells: root passes permission checks, while a read-only mount, an immutable
    file or a read-only folder refuse everyone.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        return _why_not_writable(exc, f"the file {path}")
    os.close(fd)
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".ishowtts-probe-"):
            pass
    except OSError as exc:
        reason = _why_not_writable(exc, f"its folder {path.parent}")
        return f"{reason}, so SQLite cannot create its -wal and -shm files there"
    return None


def _why_not_writable(exc: OSError, what: str) -> str:
    if exc.errno == errno.EROFS:
        return f"{what} is on a read-only file system"
    if exc.errno == errno.EPERM:
        return f"{what} refuses writes (Operation not permitted: an immutable file?)"
    if exc.errno == errno.EACCES:
        return f"{what} is not writable for this user (Permission denied)"
    return f"{what} cannot be written ({exc.strerror or exc})"


def _fix_read_only(reason: str) -> str:
    if "read-only file system" in reason:
        return "remount that file system read-write, or point storage.database elsewhere"
    if "immutable" in reason:
        return "lift it with `chattr -i FILE` (as root), or point storage.database elsewhere"
    return "give this user write access (file and folder), or point storage.database elsewhere"


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` without ever writing it.

    ``mode=ro`` reads a WAL database (committed changes in its ``-wal`` included) as long as
    SQLite can open or create the ``-shm`` file. Where even that is refused (a read-only
    folder or mount with no ``-shm`` left) the file is opened ``immutable``: nothing can
    write it there either, so what it holds is all there is.
    """
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA user_version").fetchone()  # reads the header (and the WAL index)
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if _code(exc) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            raise
    conn = sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, timeout=10.0, isolation_level=None
    )
    if Path(f"{path}-wal").exists():
        log.warning(
            "%s: its -wal file cannot be read without a -shm file (the folder is read-only);"
            " the newest changes may be missing",
            path,
        )
    return conn


def _check_intact(conn: sqlite3.Connection) -> None:
    """Refuse a damaged file at start-up (one clear line) instead of failing writes later.

    SQLite only notices damaged pages when it reads them, so a file damaged by a disk or
    a copy error would open fine and then fail some commands at random. ``quick_check``
    reads every page once (milliseconds for the default history size).
    """
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        first = " ".join(" ".join(problems).split())[:200]
        raise sqlite3.DatabaseError(f"the file is damaged: {first}")


def _schema(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _newer_message(path: Path | str, version: int, latest: int) -> str:
    return (
        f"{path} was written by a newer ishowtts (schema {version}; this version knows up to"
        f" {latest})"
    )


def database_health(path: Path, migrations: Sequence[str] = MIGRATIONS) -> DatabaseHealth:
    """Judge the database file at ``path`` without changing it (the doctor's database check).

    Args:
        path: The database file (``bot.state.settings.database_path``).
        migrations: The schema migrations this version knows.
    """
    latest = len(migrations)
    if path.exists() and not path.is_file():
        return DatabaseHealth(DatabaseState.UNUSABLE, f"{path} is not a file", _FIX_PLACE)
    if not path.exists():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return DatabaseHealth(
                DatabaseState.UNUSABLE,
                f"cannot create {path}: {folder} is a file, not a folder",
                _FIX_PLACE,
            )
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".ishowtts-probe-"):
                pass
        except OSError as exc:
            return DatabaseHealth(
                DatabaseState.UNUSABLE,
                f"cannot create {path}: {folder}: {exc.strerror or exc}",
                _FIX_PLACE,
            )
        return DatabaseHealth(DatabaseState.NEW, f"{path} will be created on first start")
    try:
        conn = _connect_read_only(path)
        with contextlib.closing(conn):
            _check_intact(conn)
            version = _schema(conn)
    except sqlite3.Error as exc:
        if _is_locked(exc):
            return DatabaseHealth(
                DatabaseState.UNUSABLE,
                f"{path} is locked by another program ({exc})",
                "stop the other ishowtts (same storage.dir), or point storage.database elsewhere",
            )
        if isinstance(exc, sqlite3.OperationalError) and _code(exc) == sqlite3.SQLITE_CANTOPEN:
            return DatabaseHealth(DatabaseState.UNUSABLE, f"cannot read {path} ({exc})", _FIX_PLACE)
        text = str(exc)
        summary = (
            f"{path} is damaged ({text.removeprefix('the file is damaged: ')})"
            if text.startswith("the file is damaged")
            else f"{path} is not a usable SQLite database ({exc})"
        )
        return DatabaseHealth(DatabaseState.DAMAGED, summary, _FIX_DAMAGED)
    if version > latest:
        return DatabaseHealth(
            DatabaseState.NEWER,
            _newer_message(path, version, latest),
            "update ishowtts, or point storage.database at another file",
            version,
        )
    blocker = write_blocker(path)
    if blocker is not None:
        return DatabaseHealth(
            DatabaseState.READ_ONLY,
            f"{path} is read-only: {blocker}; saved voices, mutes and settings apply, but"
            " changes cannot be saved",
            _fix_read_only(blocker),
            version,
        )
    return DatabaseHealth(DatabaseState.OK, f"{path} (schema {version}, writable)", None, version)


@dataclass
class _Changes:
    """Rows a write touched: upserted records, deleted row ids, the row as it was before."""

    records: list[UserRecord] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    before: UserRecord | None = None


@dataclass(frozen=True, slots=True)
class _Opened:
    """What the store thread hands back from opening."""

    records: list[UserRecord]
    settings: Settings
    read_only: str | None  # why changes are not saved, or None


_USER_COLUMNS = (
    "id, platform, user_id, login, voice, muted, muted_until, muted_by, muted_at, updated_at"
)

_Key = tuple[Platform, str]


def _platform(value: Any) -> Platform:
    try:
        return Platform(str(value))
    except ValueError:
        return Platform.TWITCH  # a row from a newer minor version; treat as the main chat


def _record(row: Sequence[Any], seq: int) -> UserRecord:
    mute = Mute(until=row[6], by=row[7] or "", at=row[8] or 0.0) if row[5] else None
    return UserRecord(
        row=int(row[0]),
        platform=_platform(row[1]),
        user_id=row[2],
        login=str(row[3]),
        voice=row[4],
        mute=mute,
        updated_at=float(row[9]),
        seq=seq,
    )


def _clean_login(login: str) -> str:
    return login.lower().lstrip("@")


class Store:
    """The bot's SQLite database behind an event-loop friendly interface.

    Construction does no I/O; ``open()`` creates or upgrades the file (or, when it cannot be
    written, reads it into memory), ``close()`` flushes history and closes it. Reads used per
    chat message are synchronous and served from memory; writes are coroutines that return
    once committed.
    """

    _HISTORY_FLUSH_S = 0.5

    def __init__(
        self,
        path: Path | str,
        *,
        history_limit: int = 1000,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[str] = MIGRATIONS,
        state_dir: Path | None = None,
    ) -> None:
        """Describe a store; nothing is opened yet.

        Args:
            path: Database file, or ``":memory:"`` for a throwaway database.
            history_limit: Newest history rows to keep (0 keeps none).
            clock: Wall clock (epoch seconds) for mute expiry; tests pass their own.
            migrations: Schema migrations (tests use this to check upgrades).
            state_dir: The bot's state folder (``bot.state.settings.state_dir``): when the
                database lies inside it, ``open()`` creates it, or tightens it, to 0700. A
                database elsewhere (``storage.database``) gets only the folders it lacks
                created 0700; a folder of the user's own choosing is left as it is.
        """
        self.path = str(path)
        self._state_dir = state_dir
        self._history_limit = history_limit
        self._clock = clock
        self._migrations = tuple(migrations)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the store thread
        self._seq = 0  # touched only on the store thread
        self._records: dict[int, UserRecord] = {}
        self._by_id: dict[_Key, UserRecord] = {}
        self._by_login: dict[_Key, list[UserRecord]] = {}
        self._settings = Settings()
        self._history_buffer: list[HistoryEntry] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._tasks = TaskSet("state store")
        self._read_only: str | None = None
        self._opened = False

    # -- life cycle -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether ``open()`` succeeded and ``close()`` was not called."""
        return self._opened

    @property
    def read_only(self) -> bool:
        """Whether changes cannot be saved: the file could only be opened read-only.

        The saved state applies and changes still take effect, for this session only;
        replies to state-changing commands should say that they were not saved.
        """
        return self._read_only is not None

    @property
    def read_only_reason(self) -> str | None:
        """Why the file is read-only (one line naming it), or None when changes are saved."""
        return self._read_only

    async def open(self) -> None:
        """Create or upgrade the database and load the users and settings into memory.

        A file that exists but cannot be written is opened read-only instead (see
        :attr:`read_only`) and reported once in the log.

        Raises:
            StoreError: The file cannot be created, is not a database, or is from a newer
                version of ishowtts.
        """
        if self._opened:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        try:
            opened = await self._run(self._open_sync)
        except BaseException:
            await self._shutdown_executor()
            raise
        for record in opened.records:
            self._apply(record)
        self._settings = opened.settings
        self._read_only = opened.read_only
        self._opened = True
        if opened.read_only is not None:
            log.warning(
                "state database %s is read-only: %s. Saved voices, mutes and settings apply;"
                " changes made now last until the bot stops and cannot be saved",
                self.path,
                opened.read_only,
            )
        log.info(
            "state database %s: %d user(s) with a voice or mute", self.path, len(opened.records)
        )

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
        await self.flush()
        await self._tasks.close()
        try:
            await self._run(self._close_sync)
        finally:
            await self._shutdown_executor()

    async def flush(self) -> None:
        """Wait for background writes (history, user binding) to be committed."""
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()  # its batch is written right here instead
        await self._tasks.wait()
        await self._write_history()

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
            self._by_id[(record.platform, record.user_id)] = record
        self._by_login.setdefault((record.platform, record.login), []).append(record)

    def _forget(self, row: int) -> None:
        old = self._records.pop(row, None)
        if old is None:
            return
        if old.user_id is not None and self._by_id.get((old.platform, old.user_id)) is old:
            del self._by_id[(old.platform, old.user_id)]
        key = (old.platform, old.login)
        same = [r for r in self._by_login.get(key, []) if r.row != row]
        if same:
            self._by_login[key] = same
        else:
            self._by_login.pop(key, None)

    def _apply_changes(self, changes: _Changes) -> None:
        for row in changes.deleted:
            self._forget(row)
        for record in changes.records:
            self._apply(record)

    def _candidates(self, user: ChatUser) -> list[UserRecord]:
        """Rows that describe a chatting user, all on the user's own platform.

        Their own row, and rows set by login on that platform before they were known
        (``seen`` merges those into their own row in the background).
        """
        key = (user.platform, user.login.lower())
        out = [r for r in self._by_login.get(key, []) if r.user_id is None]
        own = self._by_id.get((user.platform, user.id))
        if own is not None:
            out.append(own)
        return out

    def person(self, user: ChatUser) -> PersonState:
        """Voice and active mute of a chatting user, in one read from memory (no I/O)."""
        candidates = sorted(self._candidates(user), key=lambda r: r.updated_at, reverse=True)
        if not candidates:
            return PersonState()
        now = self._clock()
        voice = next((r.voice for r in candidates if r.voice is not None), None)
        mute = next((r.mute for r in candidates if r.mute is not None and r.mute.active(now)), None)
        return PersonState(voice=voice, mute=mute)

    def record_of(self, user: ChatUser) -> UserRecord | None:
        """The row kept for a chatting user (by id, else one set by their login), or None."""
        candidates = self._candidates(user)
        return max(candidates, key=lambda r: r.updated_at) if candidates else None

    def find_login(self, platform: Platform, login: str) -> UserRecord | None:
        """The record of ``@login`` on ``platform``: a bound one first, else the newest."""
        records = self._by_login.get((platform, _clean_login(login)), [])
        return max(records, key=lambda r: (r.user_id is not None, r.updated_at), default=None)

    def voice_of(self, user: ChatUser) -> str | None:
        """The voice ``user`` chose, or None for the default."""
        return self.person(user).voice

    def mute_of(self, user: ChatUser) -> Mute | None:
        """The active mute on ``user``, or None (expired mutes count as none)."""
        return self.person(user).mute

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
    async def set_voice(self, who: Target, voice: str | None) -> UserRecord:
        """Choose ``voice`` for a person (None: back to the default); returns once committed.

        Raises:
            StoreError: The write failed; nothing changed.
        """
        changes = await self._run(self._update_user_sync, who, {"voice": voice})
        self._apply_changes(changes)
        return self._result(changes, who)

    async def mute(self, who: Target, *, until: float | None, by: str) -> UserRecord:
        """Mute a person until epoch time ``until`` (None: until unmuted); returns once committed.

        Raises:
            StoreError: The write failed; nothing changed.
        """
        fields = {
            "muted": 1,
            "muted_until": until,
            "muted_by": by,
            "muted_at": self._clock(),
        }
        changes = await self._run(self._update_user_sync, who, fields)
        self._apply_changes(changes)
        return self._result(changes, who)

    async def unmute(self, who: Target) -> bool:
        """Lift a mute; returns whether an active mute was lifted (once committed).

        Raises:
            StoreError: The write failed; nothing changed.
        """
        fields = {"muted": 0, "muted_until": None, "muted_by": None, "muted_at": None}
        changes = await self._run(self._update_user_sync, who, fields)
        self._apply_changes(changes)
        before = changes.before
        return before is not None and before.mute is not None and before.mute.active(self._clock())

    def _result(self, changes: _Changes, who: Target) -> UserRecord:
        if changes.records:
            return changes.records[-1]
        # The row was deleted because it holds nothing any more.
        return UserRecord(
            row=-1,
            platform=who.platform,
            user_id=who.user_id,
            login=_clean_login(who.login),
            voice=None,
            mute=None,
            updated_at=self._clock(),
        )

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
        """Note that ``user`` chatted: binds a login-only row of their platform, follows renames.

        Runs in the background (nothing waits for it); reads already match by login meanwhile.
        """
        if not self._opened:
            return
        login = user.login.lower()
        by_id = self._by_id.get((user.platform, user.id))
        pending = any(r.user_id is None for r in self._by_login.get((user.platform, login), []))
        if not pending and (by_id is None or by_id.login == login):
            return
        self._background(self._bind(Target.of(user)), "store-bind")

    async def _bind(self, who: Target) -> None:
        try:
            changes = await self._run(self._bind_sync, who)
        except StoreError as exc:
            log.error("could not update user %s: %s", who.login, exc)
            return
        self._apply_changes(changes)

    def record_history(self, entry: HistoryEntry) -> None:
        """Add a history row; rows are written in batches in the background."""
        if not self._opened or self._history_limit <= 0:
            return
        self._history_buffer.append(entry)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = self._tasks.spawn(self._flush_history_soon(), name="history")

    async def _flush_history_soon(self) -> None:
        await asyncio.sleep(self._HISTORY_FLUSH_S)
        await self._write_history()

    async def _write_history(self) -> None:
        batch, self._history_buffer = self._history_buffer, []
        if not batch or self._executor is None:
            return
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
                platform=_platform(r[8]) if r[8] is not None else None,
            )
            for r in rows
        ]

    async def pronunciations(self) -> dict[str, str]:
        """The saved pronunciation dictionary: case-folded word -> spoken form."""
        rows = await self._run(self._pronunciations_sync)
        return {str(word): str(spoken) for word, spoken in rows}

    async def set_pronunciation(self, word: str, spoken: str | None, *, by: str = "") -> bool:
        """Save how ``word`` is said (None forgets it); once committed, whether it changed.

        Raises:
            StoreError: The write failed; nothing changed.
        """
        return await self._run(self._set_pronunciation_sync, word.casefold(), spoken, by)

    def _background(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name=name)

    # -- the store thread -------------------------------------------------------------------
    def _open_sync(self) -> _Opened:
        if self.path == ":memory:":
            conn = sqlite3.connect(":memory:", isolation_level=None)
            return self._prepare(conn, read_only=None)
        path = Path(self.path)
        try:
            self._private_folder(path)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc}") from None
        if path.is_dir():
            raise StoreError(
                f"cannot open the state database {self.path}: it is a folder, not a file; "
                "move it away or point storage.database at a file"
            )
        blocker = write_blocker(path) if path.exists() else None
        if blocker is None:
            try:
                self._private_files(path)
            except OSError as exc:
                raise StoreError(f"cannot create the state database {self.path}: {exc}") from None
            try:
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the state database {self.path}: {exc}") from None
            try:
                return self._prepare(conn, read_only=None)
            except sqlite3.Error as exc:
                # The probe said writable, SQLite says otherwise (an ACL, a mount that
                # changed): the file is still only read-only, not damaged.
                if not (path.exists() and _is_read_only_error(exc)):
                    raise self._refusal(exc) from None
                blocker = f"SQLite cannot write it ({exc})"
        return self._open_read_only_sync(path, blocker)

    def _private_folder(self, path: Path) -> None:
        """The database's folder: created 0700; the state folder also tightened to 0700."""
        folder = path.parent
        if self._state_dir is not None and inside(path, self._state_dir):
            make_private_dir(self._state_dir)
        if not folder.is_dir():
            make_private_dir(folder)

    @staticmethod
    def _private_files(path: Path) -> None:
        """The database 0600 before SQLite opens it, and any leftover -wal/-shm tightened.

        SQLite would create the file ``0644 & ~umask``; created here first it is 0600, and
        the ``-wal``/``-shm`` files SQLite makes later copy that mode exactly.
        """
        existed = path.exists()
        try:
            create_private_file(path)
        except OSError as exc:
            if not existed:
                raise
            log.warning("%s is readable by other users and cannot be restricted: %s", path, exc)
        for suffix in ("-wal", "-shm", "-journal"):
            extra = Path(f"{path}{suffix}")
            try:
                tighten(extra)
            except OSError as exc:
                log.warning(
                    "%s is readable by other users and cannot be restricted: %s", extra, exc
                )

    def _open_read_only_sync(self, path: Path, reason: str) -> _Opened:
        """Read a file that cannot be written into memory, migrating the copy if needed."""
        try:
            source = _connect_read_only(path)
        except sqlite3.Error as exc:
            raise self._refusal(exc) from None
        memory = sqlite3.connect(":memory:", isolation_level=None)
        try:
            with contextlib.closing(source):
                _check_intact(source)
                self._check_version(source)
                source.backup(memory)
        except sqlite3.Error as exc:
            memory.close()
            raise self._refusal(exc) from None
        except BaseException:
            memory.close()
            raise
        return self._prepare(memory, read_only=reason)

    def _refusal(self, exc: sqlite3.Error) -> StoreError:
        if _is_locked(exc):
            return StoreError(
                f"{self.path} is in use by another program ({exc}); is another ishowtts"
                " running with the same storage.dir? Stop it, or point storage.database"
                " elsewhere"
            )
        return StoreError(
            f"{self.path} is not a usable ishowtts database ({exc}); move it away to start"
            " with a fresh one, or point storage.database elsewhere"
        )

    def _prepare(self, conn: sqlite3.Connection, *, read_only: str | None) -> _Opened:
        """Check, upgrade and load an open connection (the file itself, or a memory copy)."""
        try:
            # Read-only checks first: a file that is refused is left exactly as it was.
            if self.path != ":memory:" and read_only is None:
                _check_intact(conn)
            self._check_version(conn)
            if read_only is None and self.path != ":memory:":
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
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return _Opened([_record(r, 0) for r in rows], settings, read_only)

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """Refuse a database from a newer ishowtts (its schema is unknown here)."""
        version = _schema(conn)
        latest = len(self._migrations)
        if version > latest:
            raise StoreError(
                f"{_newer_message(self.path, version, latest)}; upgrade ishowtts or point"
                " storage.database elsewhere"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        self._check_version(conn)
        version = _schema(conn)
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
            if version > 0:
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

    def _update_user_sync(self, who: Target, fields: dict[str, Any]) -> _Changes:
        conn = self._db()
        platform = who.platform.value
        login = _clean_login(who.login)
        now = self._clock()
        changes = _Changes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if who.user_id is not None:
                row = self._merge_tx(conn, who.platform, who.user_id, login, changes)
            else:
                found = conn.execute(
                    "SELECT id FROM users WHERE platform=? AND login=?"
                    " ORDER BY user_id IS NOT NULL DESC, updated_at DESC LIMIT 1",
                    (platform, login),
                ).fetchone()
                row = int(found[0]) if found is not None else None
            if row is None:
                cur = conn.execute(
                    "INSERT INTO users (platform, user_id, login, updated_at) VALUES (?, ?, ?, ?)",
                    (platform, who.user_id, login, now),
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
        self,
        conn: sqlite3.Connection,
        platform: Platform,
        user_id: str,
        login: str,
        changes: _Changes,
    ) -> int | None:
        """Inside a transaction: make one row hold everything known about this person.

        Rows created by login on the same platform before the user was seen are bound to the
        id, or folded into the user's own row (the more recently changed state wins); a
        renamed user's row follows the new login. Rows of other platforms are never read.
        Returns the person's row, or None when there is none.
        """
        cols = _USER_COLUMNS
        own = conn.execute(
            f"SELECT {cols} FROM users WHERE platform=? AND user_id=?", (platform.value, user_id)
        ).fetchone()
        loose = conn.execute(
            f"SELECT {cols} FROM users WHERE platform=? AND login=? AND user_id IS NULL"
            " ORDER BY updated_at DESC",
            (platform.value, login),
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
            if loose and float(loose[0][9]) > float(own[9]):
                newest = loose[0]
                voice = newest[4] if newest[4] is not None else own[4]
                mute = newest[5:9] if newest[5] else own[5:9]
                conn.execute(
                    "UPDATE users SET voice=?, muted=?, muted_until=?, muted_by=?,"
                    " muted_at=?, updated_at=? WHERE id=?",
                    (voice, *mute, float(newest[9]), row),
                )
            if own[3] != login:
                conn.execute("UPDATE users SET login=? WHERE id=?", (login, row))
        for extra_row in extra:
            conn.execute("DELETE FROM users WHERE id=?", (int(extra_row[0]),))
            changes.deleted.append(int(extra_row[0]))
        return row

    def _bind_sync(self, who: Target) -> _Changes:
        conn = self._db()
        changes = _Changes()
        if who.user_id is None:
            return changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._merge_tx(conn, who.platform, who.user_id, _clean_login(who.login), changes)
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

    def _pronunciations_sync(self) -> list[tuple[Any, ...]]:
        return self._db().execute("SELECT word, spoken FROM pronunciations").fetchall()

    def _set_pronunciation_sync(self, word: str, spoken: str | None, by: str) -> bool:
        conn = self._db()
        if spoken is None:
            return conn.execute("DELETE FROM pronunciations WHERE word=?", (word,)).rowcount > 0
        conn.execute(
            "INSERT INTO pronunciations (word, spoken, added_by, added_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(word) DO UPDATE SET spoken=excluded.spoken,"
            " added_by=excluded.added_by, added_at=excluded.added_at",
            (_utf8(word), _utf8(spoken), _utf8(by), self._clock()),
        )
        return True

    def _insert_history_sync(self, batch: list[HistoryEntry]) -> None:
        conn = self._db()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO history (at, message_id, user_id, login, text, voice, outcome,"
                " detail, platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        e.platform.value if e.platform is not None else None,
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
                "SELECT at, message_id, user_id, login, text, voice, outcome, detail, platform"
                " FROM history ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._read_only is None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
            conn.close()


def _code(exc: BaseException) -> int:
    """SQLite's primary result code of an error (0 when unknown)."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_read_only_error(exc: BaseException) -> bool:
    """Whether SQLite refused because the file or its folder cannot be written."""
    return _code(exc) in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)


def _is_locked(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    if _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
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
