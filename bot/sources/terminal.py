"""Chat from the terminal: each line typed (or piped in) is a message from the broadcaster.

This is the source used when no Twitch account is configured, and the way to script the bot
(``ishowtts < lines.txt`` speaks every line, then exits once the queue has drained).
"""

from __future__ import annotations

import codecs
import getpass
import logging
import sys
import uuid
from typing import TextIO

from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.core.platform import InputReader
from bot.sources.base import ChatSink

log = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024  # a pasted novel is cut here; the text filter caps it further


def local_user() -> ChatUser:
    """The person at the keyboard: the streamer, so every command is allowed."""
    try:
        name = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        name = "streamer"
    login = "".join(ch for ch in name.lower() if ch.isalnum() or ch == "_") or "streamer"
    return ChatUser(
        id="local",
        login=login,
        display_name=name,
        roles=frozenset({Role.BROADCASTER}),
        platform=Platform.TERMINAL,
    )


class TerminalSource:
    """Reads lines from a file descriptor (stdin by default) without blocking the event loop.

    The bytes come through :class:`bot.core.platform.InputReader`: the loop watches pipes and
    terminals where it can (Linux, macOS); elsewhere (Windows, a redirected file) one thread
    reads and hands each chunk to the loop. Replies go to ``out``.
    """

    name = "terminal"

    def __init__(self, fd: int | None = None, out: TextIO | None = None) -> None:
        self._fd = fd
        self._out = out
        self._user = local_user()
        self._closed = False
        self._reader: InputReader | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    async def _reply(self, text: str) -> None:
        out = self._out or sys.stdout
        out.write(f"[ishowtts] {text}\n")
        out.flush()

    def _message(self, line: str) -> ChatMessage:
        return ChatMessage(
            id=f"term-{uuid.uuid4().hex}",
            user=self._user,
            text=line,
            source=self.name,
            reply=self._reply,
        )

    def _feed(self, data: bytes, final: bool = False) -> list[str]:
        """Decode bytes and split complete lines (overlong lines are cut, not buffered forever)."""
        self._pending += self._decoder.decode(data, final=final)
        *lines, self._pending = self._pending.split("\n")
        if final and self._pending:
            lines.append(self._pending)
            self._pending = ""
        if len(self._pending) > _MAX_LINE:
            lines.append(self._pending[:_MAX_LINE])
            self._pending = ""
        return [ln.rstrip("\r") for ln in lines]

    async def run(self, sink: ChatSink) -> None:
        """Deliver each line until end of input or ``close()``."""
        if self._closed:
            return
        fd = self._fd if self._fd is not None else sys.stdin.fileno()
        reader = InputReader(fd)
        self._reader = reader
        reader.start()
        try:
            while True:
                data = await reader.read()
                if data is None:  # closed
                    break
                for line in self._feed(data, final=not data):
                    if line.strip():
                        await sink.on_message(self._message(line))
                if not data:
                    log.info("end of terminal input")
                    break
        finally:
            await reader.close()

    async def close(self) -> None:
        """Stop reading (the reader thread, where there is one, ends too)."""
        self._closed = True
        if self._reader is not None:
            await self._reader.close()
