"""Nobody else can read the state (issue 12.7): folder 0700, every file in it 0600.

That is the database with its -wal and -shm files, the panel token, the Twitch tokens and the
load timings. The bot writes no log file (it logs to stderr, ``bot/cli.py``); any file that
appears in the state folder is held to 0600 by the same test, so a log file added there later
is covered too.

"From the moment they are created" is tested by watching: a child process sets the umask
(so the change stays out of the test process), watches the folders with inotify and stats
every file the instant it appears (temporary files of atomic writes included, when the
watcher catches them before their rename), while the real Store creates its real SQLite file
and writes to it (which makes SQLite create its -wal and -shm files).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.messages import ChatUser, Platform
from bot.setup.progress import HISTORY_FILE
from bot.state.store import Store, Target
from tests.support import REPO

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inotify and POSIX modes (Linux)"
)

CHILD = r"""
import asyncio, ctypes, json, os, select, struct, sys, threading
from pathlib import Path

umask, root = int(sys.argv[1], 8), Path(sys.argv[2])
os.umask(umask)
libc = ctypes.CDLL(None, use_errno=True)
IN_CREATE, IN_MOVED_TO, IN_ISDIR = 0x100, 0x80, 0x40000000
fd = libc.inotify_init1(os.O_NONBLOCK)
assert fd >= 0, ctypes.get_errno()
folders = {}
seen = []  # (path, mode) the moment each entry appeared
stop = threading.Event()

def watch(folder):
    wd = libc.inotify_add_watch(fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO)
    assert wd >= 0, ctypes.get_errno()
    folders[wd] = folder
    for entry in folder.iterdir():  # whatever appeared before the watch was in place
        note(entry)

def note(path):
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return  # gone already (a temporary probe file)
    seen.append((str(path.relative_to(root)), mode))
    if path.is_dir() and not path.is_symlink():
        watch(path)

def run():
    while not stop.is_set():
        if not select.select([fd], [], [], 0.05)[0]:
            continue
        data = os.read(fd, 65536)
        at = 0
        while at < len(data):
            wd, mask, _cookie, size = struct.unpack_from("iIII", data, at)
            name = data[at + 16 : at + 16 + size].rstrip(b"\0").decode()
            at += 16 + size
            note(folders[wd] / name)

watch(root)
watcher = threading.Thread(target=run)
watcher.start()

from bot.core.messages import Platform
from bot.setup.progress import HISTORY_FILE, LoadProgress
from bot.sources.twitch.auth import StoredToken, TokenStore, token_path
from bot.state.store import HistoryEntry, Store, Target
from bot.web.token import load_or_create_token
from engine.base import EngineState

async def main():
    state = root / "state"
    store = Store(state / "ishowtts.db", state_dir=state)
    await store.open()
    await store.set_voice(Target(Platform.TWITCH, "alice", "1"), "narrator")
    await store.mute(Target(Platform.TWITCH, "bob"), until=None, by="mod")
    store.record_history(HistoryEntry(at=1.0, login="alice", text="hi", outcome="played"))
    await store.flush()
    # The other secrets and state files the bot keeps in the same folder.
    load_or_create_token(state)
    await TokenStore(token_path(state)).save(
        StoredToken("client", "1", "alice", "access-secret", "refresh-secret")
    )
    progress = LoadProgress(state / HISTORY_FILE, "espeak")
    await progress.start()
    progress(EngineState.LOADING, "loading")
    progress(EngineState.READY, "")
    await progress.close()
    opened = {str(p.relative_to(root)): p.lstat().st_mode for p in root.rglob("*")}
    await store.close()
    return opened

opened = asyncio.run(main())
stop.set()
watcher.join()
print(json.dumps({"seen": seen, "open": opened}))
"""


def _watch(tmp_path: Path, umask: int) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """(every entry with its mode the moment it appeared, every entry's mode while open)."""
    root = tmp_path / "root"
    root.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, f"{umask:o}", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    seen = [(str(name), int(mode)) for name, mode in result["seen"]]
    opened = {str(name): int(mode) for name, mode in result["open"].items()}
    return seen, opened


@pytest.mark.parametrize(
    "umask", [0o000, 0o022, 0o077, 0o277], ids=["umask000", "umask022", "umask077", "umask277"]
)
def test_folder_database_wal_and_shm_are_private_from_creation(tmp_path: Path, umask: int) -> None:
    seen, opened = _watch(tmp_path, umask)
    # SQLite's WAL files existed while the store was open, so they were really exercised.
    assert {
        "state",
        "state/ishowtts.db",
        "state/ishowtts.db-wal",
        "state/ishowtts.db-shm",
        "state/web-token",
        "state/twitch-tokens.json",
        f"state/{HISTORY_FILE}",
    } <= set(opened)
    # Never open to others, not even at the instant of creation (a strict umask may narrow a
    # mode for that instant: 0500 before it is set to exactly 0700) ...
    for name, mode in seen:
        assert not stat.S_IMODE(mode) & 0o077, (name, oct(stat.S_IMODE(mode)), oct(umask))
    # ... and exactly 0700 / 0600 while the bot works with them.
    for name, mode in opened.items():
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        assert stat.S_IMODE(mode) == want, (name, oct(stat.S_IMODE(mode)), oct(umask))
    # The watcher saw each of them appear (not only once everything was done).
    assert {"state", "state/ishowtts.db", "state/ishowtts.db-wal", "state/web-token"} <= {
        name for name, _ in seen
    }


async def test_loose_files_from_an_older_version_are_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    path = state / "ishowtts.db"
    store = Store(path)
    await store.open()
    await store.set_voice(Target(Platform.TWITCH, "alice", "1"), "narrator")
    # Leave -wal and -shm behind as a crash would, then loosen everything like old versions.
    for name in ("ishowtts.db", "ishowtts.db-wal", "ishowtts.db-shm"):
        assert (state / name).exists()
        os.chmod(state / name, 0o644)
    await store.close()
    for name in ("ishowtts.db-wal", "ishowtts.db-shm"):
        (state / name).touch()
        os.chmod(state / name, 0o644)

    store = Store(path, state_dir=state)
    await store.open()
    alice = ChatUser(id="1", login="alice", display_name="alice", platform=Platform.TWITCH)
    assert store.person(alice).voice == "narrator"  # tightened, not replaced
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
    await store.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert modes["ishowtts.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


async def test_a_database_outside_the_state_folder_leaves_its_folder_alone(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "documents"
    mine.mkdir()
    os.chmod(mine, 0o755)
    store = Store(mine / "bot.db", state_dir=tmp_path / "state")
    await store.open()
    await store.close()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755  # the user's own folder, as it was
    assert stat.S_IMODE((mine / "bot.db").stat().st_mode) == 0o600
    assert not (tmp_path / "state").exists()
    deeper = tmp_path / "new" / "deeper"
    store = Store(deeper / "bot.db", state_dir=tmp_path / "state")
    await store.open()
    await store.close()
    assert stat.S_IMODE(deeper.stat().st_mode) == 0o700  # created by the bot: private
