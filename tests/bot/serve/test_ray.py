"""``ishowtts serve --ray`` on a real local Ray instance, through the official ``openai`` package.

One Ray instance for the module (two CPUs, no dashboard), Serve's HTTP proxy on a free port,
the application deployed by the same builder ``serve run bot.serve.ray_app:app`` uses. The
tests check what issue 17 asks of the Ray part: requests from several clients meet in one
engine batch (the sizes the replica recorded, not timings), a replica killed mid-request is
replaced and the message is asked again and arrives whole, and the audio equals the
in-process engine's (eSpeak NG bit for bit; tiny F5 at fp32 with a fixed seed within 1e-5).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import ray
from ray import serve

from bot.config import Config, parse_config
from bot.serve.audio import Encoder, Format
from bot.serve.ray_app import (
    APP_NAME,
    ENGINE_DEPLOYMENT,
    RaySetupError,
    build_app,
    parse_ray_settings,
    replica_batches,
)
from bot.serve.token import load_or_create_serve_token
from engine.base import Audio
from engine.factory import create_engine
from tests.bot.serve.harness import free_port
from tests.support.f5 import write_alice

pytestmark = pytest.mark.slow

LINES = (
    "Hello chat, thanks for the follow.",
    "Welcome in, raiders! Grab a seat and say hi.",
    "That was a close one. Let's go again.",
    "Good night everyone, see you tomorrow.",
)
WAIT_S = 5.0
"""The batches' wait: long enough for four clients to meet on a busy 2-core machine."""


@pytest.fixture(scope="module")
def ray_port() -> Iterator[int]:
    """A local Ray instance and Serve's HTTP proxy on a free port, for the whole module."""
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, namespace="ishowtts-tests")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()  # type: ignore[no-untyped-call]


def deploy(cfg: Config, port: int, **settings: Any) -> str:
    """Deploy the application (replacing any earlier one); return its ``/v1`` base URL."""
    app = build_app(cfg, parse_ray_settings({"batch_wait_timeout_s": WAIT_S, **settings}))
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            if health.status_code == 200 and health.json()["status"] == "ready":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"http://127.0.0.1:{port}/v1"


def engine_handle() -> Any:
    return serve.get_deployment_handle(ENGINE_DEPLOYMENT, app_name=APP_NAME)


def batches() -> list[int]:
    return replica_batches([engine_handle().stats.remote().result()])


def client(base_url: str, folder: Path) -> openai.OpenAI:
    token, _, _ = load_or_create_serve_token(folder)
    return openai.OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=120)


def speak_pcm(c: openai.OpenAI, text: str, voice: str = "default") -> bytes:
    with c.audio.speech.with_streaming_response.create(
        model="ishowtts",
        voice=voice,  # type: ignore[arg-type]
        input=text,
        response_format="pcm",
    ) as response:
        return b"".join(response.iter_bytes())


def in_process(cfg: Config, text: str, voice: str = "default") -> tuple[list[Audio], int]:
    """The same message from the engine in this process: its chunks and their rate."""
    engine = create_engine(cfg.engine, cfg.voices)
    engine.load(lambda _s, _d: None)
    try:
        return list(engine.synthesize(text, voice, lambda: False)), engine.sample_rate
    finally:
        engine.close()


def as_pcm(chunks: list[Audio], rate: int) -> bytes:
    """What ``response_format: pcm`` makes of those chunks (the server's own encoder)."""
    encoder = Encoder(Format.PCM, rate)
    return b"".join(encoder.feed(c) for c in chunks) + encoder.finish()


_FIRST_MESSAGE = """
import sys
from pathlib import Path
from bot.config import parse_config
from engine.factory import create_engine
from tests.bot.serve.test_ray import as_pcm
cfg = parse_config({"engine": {"name": "espeak"}}, Path.cwd())
engine = create_engine(cfg.engine, cfg.voices)
engine.load(lambda _s, _d: None)
chunks = list(engine.synthesize(sys.argv[1], "default", lambda: False))
sys.stdout.buffer.write(as_pcm(chunks, engine.sample_rate))
"""


def espeak_first_message(text: str) -> bytes:
    """``text`` as the first message of a fresh eSpeak NG process, as pcm.

    eSpeak NG keeps state in the library from one message to the next (even across engine
    instances in one process), so a bit-exact reference is a new process's first message,
    which is what a replacement replica speaks first.
    """
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_MESSAGE, text],
        capture_output=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    return done.stdout


def replica_actor() -> Any:
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if ENGINE_DEPLOYMENT in a["name"] and a["name"].startswith("SERVE_REPLICA")
    ]
    assert len(names) == 1, names
    return ray.get_actor(names[0], namespace="serve")


