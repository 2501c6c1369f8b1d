"""A real App with a deterministic engine and a recording player, for chat pipeline tests.

Everything between the chat message and the player is production code: the App wiring, the
chat pipeline, commands, filters, the SQLite store on a real file, the speech queue and
speaker, and the real engine thread (EngineWorker). Only the two ends are doubles:

* ToneEngine: an Engine subclass whose output length follows the text; it can be held at a
  gate (to keep messages queued) and its voice list can change while running.
* RecordingPlayer: consumes chunks the way the real player does (block by block, honouring
  stop()), remembers the volume, and can hold a clip "playing" until released, so tests can
  act while something is audibly playing.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.app import App
from bot.chat.pipeline import Decision
from bot.config import Config, parse_config
from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.speech.speaker import SpeechEvent
from engine.base import Audio, Engine, EngineState, StopCheck, VoiceInfo

RATE = 8000
_ids = itertools.count(1)


class ToneEngine(Engine):
    """Deterministic engine: one 10 ms chunk per 4 characters; voices from a list."""

    name = "tone"
    sample_rate = RATE

    def __init__(self, voices: list[str] | None = None) -> None:
        self.voice_names = voices or ["default", "alice", "Narrator", "pirate_2"]
        self.broken = {"ghost"}
        self.calls: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        progress(EngineState.WARMING, "warming tones")

    def voices(self) -> list[VoiceInfo]:
        out = [VoiceInfo(n, "tone") for n in self.voice_names]
        out += [VoiceInfo(n, "tone", problem="no transcript") for n in self.broken]
        return out

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        self.calls.append((text, voice))
        for _ in range(max(1, len(text) // 4)):
            if not self.gate.wait(10) or should_stop():
                return
            yield np.full(RATE // 100, 0.1, dtype=np.float32)


class RecordingPlayer:
    """Plays by consuming chunks one 2 ms block at a time; stop() ends the clip at once.

    The one fake player of the tests. Besides each clip's length (``clips``) and samples
    (``audio``), it records ``(label, samples)`` in ``played``, where ``label`` is whatever
    the test set last (the speaker tests set the text of the item that started), and
    ``fail_after_chunks`` makes it raise like an unplugged device after that many chunks.
    """

    def __init__(self) -> None:
        self.volume = 1.0
        self.volumes: list[float] = []
        self.clips: list[int] = []
        self.audio: list[Audio] = []  # each clip's samples, as played
        self.label = ""
        self.played: list[tuple[str, int]] = []
        self.fail_after_chunks: int | None = None
        self.started = False
        self.hold = asyncio.Event()
        self.hold.set()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    def set_volume(self, volume: float) -> None:
        self.volume = volume
        self.volumes.append(volume)

    def stop(self) -> None:
        self._stop.set()

    async def play(
        self,
        chunks: AsyncIterator[Audio],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        self._stop.clear()
        samples = 0
        played: list[Audio] = []
        async for chunk in chunks:
            if samples == 0 and on_started is not None:
                on_started()
            samples += len(chunk)
            played.append(chunk)
            if self.fail_after_chunks is not None:
                self.fail_after_chunks -= 1
                if self.fail_after_chunks <= 0:
                    self.fail_after_chunks = None
                    raise RuntimeError("device unplugged")
            if self._stop.is_set():
                self._record(played)
                return False
            await asyncio.sleep(0.002)
        # Keep "playing" until released or stopped (tests use this to act mid-message).
        holder = asyncio.create_task(self.hold.wait())
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait({holder, stopper}, return_when=asyncio.FIRST_COMPLETED)
        holder.cancel()
        stopper.cancel()
        self._record(played)
        return not self._stop.is_set()

    def _record(self, chunks: list[Audio]) -> None:
        audio = _joined(chunks)
        self.clips.append(len(audio))
        self.audio.append(audio)
        self.played.append((self.label, len(audio)))


def _joined(chunks: list[Audio]) -> Audio:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def person(
    login: str,
    role: Role = Role.EVERYONE,
    *,
    uid: str | None = None,
    display: str | None = None,
) -> ChatUser:
    roles = frozenset({role}) if role is not Role.EVERYONE else frozenset()
    return ChatUser(
        id=uid or f"id-{login}",
        login=login,
        display_name=display or login,
        roles=roles,
        platform=Platform.TWITCH,
    )


VIEWER = person("viewer")
MOD = person("moddy", Role.MODERATOR)
STREAMER = person("streamer", Role.BROADCASTER)


def make_config(tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "audio": {"gap_ms": 0},
        "storage": {"dir": str(tmp_path / "state")},
        "voices": {"dir": str(tmp_path / "voices")},
        "web": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(data, tmp_path)


@dataclass
class Bot:
    """A started App plus what happened to it."""

    app: App
    engine: ToneEngine
    player: RecordingPlayer
    events: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def store(self) -> Any:
        return self.app.store

    def on_event(self, ev: SpeechEvent) -> None:
        outcome = ev.outcome.value if ev.outcome is not None else None
        self.events.append((ev.kind.value, ev.item.message.user.login, ev.item.text, outcome))
        self._event.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, checking it after every speech event (no polling)."""

        async def watch() -> None:
            while not condition():
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(watch(), timeout)

    async def send(
        self,
        text: str,
        user: ChatUser = VIEWER,
        *,
        bits: int = 0,
        reward: str | None = None,
        voice: str | None = None,
        received_at: float | None = None,
        mid: str | None = None,
    ) -> tuple[Decision, list[str]]:
        """Run one message through the pipeline; returns its Decision and the replies."""
        replies: list[str] = []

        async def reply(line: str) -> None:
            replies.append(line)

        extra: dict[str, Any] = {}
        if received_at is not None:
            extra["received_at"] = received_at
        message = ChatMessage(
            id=mid or f"m{next(_ids)}",
            user=user,
            text=text,
            source="test",
            bits=bits,
            reward=reward,
            voice=voice,
            reply=reply,
            **extra,
        )
        decision = await self.app.chat.handle(message)
        return decision, replies

    def finished(self) -> list[tuple[str, str, str | None]]:
        return [
            (login, text, outcome)
            for kind, login, text, outcome in self.events
            if kind == "finished"
        ]

    def started(self) -> list[str]:
        return [text for kind, _login, text, _o in self.events if kind == "started"]

    async def idle(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.app.speaker.wait_idle(), timeout)

    async def close(self) -> None:
        self.player.hold.set()
        self.engine.gate.set()
        await self.app.close()


async def start_bot(cfg: Config, engine: ToneEngine | None = None) -> Bot:
    engine = engine or ToneEngine()
    player = RecordingPlayer()
    app = App(cfg, engine=engine, player=player)  # type: ignore[arg-type]
    bot = Bot(app, engine, player)
    app.speaker.add_listener(bot.on_event)
    await app.start()
    assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
    return bot


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (yielding to the loop) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
