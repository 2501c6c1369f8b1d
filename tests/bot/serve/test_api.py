"""``ishowtts serve`` with eSpeak NG, through the official ``openai`` package (a real process).

What a client on another PC sees: audio arrives in chunks, every format decodes with
soundfile to 24 kHz and to the length the engine produced, and every refusal is the SDK's
own exception carrying our message.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import soxr

from engine.config import EspeakConfig, VoicesConfig
from engine.espeak import EspeakEngine
from tests.bot.serve.harness import ServeProcess, launch_serve

LINE = "Hello chat. This is the voice server speaking. Thanks for the follow, and welcome in."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = launch_serve(
        tmp_path_factory.mktemp("serve-espeak"),
        {"name": "espeak"},
        {
            "max_queue": 3,
            "per_token": 2,
            "max_input_chars": 2000,
            "voice_aliases": {"alloy": "default"},
        },
    )
    try:
        yield proc
    finally:
        proc.stop()


def client(server: ServeProcess, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=token or server.token, max_retries=0, timeout=60
    )


def espeak_reference(text: str) -> np.ndarray:
    """The same line from eSpeak NG in this process, at the server's 24 kHz."""
    engine = EspeakEngine(EspeakConfig(), VoicesConfig(dir=Path("/nonexistent")))
    engine.load(lambda _s, _d: None)
    audio = np.concatenate(list(engine.synthesize(text, "default", lambda: False)))
    return np.asarray(soxr.resample(audio, engine.sample_rate, 24_000), dtype=np.float32)


def speak(server: ServeProcess, fmt: str, text: str = LINE) -> tuple[bytes, int]:
    """The body of one streamed request, and how many pieces it arrived in."""
    pieces = 0
    body = b""
    with client(server).audio.speech.with_streaming_response.create(
        model="ishowtts",
        voice="default",
        input=text,
        response_format=fmt,  # type: ignore[arg-type]
    ) as response:
        for piece in response.iter_bytes():
            pieces += 1
            body += piece
    return body, pieces


