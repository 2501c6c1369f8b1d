"""The terminal source over real file descriptors: a pipe, a regular file and EOF."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bot.core.messages import ChatMessage, ModerationEvent, Role
from bot.sources.terminal import TerminalSource


class Sink:
    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []
        self._arrived = asyncio.Event()

    async def on_message(self, message: ChatMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        """Wait until ``count`` messages have arrived (a timeout is a failure)."""
        async with asyncio.timeout(timeout_s):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def on_moderation(self, event: ModerationEvent) -> None:
        raise AssertionError("the terminal has no moderation events")


async def test_lines_from_a_pipe_become_broadcaster_messages_until_eof() -> None:
    read_fd, write_fd = os.pipe()
    source = TerminalSource(fd=read_fd)
    sink = Sink()
    task = asyncio.create_task(source.run(sink))
    os.write(write_fd, b"hello there\n\n   \nsecond line\r\nno newline at end")
    await sink.wait_for(2)
    assert [m.text for m in sink.messages] == ["hello there", "second line"]
    os.close(write_fd)
    await asyncio.wait_for(task, 5)
    os.close(read_fd)
    texts = [m.text for m in sink.messages]
    assert texts == ["hello there", "second line", "no newline at end"]
    assert all(m.user.role is Role.BROADCASTER and m.source == "terminal" for m in sink.messages)
    assert len({m.id for m in sink.messages}) == 3


async def test_a_regular_file_is_read_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(500)), encoding="utf-8")
    with path.open("rb") as fh:
        sink = Sink()
        await asyncio.wait_for(TerminalSource(fd=fh.fileno()).run(sink), 10)
    assert [m.text for m in sink.messages] == [f"line {i}" for i in range(500)]


async def test_invalid_utf8_and_split_multibyte_characters_do_not_break_reading() -> None:
    read_fd, write_fd = os.pipe()
    sink = Sink()
    task = asyncio.create_task(TerminalSource(fd=read_fd).run(sink))
    data = "café\n".encode()
    os.write(write_fd, data[:4])  # splits the two-byte é
    await asyncio.sleep(0.02)
    os.write(write_fd, data[4:] + b"bad \xff\xfe bytes\n")
    os.close(write_fd)
    await asyncio.wait_for(task, 5)
    os.close(read_fd)
    assert [m.text for m in sink.messages] == ["café", "bad \ufffd\ufffd bytes"]


async def test_close_stops_a_source_that_is_waiting_for_input() -> None:
    read_fd, write_fd = os.pipe()
    source = TerminalSource(fd=read_fd)
    sink = Sink()
    task = asyncio.create_task(source.run(sink))
    os.write(write_fd, b"one line, then it waits for the next\n")
    await sink.wait_for(1)  # read: now it waits for more input
    await source.close()
    await asyncio.wait_for(task, 5)
    os.close(read_fd)
    os.close(write_fd)


async def test_replies_are_printed() -> None:
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    sink = Sink()
    task = asyncio.create_task(TerminalSource(fd=read_fd, out=out).run(sink))
    os.write(write_fd, b"hi\n")
    os.close(write_fd)
    await asyncio.wait_for(task, 5)
    os.close(read_fd)
    await sink.messages[0].reply("your voice is now alice")
    assert out.getvalue() == "[ishowtts] your voice is now alice\n"


# -- the paths Windows takes, run here --------------------------------------------------------


class NoReaderLoop(asyncio.SelectorEventLoop):
    """Like Windows' proactor loop: add_reader raises NotImplementedError."""

    def add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:
        raise NotImplementedError


def _on_loop_without_add_reader(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = NoReaderLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_loop_without_add_reader_reads_a_pipe_in_a_thread_until_eof() -> None:
    async def main() -> None:
        read_fd, write_fd = os.pipe()
        source = TerminalSource(fd=read_fd)
        sink = Sink()
        task = asyncio.create_task(source.run(sink))
        os.write(write_fd, "first line\nzweite Zeile ü\n".encode())
        os.write(write_fd, b"no newline at end")
        os.close(write_fd)
        await asyncio.wait_for(task, 10)
        os.close(read_fd)
        assert [m.text for m in sink.messages] == [
            "first line",
            "zweite Zeile ü",
            "no newline at end",
        ]
        assert not [t for t in threading.enumerate() if t.name == "stdin-reader"]

    _on_loop_without_add_reader(main)


def test_a_loop_without_add_reader_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(2000)), encoding="utf-8")

    async def main() -> None:
        sink = Sink()
        with path.open("rb") as fh:
            await asyncio.wait_for(TerminalSource(fd=fh.fileno()).run(sink), 20)
        assert [m.text for m in sink.messages] == [f"line {i}" for i in range(2000)]

    _on_loop_without_add_reader(main)


def test_close_ends_the_reader_thread_of_a_loop_without_add_reader() -> None:
    async def main() -> None:
        read_fd, write_fd = os.pipe()
        source = TerminalSource(fd=read_fd)
        sink = Sink()
        task = asyncio.create_task(source.run(sink))
        os.write(write_fd, b"one\n")
        await sink.wait_for(1)
        assert [t for t in threading.enumerate() if t.name == "stdin-reader"]
        await source.close()
        await asyncio.wait_for(task, 10)
        assert not [t for t in threading.enumerate() if t.name == "stdin-reader"]
        assert [m.text for m in sink.messages] == ["one"]
        os.close(read_fd)
        os.close(write_fd)

    _on_loop_without_add_reader(main)
