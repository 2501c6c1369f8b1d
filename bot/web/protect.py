"""Protections every HTTP server of ishowtts shares: the control panel and ``ishowtts serve``.

What a hostile program on the same machine (or, with ``allow_remote``, the network) can do to
an aiohttp server, and what stops it here:

* **Connection floods.** Thousands of idle sockets would each hold a file descriptor until the
  process runs out, and then the bot's own work fails ("too many open files" in ``!voice``,
  eSpeak NG unable to read its dictionary, SQLite unable to open its journal). The
  :class:`ConnectionGuard` caps open connections below the process's descriptor limit with a
  reserve kept free for the bot itself; when the cap is reached, the connection that has been
  idle longest (no request in progress: a keep-alive socket, or one still "sending" its
  headers) is closed to make room, so a real request always gets in. Connections that send no
  complete request within ``header_timeout_s`` (idle or slowloris) are closed by aiohttp's
  keep-alive timer, which starts when the connection opens.
* **Log floods.** aiohttp logs every malformed request (over-long request lines, URLs or
  headers, bad chunked framing, binary garbage) with a full traceback, so any client can grow
  the log by megabytes. :class:`ClientFaultLog` turns all client faults into at most one
  warning line per interval, with a count, and never a traceback.
* **Malformed bodies.** Deeply nested JSON (a ``RecursionError`` in the parser), numbers with
  thousands of digits (``ValueError`` from Python's int limit), invalid UTF-8 in forms,
  unknown charsets and truncated chunked bodies become :class:`BadBody` with a short reason,
  which the servers answer with ``400``; never a ``500``.

Nothing here changes process-wide state (no ``setrlimit``, no logger levels): the servers
pass these objects to aiohttp explicitly.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import re
import sys
import time
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import accumulate
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from bot.core import platform

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACCEPT_BATCH = 64
"""Connections accepted per loop turn (asyncio accepts up to the backlog at once). A new
connection is the last to be closed to make room, but its request is only read a few loop
turns after it was accepted: a small batch keeps a flood from accepting a whole cap's worth
of sockets in between, so a real request is read (and its connection busy) before its turn
to be evicted could come."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds of one server; the defaults suit a streamer's machine.

    Attributes:
        max_connections: Most connections open at once (lowered to fit the descriptor
            limit minus ``fd_reserve``).
        fd_reserve: File descriptors always left free for the process's own work.
        header_timeout_s: A connection must send a complete request within this long after it
            opened or after its previous response; also the keep-alive idle time.
        body_timeout_s: Longest time to receive a request body.
        max_body_bytes: Largest request body.
        max_line_size: Longest request line or URL (aiohttp answers 400 beyond it).
        max_field_size: Longest header.
        max_headers: Most headers in one request.
        max_json_depth: Deepest nesting of JSON arrays and objects.
        max_number_digits: Longest number in JSON.
        max_form_fields: Most fields in a form body.
        max_websockets: Most live WebSocket feeds of one kind (overlay, panel).
        fault_log_interval_s: At most one log line about client faults per this many seconds.
    """

    max_connections: int = 256
    fd_reserve: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_body_bytes: int = 64 * 1024
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    max_json_depth: int = 32
    max_number_digits: int = 64
    max_form_fields: int = 64
    max_websockets: int = 32
    fault_log_interval_s: float = 60.0


class BadBody(Exception):
    """A request body that cannot be used; ``reason`` is short and goes back to the client."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# -- quiet logging of client faults -------------------------------------------------------------
class ClientFaultLog:
    """At most one warning line per interval about what clients did wrong, with a count.

    Client faults are not the bot's faults: the streamer needs to know they happen (someone is
    probing the port), not read a traceback for each. Every fault is still logged at debug
    level, on one line, without a traceback.
    """

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 60.0) -> None:
        """Log to ``logger``; ``what`` names the server in the line ("control panel")."""
        self._log = logger
        self._what = what
        self._interval_s = interval_s
        self._last: float | None = None
        self._suppressed = 0
        self.count = 0
        """Faults noted since start (tests and the doctor read it)."""

    def note(self, kind: str, detail: str = "") -> None:
        """Record one fault: ``kind`` is a few words, ``detail`` is cut to 200 characters."""
        self.count += 1
        detail = " ".join(detail.split())[:200]
        self._log.debug("%s: %s%s", self._what, kind, f" ({detail})" if detail else "")
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval_s:
            self._suppressed += 1
            return
        more = (
            f"; {self._suppressed} more in the last {self._interval_s:.0f} s"
            if self._suppressed
            else ""
        )
        self._last = now
        self._suppressed = 0
        self._log.warning(
            "%s: refused a malformed or abusive request (%s)%s; at most one such line per %.0f s",
            self._what,
            kind,
            more,
            self._interval_s,
        )


