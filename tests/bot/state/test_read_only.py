"""A read-only database is served, not called damaged (issue 12.9), made read-only three ways.

Each way is the real thing on the real SQLite file the real App wrote: permissions (file 0400,
folder 0500, with root's permission override dropped by ``setpriv`` so the bits bind root
too), an immutable file (``chattr +i``, root only) and a read-only mount (a read-only bind
mount of the state folder in a private mount namespace, ``unshare -m``, root only). A child
process starts the whole bot (tests/support/chat_harness: the real App, pipeline and store)
on that file and reports what a streamer would see: the store's verdict, the saved voice,
mute and settings applied, the log, the doctor's database line, and the chat replies to
commands that change state. The file must come out byte for byte as it went in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.state.store import DatabaseState, database_health
from tests.support import REPO
from tests.support.chat_harness import MOD, make_config, start_bot

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="setpriv, chattr and mount namespaces (Linux)"
)

ROOT = os.geteuid() == 0

CHILD = r"""
import asyncio, json, logging, sys
from pathlib import Path

from bot.core.messages import Platform
from bot.setup.doctor import check_database
from tests.support.chat_harness import MOD, make_config, person, start_bot

root = Path(sys.argv[1])
records = []


class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.name, record.getMessage()))


logging.getLogger().addHandler(Keep(logging.INFO))
logging.getLogger().setLevel(logging.INFO)


async def main():
    cfg = make_config(root)
    bot = await start_bot(cfg)
    try:
        store = bot.store
        paused = bot.app.speaker.paused
        alice, bob = person("alice"), person("bob")
        decision, _ = await bot.send("hello from alice", alice)
        voice = decision.item.voice if decision.item is not None else None
        muted, _ = await bot.send("hello from bob", bob)
        replies = {}
        for line in ("!setvoice @carol Narrator", "!mute @dave", "!volume 30", "!resume"):
            # Each of these changes saved state.
            _, said = await bot.send(line, MOD)
            replies[line] = said
        _, asked = await bot.send("!voice", MOD)  # a question changes nothing
        carol, _ = await bot.send("hello from carol", person("carol"))
        doctor = check_database(cfg)
        return {
            "read_only": store.read_only,
            "reason": store.read_only_reason,
            "alice_voice": voice,
            "bob": [muted.action.value, muted.reason],
            "volume": bot.player.volumes[:1],
            "paused_at_start": paused,
            "carol_voice": carol.item.voice if carol.item is not None else None,
            "replies": replies,
            "asked": asked,
            "doctor": [doctor.status, doctor.summary, doctor.fix],
        }
    finally:
        await bot.close()


