"""The HTTP side of ``ishowtts serve``: OpenAI's speech API in front of the engine worker.

Endpoints (every ``/v1`` one needs ``Authorization: Bearer TOKEN``):

* ``POST /v1/audio/speech``: JSON ``model``, ``input``, ``voice``, ``response_format``
  (``pcm``, ``wav``, ``opus`` streamed; ``flac``, ``mp3`` whole, see ``bot.serve.audio``),
  ``speed`` (0.25-4.0, per request), ``stream_format`` (``audio`` or ``sse``). The first
  chunk leaves as soon as the engine has it; a client that goes away cancels its synthesis
  at the next chunk.
* ``GET /v1/models``, ``GET /v1/models/{id}``: the model ids clients may send.
* ``GET /v1/voices``: our voice names with their problems (what ``ishowtts voices`` shows).
* ``GET /v1/status``: engine state and request counters (the doctor and tests read it).
* ``GET /health``: the engine state only, without the token (is anything listening?).

Errors use OpenAI's JSON shape (``{"error": {"message", "type", "param", "code"}}``), so the
official SDKs raise their usual exceptions with our messages. A full queue is 429 and an
engine still loading 503, both with ``Retry-After``.

Hostile clients meet ``bot.web.protect``: a connection cap that closes the longest-idle
socket, header and body timeouts, a body size cap, safe JSON, and quiet logging of their
faults. The engine runs on the one engine thread (``engine.worker.EngineWorker``); this
module only awaits its jobs.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.core.tasks import TaskSet
from bot.core.text import clean_for_speech
from bot.serve.audio import OUTPUT_RATE, Encoder, Format
from bot.serve.metrics import ServeMetrics
from bot.serve.token import load_or_create_serve_token
from bot.web.protect import (
    BadBody,
    ClientFaultLog,
    ConnectionGuard,
    GuardedSite,
    Handler,
    HttpLimits,
    make_runner,
    read_json,
)
from bot.web.token import tokens_match
from engine.base import Engine, EngineState, VoiceInfo
from engine.config import ServeConfig, is_loopback
from engine.worker import EngineWorker, SynthesisFailed, SynthesisJob

log = logging.getLogger(__name__)

MODEL_ID = "ishowtts"
MODELS = (MODEL_ID, "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
"""Model ids accepted: ours, and OpenAI's (clients that hard-code one still work)."""
LIMITS = HttpLimits(max_body_bytes=256 * 1024, max_connections=256)
"""Connection, header, body and JSON bounds (``bot.web.protect``)."""
_WARMING = (EngineState.STOPPED, EngineState.LOADING, EngineState.WARMING)
_SPEEDS = (0.25, 4.0)
VOICES_MAX_AGE_S = 60.0
"""Age after which the cached voice list is refreshed (in the background)."""


class ApiError(Exception):
    """A refused request, answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        """The JSON answer."""
        body = {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return web.json_response(body, status=self.status, headers=headers)


@dataclass
class ServeStats:
    """What the server did since it started (``GET /v1/status``)."""

    served: int = 0
    """Requests answered with their whole audio."""
    cancelled: int = 0
    """Requests whose client went away before the end (synthesis stopped)."""
    failed: int = 0
    """Requests the engine could not speak."""
    refused: int = 0
    """Requests answered with an error before synthesis."""
    active: int = 0
    """Requests admitted now (running or waiting for the engine)."""


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """A validated ``POST /v1/audio/speech`` body."""

    text: str
    voice: str
    format: Format
    sse: bool
    speed: float = 1.0
    """OpenAI's speaking speed factor (0.25-4.0), handed to the engine per request."""