def wait_for(check: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


# -- eSpeak NG ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def espeak_app(ray_port: int, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Config]:
    folder = tmp_path_factory.mktemp("ray-espeak")
    cfg = parse_config(
        {
            "engine": {"name": "espeak"},
            "storage": {"dir": str(folder / "state")},
            "serve": {"voice_aliases": {"nova": "default"}},
        },
        folder,
    )
    url = deploy(cfg, ray_port, max_batch_size=4, num_cpus=1)
    return url, cfg


def test_concurrent_clients_meet_in_one_engine_batch(
    espeak_app: tuple[str, Config],
) -> None:
    url, cfg = espeak_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    before = len(batches())
    with ThreadPoolExecutor(len(LINES)) as pool:
        bodies = list(pool.map(lambda text: speak_pcm(c, text), LINES))
    assert batches()[before:] == [4]  # four clients, one engine batch
    for text, body in zip(LINES, bodies, strict=True):
        # eSpeak NG carries state from one message to the next (the batch runs them in
        # arrival order), so only a fresh process's first message is bit-equal (the
        # replica test below); here each answer is that message, to a few samples
        expected = as_pcm(*in_process(cfg, text))
        assert abs(len(body) - len(expected)) <= 2 * 64, text


def test_api_matches_ishowtts_serve(espeak_app: tuple[str, Config]) -> None:
    url, cfg = espeak_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    assert "ishowtts" in [m.id for m in c.models.list()]
    token = c.api_key
    voices = httpx.get(f"{url}/voices", headers={"Authorization": f"Bearer {token}"}).json()
    assert voices["engine"] == "espeak"
    assert [v["name"] for v in voices["data"]] == ["default"]
    with pytest.raises(openai.BadRequestError) as unknown:
        c.audio.speech.create(model="ishowtts", voice="defualt", input="hi")  # type: ignore[arg-type]
    assert unknown.value.code == "voice_not_found"
    assert "did you mean 'default'" in unknown.value.message
    aliased = speak_pcm(c, "Hi.", voice="nova")  # serve.voice_aliases: OpenAI's name, ours
    assert len(aliased) > 2400
    with pytest.raises(openai.BadRequestError) as empty:
        c.audio.speech.create(model="ishowtts", voice="default", input="  ")  # type: ignore[arg-type]
    assert empty.value.code == "empty_input"
    preflight = httpx.options(
        f"{url}/audio/speech",
        headers={"Origin": "https://socialstream.ninja", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(url, cfg.storage.dir).with_options(api_key="nope").models.list()  # type: ignore[arg-type]
    assert wrong.value.code == "invalid_api_key"


def test_each_request_keeps_its_own_speed(espeak_app: tuple[str, Config]) -> None:
    url, cfg = espeak_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]

    def length(speed: float) -> int:
        with c.audio.speech.with_streaming_response.create(
            model="ishowtts", voice="default", input=LINES[1], response_format="pcm", speed=speed
        ) as response:
            return len(response.read()) // 2

    with ThreadPoolExecutor(2) as pool:  # one batch holding both speeds
        normal, fast = pool.map(length, (1.0, 2.0))
    assert 0.3 * normal < fast < 0.6 * normal
    assert abs(length(1.0) - normal) <= 2 * 64  # the next one is back at its own speed
    with pytest.raises(openai.BadRequestError) as bad:
        c.audio.speech.create(model="ishowtts", voice="default", input="hi", speed=5)
    assert bad.value.param == "speed"


def test_a_replica_killed_mid_request_is_replaced_and_the_message_retried(
    espeak_app: tuple[str, Config],
) -> None:
    url, cfg = espeak_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    text = LINES[1]
    old = replica_actor()
    old_id = old._actor_id.hex()
    result: dict[str, Any] = {}

    def request() -> None:
        try:
            result["body"] = speak_pcm(c, text)
        except Exception as exc:  # the assertion below shows it
            result["error"] = exc

    thread = threading.Thread(target=request)
    thread.start()
    # the request is inside the replica (waiting for its batch to fill): kill the replica
    wait_for(lambda: engine_handle().stats.remote().result()["waiting"] == 1)
    ray.kill(old, no_restart=True)
    thread.join(timeout=240)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    # the replacement's first message, bit for bit the in-process engine's first message
    assert result["body"] == espeak_first_message(text)
    assert replica_actor()._actor_id.hex() != old_id  # Serve started a replacement
    token = c.api_key
    status = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["retried"] >= 1
    assert status["served"] >= 1


# -- tiny F5 -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def f5_app(
    ray_port: int,
    espeak_app: tuple[str, Config],
    tmp_path_factory: pytest.TempPathFactory,
    tiny_f5: dict[str, Any],
) -> tuple[str, Config]:
    """The tiny F5 model, fp32 on the CPU with a fixed seed (replaces the eSpeak app)."""
    folder = tmp_path_factory.mktemp("ray-f5")
    write_alice(folder / "voices")
    cfg = parse_config(
        {
            "engine": {
                "name": "f5",
                "device": "cpu",
                "f5": {**tiny_f5, "max_chunk_chars": 30, "seed": 7, "precision": "fp32"},
            },
            "voices": {"dir": "voices", "default": "default"},
            "storage": {"dir": str(folder / "state")},
        },
        folder,
    )
    url = deploy(cfg, ray_port, max_batch_size=3, num_cpus=1)
    return url, cfg


def test_f5_batched_through_ray_equals_the_engine_alone(f5_app: tuple[str, Config]) -> None:
    url, cfg = f5_app
    requests = [(LINES[0], "default"), (LINES[1], "alice"), (LINES[2], "default")]

    async def gather() -> list[list[Audio]]:
        handle = engine_handle().options(stream=True)

        async def one(text: str, voice: str) -> list[Audio]:
            out: list[Audio] = []
            async for piece in handle.speak.remote(text, voice):
                out.extend(piece.audio)
                if piece.last:
                    break
            return out

        return await asyncio.gather(*(one(t, v) for t, v in requests))

    before = len(batches())
    results = asyncio.run(gather())
    assert batches()[before:] == [3]
    for (text, voice), chunks in zip(requests, results, strict=True):
        expected, _rate = in_process(cfg, text, voice)
        assert len(chunks) == len(expected) > 1
        got, want = np.concatenate(chunks), np.concatenate(expected)
        assert got.shape == want.shape
        assert float(np.max(np.abs(got - want))) < 1e-5, (text, voice)
    # and through the API, as pcm: the same samples, to the 16-bit step
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    body = np.frombuffer(speak_pcm(c, LINES[1], "alice"), dtype="<i2").astype(np.int32)
    ref = np.frombuffer(as_pcm(*in_process(cfg, LINES[1], "alice")), dtype="<i2").astype(np.int32)
    assert body.shape == ref.shape
    assert int(np.max(np.abs(body - ref))) <= 1


def test_f5_replica_killed_mid_stream_the_client_gets_the_message_once(
    f5_app: tuple[str, Config],
) -> None:
    """The replica dies after audio has gone out: the retry skips what the client has."""
    url, cfg = f5_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    text = " ".join(LINES)  # several pieces at max_chunk_chars 30
    old = replica_actor()
    old_id = old._actor_id.hex()
    body = b""
    with c.audio.speech.with_streaming_response.create(
        model="ishowtts",
        voice="alice",
        input=text,
        response_format="pcm",
    ) as response:
        pieces = response.iter_bytes()
        body += next(pieces)
        # audio is out and the replica is still speaking this message: kill it
        assert engine_handle().stats.remote().result()["active"] == 1
        ray.kill(old, no_restart=True)
        for piece in pieces:
            body += piece
    assert replica_actor()._actor_id.hex() != old_id
    token = c.api_key
    status = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["retried"] >= 1
    got = np.frombuffer(body, dtype="<i2").astype(np.int32)
    ref = np.frombuffer(as_pcm(*in_process(cfg, text, "alice")), dtype="<i2").astype(np.int32)
    assert got.shape == ref.shape  # nothing twice, nothing missing
    assert int(np.max(np.abs(got - ref))) <= 1


def test_f5_a_client_that_goes_away_stops_its_synthesis(f5_app: tuple[str, Config]) -> None:
    url, cfg = f5_app
    c = client(url, cfg.storage.dir)  # type: ignore[arg-type]
    before = engine_handle().stats.remote().result()
    with c.audio.speech.with_streaming_response.create(
        model="ishowtts",
        voice="default",
        input=" ".join(LINES),  # several pieces: far from done after the first
        response_format="pcm",
    ) as response:
        assert next(response.iter_bytes())
    # the connection is closed: the replica's request ends without its last piece
    stats = wait_for(lambda: (s := engine_handle().stats.remote().result())["active"] == 0 and s)
    assert stats["cancelled"] == before["cancelled"] + 1
    assert stats["requests"] == before["requests"] + 1


def test_bad_ray_settings_name_the_key_and_what_is_allowed() -> None:
    with pytest.raises(RaySetupError) as bad:
        parse_ray_settings({"max_batch_size": 0, "num_gpus": "many", "batchsize": 4})
    message = str(bad.value)
    assert "ray.max_batch_size" in message
    assert "ray.num_gpus" in message
    assert "ray.batchsize" in message
    assert "Traceback" not in message
