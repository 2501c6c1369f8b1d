"""Chat from the terminal: each line typed (or piped in) is a message from the broadcaster.

This is the source used when no Twitch account is configured, and the way to script the bot
(``ishowtts < lines.txt`` speaks every line, then exits once the queue has drained).
"""

from __future__ import annotations

import asyncio
import codecs
import getpass
import logging
import os
import sys
import uuid
from typing import TextIO

from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.sources.base import ChatSink

log = logging.getLogger(__name__)

_READ_SIZE = 65536
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

    Pipes and terminals are watched with ``loop.add_reader``; a regular file (input redirected
    from disk) cannot be polled, so it is read in bounded slices, yielding to the loop between
    them. Replies go to ``out``.
    """

    name = "terminal"

    def __init__(self, fd: int | None = None, out: TextIO | None = None) -> None:
        self._fd = fd
        self._out = out
        self._user = local_user()
        self._closed = asyncio.Event()
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
        fd = self._fd if self._fd is not None else sys.stdin.fileno()
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("terminal input failed: %s", exc)
                data = b""
            if not data:
                loop.remove_reader(fd)
            chunks.put_nowait(data or None)

        try:
            loop.add_reader(fd, readable)
            polled = True
        except (PermissionError, ValueError, OSError):
            polled = False  # a regular file: reads never wait, so slice them
        try:
            while not self._closed.is_set():
                if polled:
                    getter = asyncio.ensure_future(chunks.get())
                    closer = asyncio.ensure_future(self._closed.wait())
                    done, _ = await asyncio.wait(
                        {getter, closer}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for fut in (getter, closer):
                        if fut not in done:
                            fut.cancel()
                    if getter not in done:
                        break
                    data = getter.result()
                else:
                    data = os.read(fd, _READ_SIZE) or None
                    await asyncio.sleep(0)
                lines = self._feed(data or b"", final=data is None)
                for line in lines:
                    if line.strip():
                        await sink.on_message(self._message(line))
                if data is None:
                    log.info("end of terminal input")
                    break
        finally:
            if polled:
                loop.remove_reader(fd)

    async def close(self) -> None:
        """Stop reading."""
        self._closed.set()
