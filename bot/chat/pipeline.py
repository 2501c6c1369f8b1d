"""The chat pipeline: from a normalized chat message to a queued SpeechItem (or a good reason not).

Order matters and is fixed:

1. duplicates and ignored users (other bots) are dropped before anything else;
2. commands run (and are never spoken; ``!tts TEXT`` hands its text on);
3. other bots' command prefixes are ignored;
4. a trigger must apply (every message / ``!tts`` / channel-points reward / cheer);
5. TTS must be on, the author must reach ``triggers.min_role`` and not be muted;
6. the text filters run (links, emoji, zalgo, banned words, repeats, length, ...);
7. the per-user cooldown applies (paid messages and moderators skip it);
8. the "NAME says" template is added unless the same person spoke just before;
9. the voice is chosen (the source's request, else the user's choice, else the default)
   and the item is queued, paid messages first.

Every step is synchronous except commands (which may write to the database), so a message
costs no I/O unless it is a command. ``handle`` returns a Decision saying what happened and
why, which the tests check and the log shows.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.chat.commands import CommandProcessor, CommandResult, VoiceCatalog
from bot.chat.filters import ROLE_BY_NAME, Cooldown, FilterChain, MessageIgnorer, speakable_name
from bot.chat.settings import PipelineSettings
from bot.core.messages import ChatMessage, ChatUser, Role
from bot.speech.speaker import Speaker, SpeechEvent, SpeechEventKind, SpeechItem
from bot.state.store import HistoryEntry, Store

log = logging.getLogger(__name__)

Action = Literal["queued", "command", "dropped", "ignored"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the pipeline did with one message.

    Attributes:
        action: ``queued`` (will be spoken), ``command`` (a command ran or was swallowed),
            ``dropped`` (a rule stopped it) or ``ignored`` (never considered: bots, duplicates).
        reason: Why, in a few words (``muted``, ``filter:links``, ``cooldown`` ...).
        item: The queued item, for ``queued``.
        command: The command's result, for ``command`` (and for ``!tts`` that was queued).
        trigger: What made it speakable (``message``, ``command``, ``reward``, ``cheer``).
    """

    action: Action
    reason: str = ""
    item: SpeechItem | None = None
    command: CommandResult | None = None
    trigger: str | None = None


class VolumeControl(Protocol):
    """The part of the audio player that ``!volume`` needs (``bot.speech.player.AudioPlayer``)."""

    @property
    def volume(self) -> float:
        """Current volume 0..1."""
        ...

    def set_volume(self, volume: float) -> None:
        """Change the volume (0..1) from the next audio block on."""
        ...


