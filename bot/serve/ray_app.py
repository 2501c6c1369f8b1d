"""``ishowtts serve --ray``: the voice engine as a Ray Serve application (issue 17).

Two deployments:

* ``SpeechEngine``: one replica per GPU (``num_gpus: 1`` where the cluster has GPUs, else
  ``num_cpus``), each owning an engine behind its own ``engine.worker.EngineWorker`` (the
  one thread boundary holds inside a replica too). Requests meet in ``@serve.batch``
  (``max_batch_size``, ``batch_wait_timeout_s``) and go to the engine as one
  ``submit_batch``: one sampling pass per round with F5 on CUDA, one after another with
  eSpeak NG. Replicas scale on queue length (``autoscaling_config`` with
  ``target_ongoing_requests``) between ``min_replicas`` and ``max_replicas``.
* ``SpeechIngress``: the same OpenAI-compatible API as ``ishowtts serve`` (``bot.serve.server``:
  its request parsing, error JSON, encoders, model ids and token), behind Ray Serve's HTTP
  proxy. A replica that dies mid-request (a crash, a lost node) is replaced by Serve; the
  ingress asks again and, because synthesis is deterministic for a fixed ``engine.f5.seed``
  (and always for eSpeak NG), skips the samples the client already has, so the client gets
  the message once, whole.

Start it with ``ishowtts serve --ray [--ray-config ray.yaml]`` or with Ray's own CLI:
``serve run bot.serve.ray_app:app config=config.yaml max_batch_size=16``. The keys of
:class:`RaySettings` are the application's arguments either way (docs/serve.md, "Ray Serve").
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import Field, ValidationError
from ray import serve as _ray_serve

from bot.config import Config, ConfigError, load_config, parse_config
from bot.serve.audio import OUTPUT_RATE, Encoder, Format
from bot.serve.metrics import ServeMetrics
from bot.serve.server import (
    MODEL_ID,
    MODELS,
    ApiError,
    SpeechRequest,
    _model_card,
    admit,
    check_bearer,
    parse_speech,
)
from bot.serve.token import load_or_create_serve_token
from bot.state.settings import state_dir
from engine.base import Audio, EngineState, VoiceInfo
from engine.config import Section, ServeConfig
from engine.worker import EngineWorker, SynthesisFailed, SynthesisJob

log = logging.getLogger(__name__)

APP_NAME = "ishowtts"
ENGINE_DEPLOYMENT = "SpeechEngine"
INGRESS_DEPLOYMENT = "SpeechIngress"
MAX_BODY_BYTES = 256 * 1024
"""Largest request body (the same bound as ``bot.serve.server.LIMITS``)."""
VOICES_MAX_AGE_S = 60.0
HEALTH_WAIT_S = 2.0
"""How long ``GET /health`` waits for an engine replica before saying ``loading``."""
_RECENT_BATCHES = 1024
serve: Any = _ray_serve
"""Ray Serve, untyped for mypy (its decorators and ``bind`` have no usable stubs)."""


class RaySettings(Section):
    """The Ray Serve application's arguments (``--ray-config`` file, or ``serve run`` args)."""

    config: Path | None = Field(
        default=None, description="the ishowtts config.yaml (engine, voices, serve sections)"
    )
    address: str | None = Field(
        default=None, description="Ray cluster to join (ishowtts serve --ray); none: start one"
    )
    max_batch_size: int = Field(default=8, ge=1, le=64, description="most requests per batch")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0.0, le=5.0, description="how long a batch waits to fill"
    )
    min_replicas: int = Field(default=1, ge=0, le=1024)
    max_replicas: int | None = Field(
        default=None, ge=1, le=1024, description="none: one per GPU in the cluster (1 on CPU)"
    )
    target_ongoing_requests: float = Field(
        default=8.0, gt=0, le=1024, description="queue length per replica the autoscaler keeps"
    )
    max_ongoing_requests: int = Field(
        default=32, ge=1, le=4096, description="requests one replica holds (running + waiting)"
    )
    num_gpus: float | Literal["auto"] = Field(
        default="auto", description="GPUs per replica; auto: 1 where the cluster has a GPU"
    )
    num_cpus: float = Field(default=1.0, ge=0, le=256, description="CPUs per replica")
    retries: int = Field(
        default=3, ge=0, le=20, description="times a request is asked again when its replica dies"
    )
    retry_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="longest wait for a replacement replica"
    )


