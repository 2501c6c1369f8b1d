"""A running bot with its web server, on real components, for the web API and browser tests.

The real App: tiny F5-TTS weights on the CPU through the engine thread, the sounddevice player
on the PulseAudio null sink, SQLite state in the test's folder, and the aiohttp server on a
free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from bot.app import App
from bot.config import load_config
from bot.speech.speaker import SpeechEvent
from engine.f5 import F5Engine
from tests.support.audio import PulseServer
from tests.support.f5 import write_alice, write_tiny_f5_config


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def bot_config(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse: PulseServer, **sections: Any
) -> Path:
    """config.yaml for the tiny model, the test sink, a private state folder and port 0."""
    path = write_tiny_f5_config(tmp_path, tiny_f5, seed=7)
    data = yaml.safe_load(path.read_text())
    data = _merge(
        data,
        {
            "audio": {"device": pulse.device_name, "gap_ms": 0},
            "chat": {"source": "terminal"},
            "storage": {"dir": str(tmp_path / "state")},
            "web": {"port": 0},
        },
    )
    data = _merge(data, sections)
    path.write_text(yaml.safe_dump(data))
    return path


def espeak_config(tmp_path: Path, pulse: PulseServer, **web: Any) -> Path:
    """config.yaml for the real eSpeak NG engine (fast on a CPU), the test sink, terminal
    chat, a private state folder and a free port; ``web`` adds to the ``web`` section."""
    write_alice(tmp_path / "voices")
    data = {
        "engine": {"name": "espeak"},
        "voices": {"dir": "voices"},
        "audio": {"device": pulse.device_name, "gap_ms": 0},
        "chat": {"source": "terminal"},
        "storage": {"dir": str(tmp_path / "state")},
        "web": {"port": 0, **web},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def espeak_bot(tmp_path: Path, pulse: PulseServer, **web: Any) -> AsyncIterator[App]:
    """The whole bot on eSpeak NG, started (web server included); closed at the end."""
    app = App(load_config(espeak_config(tmp_path, pulse, **web)))
    await app.start()
    try:
        assert app.web is not None
        assert app.web.running
        yield app
    finally:
        await app.close()


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse: PulseServer, **sections: Any
) -> AsyncIterator[App]:
    """Start the whole bot (web server included); close it at the end."""
    cfg = load_config(bot_config(tmp_path, tiny_f5, pulse, **sections))
    app = App(cfg, engine=F5Engine(cfg.engine.f5, cfg.voices, "cpu"))
    await app.start()
    try:
        yield app
    finally:
        await app.close()


class EventLog:
    """Speech events with the monotonic time they happened, for ordering checks."""

    def __init__(self, app: App) -> None:
        self.events: list[tuple[float, SpeechEvent]] = []
        self._changed = asyncio.Event()
        app.speaker.add_listener(self._add)

    def _add(self, event: SpeechEvent) -> None:
        self.events.append((time.monotonic(), event))
        self._changed.set()

    def kinds(self, message_id: str | None = None) -> list[str]:
        return [
            e.kind.value
            for _, e in self.events
            if message_id is None or e.item.message.id == message_id
        ]

    async def wait_for(
        self, check: Callable[[SpeechEvent], bool], timeout_s: float = 60.0
    ) -> tuple[float, SpeechEvent]:
        """Wait for (and return) the first event that passes ``check``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for stamp, event in self.events:
                if check(event):
                    return stamp, event
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching speech event; saw {self.kinds()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
