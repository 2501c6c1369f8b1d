"""What the Twitch tests share: a recording sink, sign-in, a running source, a running App.

Everything is real: twitchio signs in to the double (tests/support/twitch_double.py) over
HTTP and websockets on 127.0.0.1; the App runs its pipeline, speaker and engine thread with a
deterministic tone engine and a player the test can hold mid-message. Tests wait on what these
record (a condition notified on every event), not on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import parse_config
from bot.core.messages import ChannelEvent, ChannelEventKind, ChatMessage
from bot.sources.twitch.auth import StoredToken, TokenStore, token_path
from bot.sources.twitch.settings import TwitchConfig
from bot.sources.twitch.source import ConnectionChange, ConnectionState, TwitchSource
from bot.state.settings import state_dir
from engine.base import Audio, Engine, EngineState, StopCheck, VoiceInfo
from tests.support.twitch_double import ALL_SCOPES, TwitchDouble, User


class Recorder:
    """A list that wakes waiters on every append."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Condition()

    def add(self, item: Any) -> None:
        """Append (from the event loop, without awaiting) and wake every waiter."""
        self.events.append(item)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(events)`` holds (checked on every new event)."""

        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.events))

        await asyncio.wait_for(waiter(), timeout)


class Sink(Recorder):
    """Records what the source delivers, in order (messages and moderation)."""

    async def on_message(self, message: ChatMessage) -> None:
        self.add(message)

    async def on_moderation(self, event: Any) -> None:
        self.add(event)

    @property
    def messages(self) -> list[ChatMessage]:
        return [e for e in self.events if isinstance(e, ChatMessage)]

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    async def wait_text(self, text: str, timeout: float = 10.0) -> ChatMessage:
        await self.wait(lambda _e: text in self.texts(), timeout)
        return next(m for m in self.messages if m.text == text)


EVERY_KIND = frozenset(ChannelEventKind)


class EventSink(Sink):
    """A sink that wants channel events too."""

    def __init__(self, wanted: frozenset[ChannelEventKind] = EVERY_KIND) -> None:
        super().__init__()
        self.wanted = wanted

    def wanted_events(self) -> frozenset[ChannelEventKind]:
        return self.wanted

    async def on_channel_event(self, event: ChannelEvent) -> None:
        self.add(event)

    @property
    def channel_events(self) -> list[ChannelEvent]:
        return [e for e in self.events if isinstance(e, ChannelEvent)]


class Changes(Recorder):
    """The source's connection changes (its ``on_change`` observer)."""

    def __call__(self, change: ConnectionChange) -> None:
        self.add(change)

    @property
    def states(self) -> list[ConnectionState]:
        return [c.state for c in self.events]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` for state that no event announces (the double's records)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def sign_in(
    double: TwitchDouble, path: Path, user: User | None = None, scopes: tuple[str, ...] = ALL_SCOPES
) -> tuple[TokenStore, Any]:
    """What ``ishowtts login`` leaves behind: a token file for ``user`` (the bot by default)."""
    user = user or double.bot
    token = double.issue_token(user, scopes)
    store = TokenStore(path)
    store.write(
        StoredToken(
            client_id=double.client_id,
            user_id=user.id,
            login=user.login,
            access_token=token.access,
            refresh_token=token.refresh,
            scopes=scopes,
        )
    )
    return store, token


def twitch_cfg(double: TwitchDouble, **overrides: Any) -> TwitchConfig:
    values: dict[str, Any] = {
        "channel": double.broadcaster.login,
        "client_id": double.client_id,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
    }
    values.update(overrides)
    return TwitchConfig(**values)


async def until_subscribed(
    double: TwitchDouble,
    task: asyncio.Task[Any],
    exclude: tuple[Any, ...] = (),
    types: tuple[str, ...] | None = None,
) -> Any:
    """Wait for a fully subscribed session, failing at once if the source task ended."""
    if types is None:
        waiter = asyncio.ensure_future(double.wait_subscribed(exclude=exclude))
    else:
        waiter = asyncio.ensure_future(double.wait_subscribed(types, exclude=exclude))
    done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        task.result()
        raise AssertionError("the source stopped before subscribing")
    return waiter.result()


@contextlib.asynccontextmanager
async def running_source(
    double: TwitchDouble,
    store: TokenStore,
    sink: Sink,
    *,
    changes: Changes | None = None,
    move_quiet_s: float = 0.3,
    types: tuple[str, ...] | None = None,
    **overrides: Any,
) -> AsyncIterator[TwitchSource]:
    """A connected source delivering to ``sink``; closed (and its task awaited) afterwards."""
    changes = changes if changes is not None else Changes()
    source = TwitchSource(
        twitch_cfg(double, **overrides),
        store,
        health_interval_s=0.2,
        move_quiet_s=move_quiet_s,
        on_change=changes,
    )
    task = asyncio.create_task(source.run(sink))
    try:
        await until_subscribed(double, task, types=types)
        await changes.wait(lambda _e: source.state is ConnectionState.CONNECTED)
        yield source
    finally:
        await source.close()
        await asyncio.wait_for(task, 10)


# -- the real App -----------------------------------------------------------------------------

RATE = 8000


class ToneEngine(Engine):
    """A deterministic engine: 20 chunks of 10 ms per message, stopping when asked.

    ``voices_gate``, when set, holds the voice list on the engine thread until it is set: the
    engine busy loading, as a ``!voice`` sees it.
    """

    name = "tone"
    sample_rate = RATE

    def __init__(self) -> None:
        self.voices_gate: threading.Event | None = None
        self.voices_asked = threading.Event()

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        progress(EngineState.WARMING, "warming tones")

    def voices(self) -> list[VoiceInfo]:
        self.voices_asked.set()
        if self.voices_gate is not None:
            self.voices_gate.wait(30)
        return [VoiceInfo("default", "tone"), VoiceInfo("narrator", "tone")]

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        for i in range(20):
            if should_stop():
                return
            threading.Event().wait(0.001)
            yield np.full(RATE // 100, 0.1 + i / 100, dtype=np.float32)


class HeldPlayer:
    """A player that holds each message at its first block until released or stopped."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self._stop = asyncio.Event()
        self.stops = 0
        self.volume = 1.0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def set_volume(self, volume: float) -> None:
        self.volume = volume

    async def play(
        self,
        chunks: AsyncIterator[Audio],
        sample_rate: int,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> bool:
        self._stop.clear()
        started = False
        async for _chunk in chunks:
            if not started:
                started = True
                if on_started is not None:
                    on_started()
            stop = asyncio.ensure_future(self._stop.wait())
            go = asyncio.ensure_future(self.release.wait())
            await asyncio.wait({stop, go}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            go.cancel()
            if self._stop.is_set():
                return False
        return True

    def stop(self) -> None:
        self.stops += 1
        self._stop.set()


class Speech(Recorder):
    """The App's speech events as (kind, message id, outcome), plus the spoken texts."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, list[str]] = {}
        self.voices: dict[str, str] = {}

    def __call__(self, ev: Any) -> None:
        outcome = ev.outcome.value if ev.outcome is not None else None
        message_id = ev.item.message.id
        if ev.kind.value == "queued":
            self.texts.setdefault(message_id, []).append(ev.item.text)
            self.voices[message_id] = ev.item.voice
        self.add((ev.kind.value, message_id, outcome))

    def of(self, message_id: str) -> list[tuple[str, str | None]]:
        return [(k, o) for k, m, o in self.events if m == message_id]

    def started(self, message_id: str) -> bool:
        return ("started", None) in self.of(message_id)

    def queued(self) -> list[str]:
        """Message ids in the order they were queued."""
        return [m for k, m, _o in self.events if k == "queued"]

    async def until(self, message_id: str, kind: str, outcome: str | None = None) -> None:
        """Wait for ``(kind, outcome)`` of ``message_id``."""
        await self.wait(lambda _e: (kind, outcome) in self.of(message_id))


@contextlib.asynccontextmanager
async def running_app(
    double: TwitchDouble,
    tmp_path: Path,
    *,
    engine: ToneEngine | None = None,
    config: dict[str, Any] | None = None,
    user: User | None = None,
    scopes: tuple[str, ...] = ALL_SCOPES,
    types: tuple[str, ...] | None = None,
    **twitch: Any,
) -> AsyncIterator[tuple[Any, HeldPlayer, Speech]]:
    """The real App reading Twitch from the double; ``config`` adds sections."""
    from bot.app import App

    _store, _ = sign_in(double, tmp_path / "state" / "twitch-tokens.json", user, scopes)
    data: dict[str, Any] = {
        "audio": {"gap_ms": 0},
        "storage": {"dir": str(tmp_path / "state")},
        "tts": {"say_names": False},
        "web": {"enabled": False},
        "twitch": {
            "channel": double.broadcaster.login,
            "client_id": double.client_id,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
            **twitch,
        },
    }
    data.update(config or {})
    cfg = parse_config(data, tmp_path)
    player = HeldPlayer()
    app = App(cfg, engine=engine or ToneEngine(), player=player)  # type: ignore[arg-type]
    speech = Speech()
    app.speaker.add_listener(speech)
    await app.start()
    assert await app.worker.wait_ready() is EngineState.READY
    source = TwitchSource(
        cfg.twitch,
        TokenStore(token_path(state_dir(cfg.storage))),
        health_interval_s=0.2,
        move_quiet_s=0.3,
    )
    task = asyncio.create_task(app.run(source))
    try:
        await until_subscribed(double, task, types=types)
        yield app, player, speech
    finally:
        app.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
        await app.close()