class ChatPipeline:
    """Decides what is spoken, and implements what commands control (``commands.Controls``)."""

    _RECENT_USERS = 5000
    _RECENT_IDS = 2000

    def __init__(
        self,
        cfg: PipelineSettings,
        *,
        store: Store,
        speaker: Speaker,
        voices: VoiceCatalog,
        player: VolumeControl,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wire the pipeline; no I/O (the store is opened by the app).

        Args:
            cfg: The whole configuration.
            store: The state database (opened before messages arrive).
            speaker: The speech queue and playback.
            voices: The engine's voice list.
            player: Volume control.
            clock: Monotonic clock for the cooldown and the name-again window.
        """
        self.cfg = cfg
        self._store = store
        self._speaker = speaker
        self._voices = voices
        self._player = player
        self._clock = clock
        self.filters = FilterChain(cfg.filters, cfg.chat.max_length)
        self.ignorer = MessageIgnorer(cfg.filters.ignore)
        self.cooldown = Cooldown(cfg.filters.cooldown, clock)
        self.commands = CommandProcessor(
            cfg.commands, self, tts_command=cfg.triggers.command, clock=clock
        )
        self._min_role = ROLE_BY_NAME[cfg.triggers.min_role]
        self._enabled = True
        self._recent: OrderedDict[str, tuple[str, Role]] = OrderedDict()
        self._message_ids: OrderedDict[str, None] = OrderedDict()
        self._last_started: SpeechItem | None = None
        speaker.add_listener(self._on_speech)

    # -- Controls (what commands act on) ----------------------------------------------------
    @property
    def store(self) -> Store:
        """The state database."""
        return self._store

    @property
    def speaker(self) -> Speaker:
        """The speech queue and playback."""
        return self._speaker

    @property
    def voices(self) -> VoiceCatalog:
        """The engine's voice list."""
        return self._voices

    @property
    def enabled(self) -> bool:
        """Whether TTS is on (``!ttsoff`` turns it off)."""
        return self._enabled

    @property
    def volume(self) -> float:
        """The player's volume, 0..1."""
        return float(self._player.volume)

    @property
    def default_voice(self) -> str:
        """The voice for viewers who chose none."""
        return self.cfg.voices.default

    async def set_enabled(self, enabled: bool) -> None:
        """Turn TTS on or off; off silences the queue and the current message at once.

        The change applies before the write (control beats data) and the caller acknowledges
        only after the write committed.
        """
        self._enabled = enabled
        if not enabled:
            self._speaker.clear(include_current=True)
        await self._store.set_enabled(enabled)

    async def set_paused(self, paused: bool) -> None:
        """Pause (the current message finishes, the queue waits) or resume playback."""
        if paused:
            self._speaker.pause()
        else:
            self._speaker.resume()
        await self._store.set_paused(paused)

    async def set_volume(self, volume: float) -> None:
        """Set the player volume (0..1) and remember it."""
        volume = min(1.0, max(0.0, volume))
        self._player.set_volume(volume)
        await self._store.set_volume(volume)

    def recent_user(self, login: str) -> tuple[str, Role] | None:
        """(id, highest role) of someone who chatted under ``login`` since the bot started."""
        return self._recent.get(login.casefold())

    def restore(self) -> None:
        """Apply the persisted volume, pause and on/off state (after ``store.open()``)."""
        settings = self._store.settings
        if settings.volume is not None:
            self._player.set_volume(settings.volume)
        if settings.paused:
            self._speaker.pause()
        self._enabled = settings.enabled
        log.info(
            "restored state: volume %s, %s, TTS %s",
            f"{round(settings.volume * 100)}%" if settings.volume is not None else "from config",
            "paused" if settings.paused else "playing",
            "on" if settings.enabled else "off",
        )

    # -- the pipeline -----------------------------------------------------------------------
    async def handle(self, message: ChatMessage) -> Decision:
        """Decide what to do with one chat message and do it (queue it, run its command)."""
        if message.id in self._message_ids:
            return Decision("ignored", "duplicate")
        self._message_ids[message.id] = None
        if len(self._message_ids) > self._RECENT_IDS:
            self._message_ids.popitem(last=False)
        user = message.user
        if self.ignorer.ignores_user(user):
            return Decision("ignored", "ignored user")
        self._remember(user)

        command = await self.commands.handle(message)
        text = message.text
        if command is not None:
            if command.speak is None:
                return Decision("command", command.status, command=command)
            text = command.speak
        else:
            ignored = self.ignorer.reason(message)
            if ignored is not None:
                return Decision("ignored", ignored)

        trigger = self._trigger(message, via_command=command is not None)
        if trigger is None:
            return self._drop("no trigger", command)
        paid = trigger in ("cheer", "reward")
        if not self._enabled:
            if paid:
                await self.commands.reply(message, "TTS is off right now")
            return self._drop("tts off", command)
        if not user.at_least(self._min_role):
            return self._drop("role", command)
        if self._store.mute_of(user) is not None:
            return self._drop("muted", command)
        filtered = self.filters.apply(text)
        if filtered.dropped:
            return self._drop(f"filter:{filtered.dropped_by}", command)
        if self.cooldown.remaining(user, paid=paid) > 0:
            return self._drop("cooldown", command)
        priority = 1 if paid else 0
        item = SpeechItem(
            message=message,
            text=self._announce(user, filtered.text, priority),
            voice=self.voice_for(message),
            priority=priority,
        )
        if not self._speaker.enqueue(item):
            return self._drop("queue", command)
        self.cooldown.mark(user)
        return Decision("queued", trigger, item=item, command=command, trigger=trigger)

    def voice_for(self, message: ChatMessage) -> str:
        """The source's requested voice, else the author's chosen one, else the default."""
        voice = message.voice or self._store.voice_of(message.user) or self.cfg.voices.default
        return voice.lower()

    def _drop(self, reason: str, command: CommandResult | None) -> Decision:
        log.debug("not spoken: %s", reason)
        return Decision("dropped", reason, command=command)

    def _remember(self, user: ChatUser) -> None:
        login = user.login.casefold()
        self._recent[login] = (user.id, user.role)
        self._recent.move_to_end(login)
        if len(self._recent) > self._RECENT_USERS:
            self._recent.popitem(last=False)
        self._store.seen(user)

    def _trigger(self, message: ChatMessage, *, via_command: bool) -> str | None:
        triggers = self.cfg.triggers
        if via_command:
            return "command"  # the command exists only when triggers.command is on
        # Which rewards count and the smallest cheer are the source's business (twitch.rewards,
        # twitch.min_bits): a message arrives paid only when it qualified there.
        if triggers.cheers and message.bits > 0:
            return "cheer"
        if triggers.rewards and message.reward is not None:
            return "reward"
        if triggers.messages:
            return "message"
        return None

    # -- "NAME says" ----------------------------------------------------------------------------
    def _announce(self, user: ChatUser, text: str, priority: int) -> str:
        tts = self.cfg.tts
        if not tts.say_names:
            return text
        if user.role is Role.BROADCASTER and not tts.announce_broadcaster:
            return text
        before = self._predecessor(priority)
        if (
            before is not None
            and before.message.user.id == user.id
            and self._clock() - before.message.received_at < tts.name_again_after_s
        ):
            return text
        return tts.template.format(name=speakable_name(user.display_name, user.login), text=text)

    def _predecessor(self, priority: int) -> SpeechItem | None:
        """The item that will be heard right before a new item of ``priority``."""
        queued = self._speaker.queue.snapshot()
        if self.cfg.queue.paid_first:
            queued = [it for it in queued if it.priority >= priority]
        if queued:
            return queued[-1]
        return self._speaker.current or self._last_started

    # -- history ---------------------------------------------------------------------------------
    def _on_speech(self, event: SpeechEvent) -> None:
        item = event.item
        if event.kind is SpeechEventKind.STARTED:
            self._last_started = item
        elif event.kind is SpeechEventKind.FINISHED and event.outcome is not None:
            user = item.message.user
            self._store.record_history(
                HistoryEntry(
                    at=self._store.now(),
                    login=user.login,
                    text=item.text,
                    outcome=event.outcome.value,
                    user_id=user.id,
                    message_id=item.message.id,
                    voice=item.voice,
                    detail=event.detail,
                )
            )