class ServeServer:
    """``ishowtts serve``: owns the engine worker and the HTTP site.

    Construction does no I/O; ``start()`` reads (or makes) the token, starts the engine
    thread (loading happens there, requests meanwhile get 503) and binds the port.
    """

    def __init__(
        self,
        settings: ServeConfig,
        engine: Engine,
        *,
        state_dir: Path,
        default_voice: str,
        timeout_s: float = 60.0,
        on_engine_state: Callable[[EngineState, str], None] | None = None,
    ) -> None:
        """Wire the server; nothing opens until ``start()``.

        Args:
            settings: The ``serve`` section.
            engine: The (unloaded) engine, as ``engine.factory.create_engine`` makes it.
            state_dir: Folder of the token file.
            default_voice: The voice of requests that name none (``voices.default``).
            timeout_s: Longest wait for a request's first chunk (``engine.timeout_s``).
            on_engine_state: Extra observer of engine state changes (start-up progress).
        """
        self.settings = settings
        self._state_dir = state_dir
        self._default_voice = default_voice.lower()
        self._timeout_s = timeout_s
        self._observer = on_engine_state
        # Requests waiting together are drained into one batch by the worker (issue 17);
        # a lone request never waits for company.
        self.worker = EngineWorker(
            engine,
            on_state=self._on_state,
            max_batch=settings.max_batch,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
        )
        self.stats = ServeStats()
        self.metrics = ServeMetrics(lambda: self.stats.active)
        self._faults = ClientFaultLog(log, "serve", LIMITS.fault_log_interval_s)
        self.connections = ConnectionGuard(LIMITS, self._faults)
        self._token: str | None = None
        self.token_source = ""
        self._per_token: Counter[str] = Counter()
        self._voices: dict[str, VoiceInfo] = {}
        self._voices_at = 0.0
        self._refreshing = False
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self._tasks = TaskSet("serve")

    # -- life cycle -----------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http(s)://host:port`` once started."""
        scheme = "https" if self.settings.cert is not None else "http"
        port = self._site.port if self._site is not None else self.settings.port
        return f"{scheme}://{self.settings.host}:{port}"

    @property
    def token(self) -> str | None:
        """The bearer token (None before ``start()``)."""
        return self._token

    async def start(self) -> None:
        """Read or make the token, start the engine thread, listen.

        Raises:
            bot.serve.token.ServeTokenError: The token cannot be kept.
            ServeSetupError: TLS files unusable, or the port cannot be bound.
        """
        token, created, where = await asyncio.to_thread(load_or_create_serve_token, self._state_dir)
        self._token = token
        self.token_source = where
        context = await asyncio.to_thread(self._tls) if self.settings.cert is not None else None
        await self.worker.start()
        app = web.Application(
            middlewares=[self.connections.middleware, self._errors, self._auth],
            client_max_size=LIMITS.max_body_bytes,
        )
        app.on_response_prepare.append(self._add_cors)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_get("/v1/voices", self._voice_list)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("OPTIONS", "/{tail:.*}", self._preflight)
        self._runner = make_runner(app, LIMITS, self._faults)
        await self._runner.setup()
        site = GuardedSite(
            self._runner,
            self.settings.host,
            self.settings.port,
            self.connections,
            ssl_context=context,
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            await self.worker.close()
            raise ServeSetupError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror or exc}"
                " (is another ishowtts serve running? set serve.port)"
            ) from None
        self._site = site
        log.info("serving speech at %s/v1/audio/speech (OpenAI-compatible)", self.url)
        if created:
            log.info(
                "first run: the serve token is %s (kept in %s). The bot on this PC reads it "
                "itself; on another PC set ISHOWTTS_SERVE_TOKEN to it, or copy that file",
                token,
                where,
            )
        else:
            log.info("the serve token is in %s (`ishowtts serve --print-token` shows it)", where)
        if not is_loopback(self.settings.host):
            log.warning(
                "serve listens on %s: reachable from other machines (serve.allow_remote). "
                "Every request needs the token%s",
                self.settings.host,
                ""
                if context is not None
                else ", and it travels unencrypted: set serve.cert and serve.key for TLS",
            )

    def _tls(self) -> ssl.SSLContext:
        cert, key = self.settings.cert, self.settings.key
        assert cert is not None
        assert key is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ServeSetupError(
                f"cannot use the TLS certificate {cert} with key {key}: {exc}"
            ) from None
        return context

    async def close(self) -> None:
        """Stop listening, cancel every job, stop the engine."""
        await self._tasks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.worker.close()

    def _on_state(self, state: EngineState, detail: str) -> None:
        self.metrics.state.state(state.value)
        if state is EngineState.READY:
            log.info("%s", detail)
            self._voices = {}
            self._tasks.spawn(self._load_voices(), "serve voice list")
        elif state is EngineState.ERROR:
            log.error("the voice engine is unavailable: %s", detail)
        if self._observer is not None:
            self._observer(state, detail)

    async def _load_voices(self) -> dict[str, VoiceInfo]:
        """Ask the engine thread for its voices and cache them."""
        infos = await self.worker.call(lambda engine: engine.voices())
        self._voices = {info.name.lower(): info for info in infos}
        self._voices_at = time.monotonic()
        return self._voices

    async def _known_voices(self) -> dict[str, VoiceInfo]:
        """The cached voice list; a stale one is refreshed in the background.

        Asking the engine thread waits behind every queued synthesis, so a request never
        waits for that once a list is known (voices change rarely: an added folder shows
        up within a minute).
        """
        if not self._voices:
            return await self._load_voices()
        if time.monotonic() - self._voices_at > VOICES_MAX_AGE_S and not self._refreshing:
            self._refreshing = True

            async def refresh() -> None:
                try:
                    await self._load_voices()
                finally:
                    self._refreshing = False

            self._tasks.spawn(refresh(), "serve voice list")
        return self._voices

    def _count(self, outcome: str) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        self.metrics.requests.labels(outcome).inc()

    # -- middlewares ------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            self._count("refused")
            return exc.response()
        except BadBody as body:
            self._count("refused")
            self._faults.note("bad body", body.reason)
            return ApiError(body.status, body.reason).response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
            return ApiError(exc.status, exc.reason, kind=kind).response()

    def _allowed_origin(self, request: web.Request) -> str | None:
        """The Access-Control-Allow-Origin value for this request (None: no CORS headers)."""
        origin = request.headers.get("Origin")
        allowed = self.settings.cors_origins
        if origin is None or not ("*" in allowed or origin in allowed):
            return None
        return "*" if "*" in allowed else origin

    async def _add_cors(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Browser-based tools (Social Stream Ninja) call from a web page: allow their origin.

        Runs as the headers leave (``on_response_prepare``), so streamed answers get them
        too. The API's auth is a bearer header, never a cookie, so an allowed origin gains
        nothing without the token.
        """
        if not isinstance(request, web.Request):
            return
        origin = self._allowed_origin(request)
        if origin is None or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers["Vary"] = "Origin"

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" or not (
            request.path.startswith("/v1/") or request.path == "/metrics"
        ):
            return await handler(request)
        assert self._token is not None
        request["token"] = check_bearer(
            request.headers.get("Authorization", ""), self._token, self.token_source
        )
        return await handler(request)

    # -- small endpoints ----------------------------------------------------------------
    async def _preflight(self, request: web.Request) -> web.Response:
        origin = self._allowed_origin(request)
        if origin is None:
            raise ApiError(403, "this origin may not call the API (serve.cors_origins)")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": self.worker.state.value})

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [_model_card(m) for m in MODELS]})

    async def _model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in MODELS:
            raise ApiError(
                404,
                f"the model {model!r} does not exist here; use {MODEL_ID!r}",
                kind="invalid_request_error",
                code="model_not_found",
            )
        return web.json_response(_model_card(model))

    async def _voice_list(self, _request: web.Request) -> web.Response:
        self._check_ready()
        voices = await self._known_voices()
        return web.json_response(
            {
                "object": "list",
                "default": self._default_voice,
                "engine": self.worker.engine.name,
                "data": [
                    {
                        "id": info.name,
                        "name": info.name,
                        "description": info.description,
                        "problem": info.problem,
                    }
                    for info in voices.values()
                ],
            }
        )

    async def _status(self, _request: web.Request) -> web.Response:
        s = self.stats
        return web.json_response(
            {
                "state": self.worker.state.value,
                "detail": self.worker.state_detail,
                "engine": self.worker.engine.name,
                "sample_rate": OUTPUT_RATE,
                "active": s.active,
                "max_queue": self.settings.max_queue,
                "served": s.served,
                "cancelled": s.cancelled,
                "failed": s.failed,
                "refused": s.refused,
                "connections": self.connections.open,
            }
        )

    def _check_ready(self) -> None:
        state = self.worker.state
        if state in _WARMING:
            raise ApiError(
                503,
                f"the voice engine is still warming up ({self.worker.state_detail or state.value})"
                "; try again shortly",
                kind="server_error",
                code="engine_warming_up",
                retry_after_s=self.settings.retry_after_s,
            )
        if state is EngineState.ERROR:
            raise ApiError(
                503,
                f"the voice engine failed to load: {self.worker.state_detail}",
                kind="server_error",
                code="engine_unavailable",
            )

    # -- speech ---------------------------------------------------------------------------
    async def _speech(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await read_json(request, LIMITS)
        if not isinstance(body, dict):
            raise ApiError(400, 'send a JSON object, e.g. {"input": "hi", "voice": "default"}')
        self._check_ready()
        speech = await self._validate(body)
        token = str(request["token"])
        admit(self.settings, active=self.stats.active, of_token=self._per_token[token])
        self.stats.active += 1
        self._per_token[token] += 1
        job = self.worker.submit(speech.text, speech.voice, speed=speech.speed)
        try:
            return await self._stream(request, job, speech, arrived)
        finally:
            job.cancel()  # a no-op when it ended; stops it at its next chunk otherwise
            self.stats.active -= 1
            self._per_token[token] -= 1
            if self._per_token[token] <= 0:
                del self._per_token[token]

    async def _validate(self, body: dict[str, Any]) -> SpeechRequest:
        given = body.get("voice")
        if isinstance(given, str) and given.strip().lower() in self.settings.voice_aliases:
            body = {**body, "voice": self.settings.voice_aliases[given.strip().lower()]}
        return await parse_speech(
            body,
            max_input_chars=self.settings.max_input_chars,
            default_voice=self._default_voice,
            voices=self._known_voices,
        )

    async def _stream(
        self, request: web.Request, job: SynthesisJob, speech: SpeechRequest, arrived: float
    ) -> web.StreamResponse:
        chunks = aiter(job)
        try:
            first = await asyncio.wait_for(anext(chunks), self._timeout_s)
        except StopAsyncIteration:
            self._count("failed")
            raise ApiError(
                500, "the engine produced no audio", kind="server_error", code="no_audio"
            ) from None
        except SynthesisFailed as exc:
            self._count("failed")
            raise ApiError(
                500, f"synthesis failed: {exc}", kind="server_error", code="synthesis_failed"
            ) from None
        except TimeoutError:
            self._count("failed")
            raise ApiError(
                504,
                f"no audio within {self._timeout_s:.0f} s (engine.timeout_s)",
                kind="server_error",
                code="timeout",
            ) from None
        encoder = Encoder(speech.format, job.sample_rate)
        slow = not speech.format.streamed or speech.format is Format.OPUS
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream" if speech.sse else speech.format.content_type,
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        response.enable_chunked_encoding()

        async def encode(audio: Any) -> bytes:
            return await asyncio.to_thread(encoder.feed, audio) if slow else encoder.feed(audio)

        async def send(data: bytes) -> None:
            if not data:
                return
            if speech.sse:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                data = f"data: {json.dumps(event)}\n\n".encode()
            try:
                # A client that stops reading would hold its queue slot for ever.
                await asyncio.wait_for(response.write(data), self.settings.send_timeout_s)
            except TimeoutError:
                raise ConnectionResetError("the client stopped reading") from None

        try:
            await response.prepare(request)
            await send(await encode(first))
            if speech.format.streamed:
                self.metrics.first_audio.observe(time.monotonic() - arrived)
            async for chunk in chunks:
                await send(await encode(chunk))
            tail = await asyncio.to_thread(encoder.finish) if slow else encoder.finish()
            await send(tail)
            if speech.sse:
                done = {
                    "type": "speech.audio.done",
                    "usage": {
                        "input_tokens": len(speech.text),
                        "output_tokens": encoder.samples,
                        "total_tokens": len(speech.text) + encoder.samples,
                    },
                }
                await response.write(f"data: {json.dumps(done)}\n\n".encode())
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError) as exc:
            job.cancel()  # the client went away: the engine stops at its next chunk
            self._count("cancelled")
            log.debug("request for job %d ended by the client", job.id)
            encoder.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if request.transport is not None:
                request.transport.abort()  # half a body: the connection cannot be reused
            return response
        except SynthesisFailed as exc:
            # Headers are gone: end the body without its final chunk so the client sees a
            # cut response (and the bot speaks the message again) rather than a short one.
            self._count("failed")
            log.warning("synthesis failed mid-response: %s", exc)
            encoder.close()
            if request.transport is not None:
                request.transport.abort()
            return response
        self._count("served")
        self._observe(job, encoder.samples / OUTPUT_RATE, arrived, speech.format.streamed)
        return response

    def _observe(self, job: SynthesisJob, audio_s: float, arrived: float, streamed: bool) -> None:
        """Latency and real-time factor of one whole answer."""
        now = time.monotonic()
        if not streamed:  # flac, mp3: the first bytes are the whole file
            self.metrics.first_audio.observe(now - arrived)
        self.metrics.whole.observe(now - arrived)
        self.metrics.audio_seconds.inc(audio_s)
        if job.first_chunk_at is not None:
            self.metrics.engine_first.observe(job.first_chunk_at - job.submitted_at)
        if job.started_at is not None and job.finished_at is not None and audio_s > 0:
            self.metrics.realtime_factor.observe((job.finished_at - job.started_at) / audio_s)


def admit(settings: ServeConfig, *, active: int, of_token: int) -> None:
    """Refuse a request the server has no room for (the one rule ``serve`` and Ray share).

    Args:
        settings: The ``serve`` section (``max_queue``, ``per_token``, ``retry_after_s``).
        active: Requests waiting or speaking now.
        of_token: Of those, the ones this request's token has.

    Raises:
        ApiError: 429 with ``Retry-After``: the queue is full, or the token has its share.
    """
    if active >= settings.max_queue:
        raise ApiError(
            429,
            f"the server is busy: {active} requests are waiting or speaking "
            f"(serve.max_queue: {settings.max_queue}); try again shortly",
            kind="rate_limit_error",
            code="queue_full",
            retry_after_s=settings.retry_after_s,
        )
    if of_token >= settings.per_token:
        raise ApiError(
            429,
            f"this token already has {of_token} requests in progress "
            f"(serve.per_token: {settings.per_token}); wait for one to finish",
            kind="rate_limit_error",
            code="too_many_requests",
            retry_after_s=settings.retry_after_s,
        )


async def parse_speech(
    body: dict[str, Any],
    *,
    max_input_chars: int,
    default_voice: str,
    voices: Callable[[], Awaitable[dict[str, VoiceInfo]]],
) -> SpeechRequest:
    """Validate a ``POST /v1/audio/speech`` body (``ServeServer`` and the Ray ingress share it).

    Args:
        body: The decoded JSON object.
        max_input_chars: ``serve.max_input_chars``.
        default_voice: The voice of requests that name none (lower case).
        voices: Returns the known voices by lower-case name (awaited only when needed).

    Raises:
        ApiError: What is wrong, in OpenAI's error shape.
    """
    model = body.get("model", MODEL_ID)
    if not isinstance(model, str) or model not in MODELS:
        raise ApiError(
            404,
            f"the model {str(model)[:60]!r} does not exist here; use {MODEL_ID!r}",
            param="model",
            code="model_not_found",
        )
    raw = body.get("input")
    if not isinstance(raw, str):
        raise ApiError(400, "input must be the text to speak (a string)", param="input")
    limit = max_input_chars
    if len(raw) > limit:
        raise ApiError(
            400,
            f"input is {len(raw)} characters long; this server speaks at most {limit} "
            "(serve.max_input_chars)",
            param="input",
            code="string_above_max_length",
        )
    text = clean_for_speech(raw, limit)
    if not text:
        raise ApiError(400, "input has nothing to speak", param="input", code="empty_input")
    fmt_name = body.get("response_format", "mp3")
    try:
        fmt = Format(fmt_name)
    except ValueError:
        raise ApiError(
            400,
            f"response_format {str(fmt_name)[:40]!r} is not supported; use one of "
            + ", ".join(f.value for f in Format),
            param="response_format",
            code="unsupported_format",
        ) from None
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise ApiError(
            400,
            f"stream_format {str(stream_format)[:40]!r} is not supported; use audio or sse",
            param="stream_format",
        )
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise ApiError(400, "speed must be a number", param="speed")
    try:
        factor = float(speed)
    except OverflowError:  # an integer too large for a float
        factor = math.inf
    if not _SPEEDS[0] <= factor <= _SPEEDS[1]:  # NaN and infinity fail this too
        raise ApiError(400, f"speed must be between {_SPEEDS[0]} and {_SPEEDS[1]}", param="speed")
    voice = await resolve_voice(body.get("voice"), default_voice, voices)
    return SpeechRequest(text, voice, fmt, stream_format == "sse", factor)


async def resolve_voice(
    given: Any, default_voice: str, voices: Callable[[], Awaitable[dict[str, VoiceInfo]]]
) -> str:
    """The lower-case voice name a request's ``voice`` field names (ApiError if none)."""
    if given is None:
        return default_voice
    if isinstance(given, dict):  # OpenAI's custom-voice form: {"id": "..."}
        given = given.get("id")
    if not isinstance(given, str) or not given.strip():
        raise ApiError(400, "voice must be a voice name (a string)", param="voice")
    name = given.strip().lower()
    known = await voices()
    info = known.get(name)
    if info is None:
        usable = sorted(n for n, v in known.items() if v.problem is None)
        close = difflib.get_close_matches(name, usable, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        shown = ", ".join(usable[:20]) + (" ..." if len(usable) > 20 else "")
        raise ApiError(
            400,
            f"unknown voice {given[:40]!r}{hint} Voices here: {shown}",
            param="voice",
            code="voice_not_found",
        )
    if info.problem is not None:
        raise ApiError(
            400,
            f"the voice {info.name!r} cannot be used: {info.problem}",
            param="voice",
            code="voice_unusable",
        )
    return name


class ServeSetupError(RuntimeError):
    """``serve`` cannot start; the message says what to fix."""


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "ishowtts"}


def check_bearer(header: str, token: str, token_source: str) -> str:
    """The bearer token of an ``Authorization`` header, if it is the server's (serve and Ray).

    Args:
        header: The ``Authorization`` header's value ("" when absent).
        token: The server's token.
        token_source: Where the token lives on the serving PC (said in the errors).

    Raises:
        ApiError: 401 ``missing_token`` or ``invalid_api_key``, in OpenAI's shape.
    """
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    if not given:
        raise ApiError(
            401,
            "this server needs its token: send 'Authorization: Bearer TOKEN' (the token "
            f"is in {token_source} on the serving PC; `ishowtts serve --print-token`)",
            code="missing_token",
        )
    if not tokens_match(given, token):
        raise ApiError(
            401,
            f"wrong token (the right one is in {token_source} on the serving PC)",
            code="invalid_api_key",
        )
    return given
