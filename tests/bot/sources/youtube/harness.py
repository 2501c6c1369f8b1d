"""Helpers shared by the YouTube tests: a signed-in state, a recording sink, a running source."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from bot.core.messages import ChannelEvent, ChannelEventKind, ChatMessage
from bot.sources.youtube.auth import YouTubeToken, YouTubeTokenStore, token_path
from bot.sources.youtube.settings import YouTubeConfig
from bot.sources.youtube.source import YouTubeSource
from tests.support.youtube_double import SCOPE, Channel, Token, YouTubeDouble


def sign_in(
    double: YouTubeDouble,
    folder: Path,
    channel: Channel | None = None,
    scopes: Iterable[str] = (SCOPE,),
) -> tuple[YouTubeTokenStore, Token]:
    """What ``ishowtts login youtube`` leaves behind: a token file for ``channel``."""
    channel = channel or double.streamer
    token = double.issue_token(channel, scopes)
    store = YouTubeTokenStore(token_path(folder))
    store.write(
        YouTubeToken(
            client_id=double.client_id,
            client_secret=double.client_secret,
            channel_id=channel.id,
            channel_title=channel.title,
            access_token=token.access,
            refresh_token=token.refresh,
            token_uri=double.oauth_url + "token",
            scopes=tuple(scopes),
        )
    )
    return store, token


class Sink:
    """Records what the source delivers, in order; tests wait on it."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Condition()

    async def on_message(self, message: ChatMessage) -> None:
        await self._add(message)

    async def on_moderation(self, event: Any) -> None:
        await self._add(event)

    async def _add(self, item: Any) -> None:
        async with self._changed:
            self.events.append(item)
            self._changed.notify_all()

    @property
    def messages(self) -> list[ChatMessage]:
        return [e for e in self.events if isinstance(e, ChatMessage)]

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    async def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 15.0) -> None:
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.events))

        await asyncio.wait_for(waiter(), timeout)

    async def wait_text(self, text: str, timeout: float = 15.0) -> ChatMessage:
        await self.wait(lambda _e: text in self.texts(), timeout)
        return next(m for m in self.messages if m.text == text)


class EventSink(Sink):
    """A sink that also takes every kind of channel event (as the App does when announcing)."""

    def wanted_events(self) -> frozenset[ChannelEventKind]:
        return frozenset(ChannelEventKind)

    async def on_channel_event(self, event: ChannelEvent) -> None:
        await self._add(event)

    @property
    def channel_events(self) -> list[ChannelEvent]:
        return [e for e in self.events if isinstance(e, ChannelEvent)]


def youtube_cfg(double: YouTubeDouble, **overrides: Any) -> YouTubeConfig:
    return YouTubeConfig(**double.config(**overrides))


@contextlib.asynccontextmanager
async def running_source(
    double: YouTubeDouble, store: YouTubeTokenStore, sink: Any, **overrides: Any
) -> AsyncIterator[tuple[YouTubeSource, asyncio.Task[None]]]:
    """A source reading from the double; on exit it is closed and must end cleanly."""
    source = YouTubeSource(youtube_cfg(double, **overrides), store)
    task = asyncio.create_task(source.run(sink))
    try:
        yield source, task
    finally:
        await source.close()
        await asyncio.wait_for(task, 15)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` for state that no event announces (threads ending)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def until(double: YouTubeDouble, task: asyncio.Task[Any], check: Callable[[], bool]) -> None:
    """Wait for ``check`` on the double's changes, failing at once if the source task ended."""
    waiter = asyncio.ensure_future(double.wait_for(check))
    done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        task.result()
        raise AssertionError("the source stopped first")
    waiter.result()
