"""``engine.name: remote`` against a real ``ishowtts serve`` process (eSpeak NG behind it).

The engine runs on the real engine thread (EngineWorker) as the bot runs it; the server is
its own process, killed and restarted like a gaming PC that goes away.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.base import EngineState
from engine.config import EspeakConfig, RemoteConfig, VoicesConfig
from engine.remote import RemoteEngine
from engine.worker import EngineWorker, SynthesisJob
from tests.bot.serve.harness import ServeProcess, free_port, launch_serve

LINE = "Hello chat. This comes from the other PC. It arrives in pieces."
LONG = " ".join(f"Sentence number {i} of a long message read to the stream." for i in range(40))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = launch_serve(tmp_path_factory.mktemp("serve-remote"), {"name": "espeak"})
    try:
        yield proc
    finally:
        proc.stop()


class Observed:
    def __init__(self) -> None:
        self.states: list[tuple[EngineState, str]] = []

    def __call__(self, state: EngineState, detail: str) -> None:
        self.states.append((state, detail))

    def said(self, words: str) -> bool:
        return any(words in detail for _s, detail in self.states)


async def start_worker(
    tmp_path: Path, state_dir: Path | None, **remote: object
) -> tuple[EngineWorker, RemoteEngine, Observed]:
    engine = RemoteEngine(
        RemoteConfig(**remote),  # type: ignore[arg-type]
        EspeakConfig(),
        VoicesConfig(dir=tmp_path / "voices"),
        state_dir=state_dir,
    )
    seen = Observed()
    worker = EngineWorker(engine, on_state=seen)
    await worker.start()
    assert await asyncio.wait_for(worker.wait_ready(), 30) is EngineState.READY
    return worker, engine, seen


async def chunks_of(job: SynthesisJob) -> list[np.ndarray]:
    return [chunk async for chunk in job]


async def test_streams_the_servers_chunks_and_voices(server: ServeProcess, tmp_path: Path) -> None:
    served = server.status()["served"]
    worker, engine, _seen = await start_worker(tmp_path, server.state_dir, url=server.url)
    try:
        assert engine.server_up
        voices = await worker.call(lambda e: e.voices())
        assert [v.name for v in voices] == ["default"]
        assert "eSpeak NG" in voices[0].description  # the server's description, not ours
        job = worker.submit(LINE, "default")
        chunks = await asyncio.wait_for(chunks_of(job), 60)
        assert job.sample_rate == 24_000
        assert len(chunks) >= 3  # one per sentence at least
        assert sum(len(c) for c in chunks) > 24_000  # seconds of speech
        assert max(float(np.abs(c).max()) for c in chunks) > 0.05
        server.wait_status("served", served + 1)
    finally:
        await worker.close()


async def test_a_voice_the_server_lacks_speaks_in_its_default(
    server: ServeProcess, tmp_path: Path
) -> None:
    served = server.status()["served"]
    worker, engine, _seen = await start_worker(tmp_path, server.state_dir, url=server.url)
    try:
        audio = await asyncio.wait_for(worker.submit(LINE, "only-on-this-pc").collect(), 60)
        assert audio.size > 24_000
        assert engine.server_up
        server.wait_status("served", served + 1)
    finally:
        await worker.close()


async def test_cancel_closes_the_stream_and_the_server_stops(
    server: ServeProcess, tmp_path: Path
) -> None:
    cancelled = server.status()["cancelled"]
    worker, _engine, _seen = await start_worker(tmp_path, server.state_dir, url=server.url)
    try:
        job = worker.submit(LONG, "default")
        first = await asyncio.wait_for(anext(aiter(job)), 60)
        assert first.size
        job.cancel()
        status = server.wait_status("cancelled", cancelled + 1)
        assert status["active"] == 0
        # the engine thread is free again: the next message is spoken at once
        assert (await asyncio.wait_for(worker.submit("Next.", "default").collect(), 60)).size
    finally:
        await worker.close()


async def test_server_killed_mid_message_then_back(tmp_path: Path) -> None:
    """The cut message is spoken again from its start with eSpeak NG; then the server is used."""
    server = launch_serve(tmp_path / "srv", {"name": "espeak"})
    worker, engine, seen = await start_worker(
        tmp_path, server.state_dir, url=server.url, retry_s=0.5, read_timeout_s=5
    )
    try:
        job = worker.submit(LONG, "default")
        chunks = aiter(job)
        got = [await asyncio.wait_for(anext(chunks), 60)]
        server.kill()
        got += [c async for c in chunks]  # no SynthesisFailed: nothing is lost
        total = sum(len(c) for c in got)
        whole = await asyncio.wait_for(worker.submit(LONG, "default").collect(), 120)
        assert not engine.server_up
        assert total > len(whole)  # the server's first part, then the whole message again
        assert seen.said("voice server unavailable")
        said = [d for _s, d in seen.states if "voice server unavailable" in d]
        assert len(said) == 1  # said once, however many messages meet the outage

        server.start()
        await asyncio.sleep(0.6)  # retry_s
        back = await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)
        assert back.size
        assert engine.server_up
        assert seen.said("answers again")
        assert server.status()["served"] == 1
    finally:
        await worker.close()
        server.stop()


async def test_wait_mode_holds_the_message_until_the_server_answers(tmp_path: Path) -> None:
    server = launch_serve(tmp_path / "srv", {"name": "espeak"})
    server.stop()
    worker, engine, _seen = await start_worker(
        tmp_path, server.state_dir, url=server.url, on_failure="wait", retry_s=0.3
    )
    try:
        assert not engine.server_up
        job = worker.submit(LINE, "default")
        await asyncio.sleep(1.0)
        assert job.first_chunk_at is None  # waiting, not speaking with eSpeak NG
        server.start()
        audio = await asyncio.wait_for(job.collect(), 60)
        assert audio.size
        assert server.status()["served"] == 1
    finally:
        await worker.close()
        server.stop()


async def test_wrong_token_is_said_and_chat_is_still_spoken(
    server: ServeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REMOTE_TOKEN", "not-the-token-0123456789")
    worker, engine, seen = await start_worker(
        tmp_path, None, url=server.url, token_env="TEST_REMOTE_TOKEN"
    )
    try:
        assert not engine.server_up
        assert seen.said("refused the token")
        assert seen.said("$TEST_REMOTE_TOKEN")
        audio = await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)
        assert audio.size > 24_000
    finally:
        await worker.close()


async def test_no_token_at_all_is_said(server: ServeProcess, tmp_path: Path) -> None:
    worker, engine, seen = await start_worker(
        tmp_path, tmp_path / "empty-state", url=server.url, token_env="TEST_UNSET_TOKEN_VAR"
    )
    try:
        assert not engine.server_up
        assert seen.said("no token")
        assert (await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)).size
    finally:
        await worker.close()


async def test_wrong_url_falls_back(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "serve-token").write_text("x" * 30)
    worker, engine, seen = await start_worker(tmp_path, tmp_path, url=url)
    try:
        assert not engine.server_up
        assert seen.said("cannot connect")
        assert (await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)).size
    finally:
        await worker.close()


async def test_a_server_that_accepts_but_never_answers(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    (tmp_path / "serve-token").write_text("t" * 30)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        worker, engine, seen = await start_worker(
            tmp_path, tmp_path, url=url, read_timeout_s=0.5, retry_s=0.2
        )
        try:
            assert not engine.server_up
            assert seen.said("sent nothing in time")
            await asyncio.sleep(0.3)  # due for a retry: the message tries the server first
            audio = await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)
            assert audio.size > 24_000
        finally:
            await worker.close()
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


async def test_speed_goes_to_the_server(server: ServeProcess, tmp_path: Path) -> None:
    served = server.status()["served"]
    worker, engine, _seen = await start_worker(tmp_path, server.state_dir, url=server.url)
    try:
        normal = await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)
        fast = await asyncio.wait_for(worker.submit(LINE, "default", speed=2.0).collect(), 60)
        assert engine.server_up  # spoken by the server, not by the eSpeak NG fallback here
        server.wait_status("served", served + 2)
        assert len(fast) < 0.7 * len(normal)
    finally:
        await worker.close()


async def test_speed_reaches_the_fallback_too(tmp_path: Path) -> None:
    (tmp_path / "serve-token").write_text("x" * 30)
    url = f"http://127.0.0.1:{free_port()}"
    worker, engine, _seen = await start_worker(tmp_path, tmp_path, url=url)
    try:
        normal = await asyncio.wait_for(worker.submit(LINE, "default").collect(), 60)
        fast = await asyncio.wait_for(worker.submit(LINE, "default", speed=2.0).collect(), 60)
        assert not engine.server_up
        assert len(fast) < 0.7 * len(normal)
    finally:
        await worker.close()