class _ServerLogger(logging.Logger):
    """The logger aiohttp's connection handler writes to, as one-line client faults.

    aiohttp calls ``logger.exception`` for every request it cannot parse and
    ``logger.debug`` for dropped connections; both become :meth:`ClientFaultLog.note`.
    """

    def __init__(self, faults: ClientFaultLog) -> None:
        super().__init__("aiohttp.server.quiet")
        self._faults = faults

    def _describe(self, exc_info: Any) -> str:
        exc: BaseException | None = None
        if isinstance(exc_info, BaseException):
            exc = exc_info
        elif exc_info:
            exc = sys.exc_info()[1]
        if exc is None:
            return ""
        if isinstance(exc, HttpProcessingError):
            return f"{exc.code} {exc.message}"
        return f"{type(exc).__name__}: {exc}"

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self._faults.note("bad request", self._describe(exc_info))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._faults.note("bad request", self._describe(kwargs.get("exc_info")))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._faults.note("bad request", str(msg) % args if args else str(msg))

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            text = str(msg) % args if args else str(msg)
            detail = f"{text} {self._describe(kwargs.get('exc_info'))}"
            log.debug("aiohttp: %s", " ".join(detail.split())[:300])


# -- the connection cap -----------------------------------------------------------------------
def open_descriptors() -> int | None:
    """How many file descriptors this process has open (None where it cannot be counted)."""
    return platform.open_descriptor_count()


def descriptor_budget(
    wanted: int, reserve: int, *, soft: int | None = None, in_use: int | None = None
) -> int:
    """The connection cap that leaves ``reserve`` descriptors free under the soft limit.

    Counted when a server starts: the descriptors already open (models, libraries, the
    database) stay the bot's, and ``reserve`` more are kept for what it opens later (voice
    clips, eSpeak NG's data, SQLite's journal, audio devices, subprocesses). Under a small
    limit (macOS starts programs with 256) the reserve shrinks to a quarter of it, so the
    panel still gets a useful share instead of a handful of connections.

    Args:
        wanted: The configured cap.
        reserve: Descriptors to keep free.
        soft: The soft ``RLIMIT_NOFILE`` (read from the process when None).
        in_use: Descriptors open now (counted when None).
    """
    if soft is None:
        soft = platform.descriptor_limit()
        if soft is None:  # uncapped, or Windows (sockets are handles, not C descriptors)
            return wanted
    if in_use is None:
        in_use = open_descriptors() or 64
    reserve = min(reserve, soft // 4)
    return max(8, min(wanted, soft - in_use - reserve))


@dataclass(eq=False, slots=True)
class _Conn:
    handler: RequestHandler
    opened_at: float
    idle_since: float
    busy: int = 0
    made: bool = False
    doomed: bool = False


class _Tracked(asyncio.Protocol):
    """Forwards a connection's events to aiohttp's handler and tells the guard."""

    __slots__ = ("_conn", "_guard", "_inner")

    def __init__(self, guard: ConnectionGuard, conn: _Conn) -> None:
        self._guard = guard
        self._conn = conn
        self._inner = conn.handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._conn.doomed:  # evicted between accept and now: never reaches aiohttp
            transport.close()
            return
        self._conn.made = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._conn.made:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self._conn.made:
            return None
        self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._forget(self._conn)
        if self._conn.made:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._conn.made:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._conn.made:
            self._inner.resume_writing()


_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; try again\r\n"
)


