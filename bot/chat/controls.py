"""What chat commands and the control panel act on, named as narrow protocols.

A command needs a handful of things (a person's voice and mutes, skip and clear, pause,
volume, on/off, the voice list), not the whole database or the whole speech loop. Naming
exactly those keeps what a command may touch visible, lets a test or another front end supply
them, and keeps ``bot.chat`` from handing the concrete ``Store`` and ``Speaker`` around.
``bot.chat.pipeline.ChatPipeline`` implements :class:`Controls`; the real ``Store`` and
``Speaker`` satisfy :class:`PeopleStore` and :class:`Playback`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.chat.voices import VoiceCatalog
    from bot.core.messages import ChatUser, Platform, Role
    from bot.speech.speaker import SpeechItem
    from bot.state.store import HistoryEntry, Target, UserRecord


class PeopleStore(Protocol):
    """What commands read and write about people (``bot.state.store.Store``).

    Writes return once committed, so a command acknowledges only what is on disk.
    """

    def voice_of(self, user: ChatUser) -> str | None:
        """The voice ``user`` chose, or None for the default."""
        ...

    def find_login(self, platform: Platform, login: str) -> UserRecord | None:
        """The record of an ``@login`` argument on ``platform``, if the database knows them."""
        ...

    @property
    def read_only(self) -> bool:
        """Whether changes cannot be saved (a read-only database: they last this session)."""
        ...

    def mutes(self) -> list[UserRecord]:
        """Everyone with an active mute (the panel lists them)."""
        ...

    def now(self) -> float:
        """The store's wall clock (mute expiry is in epoch seconds)."""
        ...

    async def set_voice(self, who: Target, voice: str | None) -> UserRecord:
        """Choose a voice for a person (None: the default)."""
        ...

    async def mute(self, who: Target, *, until: float | None, by: str) -> UserRecord:
        """Mute a person until epoch time ``until`` (None: until unmuted)."""
        ...

    async def unmute(self, who: Target) -> bool:
        """Lift a mute; whether an active one was lifted."""
        ...

    async def history(self, limit: int = 50) -> list[HistoryEntry]:
        """The newest history rows, newest first (the panel shows them after a restart)."""
        ...


class QueueView(Protocol):
    """What commands read of the speech queue (``bot.speech.speaker.SpeechQueue``)."""

    def snapshot(self) -> list[SpeechItem]:
        """The queued items in the order they will be spoken."""
        ...


class Playback(Protocol):
    """The control actions of the speech loop (``bot.speech.speaker.Speaker``)."""

    @property
    def queue(self) -> QueueView:
        """The queue, to find one item."""
        ...

    def skip(self) -> SpeechItem | None:
        """Stop the playing message; it, or None when nothing played."""
        ...

    def clear(self, *, include_current: bool = False) -> int:
        """Empty the queue; how many items went."""
        ...

    def remove_where(
        self, predicate: Callable[[SpeechItem], bool], *, include_current: bool = True
    ) -> int:
        """Remove matching items (and stop the playing one if it matches); how many went."""
        ...


class Controls(Protocol):
    """What commands change: implemented by ``bot.chat.pipeline.ChatPipeline``."""

    @property
    def store(self) -> PeopleStore:
        """Voices and mutes of people."""
        ...

    @property
    def speaker(self) -> Playback:
        """Skip, clear, remove."""
        ...

    @property
    def voices(self) -> VoiceCatalog:
        """The engine's voice list."""
        ...

    @property
    def enabled(self) -> bool:
        """Whether TTS is on."""
        ...

    @property
    def volume(self) -> float:
        """The player volume, 0..1."""
        ...

    @property
    def default_voice(self) -> str:
        """The voice used when a viewer chose none."""
        ...

    async def set_enabled(self, enabled: bool) -> None:
        """Turn TTS on/off (off also silences what is queued); persisted first."""
        ...

    async def set_paused(self, paused: bool) -> None:
        """Pause/resume playback; persisted first."""
        ...

    async def set_volume(self, volume: float) -> None:
        """Set the player volume (0..1); persisted first."""
        ...

    def recent_user(self, platform: Platform, login: str) -> tuple[str, Role] | None:
        """(user id, role) of someone who chatted recently on ``platform`` as ``login``."""
        ...

    def command_name(self, key: str) -> str:
        """What a viewer types for the command ``key``, prefix included (``!resume``)."""
        ...

    @property
    def assigns_voices(self) -> bool:
        """Whether viewers without a voice get one automatically (``tts.new_viewers``).

        Then an explicit choice of the default voice is saved as that voice, so it is not
        replaced by an automatic one.
        """
        ...

    async def voice_pool(self) -> list[str]:
        """The voices ``!voice random`` and new viewers draw from (``tts.new_viewers.pool``).

        Raises:
            bot.chat.voices.VoiceListUnavailable: The engine did not say which voices it has.
        """
        ...

    async def set_pronunciation(self, word: str, spoken: str | None, *, by: str) -> bool:
        """Save how ``word`` is said (None: as written again); whether that changed anything.

        Raises:
            bot.state.store.StoreError: The write failed; nothing changed.
        """
        ...
