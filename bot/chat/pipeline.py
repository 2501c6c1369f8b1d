"""The chat pipeline: from a normalized chat message to a queued SpeechItem (or a good reason not).

:meth:`ChatPipeline.handle` runs one message through :attr:`ChatPipeline.steps`, in this
order, and the first step that decides ends it:

1. duplicates are ignored, then ignored users (other bots) before anything else;
2. commands run (and are never spoken; ``!tts TEXT`` hands its text on);
3. other bots' command prefixes are ignored;
4. a trigger must apply (every message / ``!tts`` / channel-points reward / cheer);
5. TTS must be on, and the author must reach ``triggers.min_role``;
6. the author must not be muted (the person's state is looked up once, here);
7. the text filters run (links, emoji, zalgo, banned words, repeats, length, ...);
8. the per-user cooldown is checked, the "NAME says" template added unless the same person
   spoke just before, the voice chosen (the source's request, else the person's choice,
   else the default) and the item queued, paid messages first; only a queued message starts
   the cooldown.

Every step is synchronous except commands (which may write to the database), so a message
costs no I/O unless it is a command. ``handle`` returns a Decision saying what happened and
why, which the tests check and the log shows.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.chat.commands import CommandProcessor, CommandResult
from bot.chat.controls import PeopleStore, Playback
from bot.chat.filters import Cooldown, FilterChain, MessageIgnorer, speakable_name
from bot.chat.roles import ROLE_BY_NAME
from bot.chat.settings import PipelineSettings
from bot.chat.voices import VoiceCatalog
from bot.core.lru import LRU
from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.speech.speaker import Speaker, SpeechEvent, SpeechEventKind, SpeechItem
from bot.state.store import HistoryEntry, PersonState, Store

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What the pipeline did with a message."""

    QUEUED = "queued"
    """It will be spoken."""
    COMMAND = "command"
    """A command ran or was swallowed."""
    DROPPED = "dropped"
    """A rule stopped it."""
    IGNORED = "ignored"
    """Never considered: other bots, duplicates."""


