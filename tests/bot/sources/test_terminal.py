"""The terminal source over real file descriptors: a pipe, a regular file and EOF."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from bot.core.messages import ChatMessage, ModerationEvent, Role
from bot.sources.terminal import TerminalSource


class Sink:
    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []

    async def on_message(self, message: ChatMessage) -> None:
        self.messages.append(message)

    async def on_moderation(self, event: ModerationEvent) -> None:
        raise AssertionError("the terminal has no moderation events")


async def test_lines_from_a_pipe_become_broadcaster_messages_until_eof() -> None:
    read_fd, write_fd = os.pipe()
    source = TerminalSource(fd=read_fd)
    sink = Sink()
    task = asyncio.create_task(source.run(sink))
    os.write(write_fd, b"hello there\n\n   \nsecond line\r\nno newline at end")
    await asyncio.sleep(0.05)
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
    task = asyncio.create_task(source.run(Sink()))
    await asyncio.sleep(0.02)
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