class _Refused(asyncio.Protocol):
    """A connection over the cap while every open one is busy: a short 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        with contextlib.suppress(Exception):
            transport.write(_REFUSAL)
        transport.close()


class ConnectionGuard:
    """Caps open connections; the longest-idle one makes room for a new one.

    A connection is *busy* while a request on it is being handled (its headers arrived and
    the handler runs, WebSockets included) and *idle* otherwise: before its first request,
    between keep-alive requests, or while it trickles headers. Only idle connections are
    ever closed to make room, oldest idleness first, so a flood of idle or slow sockets can
    never keep a real request out. When every connection is busy, new ones get a short 503.
    """

    def __init__(self, limits: HttpLimits, faults: ClientFaultLog) -> None:
        """Construction does no I/O; the cap is computed in :meth:`start`."""
        self._limits = limits
        self._faults = faults
        self._conns: dict[RequestHandler, _Conn] = {}
        self.cap = limits.max_connections
        self.peak = 0
        self.evicted = 0
        self.refused = 0

    def start(self) -> None:
        """Compute the cap from the descriptor limit (call when the server starts)."""
        self.cap = descriptor_budget(self._limits.max_connections, self._limits.fd_reserve)
        log.debug("connection cap %d (fd reserve %d)", self.cap, self._limits.fd_reserve)

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._conns)

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``: aiohttp's, behind the cap."""

        def make() -> asyncio.Protocol:
            now = time.monotonic()
            if len(self._conns) >= self.cap and not self._evict_one():
                self.refused += 1
                self._faults.note("connection refused", f"{self.cap} connections open, all busy")
                return _Refused()
            handler = server()
            conn = _Conn(handler, now, now)
            self._conns[handler] = conn
            self.peak = max(self.peak, len(self._conns))
            return _Tracked(self, conn)

        return make

    def _evict_one(self) -> bool:
        idle = [c for c in self._conns.values() if c.busy == 0]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since)
        self._forget(victim)
        if victim.made:
            victim.handler.force_close()
        else:
            victim.doomed = True
        self.evicted += 1
        if self.evicted == 1 or self.evicted % 1000 == 0:
            self._faults.note(
                "connection flood", f"{self.cap} connections open; closed the longest idle"
            )
        return True

    def _forget(self, conn: _Conn) -> None:
        if self._conns.get(conn.handler) is conn:
            del self._conns[conn.handler]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while its request is handled."""
        protocol = request.protocol
        conn = self._conns.get(protocol) if isinstance(protocol, RequestHandler) else None
        if conn is None:
            return await handler(request)
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.idle_since = time.monotonic()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard` (TLS optional)."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        ssl_context: SSLContext | None = None,
    ) -> None:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        super().__init__(runner, ssl_context=ssl_context, backlog=ACCEPT_BATCH)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        """``http(s)://host:port`` of this site."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one before ``start``)."""
        sockets = getattr(self._server, "sockets", None) or []
        for sock in sockets:
            return int(sock.getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Bind and start accepting."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self._guard.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )


def make_runner(app: web.Application, limits: HttpLimits, faults: ClientFaultLog) -> web.AppRunner:
    """An AppRunner whose connections obey ``limits`` and whose client faults are quiet."""
    return web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=2.0,
        handle_signals=False,
        logger=_ServerLogger(faults),
        keepalive_timeout=limits.header_timeout_s,
        lingering_time=2.0,
        max_line_size=limits.max_line_size,
        max_field_size=limits.max_field_size,
        max_headers=limits.max_headers,
    )


