"""The whole bot with ``engine.name: remote`` against a real ``ishowtts serve`` process.

Production code end to end: chat pipeline, speech queue, speaker, the engine thread running
the remote engine, HTTP to a separate server process (eSpeak NG behind it), and the real
audio player into the PulseAudio null sink, whose monitor is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import App
from bot.config import parse_config
from bot.core.messages import ChatMessage
from bot.speech.speaker import SpeechEvent
from engine.base import EngineState
from tests.bot.serve.harness import ServeProcess, launch_serve
from tests.support.audio import PulseServer, SinkRecorder, active_span, rms
from tests.support.chat_harness import MOD, VIEWER

pytestmark = [pytest.mark.audio, pytest.mark.slow]

LONG = " ".join(f"Sentence {i} of a long chat message for the stream." for i in range(30))
_ids = itertools.count(1)


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []
        self.changed = asyncio.Event()

    def __call__(self, ev: SpeechEvent) -> None:
        outcome = ev.outcome.value if ev.outcome is not None else None
        self.events.append((ev.kind.value, ev.item.message.text, outcome))
        self.changed.set()

    async def wait(self, kind: str, text_part: str, timeout: float = 60.0) -> str | None:
        async def watch() -> str | None:
            while True:
                for k, text, outcome in self.events:
                    if k == kind and text_part in text:
                        return outcome
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(watch(), timeout)


async def start_app(
    tmp_path: Path, server: ServeProcess, pulse: PulseServer
) -> tuple[App, Heard, list[str]]:
    cfg = parse_config(
        {
            "engine": {"name": "remote", "remote": {"url": server.url, "retry_s": 0.5}},
            "audio": {"device": pulse.device_name, "gap_ms": 0},
            "storage": {"dir": str(server.state_dir)},  # the same PC: reads serve's token file
            "voices": {"dir": str(tmp_path / "voices")},
            "web": {"enabled": False},
            "tts": {"template": "{text}"},
        },
        tmp_path,
    )
    app = App(cfg)
    heard = Heard()
    app.speaker.add_listener(heard)
    replies: list[str] = []
    await app.start()
    assert await asyncio.wait_for(app.worker.wait_ready(), 60) is EngineState.READY
    return app, heard, replies


async def say(app: App, text: str, replies: list[str], user=VIEWER) -> None:
    async def reply(line: str) -> None:
        replies.append(line)

    message = ChatMessage(id=f"r{next(_ids)}", user=user, text=text, source="test", reply=reply)
    await app.chat.handle(message)


def speech_seconds(mono: np.ndarray, rate: int, threshold: float = 0.02) -> float:
    start, end = active_span(mono, threshold)
    return (end - start) / rate


async def test_chat_heard_skip_stops_it_and_the_server(
    tmp_path: Path,
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    tiny_f5: dict[str, Any],
) -> None:
    """Tiny F5 on the CPU synthesises slower than eSpeak NG, so a skip meets the server's job
    still running (a fast engine would have finished it: synthesis runs ahead of playback)."""
    f5 = {**tiny_f5, "max_chunk_chars": 40, "seed": 1}
    server = launch_serve(tmp_path / "srv", {"name": "f5", "device": "cpu", "f5": f5})
    app, heard, replies = await start_app(tmp_path, server, pulse_server)
    try:
        sink_recorder.start()
        await say(app, "Hello from the gaming PC.", replies)
        assert await heard.wait("finished", "gaming PC", 120) == "played"
        mono = sink_recorder.stop()
        assert rms(mono) > 0.001  # tiny random weights: noise, but heard
        assert speech_seconds(mono, sink_recorder.rate, float(np.abs(mono).max()) / 4) > 0.8
        assert server.status()["served"] == 1

        sink_recorder.start()
        await say(app, LONG, replies)
        await heard.wait("started", "Sentence 0", 120)
        await asyncio.sleep(1.0)  # audibly playing
        playing_at = sink_recorder.frames
        await say(app, "!skip", replies, MOD)
        assert await heard.wait("finished", "Sentence 0") == "skipped"
        skipped_at = sink_recorder.frames
        sink_recorder.wait_frames(skipped_at + sink_recorder.rate)  # a second after the skip
        mono = sink_recorder.stop(settle_s=0.1)
        rate = sink_recorder.rate
        assert rms(mono[playing_at - rate // 2 : playing_at]) > 0.001  # it was playing
        after = mono[skipped_at + rate // 5 :]
        assert rms(after) < 0.002  # silent 200 ms after the skip, although LONG is ~60 s
        status = server.wait_status("cancelled", 1)
        assert status["active"] == 0
    finally:
        await app.close()
        server.stop()


async def test_server_killed_mid_message_falls_back_and_recovers(
    tmp_path: Path,
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
    tiny_f5: dict[str, Any],
) -> None:
    """The cut message is spoken again from its start with eSpeak NG; nothing is lost."""
    medium = " ".join(f"Part {i} of a message that the outage cuts." for i in range(12))
    f5 = {**tiny_f5, "max_chunk_chars": 40, "seed": 1}
    server = launch_serve(tmp_path / "srv", {"name": "f5", "device": "cpu", "f5": f5})
    app, heard, replies = await start_app(tmp_path, server, pulse_server)
    try:
        sink_recorder.start()
        await say(app, medium, replies)
        await say(app, "Queued behind the outage.", replies)
        await heard.wait("started", "Part 0", 120)
        await asyncio.sleep(0.5)
        assert server.status()["active"] >= 1  # still synthesising the message
        server.kill()
        assert await heard.wait("finished", "Part 0", 120) == "played"
        assert await heard.wait("finished", "Queued behind", 60) == "played"
        mono = sink_recorder.stop()
        assert speech_seconds(mono, sink_recorder.rate) > 5.0
        assert app.worker.state_detail.startswith("voice server unavailable")

        server.start()
        await asyncio.sleep(0.6)  # engine.remote.retry_s
        sink_recorder.start()
        await say(app, "The server is back.", replies)
        assert await heard.wait("finished", "server is back", 120) == "played"
        assert rms(sink_recorder.stop()) > 0.001
        assert server.status()["served"] == 1  # spoken by the restarted server
        assert "answers again" in app.worker.state_detail
        outcomes = [o for k, _t, o in heard.events if k == "finished"]
        assert outcomes == ["played", "played", "played"]  # no message lost
    finally:
        await app.close()
        server.stop()