class Trigger(enum.StrEnum):
    """What made a message speakable."""

    MESSAGE = "message"
    COMMAND = "command"
    REWARD = "reward"
    CHEER = "cheer"

    @property
    def paid(self) -> bool:
        """Whether it was paid for (cheers and rewards go first and skip the cooldown)."""
        return self in (Trigger.CHEER, Trigger.REWARD)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the pipeline did with one message.

    Attributes:
        action: What happened.
        reason: Why, in a few words (``muted``, ``filter:links``, ``cooldown`` ...).
        item: The queued item, for ``queued``.
        command: The command's result, for ``command`` (and for ``!tts`` that was queued).
        trigger: What made it speakable.
    """

    action: Action
    reason: str = ""
    item: SpeechItem | None = None
    command: CommandResult | None = None
    trigger: Trigger | None = None


@dataclass(slots=True)
class Line:
    """One message on its way through the steps, and what the steps learned about it."""

    message: ChatMessage
    text: str
    command: CommandResult | None = None
    trigger: Trigger | None = None
    person: PersonState | None = None

    @property
    def user(self) -> ChatUser:
        """The author."""
        return self.message.user

    @property
    def paid(self) -> bool:
        """Whether a cheer or a reward carries it."""
        return self.trigger is not None and self.trigger.paid


Step = Callable[[Line], Awaitable[Decision | None]]


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
    """Decides what is spoken, and implements what commands control (``controls.Controls``)."""

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
        self._recent: LRU[tuple[Platform, str], tuple[str, Role]] = LRU(self._RECENT_USERS)
        self._message_ids: LRU[str, None] = LRU(self._RECENT_IDS)
        self._last_started: SpeechItem | None = None
        self.steps: tuple[Step, ...] = (
            self._drop_duplicates_and_ignored_users,
            self._run_command,
            self._skip_other_bots_commands,
            self._require_trigger,
            self._require_tts_on_and_role,
            self._skip_muted,
            self._apply_filters,
            self._queue,
        )
        """The pipeline, in order; the first step that returns a Decision ends it."""
        speaker.add_listener(self._on_speech)

    # -- Controls (what commands act on) ----------------------------------------------------
    @property
    def store(self) -> PeopleStore:
        """Voices and mutes of people."""
        return self._store

    @property
    def speaker(self) -> Playback:
        """Skip, clear, remove."""
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

    def command_name(self, key: str) -> str:
        """What a viewer types for the command ``key``, prefix included."""
        return self.commands.name_of(key)

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

    def recent_user(self, platform: Platform, login: str) -> tuple[str, Role] | None:
        """(id, highest role) of someone who chatted on ``platform`` as ``login`` lately."""
        return self._recent.get((platform, login.casefold()))

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
        line = Line(message, message.text)
        for step in self.steps:
            decision = await step(line)
            if decision is not None:
                if decision.action is Action.DROPPED:
                    log.debug("not spoken: %s", decision.reason)
                return decision
        raise AssertionError("the last step always decides")  # pragma: no cover

    async def _drop_duplicates_and_ignored_users(self, line: Line) -> Decision | None:
        if not self._message_ids.add(line.message.id, None):
            return Decision(Action.IGNORED, "duplicate")
        user = line.user
        if self.ignorer.ignores_user(user):
            return Decision(Action.IGNORED, "ignored user")
        self._recent.put((user.platform, user.login.casefold()), (user.id, user.role))
        self._store.seen(user)
        return None

    async def _run_command(self, line: Line) -> Decision | None:
        command = await self.commands.handle(line.message)
        if command is None:
            return None
        line.command = command
        if command.speak is None:
            return Decision(Action.COMMAND, command.status.value, command=command)
        line.text = command.speak
        return None

    async def _skip_other_bots_commands(self, line: Line) -> Decision | None:
        if line.command is not None:
            return None  # our own command (!tts) handed text on
        ignored = self.ignorer.reason(line.message)
        return Decision(Action.IGNORED, ignored) if ignored is not None else None

    async def _require_trigger(self, line: Line) -> Decision | None:
        line.trigger = self._trigger(line)
        return self._drop("no trigger", line) if line.trigger is None else None

    async def _require_tts_on_and_role(self, line: Line) -> Decision | None:
        if not self._enabled:
            if line.paid:
                await self.commands.reply(line.message, "TTS is off right now")
            return self._drop("tts off", line)
        if not line.user.at_least(self._min_role):
            return self._drop("role", line)
        return None

    async def _skip_muted(self, line: Line) -> Decision | None:
        line.person = self._store.person(line.user)  # the one look at the author's state
        return self._drop("muted", line) if line.person.muted else None

    async def _apply_filters(self, line: Line) -> Decision | None:
        filtered = self.filters.apply(line.text)
        if filtered.dropped:
            return self._drop(f"filter:{filtered.dropped_by}", line)
        line.text = filtered.text
        return None

    async def _queue(self, line: Line) -> Decision:
        user = line.user
        if self.cooldown.remaining(user, paid=line.paid) > 0:
            return self._drop("cooldown", line)
        priority = 1 if line.paid else 0
        item = SpeechItem(
            message=line.message,
            text=self._announce(user, line.text, priority),
            voice=self._voice(line),
            priority=priority,
        )
        if not self._speaker.enqueue(item):
            return self._drop("queue", line)
        self.cooldown.mark(user)  # only a queued message starts the cooldown
        assert line.trigger is not None
        return Decision(
            Action.QUEUED,
            line.trigger.value,
            item=item,
            command=line.command,
            trigger=line.trigger,
        )

    # -- what the steps use -------------------------------------------------------------------
    def _voice(self, line: Line) -> str:
        """The source's requested voice, else the author's chosen one, else the default."""
        chosen = line.person.voice if line.person is not None else None
        return (line.message.voice or chosen or self.cfg.voices.default).lower()

    @staticmethod
    def _drop(reason: str, line: Line) -> Decision:
        return Decision(Action.DROPPED, reason, command=line.command)

    def _trigger(self, line: Line) -> Trigger | None:
        if line.command is not None:
            return Trigger.COMMAND  # the command exists only when triggers.command is on
        triggers = self.cfg.triggers
        message = line.message
        # Which rewards count and the smallest cheer are the source's business (twitch.rewards,
        # twitch.min_bits): a message arrives paid only when it qualified there.
        if triggers.cheers and message.bits > 0:
            return Trigger.CHEER
        if triggers.rewards and message.reward is not None:
            return Trigger.REWARD
        if triggers.messages:
            return Trigger.MESSAGE
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
            and before.message.user.identity == user.identity
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
