"""The OBS overlay and the local control panel, served by aiohttp beside the bot.

* ``/overlay`` is a browser source: a transparent page that shows who is speaking and what,
  exactly while the audio plays. It needs no token (OBS cannot send one, and it only shows
  what the stream already hears).
* ``/`` is the control panel: now playing, the queue, history, engine state, and every
  control action. Its data and actions need the token kept in the state folder.
* ``/api/ingest`` lets other stream tools feed messages through the same pipeline as chat.

Both pages get live updates over WebSockets. Each client is sent the *latest* state whenever
something changed rather than every event, so a slow browser never builds a backlog and a
burst of chat costs one message per client.

Every action calls the same code as the chat commands: the pipeline's ``set_paused`` /
``set_volume`` / ``set_enabled``, the speaker's ``skip`` / ``clear``, and ``bot.chat.actions`` for
mutes and removing one item. Messages (the panel's test line, ingested ones) go through
``App.on_message``, so filters, mutes and the queue's rules apply to them as to chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import WSMsgType, web
from pydantic import BaseModel

from bot.chat import actions
from bot.chat.arguments import CommandError, parse_duration, parse_login
from bot.chat.controls import Controls
from bot.chat.filters import speakable_name
from bot.chat.pipeline import Action, Decision
from bot.chat.settings import TtsConfig
from bot.chat.voices import VoiceListUnavailable
from bot.core.messages import ChatMessage, ChatUser, Platform
from bot.speech.outputs import (
    AudioFanout,
    ClipAudio,
    ClipEnd,
    ClipStart,
    ClipStop,
    OutputEvent,
    VolumeChange,
)
from bot.speech.speaker import Outcome, Speaker, SpeechEvent, SpeechEventKind, SpeechItem
from bot.state.store import StoreError
from bot.web.metrics import BotMetrics
from bot.web.models import (
    ActionAnswer,
    AudioEnd,
    AudioStart,
    AudioStop,
    AudioVolume,
    Caption,
    EngineView,
    ErrorAnswer,
    HistoryItem,
    MessageAnswer,
    MuteView,
    OverlayState,
    PanelItem,
    PanelState,
    SynthesisView,
    VoicesAnswer,
    as_text,
)
from bot.web.protect import (
    BadBody,
    ClientFaultLog,
    ConnectionGuard,
    GuardedSite,
    HttpLimits,
    make_runner,
    read_fields,
)
from bot.web.settings import WebConfig
from bot.web.token import TOKEN_FILE_NAME, TokenError, load_or_create_token, tokens_match
from engine.base import EngineState
from engine.config import VOICE_NAME_RE

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 5000
MAX_NAME_CHARS = 64
SEND_TIMEOUT_S = 5.0
LIMITS = HttpLimits(max_body_bytes=MAX_BODY_BYTES)
"""Connection, header, body and JSON bounds of the panel's server (``bot.web.protect``)."""
FRAME_DENY_CSP = "frame-ancestors 'none'"
_EMBEDDABLE = ("/overlay", "/ws/overlay", "/ws/audio")
"""Paths OBS shows inside its browser source (a frame): they may be embedded."""
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_LOGIN_CHARS_RE = re.compile(r"[^a-z0-9_]+")

PANEL_USER_LOGIN = "panel"
"""Who mutes from the panel, as kept in the database (``muted_by``)."""


class EngineStatus(Protocol):
    """What the panel shows of the engine thread (``engine.worker.EngineWorker``)."""

    @property
    def state(self) -> EngineState:
        """Loading, warming, ready, error or stopped."""
        ...

    @property
    def state_detail(self) -> str:
        """A sentence about the state (the error message when it failed)."""
        ...


Submit = Callable[[ChatMessage], Awaitable[Decision | None]]
"""``App.submit``: runs a message through the chat pipeline and says what it did with it.

None means the handling failed with an error (``App.submit`` logged it): then what the speech
queue did with the message before the failure, seen in its events, is all that is known.
"""

HANDLING_FAILED = "the bot could not handle this message (its log says why); it was not queued"
"""The answer to a message whose handling failed before the speech queue saw it."""