out = asyncio.run(main())
out["log"] = records
print("RESULT " + json.dumps(out))
"""


async def _write_saved_state(root: Path) -> Path:
    """The real bot saves a voice, a mute, a volume and a pause; returns the database file."""
    bot = await start_bot(make_config(root))
    try:
        for line in ("!setvoice @alice pirate_2", "!mute @bob", "!volume 40", "!pause"):
            _, replies = await bot.send(line, MOD)
            assert replies, line
        path = Path(bot.store.path)
    finally:
        await bot.close()
    assert database_health(path).state is DatabaseState.OK
    return path


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    """Each entry's content hash and mode, and the folder's own mode (under "")."""
    entries = {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in folder.iterdir()
        if p.is_file()
    }
    entries[""] = ("", folder.stat().st_mode)
    return entries


def _run_child(root: Path, wrapper: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [*wrapper, sys.executable, "-c", CHILD, str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def _permissions(state: Path, db: Path) -> tuple[list[str], str]:
    db.chmod(0o400)
    state.chmod(0o500)
    if not ROOT:
        return [], "Permission denied"
    if shutil.which("setpriv") is None:
        pytest.skip("root passes permission checks and setpriv (util-linux) is missing")
    # Root without CAP_DAC_OVERRIDE obeys the mode bits like any other user.
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"], "Permission denied"


def _immutable(state: Path, db: Path) -> tuple[list[str], str]:
    if not ROOT:
        pytest.skip("chattr +i needs root (CAP_LINUX_IMMUTABLE)")
    done = subprocess.run(["chattr", "+i", str(db)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"this file system has no immutable flag: {done.stderr.strip()}")
    return [], "immutable"


def _read_only_mount(state: Path, db: Path) -> tuple[list[str], str]:
    if not ROOT or shutil.which("unshare") is None:
        pytest.skip("a private mount namespace needs root and unshare (util-linux)")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind -o ro '{state}' '{state}'"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"mount namespaces are not allowed here: {probe.stderr.strip()}")
    # The mount exists only inside the child's namespace, and ends with it.
    script = f"mount --bind -o ro '{state}' '{state}' && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", script, "sh"], "read-only file system"


WAYS = {"permissions": _permissions, "immutable": _immutable, "mount": _read_only_mount}


@pytest.fixture(scope="module", params=sorted(WAYS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, dict[str, Any], bool]:
    """(way, expected reason, what the child saw, whether the files were left untouched)."""
    import asyncio

    way: str = request.param
    root = tmp_path_factory.mktemp(f"read-only-{way}")
    db = asyncio.run(_write_saved_state(root))
    state = db.parent
    try:
        wrapper, reason = WAYS[way](state, db)
        before = _digest(state)  # the read-only modes too: the bot must not widen them
        result = _run_child(root, wrapper)
        after = _digest(state)
    finally:
        if way == "immutable":
            subprocess.run(["chattr", "-i", str(db)], check=False)
        state.chmod(0o700)
        db.chmod(0o600)
    # Same entries, same bytes, no mode widened. (SQLite itself may narrow an empty -wal to
    # the database's 0400: it gives a zero-length file it opens the database's mode.)
    untouched = before.keys() == after.keys() and all(
        after[k][0] == before[k][0] and not after[k][1] & ~before[k][1] for k in before
    )
    return way, reason, result, untouched


def test_it_is_read_only_with_the_reason_never_damaged(
    served: tuple[str, str, dict[str, Any], bool],
) -> None:
    way, reason, seen, _ = served
    assert seen["read_only"] is True, way
    assert reason in seen["reason"], seen["reason"]
    assert "damaged" not in json.dumps(seen).lower()
    # The log says so once, naming the file, the reason and that changes are not saved.
    lines = [
        m for level, name, m in seen["log"] if name == "bot.state.store" and level == "WARNING"
    ]
    said = [m for m in lines if "read-only" in m]
    assert len(said) == 1, lines
    assert reason in said[0]
    assert "cannot be saved" in said[0]
    # The doctor agrees: a warning (saved state applies), with the fix for this cause.
    status, summary, fix = seen["doctor"]
    assert status == "warn"
    assert "read-only" in summary
    assert reason in summary
    assert "changes cannot be saved" in summary
    assert fix


def test_saved_voices_mutes_and_settings_keep_applying(
    served: tuple[str, str, dict[str, Any], bool],
) -> None:
    _, _, seen, untouched = served
    assert seen["alice_voice"] == "pirate_2"
    assert seen["bob"] == ["dropped", "muted"]
    assert seen["volume"] == [0.4]  # the saved volume was applied at start
    assert seen["paused_at_start"] is True
    # Changes still take effect for this session (the in-memory copy) ...
    assert (seen["carol_voice"] or "").casefold() == "narrator"
    # ... and nothing was written to the read-only files.
    assert untouched


def test_replies_to_changes_say_they_cannot_be_saved(
    served: tuple[str, str, dict[str, Any], bool],
) -> None:
    _, _, seen, _ = served
    for line, replies in seen["replies"].items():
        assert replies, line
        assert any("not be saved" in r or "not saved" in r for r in replies), (line, replies)
    assert seen["asked"], "!voice answers"
    assert not any("not saved" in r for r in seen["asked"]), seen["asked"]
