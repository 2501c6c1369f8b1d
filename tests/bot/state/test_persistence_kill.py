"""Nothing acknowledged is lost: the real bot process is SIGKILLed right after it confirms
commands in chat, then started again.

The bot runs as ``python -m bot --config X`` with the eSpeak NG engine (no GPU, no weights),
its terminal chat source on a pipe (the person at the keyboard is the broadcaster, so every
command is allowed) and the real player on the PulseAudio test sink. Acknowledgements are the
"[ishowtts] ..." lines the terminal source prints; the kill follows the last one at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import yaml

from tests.support import REPO
from tests.support.audio import PulseServer
from tests.support.f5 import write_alice

pytestmark = [pytest.mark.audio, pytest.mark.slow]

ACK_TIMEOUT_S = 90.0  # generous: a busy 2-core CI box imports and starts slowly


class BotProcess:
    """``python -m bot`` with stdin/stdout on pipes; stdout lines arrive on a queue."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=config.parent,
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, wanted: str, timeout: float = ACK_TIMEOUT_S) -> None:
        """Wait for the reply line ``[ishowtts] wanted``."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply {wanted!r}; got {seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"bot exited before replying {wanted!r}; got {seen}")
            seen.append(line)
            if line == f"[ishowtts] {wanted}":
                return

    def ask(self, line: str, wanted: str) -> None:
        self.say(line)
        self.expect(wanted)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close()

    def finish(self) -> int:
        """Close stdin (end of chat input) and wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=120)
        self._close()
        return code

    def _close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._reader.join(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def _config(tmp_path: Path, pulse: PulseServer) -> Path:
    write_alice(tmp_path / "voices")
    config = {
        "engine": {"name": "espeak"},
        "voices": {"dir": "voices"},
        "audio": {"device": pulse.device_name, "gap_ms": 0},
        "chat": {"source": "terminal"},
        "storage": {"dir": "state"},
        "web": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _db_state(db: Path) -> dict[str, object]:
    """Read what is on disk with a plain sqlite3 connection (as a fresh process would)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        users = {
            login: (voice, bool(muted))
            for login, voice, muted in conn.execute("SELECT login, voice, muted FROM users")
        }
        settings = dict(conn.execute("SELECT key, value FROM settings").fetchall())
    finally:
        conn.close()
    return {"users": users, "settings": settings}


def test_acknowledged_commands_survive_sigkill(tmp_path: Path, pulse_server: PulseServer) -> None:
    config = _config(tmp_path, pulse_server)
    env = {**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)}
    log = tmp_path / "bot.log"
    db = tmp_path / "state" / "ishowtts.db"

    bot = BotProcess(config, env, log)
    try:
        bot.ask("!voice ALICE", "your voice is now alice")
        bot.ask("!mute @pest 1h", "muted pest for 1 hour")
        bot.ask("!setvoice @newbie alice", "newbie's voice is now alice")
        bot.ask("!volume 40", "volume 40%")
        bot.ask("!pause", "paused; !resume continues")
        bot.kill()  # at once: no clean shutdown, no chance to flush anything
    finally:
        bot.stop()

    on_disk = _db_state(db)
    users = on_disk["users"]
    assert isinstance(users, dict)
    assert users["pest"] == (None, True)
    assert users["newbie"] == ("alice", False)
    assert ("alice", False) in [v for k, v in users.items() if k not in ("pest", "newbie")]
    assert on_disk["settings"] == {"volume": "0.4", "paused": "true"}

    bot = BotProcess(config, env, log)
    try:
        bot.ask("!voice", "your voice is alice")
        bot.ask("!volume", "volume is 40%")
        bot.ask("!resume", "resumed")
        bot.ask("!unmute @pest", "unmuted pest")  # proves the mute was still there
        bot.ask("!ttsoff", "TTS is off; !ttson turns it back on")
        bot.kill()
    finally:
        bot.stop()

    bot = BotProcess(config, env, log)
    try:
        bot.ask("!unmute @pest", "pest was not muted")
        bot.ask("!ttson", "TTS is on")
        bot.ask("!voice", "your voice is alice")
        bot.say("hello from the terminal")
        assert bot.finish() == 0  # end of input: speaks what is queued, then exits
    finally:
        bot.stop()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert _db_state(db)["settings"] == {"volume": "0.4", "paused": "false", "enabled": "true"}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    history = conn.execute("SELECT text, voice, outcome FROM history").fetchall()
    conn.close()
    assert history == [("hello from the terminal", "alice", "played")]
