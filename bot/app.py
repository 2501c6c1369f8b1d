"""The bot: wires a chat source, the speech queue, the engine thread and the player.

Construction does no I/O. ``start()`` opens the audio device and starts the engine thread
(which loads the model in the background, so chat is read and queued while it warms);
``run()`` serves one source until it ends or the bot is stopped; ``close()`` releases it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bot.chat.announcements import Announcer
from bot.chat.pipeline import Action, ChatPipeline, Decision
from bot.chat.voices import VoiceCatalog
from bot.config import Config
from bot.core.messages import (
    ChannelEvent,
    ChannelEventKind,
    ChatCleared,
    ChatMessage,
    MessageDeleted,
    ModerationEvent,
    UserPurged,
)
from bot.sources.base import ChatSink, ChatSource
from bot.speech.outputs import AudioFanout, FanoutPlayer
from bot.speech.player import AudioPlayer
from bot.speech.speaker import Speaker, SpeechEvent, SpeechEventKind, SpeechQueue
from bot.state.settings import database_path, state_dir
from bot.state.store import Store, StoreError
from bot.web.metrics import BotMetrics
from bot.web.server import WebServer
from bot.web.settings import BrowserAudio
from engine.base import Engine, EngineState
from engine.worker import EngineWorker

log = logging.getLogger(__name__)

WARMING_NOTICE_S = 30.0
"""Least time between two "still warming up" replies in chat."""


class App:
    """One running bot.

    Attributes:
        cfg: The validated configuration.
        worker: The engine thread.
        player: The audio output.
        speaker: The speech queue and its playback loop.
        store: The state database (voices, mutes, volume/pause/on-off, history).
        voices: The engine's voice list, cached for chat commands.
        chat: The message pipeline: commands, filters, triggers, mutes, queueing.
        announcer: Speaks channel events (subs, raids, cheers...) through their templates.
        web: The OBS overlay and control panel server (None when ``web.enabled`` is off).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        engine: Engine | None = None,
        player: AudioPlayer | None = None,
        on_engine_state: Callable[[EngineState, str], None] | None = None,
    ) -> None:
        """Assemble the bot without touching devices, models or files.

        Args:
            cfg: Validated configuration.
            engine: Engine to use; by default ``engine.factory.create_engine(cfg)``.
            player: Audio player; by default one on ``cfg.audio``.
            on_engine_state: Extra observer of engine state changes (e.g. a control panel).
        """
        self.cfg = cfg
        if engine is None:
            from engine.factory import create_engine

            engine = create_engine(cfg.engine, cfg.voices, cache_dir=state_dir(cfg.storage))
        self._extra_state_observer = on_engine_state
        self.worker = EngineWorker(engine, on_state=self._on_engine_state)
        self.player: AudioPlayer | FanoutPlayer
        self.audio_out: AudioFanout | None = None
        """Speech for the OBS browser source (``web.browser_audio``); None when off."""
        browser_audio = cfg.web.browser_audio if cfg.web.enabled else BrowserAudio.OFF
        if browser_audio is BrowserAudio.OFF:
            self.player = player if player is not None else AudioPlayer(cfg.audio)
        else:
            self.audio_out = AudioFanout(cfg.audio.volume)
            local = player
            if local is None and browser_audio is BrowserAudio.ALSO:
                local = AudioPlayer(cfg.audio)
            self.player = FanoutPlayer(self.audio_out, local, volume=cfg.audio.volume)
        self.queue = SpeechQueue(cfg.queue)
        self.speaker = Speaker(
            self.queue,
            self.worker,
            self.player,
            gap_s=cfg.audio.gap_ms / 1000.0,
            timeout_s=cfg.engine.timeout_s,
            recover_audio=self._recover_audio,
            max_batch=lambda: min(cfg.queue.prefetch_batch, self.worker.engine.max_batch),
        )
        self.speaker.add_listener(self._log_speech)
        self.metrics = BotMetrics(lambda: len(self.queue))
        """Prometheus metrics (``/metrics`` on the web server), fed by speech and engine events."""
        self.speaker.add_listener(self.metrics.on_speech)
        self.store = Store(
            database_path(cfg.storage),
            history_limit=cfg.storage.history_limit,
            state_dir=state_dir(cfg.storage),
        )
        self.voices = VoiceCatalog(self._engine_voices, fallback=self._folder_voices)
        self.chat = ChatPipeline(
            cfg, store=self.store, speaker=self.speaker, voices=self.voices, player=self.player
        )
        self.announcer = Announcer(
            cfg.announcements,
            self.speaker,
            default_voice=cfg.voices.default,
            filters=self.chat.filters,
            known_voices=lambda: self.voices.cached,
        )
        self.web: WebServer | None = None
        if cfg.web.enabled:
            from bot.sources.terminal import local_user

            self.web = WebServer(
                settings=cfg.web,
                tts=cfg.tts,
                state_dir=state_dir(cfg.storage),
                speaker=self.speaker,
                engine=self.worker,
                controls=self.chat,
                submit=self.submit,
                local_user=local_user,
                audio=self.audio_out,
                metrics=self.metrics,
            )
        self._speaker_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._engine_failed: str | None = None
        self._warned_warming_at: float | None = None
        self._started = False

    # -- life cycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Open the database and the audio device, restore the saved state, start the engine.

        Loading the model runs in the background. A database that cannot be used is reported
        and replaced by an in-memory one, so the stream goes on (changes are not saved then).

        Raises:
            bot.devices.AudioDeviceError: No usable output device (the message names
                ``ishowtts devices``).
        """
        if self._started:
            return
        self._stop = asyncio.Event()
        try:
            await self.store.open()
        except StoreError as exc:
            log.error("%s; voices, mutes and volume will NOT be saved this session", exc)
            await self.store.open_memory()
        await self.player.start()
        self.chat.restore()
        await self.metrics.start()
        if self.web is not None:
            await self.web.start()  # before the engine, so the panel shows it loading
        await self.worker.start()
        self._speaker_task = asyncio.create_task(self.speaker.run(), name="speaker")
        self._started = True

    async def close(self) -> None:
        """Stop speaking, stop the engine thread and close the audio device."""
        if self.web is not None:
            await self.web.close()
        self.speaker.clear(include_current=True)
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker_task
            self._speaker_task = None
        await self.chat.close()
        await self.voices.close()
        await self.worker.close()
        await self.player.close()
        await self.metrics.close()
        await self.store.close()
        self._started = False

    def request_stop(self) -> None:
        """Ask ``run()`` to return soon (Ctrl-C, SIGTERM)."""
        self._stop.set()

    async def run(self, source: ChatSource) -> int:
        """Serve ``source`` until it ends (then drain the queue) or a stop is requested.

        Returns:
            Process exit status: 0 on a normal end, 1 when the engine could not load or
            the chat source failed (e.g. a revoked Twitch sign-in).
        """
        source_task = asyncio.create_task(source.run(self), name=f"source-{source.name}")
        stop_task = asyncio.create_task(self._stop.wait(), name="stop-wait")
        source_failed = False
        try:
            done, _ = await asyncio.wait(
                {source_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if source_task in done and not self._stop.is_set():
                exc = source_task.exception()
                if exc is not None:
                    source_failed = True
                    # Some errors carry no message (NotImplementedError()): name the type.
                    log.error(
                        "chat source %s failed: %s", source.name, str(exc) or type(exc).__name__
                    )
                # End of input: finish what is queued, unless told to stop meanwhile. Paused
                # playback (perhaps restored from an earlier session) would never drain.
                if self.speaker.paused and len(self.queue):
                    log.warning(
                        "end of chat input while playback is paused (!resume): %d queued"
                        " message(s) not spoken",
                        len(self.queue),
                    )
                else:
                    drain = asyncio.create_task(self.speaker.wait_idle(), name="drain")
                    await asyncio.wait({drain, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                    drain.cancel()
        finally:
            await source.close()
            for task in (source_task, stop_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._engine_failed is not None:
            log.error("stopped because the TTS engine is unavailable: %s", self._engine_failed)
            return 1
        return 1 if source_failed else 0

    # -- engine state -------------------------------------------------------------------
    def _on_engine_state(self, state: EngineState, detail: str) -> None:
        self.metrics.on_engine_state(state, detail)
        if state is EngineState.ERROR:
            self._engine_failed = detail
            log.error("TTS engine unavailable: %s", detail)
            self.speaker.clear(include_current=True)
            self._stop.set()
        elif state is EngineState.READY:
            log.info("%s", detail)
            self.voices.invalidate()  # the loaded engine's own list replaces any folder scan
            self.chat.engine_ready()
        elif state in (EngineState.LOADING, EngineState.WARMING):
            log.info("engine %s: %s", state.value, detail)
        if self.web is not None:
            self.web.on_engine_state(state, detail)
        if self._extra_state_observer is not None:
            self._extra_state_observer(state, detail)

    async def _recover_audio(self, error: Exception) -> None:
        """Reopen the output device with backoff; the queue waits meanwhile (nothing is lost)."""
        log.error("audio output lost (%s); the queue is kept, retrying the device", error)
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            with contextlib.suppress(Exception):
                await self.player.close()
            try:
                await self.player.start()
            except Exception as exc:
                if attempt == 1 or attempt % 10 == 0:
                    log.warning(
                        "audio device still unavailable (%s); next try in %.1f s", exc, delay
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            log.info("audio device is back after %d attempt(s); resuming speech", attempt)
            return

    def _log_speech(self, event: SpeechEvent) -> None:
        item = event.item
        if event.kind is SpeechEventKind.STARTED:
            log.info("speaking %s (voice %s): %s", item.message.user.login, item.voice, item.text)
        elif event.kind is SpeechEventKind.FINISHED and event.outcome is not None:
            log.debug("%s: %s %s", event.outcome.value, item.message.id, event.detail)

    # -- chat ---------------------------------------------------------------------------
    async def on_message(self, message: ChatMessage) -> None:
        """Run a message through the pipeline (bot.chat); bad input is dropped, never raised."""
        await self.submit(message)

    async def submit(self, message: ChatMessage) -> Decision | None:
        """``on_message`` that also says what became of the message (None: handling failed).

        The web panel's test line and the HTTP ingest use it to answer their caller.
        """
        try:
            decision = await self.chat.handle(message)
            if decision.action is Action.QUEUED:
                await self._say_warming(message)
            else:
                log.debug("message %s: %s (%s)", message.id, decision.action, decision.reason)
                if decision.action is Action.COMMAND and self.web is not None:
                    self.web.changed()  # volume, pause, mutes... may have changed
            return decision
        except Exception:
            log.exception("could not handle message %s", message.id)
            return None

    async def _engine_voices(self) -> list[str]:
        """The engine's usable voices (asked on the engine thread: it is the authority)."""
        return await self.worker.call(lambda e: [v.name for v in e.voices() if not v.problem])

    async def _folder_voices(self) -> list[str]:
        """The voice folders on disk, for when the engine is busy loading."""
        from engine.voices import VoiceLibrary

        library = VoiceLibrary(self.cfg.voices)

        def scan() -> list[str]:
            return [name for name, spec in library.scan().items() if not spec.problem]

        return await asyncio.to_thread(scan)

    async def _say_warming(self, message: ChatMessage) -> None:
        """Tell chat (at most every WARMING_NOTICE_S, so a raid gets one line) that speech waits."""
        state = self.worker.state
        if state not in (EngineState.LOADING, EngineState.WARMING, EngineState.STOPPED):
            return
        now = time.monotonic()
        last = self._warned_warming_at
        if last is None or now - last >= WARMING_NOTICE_S:
            self._warned_warming_at = now
            await message.reply("the voice engine is still warming up; messages are queued")

    def wanted_events(self) -> frozenset[ChannelEventKind]:
        """The channel events the config announces (sources subscribe to these only)."""
        return self.announcer.wanted()

    async def on_channel_event(self, event: ChannelEvent) -> None:
        """Announce a sub, raid, cheer... (bot.chat.announcements), unless TTS is off."""
        try:
            if not self.chat.enabled:
                log.debug("TTS is off: %s %s not announced", event.kind.value, event.id)
                return
            self.announcer.announce(event)
        except Exception:
            log.exception("could not announce %s %s", event.kind.value, event.id)

    async def on_moderation(self, event: ModerationEvent) -> None:
        """Apply deletes, purges and chat clears to queued and playing speech at once."""
        if isinstance(event, MessageDeleted):
            n = self.speaker.remove_message(event.message_id)
        elif isinstance(event, UserPurged):
            n = self.speaker.purge_user(event.user_id)
        elif isinstance(event, ChatCleared):
            n = self.speaker.clear(include_current=True)
        else:  # pragma: no cover - exhaustive over ModerationEvent
            return
        log.info("moderation %s removed %d item(s)", type(event).__name__, n)


class SourceGroup:
    """Several chat sources into one bot (``chat.source`` beside ``youtube.enabled``).

    Every source delivers to the same sink, so Twitch and YouTube chat meet in one pipeline
    and one speech queue; each message keeps its own platform, so identities never mix. One
    source failing (a revoked YouTube sign-in) is logged and the others go on: the stream
    keeps its voice. The group ends when every source has ended, raising the first failure.
    """

    def __init__(self, sources: list[ChatSource]) -> None:
        self.sources = list(sources)
        self.name = "+".join(s.name for s in self.sources)

    async def run(self, sink: ChatSink) -> None:
        """Run every source until all have ended (or :meth:`close`)."""
        tasks = {asyncio.create_task(s.run(sink), name=f"source-{s.name}"): s for s in self.sources}
        failure: BaseException | None = None
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    name = tasks[task].name
                    if exc is None:
                        log.info("chat source %s ended", name)
                        continue
                    failure = failure or exc
                    log.error(
                        "chat source %s failed: %s%s",
                        name,
                        str(exc) or type(exc).__name__,
                        "; the other sources go on" if pending else "",
                    )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if failure is not None:
            raise failure

    async def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            try:
                await source.close()
            except Exception:
                log.exception("closing chat source %s failed", source.name)
