"""The web server under attack (issue 12, items 2, 3, 4 and 8), on real sockets.

* Floods: more idle and slow sockets than the usual descriptor limit (1,024), against the real
  ``python -m bot`` process limited to 1,024 descriptors, while it speaks chat with eSpeak NG
  into the PulseAudio null sink: speech goes on, ``!voice`` works, the panel answers, the log
  stays small.
* Idle and slow-header connections are closed; the cap makes room by closing the longest
  idle one and never a busy one (the protections module with short limits).
* Malformed requests of every kind: answered or closed, at most one log line, no traceback.
* Malformed bodies: 400 with a short reason, never 500.
* Framing: the panel and the API refuse it, the overlay allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.config import load_config
from bot.web.protect import (
    BadBody,
    ClientFaultLog,
    ConnectionGuard,
    GuardedSite,
    HttpLimits,
    make_runner,
    parse_json,
    read_fields,
)
from bot.web.token import TOKEN_FILE_NAME
from tests.support import REPO
from tests.support.audio import PulseServer, SinkRecorder, rms
from tests.support.web_harness import espeak_bot, espeak_config


def _auth(app: App) -> dict[str, str]:
    assert app.web is not None
    assert app.web.token is not None
    return {"Authorization": f"Bearer {app.web.token}"}


def _raw(port: int, data: bytes, timeout_s: float = 10.0, *, half_close: bool = True) -> bytes:
    """Send raw bytes, return whatever comes back until the server closes or goes quiet.

    ``half_close`` ends the sending side, so a request cut off is seen as cut off at once;
    aiohttp (like asyncio's default) closes a half-closed connection when it reads the end,
    possibly before it answered, so complete requests are sent without it.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        if half_close:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(OSError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


def _status(reply: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(match.group(1)) if match else None


def _loud_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or r.exc_text or "Traceback" in r.getMessage()]


# -- 8: framing -------------------------------------------------------------------------------
@pytest.mark.audio
async def test_the_panel_and_api_refuse_framing_and_the_overlay_allows_it(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        base = app.web.base_url
        for path, headers in [
            ("/", {}),
            ("/api/state", _auth(app)),
            ("/api/state", {}),  # the 401 too
            ("/api/voices", _auth(app)),
            ("/static/panel.js", {}),
            ("/nowhere", {}),
        ]:
            async with http.get(base + path, headers=headers) as resp:
                assert resp.headers.get("X-Frame-Options") == "DENY", path
                csp = resp.headers.get("Content-Security-Policy", "")
                assert "frame-ancestors 'none'" in csp, (path, csp)
        async with http.post(base + "/api/skip", headers=_auth(app)) as resp:
            assert resp.status == 200
            assert resp.headers.get("X-Frame-Options") == "DENY"
        async with http.get(base + "/overlay") as resp:
            assert resp.status == 200
            assert "X-Frame-Options" not in resp.headers
            csp = resp.headers["Content-Security-Policy"]
            assert "frame-ancestors" not in csp
            assert "script-src 'self'" in csp  # still locked down otherwise
        async with http.ws_connect(base.replace("http", "ws") + "/ws/overlay") as ws:
            msg = await ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.TEXT


# -- 4: malformed bodies ----------------------------------------------------------------------
MALFORMED_BODIES: list[tuple[str, str, bytes, int, str]] = [
    ("deep-array", "application/json", b"[" * 100_000 + b"]" * 100_000, 413, "larger"),
    ("deep-object", "application/json", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "nested"),
    ("deep-in-budget", "application/json", b"[" * 30_000, 400, "nested"),
    ("long-int", "application/json", b'{"user": "a", "text": ' + b"9" * 5000 + b"}", 400, "number"),
    (
        "long-float",
        "application/json",
        b'{"user": "a", "text": "x", "bits": 1.' + b"5" * 5000 + b"}",
        400,
        "number",
    ),
    ("huge-exponent", "application/json", b'{"user": "a", "bits": 1e999999}', 400, "number"),
    ("nan", "application/json", b'{"user": "a", "bits": NaN}', 400, "NaN"),
    ("bad-utf8-json", "application/json", b'{"user": "\xff\xfe", "text": "hi"}', 400, "utf-8"),
    ("lone-surrogate", "application/json", b'{"user": "\\ud800", "text": "hi"}', 202, ""),
    (
        "bad-utf8-form",
        "application/x-www-form-urlencoded",
        b"user=%FF%FE&text=hello",
        400,
        "utf-8",
    ),
    ("raw-bytes-form", "application/x-www-form-urlencoded", b"user=\xff&text=hi", 400, "utf-8"),
    ("unknown-charset", "application/json; charset=klingon", b'{"user": "a"}', 400, "charset"),
    (
        "unknown-charset-form",
        "application/x-www-form-urlencoded; charset=x-unknown",
        b"user=a&text=b",
        400,
        "charset",
    ),
    ("utf16-json", "application/json; charset=utf-16", b'{"user": "a"}', 400, "utf-16"),
    ("many-fields", "application/x-www-form-urlencoded", b"&".join([b"a=1"] * 500), 400, "fields"),
    ("not-an-object", "application/json", b"[1, 2, 3]", 400, "object"),
    ("truncated", "application/json", b'{"user": "a", "te', 400, "JSON"),
]


@pytest.mark.audio
async def test_malformed_bodies_get_400_with_a_short_reason_never_500(
    tmp_path: Path, pulse_server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        base = app.web.base_url
        for name, ctype, body, status, reason in MALFORMED_BODIES:
            for path in ("/api/ingest", "/api/say", "/api/mute", "/api/volume"):
                headers = {**_auth(app), "Content-Type": ctype}
                async with http.post(base + path, data=body, headers=headers) as resp:
                    answer = await resp.json()
                    if status == 202:  # well-formed JSON: the handler judges the fields
                        assert resp.status in (200, 202, 400), (name, path, answer)
                        continue
                    assert resp.status == status, (name, path, resp.status, answer)
                    assert answer["ok"] is False
                    assert reason.lower() in answer["error"].lower(), (name, answer)
                    assert len(answer["error"]) < 200, answer
        # multipart with invalid UTF-8 and with an unknown charset
        for part_ctype, expected in [
            ("text/plain; charset=utf-8", "utf-8"),
            ("text/plain; charset=klingon", "charset"),
        ]:
            form = aiohttp.FormData()
            form.add_field("user", b"\xff\xfe bad", content_type=part_ctype)
            form.add_field("text", "hello")
            async with http.post(base + "/api/ingest", data=form, headers=_auth(app)) as resp:
                answer = await resp.json()
                assert resp.status == 400, answer
                assert expected in answer["error"].lower(), answer
        # a chunked body that breaks its framing, over a raw socket
        port = app.web.port
        assert port is not None
        token = app.web.token
        assert token is not None
        head = (
            f"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        reply = await asyncio.to_thread(_raw, port, head + b'5\r\n{"use\r\nzz\r\n')
        assert _status(reply) in (400, None), reply[:200]
        assert b" 500 " not in reply
        # and the server still works
        async with http.get(base + "/api/state", headers=_auth(app)) as resp:
            assert resp.status == 200
    assert not _tracebacks(caplog), [r.getMessage() for r in _tracebacks(caplog)]
    assert len([r for r in _loud_records(caplog) if r.name.startswith(("bot.web", "aiohttp"))]) <= 1


# -- 3: malformed requests and the log --------------------------------------------------------
def _malformed_requests(token: str) -> list[tuple[str, bytes]]:
    auth = f"Authorization: Bearer {token}\r\n".encode()
    return [
        ("long-request-line", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("long-url-with-token", b"GET /api/state?x=" + b"b" * 20_000 + b" HTTP/1.1\r\n" + auth),
        (
            "long-header",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"c" * 50_000 + b"\r\n\r\n",
        ),
        (
            "many-headers",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(500))
            + b"\r\n",
        ),
        ("garbage", bytes(range(256)) * 40),
        ("tls-hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 200),
        ("bad-method", b"G\x00T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        ("bad-version", b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n"),
        (
            "cl-and-te",
            b"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + auth
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two-content-lengths",
            b"POST /api/say HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + auth
            + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "bad-chunk-size",
            b"POST /api/say HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + auth
            + b"Transfer-Encoding: chunked\r\n\r\nZZZZ\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "negative-length",
            b"POST /api/say HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"Content-Length: -1\r\n\r\n",
        ),
        ("header-without-colon", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"),
        ("nul-in-header", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n"),
        (
            "ws-subprotocol",
            b"GET /ws/overlay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + b"p," * 2000 + b"q\r\n\r\n",
        ),
        (
            "bad-ws-frame",
            b"GET /ws/overlay HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n",
        ),
        ("cut-off", b"GET /api/state HTTP/1.1\r\nHost: 127.0"),
    ]


@pytest.mark.audio
async def test_malformed_requests_of_every_kind_make_at_most_one_log_line(
    tmp_path: Path, pulse_server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        assert app.web.port is not None
        assert app.web.token is not None
        port = app.web.port
        caplog.clear()
        answers: dict[str, set[int | None]] = {}
        for _round in range(20):
            for name, data in _malformed_requests(app.web.token):
                reply = await asyncio.to_thread(_raw, port, data)
                answers.setdefault(name, set()).add(_status(reply))
        # every one was answered with a client error or closed, never a server error
        for name, statuses in answers.items():
            assert all(s is None or 400 <= s < 500 for s in statuses), (name, statuses)
        async with http.get(app.web.base_url + "/api/state", headers=_auth(app)) as resp:
            assert resp.status == 200
    assert not _tracebacks(caplog), [r.getMessage()[:300] for r in _tracebacks(caplog)]
    loud = [r.getMessage() for r in _loud_records(caplog)]
    assert len(loud) <= 1, loud
    assert all(len(line) < 400 for line in loud), loud


# -- 2: idle, slow and flooding connections (the module, short limits) ------------------------
@contextlib.asynccontextmanager
async def guarded_server(limits: HttpLimits) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    """A real aiohttp app behind the guard: ``/`` answers, ``/slow`` holds a request busy."""
    faults = ClientFaultLog(logging.getLogger("test.guard"), "test server", 60)
    guard = ConnectionGuard(limits, faults)
    release = asyncio.Event()

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def slow(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    async def echo(request: web.Request) -> web.Response:
        try:
            fields = await read_fields(request, limits)
        except BadBody as exc:
            return web.Response(status=exc.status, text=exc.reason)
        return web.json_response(fields)

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/", hello)
    app.router.add_get("/slow", slow)
    app.router.add_post("/echo", echo)
    runner = make_runner(app, limits, faults)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    try:
        yield site.port, guard
    finally:
        release.set()
        await runner.cleanup()


def _closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_idle_and_slow_header_connections_are_closed_after_the_header_timeout() -> None:
    limits = HttpLimits(header_timeout_s=1.0, body_timeout_s=1.0)
    async with guarded_server(limits) as (port, guard):
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()

        def trickle() -> bool:
            # one header byte every 0.2 s: a slowloris never completes its headers
            for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return True
                time.sleep(0.2)
            return False

        closed_slow = await asyncio.to_thread(trickle)
        assert closed_slow, "the slowloris connection was never closed"
        assert await asyncio.to_thread(_closed_by_peer, idle, 5.0)
        reply = await asyncio.to_thread(body.recv, 4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert time.monotonic() - started < 30  # bounded, not a speed claim
        for sock in (idle, slow, body):
            sock.close()
        async with asyncio.timeout(10):  # the server sees the closes on its next loop turns
            while guard.open:
                await asyncio.sleep(0.01)


async def test_the_cap_closes_the_longest_idle_connection_and_never_a_busy_one() -> None:
    limits = HttpLimits(max_connections=20, header_timeout_s=60.0)
    async with guarded_server(limits) as (port, guard), aiohttp.ClientSession() as http:
        busy = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/slow"))
        while not any(c.busy for c in guard._conns.values()):
            await asyncio.sleep(0.01)
        idle = await asyncio.to_thread(
            lambda: [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        )
        # every idle one past the cap made room by closing an older idle one
        deadline = time.monotonic() + 30
        while guard.evicted + guard.refused + guard.open < 201 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert guard.open <= guard.cap == 20
        assert guard.refused == 0
        assert guard.evicted >= 200 - 19
        assert guard.peak <= guard.cap
        # a real request still gets through at once, and the busy one was never touched
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert await resp.text() == "hello"
        assert not busy.done()
        for sock in idle:
            sock.close()
        busy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy


async def test_when_every_connection_is_busy_new_ones_get_a_short_503() -> None:
    limits = HttpLimits(max_connections=8)
    async with (
        guarded_server(limits) as (port, guard),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http,
    ):
        holders = [asyncio.create_task(http.get(f"http://127.0.0.1:{port}/slow")) for _ in range(8)]
        while sum(1 for c in guard._conns.values() if c.busy) < 8:
            await asyncio.sleep(0.01)
        reply = await asyncio.to_thread(_raw, port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(reply) == 503, reply
        assert guard.refused >= 1
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)


def test_the_cap_leaves_the_descriptor_reserve_free() -> None:
    from bot.web.protect import descriptor_budget, open_descriptors

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = open_descriptors()
    assert in_use is not None
    assert in_use > 0
    cap = descriptor_budget(100_000, reserve=256)
    assert cap <= soft - in_use - 256 + 2  # a descriptor may close between the two counts
    assert descriptor_budget(10, reserve=256) == 10
    # the usual Linux limit: the whole reserve stays free
    assert descriptor_budget(256, 256, soft=1024, in_use=100) == 256
    assert descriptor_budget(1000, 256, soft=1024, in_use=100) == 1024 - 100 - 256
    # macOS's 256: a quarter is kept, the panel still gets a useful share
    assert descriptor_budget(256, 256, soft=256, in_use=40) == 256 - 40 - 64
    # nearly exhausted already: a minimum that still lets the panel in
    assert descriptor_budget(256, 256, soft=256, in_use=250) == 8


# -- 2: the flood against the real process -----------------------------------------------------
class _Bot:
    """``python -m bot`` with terminal chat on stdin, limited to 1,024 file descriptors."""

    def __init__(self, config: Path, cwd: Path, env: dict[str, str], nofile: int) -> None:
        self.err: list[str] = []
        self.out: list[str] = []

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            preexec_fn=limit,
        )
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for raw in stream:
            into.append(raw.decode(errors="replace").rstrip("\n"))

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, lines: list[str], needle: str, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never came:\n" + "\n".join(self.err[-50:]))

    def count(self, needle: str) -> int:
        return sum(1 for line in list(self.err) if needle in line)

    def finish(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=120)
        for thread in self._threads:
            thread.join(timeout=10)
        return code


class _Flood:
    """Holds more idle and slow sockets than 1,024 open against a port, re-opening any that
    the server closes, from a thread of its own (non-blocking connects)."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self._port = port
        self._want_idle = idle
        self._want_slow = slow
        self._stop = threading.Event()
        self.opened = 0
        self.peak_held = 0
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> _Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _open(self) -> socket.socket | None:
        sock = socket.socket()
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", self._port))
        if err not in (0, 115):  # EINPROGRESS
            sock.close()
            return None
        self.opened += 1
        return sock

    def _run(self) -> None:
        import select

        idle: list[socket.socket] = []
        slow: list[socket.socket] = []
        poller = select.poll()
        try:
            while not self._stop.is_set():
                while len(idle) < self._want_idle and not self._stop.is_set():
                    sock = self._open()
                    if sock is None:
                        break
                    idle.append(sock)
                while len(slow) < self._want_slow:
                    sock = self._open()
                    if sock is None:
                        break
                    slow.append(sock)
                self.peak_held = max(self.peak_held, len(idle) + len(slow))
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"G")  # a header that never ends
                # drop the ones the server closed, so they are opened again
                for group in (idle, slow):
                    for sock in list(group):
                        poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
                    dead = {fd for fd, _ in poller.poll(0)}
                    for sock in list(group):
                        poller.unregister(sock)
                        if sock.fileno() in dead:  # closed (or refused) by the server
                            group.remove(sock)
                            sock.close()
                self._stop.wait(0.2)
        finally:
            for sock in idle + slow:
                sock.close()


class _AudioListener:
    """An overlay page's speech socket (``/ws/audio``), read by aiohttp in a thread of its
    own: which clips it was sent whole (start, PCM, end) during the flood."""

    def __init__(self, port: int) -> None:
        self._url = f"ws://127.0.0.1:{port}/ws/audio"
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.frames: dict[int, int] = {}
        self.ended: list[int] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="audio-listener", daemon=True)

    def __enter__(self) -> _AudioListener:
        self._thread.start()
        assert self._connected.wait(30), self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            asyncio.run(self._listen())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _listen(self) -> None:
        import json as _json

        async with aiohttp.ClientSession() as http, http.ws_connect(self._url) as ws:
            self._connected.set()
            while not self._stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if msg.type is aiohttp.WSMsgType.BINARY:
                    clip = int.from_bytes(msg.data[:4], "little")
                    self.frames[clip] = self.frames.get(clip, 0) + (len(msg.data) - 4) // 2
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    data = _json.loads(msg.data)
                    if data["type"] == "end":
                        self.ended.append(int(data["clip"]))
                else:
                    raise AssertionError(f"the audio socket ended: {msg}")


@pytest.mark.audio
@pytest.mark.slow
def test_a_flood_of_idle_and_slow_sockets_beyond_the_fd_limit_never_stops_speech_or_the_panel(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    nofile = 1024
    idle_sockets, slow_sockets = 1500, 100
    # this process holds the flood: it needs more descriptors than the bot is allowed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = idle_sockets + slow_sockets + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the flood needs {want} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        restore_limit = (soft, hard)
    else:
        restore_limit = None
    # speech goes to the device and to an overlay page's socket (web.browser_audio: also)
    config = espeak_config(tmp_path, pulse_server, browser_audio="also")
    env = {**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)}
    bot = _Bot(config, tmp_path, env, nofile)
    try:
        line = bot.wait(bot.err, "control panel: ")
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match is not None, line
        port = int(match.group(1))
        token = (tmp_path / "state" / TOKEN_FILE_NAME).read_text().strip()
        bot.wait(bot.err, "espeak engine ready")
        sink_recorder.start()
        fd_peak = 0
        fd_watch = threading.Event()

        def watch_fds() -> None:
            nonlocal fd_peak
            while not fd_watch.wait(0.1):
                with contextlib.suppress(OSError):
                    fd_peak = max(fd_peak, len(os.listdir(f"/proc/{bot.proc.pid}/fd")))

        watcher = threading.Thread(target=watch_fds, daemon=True)
        watcher.start()
        log_before = len(bot.err)
        with (
            _AudioListener(port) as page,
            _Flood(port, idle=idle_sockets, slow=slow_sockets) as flood,
        ):
            while flood.opened < 1600:
                time.sleep(0.05)
            lines = [
                "the flood is on and chat keeps talking",
                "second line while a thousand sockets hang",
                "third line, still speaking",
            ]
            for text in lines:
                bot.say(text)
            bot.say("!voice alice")
            panel_answers = []
            panel_ms = []
            for path in ["/api/state", "/", "/overlay", "/api/state", "/api/voices"]:
                asked = time.monotonic()
                with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                    sock.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
                    )
                    reply = b""
                    while chunk := sock.recv(65536):
                        reply += chunk
                panel_answers.append(_status(reply))
                panel_ms.append(round((time.monotonic() - asked) * 1000, 1))
            for text in lines:
                bot.wait(bot.err, text, timeout_s=120)
            bot.wait(bot.out, "alice", timeout_s=60)
            bot.say("fourth line after the voice change")
            bot.wait(bot.err, "fourth line after the voice change", timeout_s=120)
            held = flood.peak_held
            opened = flood.opened
            flood_log = bot.err[log_before:]
            deadline = time.monotonic() + 30
            while len(page.ended) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert page.error is None, page.error
        # the overlay page was sent every message whole, flood or not
        assert len(page.ended) == 4, (page.ended, page.frames)
        assert all(page.frames.get(clip, 0) > 11025 for clip in page.ended), page.frames
        fd_watch.set()
        watcher.join(timeout=5)
        recording = sink_recorder.stop()
        print(
            f"flood: {opened} sockets opened, {held} held at once; the bot (limit {nofile}) "
            f"peaked at {fd_peak} descriptors; panel/overlay {panel_answers} in {panel_ms} ms; "
            f"{len(flood_log)} log lines during the flood, log {len(chr(10).join(bot.err))} "
            f"bytes in all; overlay audio socket got {len(page.ended)} whole clips, "
            f"{sum(page.frames.values()) / 22050:.1f} s; sink rms {rms(recording):.4f}"
        )
        assert fd_peak < nofile - 128, fd_peak  # the reserve stayed free
        web_lines = [line for line in flood_log if "bot.web" in line or "control panel" in line]
        print("log lines about the flood:", web_lines)
        assert len(web_lines) <= 1, web_lines
        assert panel_answers == [200] * 5
        assert opened > nofile
        assert held > nofile
        # sound reached the sink during the flood (eSpeak NG speaks: well above silence)
        assert rms(recording) > 0.003, rms(recording)
        active = np.abs(recording) > 0.02
        assert active.mean() > 0.05
        assert bot.finish() == 0
    finally:
        if bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait(timeout=10)
        if restore_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, restore_limit)
    log_text = "\n".join(bot.err)
    voice_reply = "\n".join(bot.out)
    assert "Too many open files" not in log_text + voice_reply
    assert "Traceback" not in log_text
    assert "failed" not in voice_reply.lower(), voice_reply
    assert len(log_text.encode()) < 32_000, len(log_text.encode())
    for text in ["the flood is on", "second line", "third line", "fourth line"]:
        assert bot.count(text) >= 1, text


# -- 3 and 4 over the whole input space: hypothesis against the real server -------------------
class _BotThread:
    """The real App (eSpeak NG, the test sink, its web server) on an event loop of its own, so
    that synchronous hypothesis tests can throw raw sockets and bodies at it."""

    def __init__(self, tmp_path: Path, pulse: PulseServer, **web: Any) -> None:
        self._config = espeak_config(tmp_path, pulse, **web)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bot-under-test", daemon=True)
        self.app: App | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.app = App(load_config(self._config))
            await self.app.start()
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.app.close()

    def __enter__(self) -> _BotThread:
        self._thread.start()
        assert self._ready.wait(120), "the bot never started"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        self._loop.close()

    @property
    def port(self) -> int:
        assert self.app is not None
        assert self.app.web is not None
        assert self.app.web.port is not None
        return self.app.web.port

    @property
    def token(self) -> str:
        assert self.app is not None
        assert self.app.web is not None
        assert self.app.web.token is not None
        return self.app.web.token


def _json_status(reply: bytes) -> tuple[int | None, Any]:
    """The status and the JSON body of a raw HTTP reply (None when there is none)."""
    import json as _json

    status = _status(reply)
    _head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep or not body:
        return status, None
    with contextlib.suppress(ValueError):
        return status, _json.loads(body)
    return status, None


_CTYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "text/plain",
        "application/octet-stream",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
    ]
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**80), max_value=10**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
_BODIES = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _json_values.map(lambda v: __import__("json").dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 5000).map(lambda n: b'{"user": "a", "text": "b", "bits": ' + b"7" * n + b"}"),
    st.lists(st.tuples(st.text(max_size=6), st.binary(max_size=6)), max_size=20).map(
        lambda kv: b"&".join(k.encode() + b"=" + v for k, v in kv)
    ),
)


@pytest.mark.audio
@pytest.mark.slow
def test_any_body_with_any_content_type_gets_json_and_never_a_500(
    tmp_path: Path, pulse_server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _BotThread(tmp_path, pulse_server) as bot:
        statuses: dict[int | None, int] = {}

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            path=st.sampled_from(["/api/ingest", "/api/say", "/api/mute", "/api/volume"]),
            ctype=_CTYPES,
            encoding=st.sampled_from(
                ["", "identity", "gzip", "deflate", "br", "zstd", "x-bogus", "gzip, br"]
            ),
            body=_BODIES,
        )
        def probe(path: str, ctype: str, encoding: str, body: bytes) -> None:
            coding = f"Content-Encoding: {encoding}\r\n" if encoding else ""
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bot.token}"
                f"\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{coding}"
                "Connection: close\r\n\r\n"
            ).encode()
            status, answer = _json_status(_raw(bot.port, head + body, half_close=False))
            statuses[status] = statuses.get(status, 0) + 1
            assert status is not None
            assert status < 500, (status, answer)
            if status == 400 and answer is None:
                return  # refused by aiohttp's parser (an encoding it cannot decode at all)
            assert isinstance(answer, dict), answer
            if status >= 400:
                assert answer["ok"] is False
                assert 0 < len(answer["error"]) < 200, answer

        probe()
        print(f"bodies: statuses {sorted(statuses.items(), key=str)}")
        clear = _raw(
            bot.port,
            f"POST /api/clear HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bot.token}"
            "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode(),
            half_close=False,
        )
        assert _status(clear) == 200
    assert not _tracebacks(caplog), [r.getMessage()[:300] for r in _tracebacks(caplog)]
    bad = [r for r in _loud_records(caplog) if r.name.startswith(("bot.web", "aiohttp"))]
    assert len(bad) <= 1, [r.getMessage() for r in bad]


_REQUEST_PARTS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"GET ",
                b"POST ",
                b"/api/state",
                b"/overlay",
                b"/ws/overlay",
                b" HTTP/1.1\r\n",
                b" HTTP/1.0\r\n",
                b"Host: 127.0.0.1\r\n",
                b"Content-Length: 5\r\n",
                b"Content-Length: -3\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
                b"\r\n",
                b"\r\n\r\n",
                b"0\r\n\r\n",
                b"ffffffffffffffff\r\n",
                b"\x00",
                b"\xff\xfe",
                b":",
            ]
        ),
        st.integers(1, 70_000).map(lambda n: b"a" * n),
        st.binary(max_size=200),
    ),
    max_size=12,
)


@pytest.mark.audio
@pytest.mark.slow
def test_any_request_bytes_give_a_4xx_or_a_close_and_at_most_one_log_line(
    tmp_path: Path, pulse_server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _BotThread(tmp_path, pulse_server) as bot:
        sent = 0

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(parts=_REQUEST_PARTS)
        def probe(parts: list[bytes]) -> None:
            nonlocal sent
            sent += 1
            reply = _raw(bot.port, b"".join(parts), timeout_s=15)
            status = _status(reply)
            assert status is None or status < 500 or status == 503, reply[:300]

        caplog.clear()
        probe()
        state = _raw(
            bot.port,
            f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bot.token}"
            "\r\nConnection: close\r\n\r\n".encode(),
            half_close=False,
        )
        assert _status(state) == 200
    records = list(caplog.records)
    loud = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    print(f"requests: {sent} malformed or random requests, {len(loud)} warning line(s)")
    assert not _tracebacks(caplog), [r.getMessage()[:300] for r in _tracebacks(caplog)]
    assert len([m for m in loud if "control panel" in m or "aiohttp" in m]) <= 1, loud
    assert all(len(line) < 400 for line in loud), loud


@settings(max_examples=500, deadline=None)
@given(value=_json_values)
def test_parse_json_agrees_with_json_loads_within_the_limits(value: Any) -> None:
    import json as _json

    text = _json.dumps(value)
    limits = HttpLimits(max_number_digits=100)
    assert parse_json(text, limits) == _json.loads(text)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_parse_json_raises_only_bad_body_on_any_text(text: str) -> None:
    reason = ""
    try:
        parse_json(text, HttpLimits())
    except BadBody as exc:  # anything else (RecursionError, ValueError) fails the test
        reason = exc.reason
        assert reason
    assert len(reason) < 200


_URL_BYTES = st.binary(max_size=60).map(
    lambda b: "".join(
        chr(c) if chr(c).isascii() and chr(c).isalnum() else f"%{c:02X}" for c in b
    ).encode()
)
_HEADER_NAMES = st.sampled_from(
    [
        b"Host",
        b"Authorization",
        b"X-Ishowtts-Token",
        b"Origin",
        b"Cookie",
        b"Content-Type",
        b"Accept-Charset",
        b"Upgrade",
        b"Connection",
        b"Sec-WebSocket-Key",
        b"Sec-WebSocket-Version",
        b"Sec-WebSocket-Extensions",
        b"Range",
        b"If-Modified-Since",
        b"X-Forwarded-For",
    ]
) | st.from_regex(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True)
_HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80).map(
        lambda t: t.encode("latin-1")
    ),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
)


@pytest.mark.audio
@pytest.mark.slow
def test_well_framed_requests_with_any_url_headers_and_websocket_frames_never_fail_inside(
    tmp_path: Path, pulse_server: PulseServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Structured requests (a valid request line around any percent-encoded path and query,
    any headers, then for WebSockets any frames) reach the handlers: still no 5xx, no
    traceback, one log line."""
    caplog.set_level(logging.DEBUG)
    with _BotThread(tmp_path, pulse_server, browser_audio="also") as bot:
        statuses: dict[int | None, int] = {}

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"]),
            path=st.sampled_from(
                [
                    b"/",
                    b"/overlay",
                    b"/api/state",
                    b"/api/voices",
                    b"/api/skip",
                    b"/api/say",
                    b"/static/",
                    b"/static/panel.js",
                    b"/ws/overlay",
                    b"/ws/panel",
                    b"/ws/audio",
                ]
            ),
            extra=st.just(b"") | _URL_BYTES,
            query=_URL_BYTES,
            headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=8),
            websocket=st.booleans(),
            frames=st.binary(max_size=300),
            token=st.booleans(),
        )
        def probe(
            method: bytes,
            path: bytes,
            extra: bytes,
            query: bytes,
            headers: list[tuple[bytes, bytes]],
            websocket: bool,
            frames: bytes,
            token: bool,
        ) -> None:
            lines = [
                b"%s %s%s?%s HTTP/1.1" % (method, path, extra, query),
                b"Host: 127.0.0.1",
            ]
            if not websocket:
                lines.append(b"Connection: close")
            if token:
                lines.append(b"Authorization: Bearer " + bot.token.encode())
            if websocket:
                lines += [
                    b"Upgrade: websocket",
                    b"Connection: Upgrade",
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    b"Sec-WebSocket-Version: 13",
                ]
            lines += [name + b": " + value for name, value in headers]
            # a masked close frame after the random ones, so a WebSocket that survived them ends
            close = b"\x88\x80\x01\x02\x03\x04"
            request = b"\r\n".join(lines) + b"\r\n\r\n" + (frames + close if websocket else b"")
            reply = _raw(bot.port, request, timeout_s=5, half_close=False)
            status = _status(reply)
            statuses[status] = statuses.get(status, 0) + 1
            assert status is None or status < 500 or status == 503, reply[:300]

        caplog.clear()
        started = time.monotonic()
        probe()
        print(f"structured requests: statuses {sorted(statuses.items(), key=str)}")
        state = _raw(
            bot.port,
            f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bot.token}"
            "\r\nConnection: close\r\n\r\n".encode(),
            half_close=False,
        )
        assert _status(state) == 200
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not _tracebacks(caplog), [r.getMessage()[:300] for r in _tracebacks(caplog)]
    # one line per minute at most (a slow machine may take more than one)
    minutes = 1 + int((time.monotonic() - started) // 60)
    assert len([m for m in loud if "control panel" in m or "aiohttp" in m]) <= minutes, loud
