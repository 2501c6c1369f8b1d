"""The chat pipeline: from a normalized chat message to a queued SpeechItem (or a good reason not).

:meth:`ChatPipeline.handle` runs one message through :attr:`ChatPipeline.steps`, in this
order, and the first step that decides ends it:

1. duplicates are ignored, then ignored users (other bots) before anything else;
2. commands run (and are never spoken; ``!tts TEXT`` hands its text on);
3. other bots' command prefixes are ignored;
4. a trigger must apply (every message / ``!tts`` / channel-points reward / cheer);
5. TTS must be on, and the author must reach ``triggers.min_role``;
6. the author must not be muted (the person's state is looked up once, here);
7. raid mode (``raid``) looks at the queue length: it may step up (announced in chat once)
   and, at its paid-only step, drop free messages;
8. the text filters run (links, emoji, zalgo, banned words, repeats, length, ...), then raid
   mode's shorter cut;
9. the per-user cooldown is checked (raid mode may lengthen it), the "NAME says" template
   added unless the same person spoke just before or raid mode stopped names, the voice
   chosen (the source's request, else the person's choice, else one assigned by
   ``tts.new_viewers`` and saved, else the default), the message split into voice parts
   (``tts.parts``) and the pronunciation dictionary applied to what is spoken (never to
   what is shown), and sound tags (``sounds``: ``hello [airhorn]``) turned into clip
   parts; then the item is queued, paid messages first; only a queued message starts the
   cooldown.

Every step is synchronous except commands (which may write to the database), so a message
costs no I/O unless it is a command; saving an assigned voice and announcing a raid-mode
change run in the background. Voice parts and assigned voices read the engine's voice list
from the catalog's cache (asked for when the engine is ready). ``handle`` returns a Decision
saying what happened and why, which the tests check and the log shows. Raid mode ends when
the speaker reports the queue empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.chat.commands import CommandProcessor, CommandResult
from bot.chat.controls import PeopleStore, Playback
from bot.chat.filters import Cooldown, FilterChain, MessageIgnorer, speakable_name
from bot.chat.parts import Part, split_parts
from bot.chat.pronunciation import Pronouncer
from bot.chat.raid import RaidMode, RaidRules
from bot.chat.roles import ROLE_BY_NAME
from bot.chat.settings import PipelineSettings
from bot.chat.sounds import SoundBank, has_tags, split_sounds
from bot.chat.voices import (
    VoiceCatalog,
    VoiceListUnavailable,
    random_voice,
    stable_voice,
    voice_pool,
)
from bot.core.lru import LRU
from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.core.tasks import TaskSet
from bot.core.text import cap_length
from bot.speech.speaker import (
    SoundClip,
    Speaker,
    SpeechEvent,
    SpeechEventKind,
    SpeechItem,
    SpeechPart,
)
from bot.state.store import HistoryEntry, PersonState, Store, StoreError, Target

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
    _CLOSE_WAIT_S = 2.0

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
        self.raid = RaidMode(cfg.raid)
        self.pronouncer = Pronouncer(cfg.pronunciation)
        self._saved_words: dict[str, str] = {}
        self._parts_role = ROLE_BY_NAME[cfg.tts.parts.min_role]
        self.sounds = SoundBank(cfg.sounds, clock)
        self._sounds_role = ROLE_BY_NAME[cfg.sounds.min_role]
        self._assigned: LRU[tuple[Platform, str], str] = LRU(self._RECENT_USERS)
        self._rng = random.Random()
        self._raid_chat: ChatMessage | None = None
        self._voice_fetch: asyncio.Task[None] | None = None
        self._tasks = TaskSet("chat pipeline")
        self.steps: tuple[Step, ...] = (
            self._drop_duplicates_and_ignored_users,
            self._run_command,
            self._skip_other_bots_commands,
            self._require_trigger,
            self._require_tts_on_and_role,
            self._skip_muted,
            self._raid_mode,
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

    @property
    def assigns_voices(self) -> bool:
        """Whether viewers without a voice get one automatically (``tts.new_viewers.mode``)."""
        return self.cfg.tts.new_viewers.mode != "default"

    async def voice_pool(self) -> list[str]:
        """The voices ``!voice random`` and new viewers draw from."""
        return voice_pool(await self._voices.names(), self.cfg.tts.new_viewers.pool)

    async def set_pronunciation(self, word: str, spoken: str | None, *, by: str) -> bool:
        """Save how ``word`` is said (None: as written); it applies from the next message."""
        changed = await self._store.set_pronunciation(word, spoken, by=by)
        if spoken is None:
            self._saved_words.pop(word.casefold(), None)
        else:
            self._saved_words[word.casefold()] = spoken
        self.pronouncer.use_saved(self._saved_words)
        return changed

    def engine_ready(self) -> None:
        """The engine (re)loaded: learn its voices now if messages need them.

        Voice parts and voices for new viewers look names up without waiting; asking right
        away means the first messages after start-up already find the list.
        """
        cfg = self.cfg.tts
        if cfg.parts.enabled or self.assigns_voices:
            self._known_voices()

    async def settled(self) -> None:
        """Wait for the background work started so far (voice saves, announcements, loading)."""
        await self._tasks.wait()

    async def close(self) -> None:
        """Finish saving assigned voices (briefly), then stop background work."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled(), self._CLOSE_WAIT_S)
        await self._tasks.close()

    def restore(self) -> None:
        """Apply the persisted volume, pause and on/off state (after ``store.open()``).

        The saved pronunciation dictionary is read in the background; messages that arrive
        meanwhile use the config's entries.
        """
        self._tasks.spawn(self._load_pronunciations(), name="pronunciations")
        if self.cfg.sounds.enabled:
            self._rescan_sounds()
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

    async def _raid_mode(self, line: Line) -> Decision | None:
        changed = self.raid.observe(len(self._speaker.queue))
        if changed is not None:
            self._raid_chat = line.message
            self._announce_raid(changed)
        if self.raid.rules.paid_only and not line.paid:
            return self._drop("raid: paid only", line)
        return None

    async def _apply_filters(self, line: Line) -> Decision | None:
        filtered = self.filters.apply(line.text)
        if filtered.dropped:
            return self._drop(f"filter:{filtered.dropped_by}", line)
        line.text = filtered.text
        cut = self.raid.rules.max_chars
        if cut is not None and len(line.text) > cut:
            line.text = cap_length(line.text, cut)
        return None

    async def _queue(self, line: Line) -> Decision:
        user = line.user
        longer = self.raid.rules.cooldown_s
        if self.cooldown.remaining(user, paid=line.paid, at_least=longer) > 0:
            return self._drop("cooldown", line)
        priority = 1 if line.paid else 0
        voice = self._voice(line)
        text, parts = self._speech(line, voice, priority)
        item = SpeechItem(
            message=line.message,
            text=text,
            voice=parts[0].voice if parts else voice,
            priority=priority,
            parts=parts,
            max_s=self.cfg.tts.max_speaking_s,
        )
        if not self._speaker.enqueue(item):
            return self._drop("queue", line)
        self.cooldown.mark(user, at_least=longer)  # only a queued message starts the cooldown
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
        """The source's requested voice, else the author's chosen or assigned one, else default."""
        if line.message.voice:
            return line.message.voice.lower()
        chosen = line.person.voice if line.person is not None else None
        if chosen is None and self.assigns_voices:
            chosen = self._new_viewer_voice(line.user)
        return (chosen or self.cfg.voices.default).lower()

    def _new_viewer_voice(self, user: ChatUser) -> str | None:
        """A voice for someone who has none (``tts.new_viewers``), saved like ``!voice``.

        None while the voice list is not known yet (the default is used, nothing saved).
        """
        assigned = self._assigned.get(user.identity)
        if assigned is not None:
            return assigned  # already picked; the save may still be on its way
        names = self._known_voices()
        if names is None:
            return None
        candidates = voice_pool(names, self.cfg.tts.new_viewers.pool)
        if self.cfg.tts.new_viewers.mode == "stable":
            voice = stable_voice(candidates, f"{user.platform}:{user.id}")
        else:
            voice = random_voice(candidates, self._rng)
        if voice is None:
            return None
        self._assigned.put(user.identity, voice)
        self._tasks.spawn(self._save_voice(user, voice), name="assign-voice")
        return voice

    async def _save_voice(self, user: ChatUser, voice: str) -> None:
        try:
            await self._store.set_voice(Target.of(user), voice)
        except StoreError as exc:
            log.error("could not save the voice given to %s: %s", user.login, exc)

    def _known_voices(self) -> list[str] | None:
        """The engine's voice list if it is known; else None, and it is asked for."""
        names = self._voices.cached
        if names is None and (self._voice_fetch is None or self._voice_fetch.done()):
            self._voice_fetch = self._tasks.spawn(self._fetch_voices(), name="voice-list")
        return names

    async def _fetch_voices(self) -> None:
        try:
            names = await self._voices.names()
        except VoiceListUnavailable as exc:
            log.debug("voice list not known yet: %s", exc)
            return
        pool = self.cfg.tts.new_viewers.pool
        if self.assigns_voices and pool:
            known = {n.casefold() for n in names}
            missing = [p for p in pool if p.casefold() not in known]
            if missing:
                log.warning(
                    "tts.new_viewers.pool: no voice called %s; %s",
                    ", ".join(missing),
                    "drawing from the others" if len(missing) < len(pool) else "using the default",
                )

    def _speech(self, line: Line, voice: str, priority: int) -> tuple[str, tuple[SpeechPart, ...]]:
        """What is shown (the text with "NAME says") and, when it differs, what is spoken.

        The parts are the voices of a message that names several (``tts.parts``), with the
        name said first in the author's voice, the spoken forms of the pronunciation
        dictionary, and the clips of its sound tags (``sounds``), each at its place with no
        pause around it; a message with none of these is spoken as shown (no parts).
        """
        user = line.user
        named = self._says_name(user, priority)
        name = speakable_name(user.display_name, user.login)
        template = self.cfg.tts.template
        shown = template.format(name=name, text=line.text) if named else line.text
        split = self._split(line)
        sounds = self.cfg.sounds
        tagged = sounds.enabled and has_tags(line.text, sounds.syntax)
        # (text, voice, sound, joined: no pause before it); only the message's own text holds
        # sound tags, never the name or the template around it.
        pieces: list[tuple[str, str, SoundClip | None, bool]]
        if len(split) == 1 and split[0].voice is None and not tagged:
            pieces = [(shown, voice, None, False)]
        else:
            head, _, tail = template.format(name=name, text="\x00").partition("\x00")
            tail = tail.replace("\x00", " ")  # a template may say {text} twice; parts once
            if not named:
                head = tail = ""
            pieces = [(head, voice, None, False)] if head.strip() else []
            budget = sounds.max_per_message if line.user.at_least(self._sounds_role) else 0
            # Without voice parts the message is one voice: the template joins its text.
            voiced = not (len(split) == 1 and split[0].voice is None)
            for part in split:
                if not tagged:
                    pieces.append((part.text, part.voice or voice, None, False))
                    continue
                chunks, used = split_sounds(
                    part.text, sounds.syntax, self._known_sound, budget, sounds.unknown
                )
                budget -= used
                for i, chunk in enumerate(chunks):
                    clip = self.sounds.clip(chunk.sound) if chunk.sound is not None else None
                    pieces.append((chunk.text, part.voice or voice, clip, i > 0 or not voiced))
            if tail.strip():
                after_sound = bool(pieces) and pieces[-1][2] is not None
                pieces.append((tail, voice, None, after_sound or not voiced))
        if self.pronouncer.active:
            pieces = [
                (self.pronouncer.apply(text) if clip is None else text, v, clip, joined)
                for text, v, clip, joined in pieces
            ]
        pieces = [(t.strip(), v, c, j) for t, v, c, j in pieces if t.strip() or c is not None]
        merged: list[tuple[str, str, SoundClip | None, bool]] = []
        for text, v, sound, joined in pieces:  # speech joined to speech is one synthesis
            if merged and joined and sound is None and merged[-1][2] is None and merged[-1][1] == v:
                merged[-1] = (f"{merged[-1][0]} {text}", v, None, merged[-1][3])
            else:
                merged.append((text, v, sound, joined))
        pieces = merged
        if not pieces or (len(pieces) == 1 and pieces[0][:3] == (shown, voice, None)):
            return shown, ()
        pause = self.cfg.tts.parts.pause_ms / 1000.0
        return shown, tuple(
            SpeechPart(text, v.lower(), pause if i and not joined else 0.0, clip)
            for i, (text, v, clip, joined) in enumerate(pieces)
        )

    def _known_sound(self, tag: str) -> str | None:
        """The sound a tag names, if the folder holds it; an unknown one asks for a rescan."""
        clip = self.sounds.clip(tag)
        if clip is None:
            if self.sounds.should_rescan():
                self._rescan_sounds()
            return None
        return clip.name

    def _rescan_sounds(self) -> None:
        task = self._tasks.spawn(self._scan_sounds(), name="sounds-scan")
        self.sounds.scanning(task)

    async def _scan_sounds(self) -> None:
        await self.sounds.rescan()

    def _split(self, line: Line) -> list[Part]:
        """The message's voice parts, when ``tts.parts`` is on and the author may use it."""
        cfg = self.cfg.tts.parts
        if not cfg.enabled or not line.user.at_least(self._parts_role):
            return [Part(line.text, None)]
        names = self._known_voices()
        if names is None:
            return [Part(line.text, None)]
        known = {n.casefold(): n for n in names}
        return split_parts(line.text, cfg.syntax, lambda n: known.get(n.casefold()), cfg.max_parts)

    def _announce_raid(self, rules: RaidRules) -> None:
        """Say a raid-mode change once, in the chat whose message caused it."""
        text = rules.describe(self.raid.levels)
        log.info("%s (queue %d)", text, len(self._speaker.queue))
        chat = self._raid_chat
        if self.cfg.raid.announce and chat is not None:
            self._tasks.spawn(self.commands.reply(chat, text), name="raid-announce")

    async def _load_pronunciations(self) -> None:
        try:
            saved = await self._store.pronunciations()
        except StoreError as exc:
            log.error("could not read the saved pronunciations: %s", exc)
            return
        self._saved_words = {**saved, **self._saved_words}  # a !say meanwhile wins
        self.pronouncer.use_saved(self._saved_words)

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
    def _says_name(self, user: ChatUser, priority: int) -> bool:
        """Whether the message is announced with its author's name."""
        tts = self.cfg.tts
        say_names = self.raid.rules.say_names
        if not (tts.say_names if say_names is None else say_names):
            return False
        if user.role is Role.BROADCASTER and not tts.announce_broadcaster:
            return False
        before = self._predecessor(priority)
        return not (
            before is not None
            and before.message.user.identity == user.identity
            and self._clock() - before.message.received_at < tts.name_again_after_s
        )

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
        if event.kind is not SpeechEventKind.QUEUED and not len(self._speaker.queue):
            back = self.raid.drained()  # the queue drained: raid mode ends
            if back is not None:
                self._announce_raid(back)
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
