"""App.run's exit status and shutdown paths, with the real worker and speaker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bot.app import App
from bot.config import parse_config
from bot.core.messages import ChatCleared, ChatMessage
from bot.sources.base import ChatSink
from bot.speech.speaker import SpeechEventKind
from engine.base import EngineError, EngineState
from tests.bot.speech.test_speaker import RecordingPlayer, ToneEngine, msg


class ScriptedSource:
    name = "scripted"

    def __init__(self, messages: list[ChatMessage], error: Exception | None = None) -> None:
        self.messages = messages
        self.error = error
        self.closed = False

    async def run(self, sink: ChatSink) -> None:
        for m in self.messages:
            await sink.on_message(m)
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


def when_sound_starts(app: App) -> asyncio.Event:
    """Set when a message starts playing: sound is going out, not merely popped from the queue."""
    started = asyncio.Event()
    app.speaker.add_listener(
        lambda ev: started.set() if ev.kind is SpeechEventKind.STARTED else None
    )
    return started


class BrokenEngine(ToneEngine):
    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        raise EngineError("weights missing: set engine.f5.checkpoint")


def make_app(tmp_path: Path, engine: ToneEngine) -> tuple[App, RecordingPlayer]:
    cfg = parse_config(
        {"audio": {"gap_ms": 0}, "storage": {"dir": str(tmp_path)}, "web": {"enabled": False}},
        tmp_path,
    )
    player = RecordingPlayer()
    app = App(cfg, engine=engine, player=player)  # type: ignore[arg-type]
    return app, player


async def test_end_of_input_drains_the_queue_then_returns_zero(tmp_path: Path) -> None:
    app, player = make_app(tmp_path, ToneEngine(chunks=3))
    await app.start()
    try:
        source = ScriptedSource([msg("one", user="a"), msg("two", user="b")])
        assert await asyncio.wait_for(app.run(source), 30) == 0
        assert [n for _, n in player.played] == [240, 240]
        assert source.closed
    finally:
        await app.close()


async def test_a_failing_source_still_drains_but_exits_non_zero(tmp_path: Path) -> None:
    app, player = make_app(tmp_path, ToneEngine(chunks=3))
    await app.start()
    try:
        source = ScriptedSource([msg("last words")], error=RuntimeError("sign-in revoked"))
        assert await asyncio.wait_for(app.run(source), 30) == 1
        assert len(player.played) == 1
    finally:
        await app.close()


async def test_an_engine_that_cannot_load_stops_the_bot_with_status_one(tmp_path: Path) -> None:
    app, _player = make_app(tmp_path, BrokenEngine())
    await app.start()
    try:

        class Forever(ScriptedSource):
            async def run(self, sink: ChatSink) -> None:
                await asyncio.Event().wait()

        assert await asyncio.wait_for(app.run(Forever([])), 30) == 1
        assert app.worker.state is EngineState.ERROR
        assert "engine.f5.checkpoint" in app.worker.state_detail
    finally:
        await app.close()


async def test_request_stop_ends_run_without_waiting_for_the_queue(tmp_path: Path) -> None:
    app, _player = make_app(tmp_path, ToneEngine(chunks=10_000))
    await app.start()
    try:
        playing = when_sound_starts(app)

        class Stopper(ScriptedSource):
            async def run(self, sink: ChatSink) -> None:
                await sink.on_message(msg("very long"))
                await playing.wait()  # a long message is playing when the stop comes
                app.request_stop()
                await asyncio.Event().wait()

        assert await asyncio.wait_for(app.run(Stopper([])), 30) == 0
    finally:
        await app.close()


async def test_chat_clear_stops_everything(tmp_path: Path) -> None:
    app, player = make_app(tmp_path, ToneEngine(chunks=10_000))
    await app.start()
    try:
        playing = when_sound_starts(app)
        await app.on_message(msg("playing", user="a"))
        await app.on_message(msg("queued", user="b"))
        await asyncio.wait_for(playing.wait(), 10)
        await app.on_moderation(ChatCleared())
        await asyncio.wait_for(app.speaker.wait_idle(), 10)
        assert len(player.played) == 1
        assert len(app.queue) == 0
    finally:
        await app.close()


async def test_chat_hears_once_that_the_engine_is_warming_not_once_per_viewer(
    tmp_path: Path,
) -> None:
    import threading

    release = threading.Event()

    class SlowEngine(ToneEngine):
        def load(self, progress: Callable[[EngineState, str], None]) -> None:
            progress(EngineState.WARMING, "warming")
            release.wait(30)

    app, player = make_app(tmp_path, SlowEngine(chunks=1))
    replies: list[str] = []

    async def reply(text: str) -> None:
        replies.append(text)

    await app.start()
    try:
        for i in range(20):  # a raid arrives while the model warms up
            m = msg(f"hello {i}", user=f"viewer{i}")
            await app.on_message(
                ChatMessage(id=m.id, user=m.user, text=m.text, source="test", reply=reply)
            )
        assert replies == ["the voice engine is still warming up; messages are queued"]
        release.set()
        assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
        await asyncio.wait_for(app.speaker.wait_idle(), 20)
        assert len(player.played) == 20  # every viewer of the raid was spoken
    finally:
        release.set()
        await app.close()


async def test_closing_cancels_queued_synthesis_instead_of_finishing_it(tmp_path: Path) -> None:
    engine = ToneEngine(chunks=50, delay=0.01)
    app, _player = make_app(tmp_path, engine)
    await app.start()
    assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
    jobs = [app.worker.submit(f"job {i}", "default") for i in range(10)]
    async with asyncio.timeout(10):
        while not engine.calls:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(app.close(), 10)
    assert all(job.cancelled for job in jobs)
    assert len(engine.calls) == 1  # only the job already running reached the engine