def test_sse_streams_one_event_per_engine_chunk(server: ServeProcess) -> None:
    deltas: list[bytes] = []
    done = None
    with client(server).audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="default",
        input=LINE,
        response_format="pcm",
        extra_body={"stream_format": "sse"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            if event["type"] == "speech.audio.delta":
                deltas.append(base64.b64decode(event["audio"]))
            else:
                done = event
    assert done is not None
    assert done["type"] == "speech.audio.done"
    # eSpeak NG speaks sentence by sentence: three sentences, at least three chunks
    assert len(deltas) >= 3
    pcm = np.frombuffer(b"".join(deltas), dtype="<i2")
    assert abs(len(pcm) - len(espeak_reference(LINE))) <= 64


def test_every_format_decodes_to_24khz_and_the_engines_length(server: ServeProcess) -> None:
    expected = len(espeak_reference(LINE))
    pcm, _pieces = speak(server, "pcm")
    assert abs(len(pcm) // 2 - expected) <= 64
    for fmt in ("wav", "flac", "mp3", "opus"):
        body, _ = speak(server, fmt)
        audio, rate = sf.read(io.BytesIO(body), dtype="float32")
        assert rate == 24_000, fmt
        assert audio.ndim == 1, fmt
        tolerance = 64 if fmt in ("wav", "flac") else 2400  # codec padding: < 0.1 s
        assert abs(len(audio) - expected) <= tolerance, (fmt, len(audio), expected)
        assert float(np.sqrt(np.mean(audio**2))) > 0.01, fmt  # speech, not silence


def test_voice_aliases_for_clients_that_offer_only_openais_names(server: ServeProcess) -> None:
    c = client(server)
    audio = c.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="wav")
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert rate == 24_000
    assert len(samples) > 2400
    with pytest.raises(openai.BadRequestError) as echo:
        c.audio.speech.create(model="tts-1", voice="echo", input="Hi.")
    assert echo.value.code == "voice_not_found"


def test_models_and_voices(server: ServeProcess) -> None:
    ids = [m.id for m in client(server).models.list()]
    assert "ishowtts" in ids
    assert "tts-1" in ids
    voices = httpx.get(
        f"{server.url}/v1/voices", headers={"Authorization": f"Bearer {server.token}"}
    ).json()
    assert voices["engine"] == "espeak"
    assert voices["default"] == "default"
    assert [v["name"] for v in voices["data"]] == ["default"]
    assert all("problem" in v for v in voices["data"])


def test_refusals_are_the_sdks_exceptions_with_our_messages(server: ServeProcess) -> None:
    c = client(server)
    with pytest.raises(openai.BadRequestError) as unknown:
        c.audio.speech.create(model="ishowtts", voice="defualt", input="hi")  # type: ignore[arg-type]
    assert "did you mean 'default'" in unknown.value.message
    assert unknown.value.code == "voice_not_found"
    with pytest.raises(openai.BadRequestError) as empty:
        c.audio.speech.create(model="ishowtts", voice="default", input="   ")  # type: ignore[arg-type]
    assert "nothing to speak" in empty.value.message
    with pytest.raises(openai.BadRequestError) as long:
        c.audio.speech.create(model="ishowtts", voice="default", input="a" * 2001)  # type: ignore[arg-type]
    assert "at most 2000" in long.value.message
    with pytest.raises(openai.BadRequestError) as fmt:
        c.audio.speech.create(
            model="ishowtts",
            voice="default",  # type: ignore[arg-type]
            input="hi",
            response_format="aac",
        )
    assert "aac" in fmt.value.message
    assert "pcm" in fmt.value.message
    with pytest.raises(openai.NotFoundError):
        c.audio.speech.create(model="whisper-9", voice="default", input="hi")  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(server, "x" * 30).audio.speech.create(
            model="ishowtts",
            voice="default",  # type: ignore[arg-type]
            input="hi",
        )
    assert "wrong token" in wrong.value.message
    missing = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "hi"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_token"


def test_speed_is_each_requests_own_within_openais_range(server: ServeProcess) -> None:
    c = client(server)

    def samples(speed: float) -> int:
        audio = c.audio.speech.create(
            model="tts-1", voice="default", input=LINE, response_format="pcm", speed=speed
        )
        return len(audio.content) // 2

    normal = samples(1.0)
    fast = samples(2.0)
    assert abs(normal - len(espeak_reference(LINE))) <= 64  # 1.0 is the engine's own pace
    assert fast < 0.7 * normal
    assert samples(1.0) == normal  # the next request is back at the normal pace
    assert samples(0.25) > normal  # eSpeak NG's slowest rate (80 wpm)
    assert samples(4.0) < fast
    with pytest.raises(openai.BadRequestError) as too_fast:
        c.audio.speech.create(model="tts-1", voice="default", input="hi", speed=5)
    assert too_fast.value.status_code == 400
    assert too_fast.value.param == "speed"
    assert "between 0.25 and 4.0" in too_fast.value.message
    assert isinstance(too_fast.value.body, dict)
    assert too_fast.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        c.audio.speech.create(model="tts-1", voice="default", input="hi", speed=0.2)
    auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    for raw in (b"1e400", b"1" + b"0" * 60, b'"2"', b"true", b"-1", b"0"):
        answer = httpx.post(
            f"{server.url}/v1/audio/speech",
            content=b'{"input": "hi", "voice": "default", "speed": ' + raw + b"}",
            headers=auth,
        )
        assert answer.status_code == 400, raw
        if raw != b"1e400":  # the safe JSON parser refuses an infinite number itself
            assert answer.json()["error"]["param"] == "speed", raw


def test_a_full_queue_is_429_with_retry_after_and_the_server_recovers(
    server: ServeProcess,
) -> None:
    """Requests held open (not read) fill the per-token limit, then the queue bound."""
    long_text = "This sentence is long enough to keep the engine busy for a while. " * 25
    auth = {"Authorization": f"Bearer {server.token}"}
    other = {"Authorization": "Bearer " + "y" * 30}
    before = server.status()  # the module's server may have served other tests already
    held: list[httpx.Response] = []
    clients: list[httpx.Client] = []
    try:
        for _ in range(2):
            c = httpx.Client(timeout=60)
            clients.append(c)
            request = c.build_request(
                "POST",
                f"{server.url}/v1/audio/speech",
                json={"input": long_text, "voice": "default", "response_format": "pcm"},
                headers=auth,
            )
            held.append(c.send(request, stream=True))  # headers read, body left in the socket
        assert all(r.status_code == 200 for r in held)
        with pytest.raises(openai.RateLimitError) as per_token:
            client(server).audio.speech.create(model="ishowtts", voice="default", input="hi")  # type: ignore[arg-type]
        assert per_token.value.response.headers["retry-after"] == "2"
        assert "this token already has 2" in per_token.value.message
        assert (
            httpx.post(f"{server.url}/v1/audio/speech", json={}, headers=other).status_code == 401
        )
    finally:
        for r in held:
            r.close()
        for c in clients:
            c.close()
    server.wait_status("cancelled", before["cancelled"] + 2)  # the held two, given up
    body, _ = speak(server, "pcm", "Back to normal.")
    assert len(body) > 0
    status = server.wait_status("served", before["served"] + 1)
    assert status["active"] == 0


def test_the_queue_bound_is_429_queue_full(tmp_path: Path) -> None:
    """Beyond serve.max_queue requests at once (any tokens), 429 with Retry-After."""
    small = launch_serve(tmp_path, {"name": "espeak"}, {"max_queue": 2, "per_token": 8})
    long_text = "This sentence is long enough to keep the engine busy for a while. " * 25
    held: list[httpx.Response] = []
    clients: list[httpx.Client] = []
    try:
        for _ in range(2):
            c = httpx.Client(timeout=60)
            clients.append(c)
            request = c.build_request(
                "POST",
                f"{small.url}/v1/audio/speech",
                json={"input": long_text, "voice": "default", "response_format": "pcm"},
                headers={"Authorization": f"Bearer {small.token}"},
            )
            held.append(c.send(request, stream=True))
        with pytest.raises(openai.RateLimitError) as full:
            client(small).audio.speech.create(model="ishowtts", voice="default", input="hi")  # type: ignore[arg-type]
        assert full.value.code == "queue_full"
        assert full.value.response.headers["retry-after"] == "2"
        for r in held:
            r.close()
        small.wait_status("cancelled", 2)
        body, _ = speak(small, "pcm", "Room again.")
        assert len(body) > 0
    finally:
        for c in clients:
            c.close()
        small.stop()


def test_concurrent_requests_with_batching_on_each_get_their_own_audio(tmp_path: Path) -> None:
    """serve.max_batch > 1: requests that meet in the queue run together, each its own answer."""
    batched = launch_serve(
        tmp_path, {"name": "espeak"}, {"max_batch": 4, "batch_wait_ms": 20, "per_token": 8}
    )
    texts = ["One.", "Two words here.", "A third, longer line for the batch.", "Four."]
    lengths: dict[str, int] = {}
    lock = threading.Lock()

    def one(text: str) -> None:
        body = httpx.post(
            f"{batched.url}/v1/audio/speech",
            json={"input": text, "voice": "default", "response_format": "pcm"},
            headers={"Authorization": f"Bearer {batched.token}"},
            timeout=60,
        ).content
        with lock:
            lengths[text] = len(body) // 2

    try:
        threads = [threading.Thread(target=one, args=(t,)) for t in texts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for text in texts:
            assert abs(lengths[text] - len(espeak_reference(text))) <= 64, text
        assert batched.status()["served"] == 4
    finally:
        batched.stop()


def test_a_client_that_stops_reading_is_dropped(tmp_path: Path) -> None:
    """serve.send_timeout_s: a held, unread answer frees its slot instead of holding it."""
    small = launch_serve(tmp_path, {"name": "espeak"}, {"max_queue": 1, "send_timeout_s": 1.0})
    long_text = "This sentence is long enough to fill the socket buffers. " * 30
    try:
        with httpx.Client(timeout=60) as c:
            request = c.build_request(
                "POST",
                f"{small.url}/v1/audio/speech",
                json={"input": long_text, "voice": "default", "response_format": "pcm"},
                headers={"Authorization": f"Bearer {small.token}"},
            )
            held = c.send(request, stream=True)  # never read
            assert held.status_code == 200
            status = small.wait_status("cancelled", 1, timeout_s=30)
            assert status["active"] == 0
            held.close()
        body, _ = speak(small, "pcm", "The slot is free again.")
        assert len(body) > 0
    finally:
        small.stop()


def test_hostile_clients_are_answered_and_bounded(server: ServeProcess) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    url = f"{server.url}/v1/audio/speech"
    huge = httpx.post(url, content=b"{" + b" " * (1024 * 1024) + b"}", headers=auth)
    assert huge.status_code == 413
    assert "larger than" in huge.json()["error"]["message"]
    bad = httpx.post(
        url, content=b'{"input": "hi",', headers={**auth, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    deep = httpx.post(url, content=b"[" * 5000 + b"]" * 5000, headers=auth)
    assert deep.status_code == 400
    assert httpx.post(url, json=["a list"], headers=auth).status_code == 400

    # Idle and trickling sockets: far more than the connection cap, then a real request.
    import socket

    sockets: list[socket.socket] = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", server.port))
            if i % 2:
                s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n")  # never finished
            sockets.append(s)
        body, _ = speak(server, "pcm", "Still here.")
        assert len(body) > 0
        assert server.status()["connections"] <= 256
    finally:
        for s in sockets:
            s.close()

    # A flood of concurrent requests beyond the queue bound: every one answered, none lost.
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        r = httpx.post(
            url,
            json={"input": "Flood line.", "voice": "default", "response_format": "pcm"},
            headers=auth,
            timeout=60,
        )
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 12
    assert set(results) <= {200, 429}
    assert 200 in results
    body, _ = speak(server, "pcm", "Still serving.")
    assert len(body) > 0


def test_a_body_that_trickles_is_cut_off_while_others_are_served(server: ServeProcess) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {server.token}\r\nContent-Length: 400\r\n\r\n".encode()
            + b'{"input": "'
        )
        body, _ = speak(server, "pcm", "Served while another client trickles.")
        assert len(body) > 0
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = slow.recv(4096)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_cors_preflight_for_browser_clients(server: ServeProcess) -> None:
    pre = httpx.options(
        f"{server.url}/v1/audio/speech",
        headers={
            "Origin": "https://socialstream.ninja",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    refused = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"input": "hi"},
        headers={"Origin": "https://socialstream.ninja"},
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/speech",
        json={"input": "From a web page.", "voice": "default", "response_format": "wav"},
        headers={"Origin": "https://socialstream.ninja", "Authorization": f"Bearer {server.token}"},
    ) as streamed:  # a streamed answer carries them too, or the browser drops the audio
        assert streamed.status_code == 200
        assert streamed.headers["access-control-allow-origin"] == "*"
        assert len(streamed.read()) > 44
    no_origin = httpx.get(f"{server.url}/health")
    assert "access-control-allow-origin" not in no_origin.headers


def test_metrics_for_prometheus(server: ServeProcess) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert httpx.get(f"{server.url}/metrics").status_code == 401
    before = server.status()["served"]
    speak(server, "pcm", "Counted once.")
    text = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"}
    ).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ishowtts_serve_requests_total", (("outcome", "served"),))] == before + 1
    assert samples[("ishowtts_serve_first_audio_seconds_count", ())] >= 1
    assert samples[("ishowtts_serve_realtime_factor_count", ())] >= 1
    assert samples[("ishowtts_serve_audio_seconds_total", ())] > 0.5
    assert samples[("ishowtts_serve_active_requests", ())] == 0
    state = ("ishowtts_serve_engine_state", (("ishowtts_serve_engine_state", "ready"),))
    assert samples[state] == 1