# -- bodies -----------------------------------------------------------------------------------
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets in strings ignored)."""
    if "[" not in text and "{" not in text:
        return 0
    bare = _JSON_STRING_RE.sub("", text) if '"' in text else text
    steps = bare.encode("utf-8", "surrogatepass").translate(None, _BRACKETS)
    return max(accumulate(_STEP[b] for b in steps), default=0)


def parse_json(text: str, limits: HttpLimits) -> Any:
    """``json.loads`` that refuses what would make it crash or hang, with a short reason.

    Raises:
        BadBody: Not JSON, nested deeper than ``max_json_depth``, a number longer than
            ``max_number_digits``, or NaN/Infinity.
    """
    if json_depth(text) > limits.max_json_depth:
        raise BadBody(f"the JSON is nested deeper than {limits.max_json_depth} levels")

    def number(value: str) -> int | float:
        if len(value) > limits.max_number_digits:
            raise ValueError("number too long")
        result = float(value) if any(c in value for c in ".eE") else int(value)
        if isinstance(result, float) and result in (float("inf"), float("-inf")):
            raise ValueError("number too large")
        return result

    def constant(value: str) -> Any:
        raise ValueError(f"{value} is not a number JSON allows")

    try:
        return json.loads(text, parse_int=number, parse_float=number, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the body is not valid JSON ({exc.msg} at character {exc.pos})") from None
    except ValueError as exc:
        if "number too" in str(exc):
            raise BadBody(
                f"a number in the JSON is longer than {limits.max_number_digits} characters "
                "or out of range"
            ) from None
        raise BadBody(f"the body is not valid JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise BadBody("the JSON is nested too deeply") from None


def _first_line(exc: BaseException) -> str:
    """An exception's message without aiohttp's "400, message:" prefix, cut short."""
    text = " ".join(str(exc).split())
    text = text.removeprefix("400, message: ").removeprefix("400, message:")
    return text[:80] or type(exc).__name__


def _charset(request: web.Request) -> str:
    charset = request.charset or "utf-8"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise BadBody(f"unknown charset {charset[:40]!r}; send UTF-8") from None


async def read_body(request: web.Request, limits: HttpLimits) -> bytes:
    """The raw body, within ``max_body_bytes`` and ``body_timeout_s``.

    Raises:
        BadBody: Too large (413), too slow (408), or cut off / badly framed (400).
    """
    if not request.can_read_body:
        return b""
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise BadBody(f"the body is larger than {limits.max_body_bytes} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            while True:
                chunk = await request.content.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise BadBody(f"the body is larger than {limits.max_body_bytes} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise BadBody(
            f"the body did not arrive within {limits.body_timeout_s:.0f} s", 408
        ) from None
    except RequestPayloadError as exc:  # bad chunked framing, undecodable Content-Encoding
        raise BadBody(f"the body cannot be read ({_first_line(exc)})") from None
    except (HttpProcessingError, ConnectionError, ValueError, zlib.error) as exc:
        raise BadBody(f"the body is cut off or badly framed ({type(exc).__name__})") from None
    return b"".join(chunks)


async def read_json(request: web.Request, limits: HttpLimits) -> Any:
    """The JSON body (None when empty), parsed safely.

    Raises:
        BadBody: With a short reason (see :func:`read_body`, :func:`parse_json`).
    """
    raw = await read_body(request, limits)
    if not raw.strip():
        return None
    charset = _charset(request)
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError:
        raise BadBody(f"the body is not valid {charset}") from None
    return parse_json(text, limits)


async def read_fields(request: web.Request, limits: HttpLimits) -> dict[str, Any]:
    """A request's fields from a JSON object or a form (``curl -d a=b``); empty is ``{}``.

    Raises:
        BadBody: With a short reason.
    """
    if not request.can_read_body:
        return {}
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _multipart(request, limits)
    if ctype == "application/x-www-form-urlencoded":
        raw = await read_body(request, limits)
        charset = _charset(request)
        try:
            text = raw.decode("ascii")
            pairs = urllib.parse.parse_qsl(
                text,
                keep_blank_values=True,
                encoding=charset,
                errors="strict",
                max_num_fields=limits.max_form_fields,
            )
        except UnicodeDecodeError:
            raise BadBody(f"the form is not valid {charset}") from None
        except ValueError:
            raise BadBody(f"the form has more than {limits.max_form_fields} fields") from None
        return dict(pairs)
    data = await read_json(request, limits)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadBody('send a JSON object, e.g. {"user": "bob", "text": "hi"}')
    return data


async def _multipart(request: web.Request, limits: HttpLimits) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if len(fields) >= limits.max_form_fields:
                    raise BadBody(f"the form has more than {limits.max_form_fields} fields")
                raw = await part.read()  # type: ignore[union-attr]
                size += len(raw)
                if size > limits.max_body_bytes:
                    raise BadBody(f"the body is larger than {limits.max_body_bytes} bytes", 413)
                name = getattr(part, "name", None)
                if not name:
                    continue
                charset = part.get_charset(default="utf-8")  # type: ignore[union-attr]
                try:
                    fields[name] = raw.decode(codecs.lookup(charset).name)
                except LookupError:
                    raise BadBody(f"unknown charset {charset[:40]!r}; send UTF-8") from None
                except UnicodeDecodeError:
                    raise BadBody(f"form field {name[:40]!r} is not valid {charset}") from None
    except TimeoutError:
        raise BadBody(
            f"the body did not arrive within {limits.body_timeout_s:.0f} s", 408
        ) from None
    except RequestPayloadError as exc:
        raise BadBody(f"the body cannot be read ({_first_line(exc)})") from None
    except (
        HttpProcessingError,
        ConnectionError,
        ValueError,
        AssertionError,
        KeyError,
        zlib.error,
    ) as exc:
        raise BadBody(f"the form is malformed ({type(exc).__name__})") from None
    return fields