class ApiError(Exception):
    """A request the API refuses; ``status`` and the message go back as JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class _Feed:
    """One WebSocket client, sent the latest rendering of its page's state when it changes."""

    ws: web.WebSocketResponse
    render: Callable[[], BaseModel]
    dirty: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self) -> None:
        """Send the state whenever it is marked dirty; a stuck client is dropped."""
        self.dirty.set()
        while not self.ws.closed:
            await self.dirty.wait()
            self.dirty.clear()
            try:
                text = as_text(self.render())
                await asyncio.wait_for(self.ws.send_str(text), SEND_TIMEOUT_S)
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                log.debug("dropping a web client: %s", exc)
                with contextlib.suppress(Exception):
                    await self.ws.close()
                return


AUDIO_BACKLOG_BYTES = 16 * 1024 * 1024
"""A browser source this far behind (about six minutes of 24 kHz speech) is dropped."""


class _AudioFeed:
    """One overlay page that plays the speech: the fan-out's events, queued for its socket.

    Audio goes out as it is synthesised (binary frames: the clip id as a little-endian
    uint32, then int16 PCM); control overtakes it: a stop removes whatever of that clip is
    still queued here and goes out first, and so does a volume change, so a skip, a deleted
    message or a ban silences the page at once however much audio was queued for it.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._outbox: deque[tuple[int | None, str | bytes]] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.overflowed = False

    def on_event(self, event: OutputEvent) -> None:
        """Queue ``event`` for the page (called on the loop by the fan-out)."""
        if isinstance(event, ClipAudio):
            pcm = np.clip(event.samples, -1.0, 1.0) * 32767.0
            frame = struct.pack("<I", event.clip & 0xFFFFFFFF) + pcm.astype("<i2").tobytes()
            self._put(event.clip, frame)
        elif isinstance(event, ClipStart):
            self._put(event.clip, as_text(AudioStart(clip=event.clip, rate=event.rate)))
        elif isinstance(event, ClipEnd):
            self._put(event.clip, as_text(AudioEnd(clip=event.clip)))
        elif isinstance(event, ClipStop):
            kept = deque(entry for entry in self._outbox if entry[0] != event.clip)
            self._bytes = sum(len(p) for c, p in kept if c is not None)
            self._outbox = kept
            self._outbox.appendleft((None, as_text(AudioStop(clip=event.clip))))
        elif isinstance(event, VolumeChange):
            self._outbox.appendleft((None, as_text(AudioVolume(volume=event.volume))))
        self._wake.set()

    def _put(self, clip: int, payload: str | bytes) -> None:
        self._outbox.append((clip, payload))
        self._bytes += len(payload)
        if self._bytes > AUDIO_BACKLOG_BYTES and not self.overflowed:
            self.overflowed = True
            log.warning(
                "a browser source fell %d MB behind the speech; disconnecting it",
                self._bytes // 2**20,
            )
            self._outbox.clear()
            self._bytes = 0

    async def pump(self) -> None:
        """Send what is queued, in order; a stuck or far-behind page is dropped."""
        while not self.ws.closed and not self.overflowed:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and not self.overflowed:
                clip, payload = self._outbox.popleft()
                if clip is not None:
                    self._bytes -= len(payload)
                try:
                    if isinstance(payload, bytes):
                        await asyncio.wait_for(self.ws.send_bytes(payload), SEND_TIMEOUT_S)
                    else:
                        await asyncio.wait_for(self.ws.send_str(payload), SEND_TIMEOUT_S)
                except (ConnectionError, RuntimeError, TimeoutError) as exc:
                    log.debug("dropping a browser audio client: %s", exc)
                    self.overflowed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=1013, message=b"too far behind the speech")


def caption_text(item: SpeechItem, tts: TtsConfig) -> str:
    """What the overlay shows as the message: the spoken text without "NAME says".

    The overlay shows the name on its own line, so the announcement would say it twice. The
    template and the name are applied by pure functions, so the same ones undo it exactly;
    an item whose name was not announced (a repeated speaker) is shown as is.
    """
    text = item.text
    if not tts.say_names:
        return text
    user = item.message.user
    marker = "\x00"
    head, _, tail = tts.template.format(
        name=speakable_name(user.display_name, user.login), text=marker
    ).partition(marker)
    if text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail):
        inner = text[len(head) : len(text) - len(tail)] if tail else text[len(head) :]
        return inner or text
    return text


def panel_item(item: SpeechItem, tts: TtsConfig) -> PanelItem:
    """A queued or playing item as the pages see it."""
    user = item.message.user
    return PanelItem(
        id=item.seq,
        user=user.login,
        name=user.display_name,
        text=item.text,
        caption=caption_text(item, tts),
        voice=item.voice,
        source=item.message.source,
        platform=user.platform,
        paid=item.message.paid,
    )


def clean_name(value: str) -> str:
    """A display name from another tool: no control or direction characters, capped."""
    return " ".join(_CONTROL_RE.sub(" ", value).split())[:MAX_NAME_CHARS]


def login_from_name(name: str) -> str:
    """A login for an ingested user name ("Some Person" -> "some_person")."""
    login = _LOGIN_CHARS_RE.sub("_", name.casefold()).strip("_")
    return login[:40] or "viewer"


def _host_only(host: str) -> str:
    """The host name of a Host header, without the port (IPv6 brackets removed)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class WebServer:
    """The HTTP server of the overlay, the control panel and the ingest endpoint.

    Construction does no I/O. ``start()`` reads (or creates) the token and binds the port;
    a failure there is logged and leaves the bot running without the panel, since speaking
    chat matters more than the panel. ``close()`` disconnects the pages and frees the port.
    """

    def __init__(
        self,
        settings: WebConfig,
        tts: TtsConfig,
        *,
        state_dir: Path,
        speaker: Speaker,
        engine: EngineStatus,
        controls: Controls,
        submit: Submit,
        local_user: Callable[[], ChatUser],
        audio: AudioFanout | None = None,
        metrics: BotMetrics | None = None,
    ) -> None:
        """Wire the server to the bot.

        Args:
            settings: The ``web`` section (address, port, history length).
            tts: The ``tts`` section (captions undo its "NAME says" template).
            state_dir: Folder of the token file (the bot's state folder).
            speaker: The speech queue and playback (events, skip, clear).
            engine: The engine thread's state.
            controls: The chat pipeline, which implements pause, volume, TTS on/off, mutes.
            submit: ``App.submit``: the test line and ingested messages go through it.
            local_user: Who the panel's test line is from (the streamer); called when needed.
            audio: The speech as it is played, for overlay pages that play it themselves
                (``web.browser_audio``); None serves no audio.
            metrics: The bot's Prometheus metrics, served at ``/metrics`` with the token;
                None serves none.
        """
        self._tts = tts
        self._web = settings
        self._state_dir = state_dir
        self._speaker = speaker
        self._engine = engine
        self._controls = controls
        self._submit = submit
        self._local_user = local_user
        self._token: str | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._faults = ClientFaultLog(log, "control panel", LIMITS.fault_log_interval_s)
        self.connections = ConnectionGuard(LIMITS, self._faults)
        """The connection cap (its counters show what a flood did)."""
        self._panel_feeds: set[_Feed] = set()
        self._overlay_feeds: set[_Feed] = set()
        self._audio = audio
        self._metrics = metrics
        self._audio_feeds: set[_AudioFeed] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._history: deque[HistoryItem] = deque(maxlen=settings.history)
        self._message_waiters: dict[str, list[SpeechEvent]] = {}
        self._caption: Caption | None = None
        self._voices_task: asyncio.Task[None] | None = None
        speaker.add_listener(self._on_speech)

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    @property
    def port(self) -> int | None:
        """The port it listens on (``web.port``, or the one picked for port 0)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` as a browser on this machine reaches it."""
        host = self._web.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port if self._port is not None else self._web.port}"

    @property
    def token(self) -> str | None:
        """The panel token (None before ``start()``)."""
        return self._token

    @property
    def token_path(self) -> Path:
        """Where the token is kept."""
        return self._state_dir / TOKEN_FILE_NAME

    async def start(self) -> None:
        """Read or create the token and start listening; problems are logged, not raised."""
        if self._runner is not None:
            return
        try:
            token, created = await asyncio.to_thread(load_or_create_token, self._state_dir)
        except TokenError as exc:
            log.error("%s; the control panel and overlay are off", exc)
            return
        self._token = token
        app = web.Application(
            client_max_size=MAX_BODY_BYTES,
            middlewares=[self.connections.middleware, self._errors, self._guard],
        )
        app.on_response_prepare.append(self._headers)
        self._routes(app)
        runner = make_runner(app, LIMITS, self._faults)
        await runner.setup()
        site = GuardedSite(runner, self._web.host, self._web.port, self.connections)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error(
                "the control panel could not listen on %s port %d (%s); it and the overlay "
                "are off. Set web.port to a free port (or web.enabled: false).",
                self._web.host,
                self._web.port,
                exc.strerror or exc,
            )
            return
        self._runner = runner
        self._port = site.port
        self._schedule(self._load_history(), "web-history")
        if created:
            log.info(
                "control panel: %s/?token=%s  (first run: this link holds your new token; "
                "keep it private, it is saved in %s)",
                self.base_url,
                token,
                self.token_path,
            )
        else:
            log.info(
                "control panel: %s/  (its token is in %s; the first run printed a ready link)",
                self.base_url,
                self.token_path,
            )
        log.info("OBS browser source for captions: %s/overlay", self.base_url)

    async def close(self) -> None:
        """Disconnect every page and stop listening."""
        runner, self._runner = self._runner, None
        sockets = [f.ws for f in self._panel_feeds | self._overlay_feeds]
        sockets += [f.ws for f in self._audio_feeds]
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"ishowtts is stopping")
        for task in list(self._pumps | self._tasks):
            task.cancel()
        for task in list(self._pumps | self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runner is not None:
            await runner.cleanup()

    def _schedule(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what the bot tells us ------------------------------------------------------------
    def on_engine_state(self, state: EngineState, detail: str) -> None:
        """The engine's state changed (called on the event loop)."""
        del state, detail  # read from the engine when rendering
        self.changed()

    def changed(self) -> None:
        """Something the panel shows changed: push the new state to every panel."""
        for feed in self._panel_feeds:
            feed.dirty.set()

    def _on_speech(self, event: SpeechEvent) -> None:
        item = event.item
        waiters = self._message_waiters.get(item.message.id)
        if waiters is not None:
            waiters.append(event)
        if event.kind is SpeechEventKind.STARTED:
            self._caption = Caption(
                id=item.seq,
                name=item.message.user.display_name,
                text=caption_text(item, self._tts),
                voice=item.voice,
                platform=item.message.user.platform,
            )
            self._overlay_changed()
        elif event.kind is SpeechEventKind.FINISHED:
            if self._caption is not None and self._caption.id == item.seq:
                self._caption = None
                self._overlay_changed()
            outcome = event.outcome.value if event.outcome else ""
            self._history.appendleft(
                HistoryItem.finished(
                    panel_item(item, self._tts), outcome, event.detail, time.time()
                )
            )
        self.changed()

    def _overlay_changed(self) -> None:
        for feed in self._overlay_feeds:
            feed.dirty.set()

    async def _load_history(self) -> None:
        """Show what was spoken before a restart (the database keeps it)."""
        try:
            entries = await self._controls.store.history(self._web.history)
        except Exception as exc:  # the panel works without it
            log.debug("no history for the panel: %s", exc)
            return
        known = len(self._history)
        for entry in entries[: max(0, self._web.history - known)]:
            self._history.append(
                HistoryItem(
                    id=None,
                    user=entry.login,
                    name=entry.login,
                    text=entry.text,
                    caption=entry.text,
                    voice=entry.voice,
                    source="",
                    paid=False,
                    outcome=entry.outcome,
                    detail=entry.detail,
                    at=entry.at,
                )
            )
        self.changed()

    # -- state renderings ---------------------------------------------------------------------
    def overlay_state(self) -> OverlayState:
        """What the overlay shows: the caption of the playing message, or none."""
        return OverlayState(caption=self._caption, audio=self._audio is not None)

    def panel_state(self) -> PanelState:
        """Everything the control panel shows."""
        tts = self._tts
        speaker = self._speaker
        controls = self._controls
        store = controls.store
        now = time.time()
        mutes: list[MuteView] = []
        for record in sorted(store.mutes(), key=lambda r: r.login):
            mute = record.mute
            if mute is None:
                continue
            mutes.append(
                MuteView(user=record.login, platform=record.platform, until=mute.until, by=mute.by)
            )
        voices = controls.voices.cached
        if voices is None:
            self._fetch_voices_soon()
        current = speaker.current
        return PanelState(
            now=now,
            engine=EngineView(state=self._engine.state, detail=self._engine.state_detail),
            paused=speaker.paused,
            enabled=controls.enabled,
            volume=round(controls.volume * 100),
            current=panel_item(current, tts) if current is not None else None,
            queue=[panel_item(it, tts) for it in speaker.queue.snapshot()],
            history=list(self._history),
            mutes=mutes,
            voices=voices or [],
            default_voice=controls.default_voice,
            synthesis=self._synthesis_view(),
        )

    def _synthesis_view(self) -> SynthesisView:
        """The last heard message's latency and real-time factor (empty without metrics)."""
        if self._metrics is None:
            return SynthesisView()
        latest = self._metrics.latest
        return SynthesisView(
            first_chunk_s=latest.first_chunk_s,
            synthesis_s=latest.synthesis_s,
            rtf=latest.rtf,
            batch_size=latest.batch_size,
        )

    def _fetch_voices_soon(self) -> None:
        """Ask for the voice list once in the background; the panel updates when it comes."""
        if self._voices_task is not None and not self._voices_task.done():
            return

        async def fetch() -> None:
            with contextlib.suppress(Exception):
                await self._controls.voices.names()
                self.changed()

        self._voices_task = asyncio.create_task(fetch(), name="web-voices")
        self._tasks.add(self._voices_task)
        self._voices_task.add_done_callback(self._tasks.discard)

    # -- HTTP plumbing --------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._page("panel.html"))
        r.add_get("/overlay", self._page("overlay.html"))
        r.add_static("/static/", STATIC_DIR, follow_symlinks=False, show_index=False)
        r.add_get("/ws/overlay", self._ws_overlay)
        r.add_get("/ws/panel", self._ws_panel)
        if self._audio is not None:
            r.add_get("/ws/audio", self._ws_audio)
        r.add_get("/api/state", self._api_state)
        r.add_get("/api/voices", self._api_voices)
        r.add_post("/api/skip", self._api_skip)
        r.add_post("/api/clear", self._api_clear)
        r.add_post("/api/remove", self._api_remove)
        r.add_post("/api/pause", self._api_pause)
        r.add_post("/api/resume", self._api_resume)
        r.add_post("/api/volume", self._api_volume)
        r.add_post("/api/tts", self._api_tts)
        r.add_post("/api/mute", self._api_mute)
        r.add_post("/api/unmute", self._api_unmute)
        r.add_post("/api/say", self._api_say)
        r.add_post("/api/ingest", self._api_ingest)
        if self._metrics is not None:
            r.add_get("/metrics", self._metrics_page)

    @staticmethod
    def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        path = STATIC_DIR / name

        async def handler(_request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Content-Type": "text/html; charset=utf-8"})

        return handler

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        """Headers for every response: no caching of live data, no token leaks via Referer.

        Only the overlay may be shown inside a frame (OBS's browser source is one); the panel
        and the API refuse it, so a hostile page cannot frame them and trick clicks.
        """
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        embeddable = request.path in _EMBEDDABLE
        if not embeddable:
            response.headers.setdefault("X-Frame-Options", "DENY")
        if response.content_type == "text/html":
            frames = "" if embeddable else f"; {FRAME_DENY_CSP}"
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'" + frames,
            )
        elif not embeddable:
            response.headers.setdefault("Content-Security-Policy", FRAME_DENY_CSP)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """API errors as JSON with a message a person can act on; no tracebacks anywhere.

        A malformed body is the client's fault: 400 with a short reason. A failure of the
        bot's own is one rate-limited line (the traceback only at debug level), never one
        traceback per request, so no client can flood the log.
        """
        try:
            return await handler(request)
        except ApiError as exc:
            return _json_error(exc.status, str(exc))
        except BadBody as exc:
            self._faults.note("malformed body", f"{request.path}: {exc.reason}")
            return _json_error(exc.status, exc.reason)
        except web.HTTPException as exc:
            if request.path.startswith("/api/"):
                return _json_error(exc.status, exc.reason)
            raise
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.debug("web request %s %s failed", request.method, request.path, exc_info=True)
            self._faults.note(
                "request failed inside the bot", f"{request.path}: {type(exc).__name__}: {exc}"
            )
            return _json_error(500, "internal error; the bot's log says more")

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Refuse foreign Host headers (DNS rebinding) and control requests without the token."""
        if not self._web.allow_remote:
            host = _host_only(request.host)
            if host not in _LOOPBACK_NAMES and host != self._web.host.lower():
                raise ApiError(403, f"this server answers to 127.0.0.1 only, not {host!r}")
        path = request.path
        origin = request.headers.get("Origin")
        if path.startswith("/ws/") and origin is not None and not _same_origin(origin, request):
            # WebSockets are not bound by CORS: a page on another site could otherwise
            # listen to the captions and the speech from the streamer's own browser.
            raise ApiError(403, "live feeds are only for this server's own pages")
        if path.startswith("/api/") or path in ("/ws/panel", "/metrics"):
            given = _token_of(request)
            if not given:
                raise ApiError(
                    401,
                    "this needs the control panel token: open the link the bot printed on "
                    f"its first run, or send the token from {self.token_path} as "
                    "'Authorization: Bearer TOKEN'",
                )
            assert self._token is not None
            if not tokens_match(given, self._token):
                raise ApiError(403, f"wrong token (the right one is in {self.token_path})")
        return await handler(request)

    # -- WebSockets -------------------------------------------------------------------------
    async def _ws(
        self, request: web.Request, feeds: set[_Feed], render: Callable[[], BaseModel]
    ) -> web.WebSocketResponse:
        if "Sec-WebSocket-Protocol" in request.headers:
            # The pages ask for no subprotocol; aiohttp would log a warning per request.
            raise ApiError(400, "no WebSocket subprotocols are offered")
        if len(feeds) >= LIMITS.max_websockets:
            self._faults.note("too many live pages", request.path)
            raise ApiError(503, f"more than {LIMITS.max_websockets} pages are connected")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        feed = _Feed(ws, render)
        feeds.add(feed)
        pump = asyncio.create_task(feed.pump(), name="web-feed")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data == "refresh":
                    feed.dirty.set()
        finally:
            feeds.discard(feed)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return ws

    async def _ws_audio(self, request: web.Request) -> web.WebSocketResponse:
        """The speech for an overlay page (``web.browser_audio``); no token, like the overlay."""
        audio = self._audio
        assert audio is not None
        if "Sec-WebSocket-Protocol" in request.headers:
            raise ApiError(400, "no WebSocket subprotocols are offered")
        if len(self._audio_feeds) >= LIMITS.max_websockets:
            self._faults.note("too many live pages", request.path)
            raise ApiError(503, f"more than {LIMITS.max_websockets} pages are connected")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        feed = _AudioFeed(ws)
        feed.on_event(VolumeChange(audio.volume))
        if audio.current is not None:  # joined mid-message: its rest is playable
            feed.on_event(audio.current)
        unsubscribe = audio.subscribe(feed.on_event)
        self._audio_feeds.add(feed)
        pump = asyncio.create_task(feed.pump(), name="web-audio-feed")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        try:
            async for _msg in ws:
                if pump.done():
                    break
        finally:
            unsubscribe()
            self._audio_feeds.discard(feed)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return ws

    async def _ws_overlay(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws(request, self._overlay_feeds, self.overlay_state)

    async def _ws_panel(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws(request, self._panel_feeds, self.panel_state)

    # -- the API ----------------------------------------------------------------------------
    async def _metrics_page(self, _request: web.Request) -> web.Response:
        """Prometheus's text format (with the token, like the API: it tells the stream's pace)."""
        assert self._metrics is not None
        body, content_type = await self._metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _api_state(self, _request: web.Request) -> web.Response:
        return _json(self.panel_state())

    async def _api_voices(self, request: web.Request) -> web.Response:
        refresh = request.query.get("refresh") in ("1", "true", "yes")
        try:
            names = await self._controls.voices.names(refresh=refresh)
        except Exception as exc:
            raise ApiError(503, str(exc)) from exc
        self.changed()
        return _json(VoicesAnswer(voices=names, default=self._controls.default_voice))

    async def _api_skip(self, _request: web.Request) -> web.Response:
        return _ok(actions.skip(self._controls).reply)

    async def _api_clear(self, _request: web.Request) -> web.Response:
        return _ok(actions.clear(self._controls).reply)

    async def _api_remove(self, request: web.Request) -> web.Response:
        data = await _body(request)
        item_id = _int_field(data, "id", lo=0, hi=2**63)
        item = actions.remove_item(self._controls, item_id)
        if item is None:
            raise ApiError(404, "that message is no longer queued")
        return _ok(actions.removed_reply(item))

    async def _api_pause(self, _request: web.Request) -> web.Response:
        return _ok((await self._store_write(actions.pause(self._controls))).reply)

    async def _api_resume(self, _request: web.Request) -> web.Response:
        return _ok((await self._store_write(actions.resume(self._controls))).reply)

    async def _api_volume(self, request: web.Request) -> web.Response:
        data = await _body(request)
        value = _int_field(data, "volume", lo=0, hi=100)
        return _ok((await self._store_write(actions.set_volume(self._controls, value))).reply)

    async def _api_tts(self, request: web.Request) -> web.Response:
        data = await _body(request)
        enabled = _bool_field(data, "enabled")
        return _ok((await self._store_write(actions.set_tts(self._controls, enabled))).reply)

    async def _api_mute(self, request: web.Request) -> web.Response:
        data = await _body(request)
        login = _login_field(data)
        duration = _str_field(data, "duration", required=False, max_len=32)
        try:
            seconds = parse_duration(duration) if duration else None
        except CommandError as exc:
            raise ApiError(400, f"duration: {exc}") from None
        outcome = await self._store_write(
            actions.mute_user(
                self._controls,
                login,
                platform=_platform_field(data) or actions.known_platform(self._controls, login),
                seconds=seconds,
                by=PANEL_USER_LOGIN,
            )
        )
        return _ok(outcome.reply)

    async def _api_unmute(self, request: web.Request) -> web.Response:
        data = await _body(request)
        login = _login_field(data)
        platform = _platform_field(data) or actions.known_platform(self._controls, login)
        said = actions.unmute_user(self._controls, login, platform)
        return _ok((await self._store_write(said)).reply)

    async def _api_say(self, request: web.Request) -> web.Response:
        """A test line from the streamer, in any voice."""
        data = await _body(request)
        text = _text_field(data)
        voice = await self._voice_field(data)
        message = ChatMessage(
            id=f"panel-{uuid.uuid4().hex}",
            user=replace(self._local_user(), platform=Platform.PANEL),
            text=text,
            source="panel",
            voice=voice,
        )
        return await self._run_message(message)

    async def _api_ingest(self, request: web.Request) -> web.Response:
        """A message from another stream tool (Streamer.bot, Social Stream Ninja, alerts)."""
        data = await _body(request)
        name = clean_name(_str_field(data, "user", required=True, max_len=200))
        if not name:
            raise ApiError(400, "user: must name who wrote the message")
        text = _text_field(data)
        voice = await self._voice_field(data)
        given_id = _str_field(data, "id", required=False, max_len=128)
        bits = _int_field(data, "bits", lo=0, hi=10_000_000) if "bits" in data else 0
        reward = _str_field(data, "reward", required=False, max_len=100) or None
        login = login_from_name(name)
        message = ChatMessage(
            id=f"http:{given_id}" if given_id else f"http:{uuid.uuid4().hex}",
            user=ChatUser(
                id=f"http:{login}", login=login, display_name=name, platform=Platform.HTTP
            ),
            text=text,
            source="http",
            bits=bits,
            reward=reward,
            voice=voice,
        )
        return await self._run_message(message)

    async def _run_message(self, message: ChatMessage) -> web.Response:
        """Send a message through the chat pipeline and say what became of it."""
        events: list[SpeechEvent] = []
        self._message_waiters[message.id] = events
        try:
            result = await self._submit(message)
        finally:
            self._message_waiters.pop(message.id, None)
        if result is None:
            return _after_failure(message, events)
        if result.action is Action.QUEUED and result.item is not None:
            return _queued(result.item, result.reason)
        return _json(MessageAnswer(status=result.action, reason=result.reason))

    async def _voice_field(self, data: dict[str, Any]) -> str | None:
        voice = _str_field(data, "voice", required=False, max_len=32)
        if not voice:
            return None
        if not VOICE_NAME_RE.match(voice):
            raise ApiError(400, "voice: names are 1-32 letters, digits, '-' or '_'")
        try:
            names: list[str] | None = await self._controls.voices.names()
        except VoiceListUnavailable:
            names = None  # the engine is still starting: the engine falls back if unknown
        if names is not None:
            known = {n.casefold(): n for n in names}
            if voice.casefold() not in known:
                raise ApiError(400, f"voice: no voice called {voice!r}; known: {', '.join(names)}")
            return known[voice.casefold()]
        return voice

    async def _store_write(self, coro: Awaitable[Any]) -> Any:
        try:
            result = await coro
        except StoreError as exc:
            log.error("panel action failed: %s", exc)
            raise ApiError(500, "could not save the change (see the bot's log)") from exc
        self.changed()
        return result


# -- request helpers ----------------------------------------------------------------------------
def _same_origin(origin: str, request: web.Request) -> bool:
    """Whether a browser's ``Origin`` is this server as the request reached it."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _token_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    header = request.headers.get("X-Ishowtts-Token")
    if header:
        return header.strip()
    return request.query.get("token") or None


def _json(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """The one place an answer becomes a JSON response."""
    return web.json_response(text=as_text(model), status=status, headers=headers)


def _queued(item: SpeechItem, reason: str) -> web.Response:
    """202: the message is in the speech queue (its number, spoken text and voice)."""
    answer = MessageAnswer(
        status=Action.QUEUED, reason=reason, id=item.seq, text=item.text, voice=item.voice
    )
    return _json(answer, status=202)


def _after_failure(message: ChatMessage, events: list[SpeechEvent]) -> web.Response:
    """The answer to a message whose handling raised, from what the speech queue did with it.

    The queue's events are facts, not guesses: a message it accepted will be spoken (202, as
    for any queued message), one it refused was dropped for the reason it gave (200), and
    one it never saw was not spoken because the bot failed: that is a 500, not a "dropped"
    that would blame a filter or a mute.
    """
    mine = [e for e in events if e.item.message.id == message.id]
    queued = next((e.item for e in mine if e.kind is SpeechEventKind.QUEUED), None)
    if queued is not None:
        return _queued(queued, "")
    refused = next(
        (e for e in mine if e.kind is SpeechEventKind.FINISHED and e.outcome is Outcome.DROPPED),
        None,
    )
    if refused is not None:
        return _json(MessageAnswer(status=Action.DROPPED, reason=refused.detail))
    return _json_error(500, HANDLING_FAILED)


def _ok(message: str) -> web.Response:
    return _json(ActionAnswer(message=message))


def _json_error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="ishowtts"'} if status == 401 else None
    return _json(ErrorAnswer(error=message), status=status, headers=headers)


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's fields, from JSON or a form (``curl -d user=...``); empty is fine.

    Raises:
        BadBody: Malformed, too large, too slow or badly encoded (``bot.web.protect``).
    """
    return await read_fields(request, LIMITS)


def _str_field(data: dict[str, Any], key: str, *, required: bool, max_len: int) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"{key}: missing")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ApiError(400, f"{key}: must be a string")
    value = value.strip()
    if len(value) > max_len:
        raise ApiError(400, f"{key}: longer than {max_len} characters")
    return value


def _text_field(data: dict[str, Any]) -> str:
    value = data.get("text")
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "text: must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise ApiError(400, f"text: longer than {MAX_TEXT_CHARS} characters")
    return value


def _int_field(data: dict[str, Any], key: str, *, lo: int, hi: int) -> int:
    value = data.get(key)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value.strip(), 10)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ApiError(400, f"{key}: must be a whole number from {lo} to {hi}")
    return value


def _bool_field(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "on",
        "yes",
        "0",
        "false",
        "off",
        "no",
    ):
        return value.lower() in ("1", "true", "on", "yes")
    raise ApiError(400, f"{key}: must be true or false")


def _platform_field(data: dict[str, Any]) -> Platform | None:
    """Where a panel mute's person chats (``platform``), or None when left out."""
    raw = _str_field(data, "platform", required=False, max_len=16)
    if not raw:
        return None
    try:
        return Platform(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Platform)
        raise ApiError(400, f"platform: must be one of {allowed}") from None


def _login_field(data: dict[str, Any]) -> str:
    raw = _str_field(data, "user", required=True, max_len=64)
    try:
        return parse_login(raw)
    except CommandError as exc:
        raise ApiError(400, f"user: {exc}") from None