class RaySetupError(RuntimeError):
    """The Ray application cannot be built; the message says what to fix."""


def parse_ray_settings(args: dict[str, Any]) -> RaySettings:
    """Validate the application's arguments, one line per bad key.

    Raises:
        RaySetupError: With every bad key, its value and what is allowed.
    """
    try:
        return RaySettings.model_validate(args)
    except ValidationError as exc:
        lines = [
            f"ray.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise RaySetupError("bad Ray Serve settings:\n  " + "\n  ".join(lines)) from None


# -- the engine replica ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Piece:
    """What a replica streams for one request: audio chunks, and whether it ended.

    Attributes:
        audio: Chunks at the engine's rate (float32), possibly none this round.
        last: The request has nothing more.
        error: Why synthesis failed (then ``last``).
    """

    audio: tuple[Audio, ...] = ()
    last: bool = False
    error: str | None = None


@dataclass(eq=False)
class _Pending:
    """One request inside a replica, between ``speak`` and the batch that runs it."""

    text: str
    voice: str
    speed: float = 1.0
    job: SynthesisJob | None = None
    cancelled: bool = False

    def work(self) -> tuple[str, str] | tuple[str, str, float]:
        """What ``submit_batch`` takes (the speed only when it is not 1.0, as callers do)."""
        return (self.text, self.voice) if self.speed == 1.0 else (self.text, self.voice, self.speed)

    def cancel(self) -> None:
        self.cancelled = True
        if self.job is not None:
            self.job.cancel()


@dataclass
class _ReplicaStats:
    batches: collections.deque[int] = field(
        default_factory=lambda: collections.deque(maxlen=_RECENT_BATCHES)
    )
    sizes: Counter[int] = field(default_factory=Counter)
    waiting: int = 0
    active: int = 0
    requests: int = 0
    cancelled: int = 0


class SpeechEngineReplica:
    """One engine replica (wrapped by ``serve.deployment`` in :func:`build_app`).

    Ray Serve calls ``__init__`` as the replica's ``start()``: the engine loads on the
    replica's engine thread and the replica counts as ready once it has.
    """

    async def __init__(  # type: ignore[misc]
        self,
        cfg: Config,
        max_batch_size: int,
        batch_wait_timeout_s: float,
    ) -> None:
        """Build and load the engine exactly as ``ishowtts serve`` does (same choice, banner).

        Args:
            cfg: The whole configuration (``engine``, ``voices``, ``storage`` are read).
            max_batch_size: Most requests ``@serve.batch`` gathers into one engine batch.
            batch_wait_timeout_s: How long a batch waits to fill.

        Raises:
            RuntimeError: The engine failed to load (Serve shows the message and retries).
        """
        from engine.factory import create_engine

        folder = state_dir(cfg.storage)
        engine = create_engine(cfg.engine, cfg.voices, cache_dir=folder)
        self._worker = EngineWorker(engine)
        self._stats = _ReplicaStats()
        self._speak_batch.set_max_batch_size(max_batch_size)
        self._speak_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        await self._worker.start()
        state = await self._worker.wait_ready()
        if state is not EngineState.READY:
            detail = self._worker.state_detail
            await self._worker.close()
            raise RuntimeError(f"the voice engine failed to load: {detail}")
        log.info("replica ready: %s", self._worker.state_detail)

    async def info(self) -> dict[str, Any]:
        """Engine name, state and output rate (the ingress asks once)."""
        return {
            "engine": self._worker.engine.name,
            "state": self._worker.state.value,
            "detail": self._worker.state_detail,
            "sample_rate": self._worker.sample_rate,
        }

    async def voices(self) -> list[dict[str, str | None]]:
        """The engine's voices, as plain dicts (what ``GET /v1/voices`` lists)."""
        infos = await self._worker.call(lambda engine: engine.voices())
        return [{"name": i.name, "description": i.description, "problem": i.problem} for i in infos]

    async def stats(self) -> dict[str, Any]:
        """What this replica batched (recent batch sizes, their counts) and holds now.

        ``waiting``: requests not yet in a batch; ``active``: requests not yet answered;
        ``cancelled``: requests whose caller went away before the end.
        """
        s = self._stats
        return {
            "batches": list(s.batches),
            "sizes": dict(s.sizes),
            "waiting": s.waiting,
            "active": s.active,
            "requests": s.requests,
            "cancelled": s.cancelled,
        }

    async def speak(self, text: str, voice: str, speed: float = 1.0) -> AsyncIterator[Piece]:
        """Stream one request's pieces; its batch forms in ``_speak_batch``.

        A caller that goes away (the client disconnected) cancels its job at the next chunk;
        the rest of the batch goes on.
        """
        pending = _Pending(text, voice, speed)
        self._stats.requests += 1
        self._stats.active += 1
        self._stats.waiting += 1
        counted = True
        ended = False
        try:
            async for piece in self._speak_batch(pending):
                if counted:
                    self._stats.waiting -= 1
                    counted = False
                ended = piece.last
                if piece.audio or piece.last:  # rounds that brought nothing stay here
                    yield piece
                if piece.last:
                    return
        finally:
            if counted:
                self._stats.waiting -= 1
            self._stats.active -= 1
            if not ended:  # the caller went away: its job stops at the next chunk
                self._stats.cancelled += 1
            pending.cancel()

    async def check_health(self) -> None:
        """Serve's health check: a replica whose engine stopped or failed is replaced."""
        if self._worker.state is not EngineState.READY:
            raise RuntimeError(f"engine {self._worker.state.value}: {self._worker.state_detail}")

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # type: ignore[untyped-decorator]
    async def _speak_batch(self, requests: list[_Pending]) -> AsyncIterator[list[Any]]:
        """Run the gathered requests as one engine batch; yield one entry per request a round.

        Each round's entry is a :class:`Piece` with the chunks that arrived since the last
        round (Serve's batching needs one value per request per round), or ``StopIteration``
        for a request that already ended.
        """
        self._stats.batches.append(len(requests))
        self._stats.sizes[len(requests)] += 1
        jobs = self._worker.submit_batch([r.work() for r in requests])
        events: asyncio.Queue[tuple[int, Audio | BaseException | None]] = asyncio.Queue()
        for request, job in zip(requests, jobs, strict=True):
            request.job = job
            if request.cancelled:
                job.cancel()

        async def pump(index: int, job: SynthesisJob) -> None:
            try:
                async for chunk in job:
                    events.put_nowait((index, chunk))
            except SynthesisFailed as exc:
                events.put_nowait((index, exc))
                return
            events.put_nowait((index, None))

        pumps = [asyncio.create_task(pump(i, job)) for i, job in enumerate(jobs)]
        ended: set[int] = set()
        try:
            while len(ended) < len(requests):
                arrived = [await events.get()]
                while not events.empty():
                    arrived.append(events.get_nowait())
                audio: list[list[Audio]] = [[] for _ in requests]
                finished: dict[int, str | None] = {}
                for index, item in arrived:
                    if isinstance(item, BaseException):
                        finished[index] = str(item)
                    elif item is None:
                        finished[index] = None
                    else:
                        audio[index].append(item)
                out: list[Any] = []
                for index in range(len(requests)):
                    if index in ended:
                        out.append(StopIteration)
                    elif index in finished:
                        out.append(Piece(tuple(audio[index]), True, finished[index]))
                    else:
                        out.append(Piece(tuple(audio[index])))
                ended.update(finished)
                yield out
        finally:
            for job in jobs:
                job.cancel()
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


# -- the ingress -------------------------------------------------------------------------------
def _error_response(error: ApiError) -> Any:
    """``ApiError`` as Starlette's JSON answer, in OpenAI's shape (as ``ApiError.response``)."""
    from starlette.responses import JSONResponse

    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    body = {
        "error": {
            "message": error.message,
            "type": error.kind,
            "param": error.param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=error.status, headers=headers)


def _replica_lost_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the replica went away", after which asking again is right."""
    import ray.exceptions
    import ray.serve.exceptions

    return (
        ray.exceptions.RayActorError,
        ray.exceptions.ActorUnavailableError,
        ray.serve.exceptions.DeploymentUnavailableError,
    )


@dataclass
class IngressStats:
    """What the ingress did (``GET /v1/status``)."""

    served: int = 0
    cancelled: int = 0
    failed: int = 0
    refused: int = 0
    active: int = 0
    retried: int = 0
    """Requests asked again because their replica died."""


class SpeechIngress:
    """The OpenAI-compatible API in front of the engine replicas (``bot.serve.server``'s)."""

    async def __init__(  # type: ignore[misc]
        self,
        engine: Any,
        serve_settings: ServeConfig,
        folder: Path,
        default_voice: str,
        timeout_s: float,
        retries: int,
        retry_timeout_s: float,
    ) -> None:
        """Keep the engine handle; read (or make) the serve token, as ``ishowtts serve`` does."""
        self._engine = engine
        self.settings = serve_settings
        self._default_voice = default_voice.lower()
        self._timeout_s = timeout_s
        self._retries = retries
        self._retry_timeout_s = retry_timeout_s
        self.stats = IngressStats()
        self.metrics = ServeMetrics(lambda: self.stats.active)
        self.metrics.state.state(EngineState.READY.value)
        self._per_token: Counter[str] = Counter()
        self._voices: dict[str, VoiceInfo] = {}
        self._voices_at = 0.0
        self._info: dict[str, Any] | None = None
        token, _created, where = await asyncio.to_thread(load_or_create_serve_token, folder)
        self._token = token
        self._token_source = where

    async def __call__(self, request: Any) -> Any:
        """Route one HTTP request (a Starlette ``Request``), with CORS like ``ishowtts serve``."""
        origin = self._allowed_origin(request)
        if request.method == "OPTIONS":
            if origin is None:
                response = _error_response(
                    ApiError(403, "this origin may not call the API (serve.cors_origins)")
                )
            else:
                from starlette.responses import Response

                response = Response(
                    status_code=204,
                    headers={
                        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                        "Access-Control-Allow-Headers": "Authorization, Content-Type",
                        "Access-Control-Max-Age": "600",
                    },
                )
        else:
            try:
                response = await self._route(request)
            except ApiError as exc:
                self._count("refused")
                response = _error_response(exc)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            response.headers["Vary"] = "Origin"
        return response

    def _allowed_origin(self, request: Any) -> str | None:
        """The Access-Control-Allow-Origin value for this request (None: no CORS headers)."""
        origin = request.headers.get("origin")
        allowed = self.settings.cors_origins
        if origin is None or not ("*" in allowed or origin in allowed):
            return None
        return "*" if "*" in allowed else str(origin)

    async def _route(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        path = request.url.path.rstrip("/") or "/"
        method = request.method
        if path == "/health":
            return JSONResponse({"status": await self._health()})
        if path.startswith("/v1/") or path == "/metrics":
            self._check_token(request)
        if method == "POST" and path == "/v1/audio/speech":
            return await self._speech(request)
        if method == "GET" and path == "/v1/models":
            return JSONResponse({"object": "list", "data": [_model_card(m) for m in MODELS]})
        if method == "GET" and path.startswith("/v1/models/"):
            model = path.removeprefix("/v1/models/")
            if model not in MODELS:
                raise ApiError(
                    404,
                    f"the model {model!r} does not exist here; use {MODEL_ID!r}",
                    code="model_not_found",
                )
            return JSONResponse(_model_card(model))
        if method == "GET" and path == "/v1/voices":
            voices = await self._known_voices()
            info = await self._engine_info()
            return JSONResponse(
                {
                    "object": "list",
                    "default": self._default_voice,
                    "engine": info["engine"],
                    "data": [
                        {
                            "id": v.name,
                            "name": v.name,
                            "description": v.description,
                            "problem": v.problem,
                        }
                        for v in voices.values()
                    ],
                }
            )
        if method == "GET" and path == "/v1/status":
            return JSONResponse(await self._status())
        if method == "GET" and path == "/metrics":
            body, content_type = self.metrics.render()
            return Response(body, headers={"Content-Type": content_type})
        raise ApiError(404, f"no such endpoint: {method} {path}", kind="not_found_error")

    def _check_token(self, request: Any) -> None:
        check_bearer(request.headers.get("authorization", ""), self._token, self._token_source)

    async def _health(self) -> str:
        """``ready`` once an engine replica answers; ``loading`` while none does yet."""
        if self._info is not None:
            return "ready"
        try:
            await asyncio.wait_for(self._engine_info(), HEALTH_WAIT_S)
        except TimeoutError:
            return EngineState.LOADING.value
        return "ready"

    def _count(self, outcome: str) -> None:
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        self.metrics.requests.labels(outcome).inc()

    async def _engine_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = dict(await self._engine.info.remote())
        return self._info

    async def _known_voices(self) -> dict[str, VoiceInfo]:
        if not self._voices or time.monotonic() - self._voices_at > VOICES_MAX_AGE_S:
            listed = await self._engine.voices.remote()
            self._voices = {
                str(v["name"]).lower(): VoiceInfo(
                    str(v["name"]), str(v["description"]), v.get("problem")
                )
                for v in listed
            }
            self._voices_at = time.monotonic()
        return self._voices

    async def _status(self) -> dict[str, Any]:
        info = await self._engine_info()
        s = self.stats
        return {
            "state": "ready",
            "engine": info["engine"],
            "sample_rate": OUTPUT_RATE,
            "active": s.active,
            "max_queue": self.settings.max_queue,
            "served": s.served,
            "cancelled": s.cancelled,
            "failed": s.failed,
            "refused": s.refused,
            "retried": s.retried,
            "ray": True,
        }

    async def _read_body(self, request: Any) -> Any:
        data = bytearray()
        async for part in request.stream():
            data.extend(part)
            if len(data) > MAX_BODY_BYTES:
                raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(bytes(data))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None

    async def _speech(self, request: Any) -> Any:
        arrived = time.monotonic()
        body = await self._read_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, 'send a JSON object, e.g. {"input": "hi", "voice": "default"}')
        given = body.get("voice")  # serve.voice_aliases, as ServeServer._validate applies them
        if isinstance(given, str) and given.strip().lower() in self.settings.voice_aliases:
            body = {**body, "voice": self.settings.voice_aliases[given.strip().lower()]}
        speech = await parse_speech(
            body,
            max_input_chars=self.settings.max_input_chars,
            default_voice=self._default_voice,
            voices=self._known_voices,
        )
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        admit(self.settings, active=self.stats.active, of_token=self._per_token[token])
        rate = int((await self._engine_info())["sample_rate"])
        self.stats.active += 1
        self._per_token[token] += 1
        chunks = self.audio(speech.text, speech.voice, speech.speed)
        try:
            first = await asyncio.wait_for(anext(chunks), self._timeout_s)
        except BaseException as exc:
            self._release(token)
            await chunks.aclose()
            raise self._first_chunk_error(exc) from None
        return self._respond(speech, rate, first, chunks, arrived, token)

    def _first_chunk_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, StopAsyncIteration):
            self._count("failed")
            return ApiError(
                500, "the engine produced no audio", kind="server_error", code="no_audio"
            )
        if isinstance(exc, SynthesisFailed):
            self._count("failed")
            return ApiError(
                500, f"synthesis failed: {exc}", kind="server_error", code="synthesis_failed"
            )
        if isinstance(exc, TimeoutError):
            self._count("failed")
            return ApiError(
                504,
                f"no audio within {self._timeout_s:.0f} s (engine.timeout_s)",
                kind="server_error",
                code="timeout",
            )
        if isinstance(exc, _replica_lost_errors()):
            self._count("failed")
            return ApiError(
                503,
                f"no engine replica answered ({exc.__class__.__name__}); try again shortly",
                kind="server_error",
                code="engine_unavailable",
                retry_after_s=self.settings.retry_after_s,
            )
        if isinstance(exc, Exception):
            self._count("failed")
            log.warning("speech request failed: %s: %s", exc.__class__.__name__, exc)
            return ApiError(
                500, f"the request failed: {exc}", kind="server_error", code="internal_error"
            )
        return exc  # cancelled: the client went away

    def _release(self, token: str) -> None:
        self.stats.active -= 1
        self._per_token[token] -= 1
        if self._per_token[token] <= 0:
            del self._per_token[token]

    def _respond(
        self,
        speech: SpeechRequest,
        rate: int,
        first: Audio,
        chunks: AsyncGenerator[Audio, None],
        arrived: float,
        token: str,
    ) -> Any:
        from starlette.responses import StreamingResponse

        encoder = Encoder(speech.format, rate)
        slow = not speech.format.streamed or speech.format is Format.OPUS

        async def encode(audio: Audio | None) -> bytes:
            if audio is None:
                return await asyncio.to_thread(encoder.finish) if slow else encoder.finish()
            return await asyncio.to_thread(encoder.feed, audio) if slow else encoder.feed(audio)

        def framed(data: bytes) -> bytes:
            if not speech.sse or not data:
                return data
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
            return f"data: {json.dumps(event)}\n\n".encode()

        async def body() -> AsyncIterator[bytes]:
            finished = failed = False
            try:
                yield framed(await encode(first))
                if speech.format.streamed:
                    self.metrics.first_audio.observe(time.monotonic() - arrived)
                async for chunk in chunks:
                    data = framed(await encode(chunk))
                    if data:
                        yield data
                yield framed(await encode(None))
                if speech.sse:
                    done = {
                        "type": "speech.audio.done",
                        "usage": {
                            "input_tokens": len(speech.text),
                            "output_tokens": encoder.samples,
                            "total_tokens": len(speech.text) + encoder.samples,
                        },
                    }
                    yield f"data: {json.dumps(done)}\n\n".encode()
                finished = True
            except SynthesisFailed as exc:
                failed = True
                self._count("failed")
                log.warning("synthesis failed mid-response: %s", exc)
                raise  # the body ends cut (no final chunk), as with ishowtts serve
            finally:
                self._release(token)
                with contextlib.suppress(Exception):
                    await chunks.aclose()
                encoder.close()
                if finished:
                    self._count("served")
                    now = time.monotonic()
                    if not speech.format.streamed:
                        self.metrics.first_audio.observe(now - arrived)
                    self.metrics.whole.observe(now - arrived)
                    self.metrics.audio_seconds.inc(encoder.samples / OUTPUT_RATE)
                elif not failed:
                    self._count("cancelled")

        media = "text/event-stream" if speech.sse else speech.format.content_type
        return StreamingResponse(
            body(),
            media_type=media,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def audio(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[Audio, None]:
        """One message's chunks from the replicas, asked again when a replica dies.

        The engine speaks a message the same way every time (eSpeak NG; F5 with a fixed
        ``engine.f5.seed``), so after a retry the samples already passed on are skipped and
        the caller sees one seamless message. Without a seed a retried F5 message is a new
        take from the cut on.

        Raises:
            SynthesisFailed: The engine could not speak it.
        """
        import ray.exceptions

        lost = _replica_lost_errors()
        given = 0  # samples already passed on
        attempt = 0
        started = time.monotonic()
        while True:
            seen = 0
            stream = self._engine.options(stream=True).speak.remote(text, voice, speed)
            try:
                async for piece in stream:
                    if piece.error is not None:
                        raise SynthesisFailed(piece.error)
                    for chunk in piece.audio:
                        skip = min(len(chunk), max(0, given - seen))
                        seen += len(chunk)
                        if skip < len(chunk):
                            part = chunk[skip:]
                            given += len(part)
                            yield part
                    if piece.last:
                        return
                return
            except lost as exc:
                attempt += 1
                if attempt > self._retries or time.monotonic() - started > self._retry_timeout_s:
                    raise
                self.stats.retried += 1
                log.warning(
                    "an engine replica went away mid-request (%s); asking again (%d of %d), "
                    "%d samples already sent",
                    exc.__class__.__name__,
                    attempt,
                    self._retries,
                    given,
                )
            except ray.exceptions.RayTaskError as exc:
                raise SynthesisFailed(str(exc.cause or exc)) from None
            finally:
                with contextlib.suppress(Exception):
                    stream.cancel()


# -- building and running ----------------------------------------------------------------------
def _cluster_gpus() -> float:
    if not ray.is_initialized():
        return 0.0
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("GPU", 0.0))


def build_app(cfg: Config, settings: RaySettings) -> Any:
    """The Ray Serve application (an ``Application`` for ``serve.run``).

    Raises:
        RaySetupError: The engine section asks for the remote engine.
    """
    if cfg.engine.name == "remote":
        raise RaySetupError(
            "engine.name is 'remote': the Ray replicas speak themselves; set engine.name to "
            "auto, f5 or espeak"
        )
    gpus = _cluster_gpus()
    per_replica = (1.0 if gpus >= 1 else 0.0) if settings.num_gpus == "auto" else settings.num_gpus
    most = settings.max_replicas or (max(1, int(gpus // per_replica)) if per_replica else 1)
    least = min(settings.min_replicas, most)
    actor: dict[str, Any] = {"num_cpus": settings.num_cpus}
    if per_replica:
        actor["num_gpus"] = per_replica
    engine = serve.deployment(
        SpeechEngineReplica,
        name=ENGINE_DEPLOYMENT,
        ray_actor_options=actor,
        max_ongoing_requests=max(settings.max_ongoing_requests, settings.max_batch_size),
        autoscaling_config={
            "min_replicas": least,
            "initial_replicas": max(least, 1),
            "max_replicas": most,
            "target_ongoing_requests": settings.target_ongoing_requests,
        },
        health_check_period_s=5,
    ).bind(cfg, settings.max_batch_size, settings.batch_wait_timeout_s)
    ingress = serve.deployment(
        SpeechIngress,
        name=INGRESS_DEPLOYMENT,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=max(cfg.serve.max_queue * 2, 64),
    ).bind(
        engine,
        cfg.serve,
        state_dir(cfg.storage),
        cfg.voices.default,
        cfg.engine.timeout_s,
        settings.retries,
        settings.retry_timeout_s,
    )
    return ingress


def _load(path: Path | None) -> Config:
    if path is None:
        default = Path("config.yaml")
        return load_config(default) if default.exists() else parse_config({}, Path.cwd())
    return load_config(path)


def app(args: dict[str, Any]) -> Any:
    """``serve run bot.serve.ray_app:app config=config.yaml [key=value ...]``: the builder.

    Raises:
        RaySetupError: Bad arguments or an unusable config file (the message says which).
    """
    settings = parse_ray_settings(dict(args))
    try:
        cfg = _load(settings.config)
    except ConfigError as exc:
        raise RaySetupError(str(exc)) from None
    return build_app(cfg, settings)


def read_ray_settings(path: Path | None) -> RaySettings:
    """The ``--ray-config`` YAML file's settings (defaults without one).

    Raises:
        RaySetupError: The file cannot be read or holds bad keys.
    """
    if path is None:
        return RaySettings()
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RaySetupError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RaySetupError(f"{path} should hold `key: value` lines (the Ray settings)")
    return parse_ray_settings(data)


def serve_ray(cfg: Config, settings: RaySettings, stop_when: Callable[[], Any]) -> int:
    """Run the application on Ray until ``stop_when()`` returns; returns the exit status.

    Starts (or joins, with ``address``) a Ray cluster, puts Serve's HTTP proxy on
    ``serve.host:serve.port`` (with ``serve.cert``/``serve.key`` for TLS), deploys, waits,
    and shuts Serve down. Blocking (``stop_when`` blocks until the user stops it); a Ctrl-C
    while Ray is still starting stops it too.
    """
    try:
        application = build_app_after_init(cfg, settings)
    except RaySetupError as exc:
        log.error("%s", exc)
        return 2
    http: dict[str, Any] = {"host": cfg.serve.host, "port": cfg.serve.port}
    if cfg.serve.cert is not None and cfg.serve.key is not None:
        http.update(ssl_certfile=str(cfg.serve.cert), ssl_keyfile=str(cfg.serve.key))
    try:
        serve.start(http_options=http)
        serve.run(application(), name=APP_NAME, route_prefix="/", blocking=False)
        scheme = "https" if cfg.serve.cert is not None else "http"
        log.info(
            "serving speech on Ray Serve at %s://%s:%d/v1/audio/speech (OpenAI-compatible)",
            scheme,
            cfg.serve.host,
            cfg.serve.port,
        )
        stop_when()
        log.info("stopping the Ray Serve application")
        return 0
    except KeyboardInterrupt:
        log.info("stopping the Ray Serve application (asked to while it was starting)")
        return 0
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        if settings.address is None:
            ray.shutdown()  # type: ignore[no-untyped-call]


async def _until_stopped() -> None:
    """Wait for SIGINT/SIGTERM (or the Windows equivalents), as ``ishowtts serve`` does."""
    from bot.core.platform import install_stop_handler

    stop = asyncio.Event()
    remove = install_stop_handler(asyncio.get_running_loop(), stop.set)
    try:
        await stop.wait()
    finally:
        remove()


def serve_ray_command(cfg: Config, ray_config: Path | None) -> int:
    """``ishowtts serve --ray [--ray-config FILE]``: run until stopped; returns the exit status."""
    try:
        settings = read_ray_settings(ray_config)
    except RaySetupError as exc:
        log.error("%s", exc)
        return 2
    return serve_ray(cfg, settings, lambda: asyncio.run(_until_stopped()))


def build_app_after_init(cfg: Config, settings: RaySettings) -> Callable[[], Any]:
    """Start or join Ray, then return a maker of the application (GPUs are counted first)."""
    if not ray.is_initialized():
        ray.init(address=settings.address, include_dashboard=False)
    return lambda: build_app(cfg, settings)


def replica_batches(stats: Sequence[dict[str, Any]]) -> list[int]:
    """Every batch size the given replicas' ``stats()`` report (tests, the bench)."""
    return [size for s in stats for size in s["batches"]]
