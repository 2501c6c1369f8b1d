"""``engine.name: remote``: speak through an ``ishowtts serve`` on another PC (or this one).

The two-PC set-up: the gaming PC's GPU runs the F5 voices (``ishowtts serve``); the streaming
PC runs the bot and OBS, and this engine asks the server for each message's audio over
OpenAI's speech API (``POST /v1/audio/speech``, ``pcm``: 24 kHz 16-bit mono), chunk by
chunk as the server produces them. It is an ordinary engine: it runs on the engine thread
(``engine.worker``) like F5 or eSpeak NG, and the bot cannot tell the difference.

* **Cancelling** (``!skip``, a delete, a ban, a clear): ``should_stop`` is polled after
  every chunk received; the response is then closed, which closes the connection, and the
  server stops that synthesis at its next chunk.
* **The voice list** (``!voice``, the panel) is the server's ``GET /v1/voices``.
* **An unreachable server, or one that restarts mid-message**: said once in the log (and in
  the engine state the panel shows), then, by ``engine.remote.on_failure``, the message is
  spoken from its start with eSpeak NG here (``espeak``), or the engine waits for the
  server and asks it again from the start (``wait``). The server is tried again every
  ``retry_s``; when it answers, it is used again and that is said once too.
* **A refused token** is a fault the streamer must fix: said once, plainly, and chat is
  spoken with eSpeak NG meanwhile (in both modes: waiting would never end).

Audio is always 24 kHz (eSpeak NG's 22.05 kHz is resampled), so a message's rate never
changes halfway.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

from engine.base import Audio, Engine, EngineError, EngineState, StopCheck, VoiceInfo
from engine.config import SERVE_TOKEN_FILE, EspeakConfig, RemoteConfig, VoicesConfig
from engine.espeak import EspeakEngine

log = logging.getLogger(__name__)

RATE = 24_000
_MIN_CHUNK_BYTES = 2 * 240
"""Chunks shorter than 10 ms are joined with the next (the network splits bytes freely)."""


class _Unreachable(Exception):
    """The server cannot be used right now; the message says why (for the log)."""

    def __init__(
        self, reason: str, *, retry_after_s: float | None = None, fatal: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.fatal = fatal
        """A fault only the streamer can fix (the token): never waited for."""


class _VoiceRefused(Exception):
    """The server does not have (or cannot use) the voice asked for."""


def read_token(remote: RemoteConfig, state_dir: Path | None) -> tuple[str | None, str]:
    """The token for the server: the environment variable, else the state folder's file.

    Returns:
        (token or None, where it was looked for), for messages.
    """
    value = os.environ.get(remote.token_env)
    if value is not None and value.strip():
        return value.strip(), f"${remote.token_env}"
    if state_dir is None:
        return None, f"${remote.token_env}"
    path = state_dir / SERVE_TOKEN_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None, f"${remote.token_env} or {path}"
    return (text or None), str(path)


class RemoteEngine(Engine):
    """Audio from an ``ishowtts serve``; eSpeak NG (or waiting) while it cannot answer."""

    name = "remote"
    sample_rate = RATE

    def __init__(
        self,
        remote: RemoteConfig,
        espeak: EspeakConfig,
        voices: VoicesConfig,
        *,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Remember the settings; nothing is read or connected until ``load()``.

        Args:
            remote: ``engine.remote``.
            espeak: ``engine.espeak`` (the fallback's voice settings).
            voices: ``voices`` (the default voice, and the names eSpeak NG maps).
            state_dir: The bot's state folder, where the token file may be.
            clock: Monotonic clock (retry timing).
            sleep: Waits on the engine thread (``on_failure: wait``).
        """
        self.remote = remote
        self._voices_cfg = voices
        self._state_dir = state_dir
        self._clock = clock
        self._sleep = sleep
        self.fallback = EspeakEngine(espeak, voices)
        self._client: httpx.Client | None = None
        self._progress: Callable[[EngineState, str], None] | None = None
        self._down: str | None = None
        """Why the server is not used now (None: it is)."""
        self._down_at = 0.0
        self._retry_after_s: float | None = None
        self._fatal = False
        self._token_where = ""
        self._voices: list[VoiceInfo] = []
        self._voices_at: float | None = None
        self.server_engine = ""
        """The server's engine (``f5``, ``espeak``), for messages."""

    # -- life cycle ---------------------------------------------------------------------
    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        """Start eSpeak NG (the fallback) and ask the server for its voices.

        An unreachable server is not a load failure: chat is spoken meanwhile (or waits).

        Raises:
            EngineError: Only when eSpeak NG itself cannot start.
        """
        self._progress = progress
        token, where = read_token(self.remote, self._state_dir)
        self._token_where = where
        headers = {"User-Agent": "ishowtts-remote"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if self.remote.ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(self.remote.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise EngineError(
                    f"engine.remote.ca_file {self.remote.ca_file} is not a usable certificate: "
                    f"{exc}"
                ) from None
        timeout = httpx.Timeout(
            connect=self.remote.connect_timeout_s,
            read=self.remote.read_timeout_s,
            write=self.remote.read_timeout_s,
            pool=self.remote.connect_timeout_s,
        )
        self._client = httpx.Client(
            base_url=self.remote.url,
            headers=headers,
            timeout=timeout,
            verify=verify,
            trust_env=False,  # a LAN address must not go through a proxy from the environment
        )
        progress(EngineState.LOADING, "starting eSpeak NG (used while the server is away)")
        self.fallback.load(lambda _s, _d: None)
        progress(EngineState.WARMING, f"asking {self.remote.url} for its voices")
        if token is None:
            self._mark_down(
                f"no token: set {self.remote.token_env} to the token that `ishowtts serve "
                f"--print-token` shows on the serving PC (looked in {where})",
                fatal=True,
            )
            return
        try:
            self._fetch_voices()
        except _Unreachable as exc:
            self._mark_down(exc.reason, retry_after_s=exc.retry_after_s, fatal=exc.fatal)
        else:
            log.info(
                "engine remote: %s answers (%s engine, %d voices)",
                self.remote.url,
                self.server_engine,
                len(self._voices),
            )

    def close(self) -> None:
        """Close the connections and the fallback."""
        client = self._client
        self._client = None
        if client is not None:
            client.close()
        self.fallback.close()

    # -- state --------------------------------------------------------------------------
    @property
    def server_up(self) -> bool:
        """Whether the last attempt reached the server."""
        return self._down is None

    def _mark_down(
        self, reason: str, *, retry_after_s: float | None = None, fatal: bool = False
    ) -> None:
        self._down_at = self._clock()
        self._retry_after_s = retry_after_s
        self._fatal = fatal
        if self._down == reason:
            return
        first = self._down is None
        self._down = reason
        instead = (
            "speaking with eSpeak NG here"
            if self.remote.on_failure == "espeak" or fatal
            else "waiting for it"
        )
        if not (first or fatal):
            log.debug("the voice server %s still cannot be used: %s", self.remote.url, reason)
            return
        log.warning(
            "the voice server %s cannot be used: %s; %s until it answers (tried again every "
            "%.0f s)",
            self.remote.url,
            reason,
            instead,
            self.remote.retry_s,
        )
        if self._progress is not None:
            self._progress(EngineState.READY, f"voice server unavailable ({reason}); {instead}")

    def _mark_up(self) -> None:
        if self._down is None:
            return
        self._down = None
        self._fatal = False
        log.warning("the voice server %s answers again; using it", self.remote.url)
        if self._progress is not None:
            self._progress(EngineState.READY, f"voice server {self.remote.url} answers again")

    def _should_try(self) -> bool:
        if self._down is None:
            return True
        wait = self.remote.retry_s
        if self._retry_after_s is not None:
            wait = min(wait, max(0.5, self._retry_after_s))
        return self._clock() - self._down_at >= wait

    # -- HTTP ---------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        if self._client is None:
            raise EngineError("the remote engine is not loaded")
        return self._client

    def _fetch_voices(self) -> None:
        client = self._http()
        try:
            response = client.get("/v1/voices")
        except httpx.HTTPError as exc:
            raise _Unreachable(_transport_reason(exc, self.remote.url)) from None
        self._check(response)
        try:
            data = response.json()
            infos = [
                VoiceInfo(str(v["name"]), str(v.get("description", "")), v.get("problem"))
                for v in data["data"]
            ]
        except (ValueError, KeyError, TypeError):
            raise _Unreachable("it does not answer like ishowtts serve (GET /v1/voices)") from None
        self.server_engine = str(data.get("engine", ""))
        self._voices = infos
        self._voices_at = self._clock()

    def _check(self, response: httpx.Response) -> None:
        """Raise :class:`_Unreachable` or EngineError for a refusal, by its status."""
        status = response.status_code
        if status < 400:
            return
        response.read()
        message = _error_message(response)
        retry = _retry_after(response)
        if status == 401:
            raise _Unreachable(
                f"it refused the token ({message}); the token is read from {self._token_where}",
                fatal=True,
            )
        if status in (429, 503):
            raise _Unreachable(f"busy: {message}", retry_after_s=retry)
        if status >= 500:
            raise _Unreachable(f"server error {status}: {message}")
        if _error_code(response) in ("voice_not_found", "voice_unusable"):
            raise _VoiceRefused(message)
        raise EngineError(f"the voice server refused this message: {message}")

    # -- the contract -------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        """The server's voices (asked again after a minute), or the last list known.

        Before the server ever answered, the voices eSpeak NG maps here.
        """
        stale = self._voices_at is None or self._clock() - self._voices_at > 60.0
        if stale and self._down is None and self._client is not None:
            try:
                self._fetch_voices()
            except _Unreachable as exc:
                self._mark_down(exc.reason, retry_after_s=exc.retry_after_s, fatal=exc.fatal)
        if self._voices:
            return list(self._voices)
        return self.fallback.voices()

    def synthesize(
        self, text: str, voice: str, should_stop: StopCheck, *, speed: float = 1.0
    ) -> Iterator[Audio]:
        """Stream the message from the server; on a failure, speak it again from the start.

        ``speed`` goes to the server as the request's ``speed`` (left out at 1.0, so the
        request is the one it always was), and to eSpeak NG when it speaks instead.

        Raises:
            EngineError: The server refused the message itself (not the connection), or
                the fallback failed.
        """
        while not should_stop():
            if self._should_try():
                try:
                    try:
                        yield from self._from_server(text, voice, should_stop, speed)
                    except _VoiceRefused as refused:
                        # Like every engine: an unknown voice speaks in the default one.
                        log.warning("%s; using the server's default voice", refused)
                        yield from self._from_server(text, None, should_stop, speed)
                    self._mark_up()
                    return
                except _Unreachable as exc:
                    self._mark_down(exc.reason, retry_after_s=exc.retry_after_s, fatal=exc.fatal)
            if self.remote.on_failure == "espeak" or self._fatal:
                yield from self._from_espeak(text, voice, should_stop, speed)
                return
            self._wait(should_stop)

    def _wait(self, should_stop: StopCheck) -> None:
        """Wait (in short steps, so a skip ends it) until the server is due to be tried."""
        while not should_stop() and not self._should_try():
            self._sleep(0.05)

    def _from_server(
        self, text: str, voice: str | None, should_stop: StopCheck, speed: float
    ) -> Iterator[Audio]:
        client = self._http()
        body: dict[str, str | float] = {
            "model": "ishowtts",
            "input": text,
            "response_format": "pcm",
        }
        if voice is not None:
            body["voice"] = voice
        if speed != 1.0:
            body["speed"] = speed
        try:
            with client.stream("POST", "/v1/audio/speech", json=body) as response:
                self._check(response)
                pending = b""
                for data in response.iter_raw():
                    if should_stop():
                        return  # leaving the block closes the connection: the server stops
                    pending += data
                    usable = len(pending) - len(pending) % 2
                    if usable < _MIN_CHUNK_BYTES:
                        continue
                    chunk = np.frombuffer(pending[:usable], dtype="<i2").astype(np.float32)
                    pending = pending[usable:]
                    yield chunk / 32768.0
                if len(pending) >= 2 and not should_stop():
                    usable = len(pending) - len(pending) % 2
                    yield np.frombuffer(pending[:usable], dtype="<i2").astype(np.float32) / 32768.0
        except httpx.HTTPError as exc:
            raise _Unreachable(_transport_reason(exc, self.remote.url)) from None

    def _from_espeak(
        self, text: str, voice: str, should_stop: StopCheck, speed: float
    ) -> Iterator[Audio]:
        import soxr

        rate = self.fallback.sample_rate
        stream = soxr.ResampleStream(rate, RATE, 1, dtype="float32") if rate != RATE else None
        for chunk in self.fallback.synthesize(text, voice, should_stop, speed=speed):
            if stream is None:
                yield chunk
            else:
                yield np.asarray(stream.resample_chunk(chunk), dtype=np.float32)
        if stream is not None and not should_stop():
            tail = np.asarray(
                stream.resample_chunk(np.zeros(0, np.float32), last=True), dtype=np.float32
            )
            if tail.size:
                yield tail


def _transport_reason(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no answer from {url} (connection timed out: is the serving PC on?)"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {url} ({exc}; is `ishowtts serve` running there?)"
    if isinstance(exc, httpx.ReadTimeout):
        return "it accepted the connection but sent nothing in time (engine.remote.read_timeout_s)"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"the connection broke mid-answer ({type(exc).__name__}: the server stopped?)"
    return f"{type(exc).__name__}: {exc}"


def _error_message(response: httpx.Response) -> str:
    try:
        data = json.loads(response.content)
        return str(data["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        status = response.status_code
        return f"HTTP {status} (not an ishowtts serve answer)"


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(code) if code is not None else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
