"""``ishowtts serve`` with the tiny F5 checkpoints on the CPU, through the ``openai`` package.

Random weights speak noise, so the tests check what the service promises: 503 with
Retry-After while the model loads, chunks as the engine makes them, 24 kHz in every format,
and one length whichever format is asked for (the F5 engine with a fixed seed is
deterministic, and its durations follow the text).
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.bot.serve.harness import ServeProcess, launch_serve
from tests.support.f5 import write_alice

pytestmark = pytest.mark.slow

LINE = "Hello chat, this is a cloned voice. It comes in pieces, one after the other."


@pytest.fixture(scope="module")
def warming(
    tmp_path_factory: pytest.TempPathFactory, tiny_f5: dict[str, Any]
) -> Iterator[tuple[ServeProcess, list[httpx.Response]]]:
    """A tiny-F5 server, and the answers to requests made while it was still loading."""
    f5 = {**tiny_f5, "max_chunk_chars": 30, "seed": 7}
    folder = tmp_path_factory.mktemp("serve-f5")
    write_alice(folder / "voices")
    broken = folder / "voices" / "broken"
    broken.mkdir()
    (broken / "reference.txt").write_text("words without a clip\n")
    proc = launch_serve(
        folder,
        {"name": "f5", "device": "cpu", "f5": f5},
        wait_ready=False,
    )
    early: list[httpx.Response] = []
    try:
        deadline = time.monotonic() + 180
        while proc.health() != "ready" and time.monotonic() < deadline:
            early.append(
                httpx.post(
                    f"{proc.url}/v1/audio/speech",
                    json={"input": "hi", "voice": "default", "response_format": "pcm"},
                    headers={"Authorization": f"Bearer {proc.token}"},
                    timeout=30,
                )
            )
            time.sleep(0.2)
        proc.wait_ready()
        yield proc, early
    finally:
        proc.stop()


def client(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=server.token, max_retries=0, timeout=120
    )


def test_loading_is_503_with_retry_after(
    warming: tuple[ServeProcess, list[httpx.Response]],
) -> None:
    _server, early = warming
    refused = [r for r in early if r.status_code == 503]
    assert refused, "no request met the engine while it loaded"
    first = refused[0]
    assert first.headers["retry-after"] == "2"
    assert first.json()["error"]["code"] == "engine_warming_up"
    assert "warming up" in first.json()["error"]["message"]


def test_the_sdk_gets_chunks_and_every_format_decodes(
    warming: tuple[ServeProcess, list[httpx.Response]],
) -> None:
    server, _early = warming
    c = client(server)
    deltas: list[bytes] = []
    with c.audio.speech.with_streaming_response.create(
        model="ishowtts",
        voice="alice",
        input=LINE,
        response_format="pcm",
        extra_body={"stream_format": "sse"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                if event["type"] == "speech.audio.delta":
                    deltas.append(base64.b64decode(event["audio"]))
    assert len(deltas) >= 3  # max_chunk_chars 30: the line is three or more pieces
    pcm = np.frombuffer(b"".join(deltas), dtype="<i2")
    assert len(pcm) > 24_000

    lengths = {"pcm": len(pcm)}
    for fmt in ("wav", "flac"):
        with c.audio.speech.with_streaming_response.create(
            model="ishowtts",
            voice="alice",
            input=LINE,
            response_format=fmt,  # type: ignore[arg-type]
        ) as response:
            body = b"".join(response.iter_bytes())
        audio, rate = sf.read(io.BytesIO(body), dtype="float32")
        assert rate == 24_000
        lengths[fmt] = len(audio)
    assert len(set(lengths.values())) == 1, lengths


def test_voices_show_their_problems(warming: tuple[ServeProcess, list[httpx.Response]]) -> None:
    server, _early = warming
    data = httpx.get(
        f"{server.url}/v1/voices", headers={"Authorization": f"Bearer {server.token}"}
    ).json()
    voices = {v["name"]: v for v in data["data"]}
    assert data["engine"] == "f5"
    assert voices["alice"]["problem"] is None
    assert voices["default"]["problem"] is None
    assert voices["broken"]["problem"]  # what `ishowtts voices` shows
    with pytest.raises(openai.BadRequestError) as unusable:
        client(server).audio.speech.create(model="ishowtts", voice="broken", input="hi")  # type: ignore[arg-type]
    assert "cannot be used" in unusable.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        client(server).audio.speech.create(model="ishowtts", voice="alcie", input="hi")  # type: ignore[arg-type]
    assert "did you mean 'alice'" in unknown.value.message
