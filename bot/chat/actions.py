"""Control actions shared by the chat commands and the web control panel, with their wording.

One implementation per action, whoever asks: ``!mute @bob 10m`` in chat and the panel's mute
button both end up in :func:`mute_user`, so they persist the same way, silence the same queued
messages and answer in the same words. Every action returns a small outcome whose ``reply``
is the sentence both audiences get (a chat line, a panel notice); the chat command decides
only whether to send it (``commands.acknowledge``), the panel always shows it.

Writes are committed before an action returns, so a reply that follows survives a crash;
a failed write raises ``bot.state.store.StoreError`` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.chat.arguments import format_duration

if TYPE_CHECKING:
    from bot.chat.controls import Controls
    from bot.speech.speaker import SpeechItem


def plural(count: int, word: str) -> str:
    """``3 messages``, ``1 message``."""
    return f"{count} {word}{'s' if count != 1 else ''}"


@dataclass(frozen=True, slots=True)
class MuteOutcome:
    """What a mute did.

    Attributes:
        login: The muted login (lower case).
        user_id: Their platform id when known (they chatted, or the database knows them).
        until: Epoch seconds when the mute ends, or None for "until unmuted".
        removed: Queued or playing messages of theirs that were dropped at once.
        seconds: How long it was asked for, or None for "until unmuted".
    """

    login: str
    user_id: str | None
    until: float | None
    removed: int
    seconds: float | None = None

    @property
    def reply(self) -> str:
        """``muted bob for 10 minutes (1 message removed)``."""
        span = (
            f"for {format_duration(self.seconds)}" if self.seconds is not None else "until unmuted"
        )
        extra = f" ({plural(self.removed, 'message')} removed)" if self.removed else ""
        return f"muted {self.login} {span}{extra}"


@dataclass(frozen=True, slots=True)
class Said:
    """An action whose outcome is just its sentence (pause, volume, on/off, ...)."""

    reply: str


def user_id_for(controls: Controls, login: str) -> str | None:
    """The platform id behind ``login``: someone who chatted recently, else the database's."""
    login = login.casefold()
    recent = controls.recent_user(login)
    if recent is not None:
        return recent[0]
    record = controls.store.find_login(login)
    return record.user_id if record is not None else None


def same_user(item: SpeechItem, login: str, user_id: str | None) -> bool:
    """Whether ``item`` was written by the user known as ``login`` / ``user_id``."""
    user = item.message.user
    if user_id is not None and user.id == user_id:
        return True
    return user.login.casefold() == login.casefold()


async def mute_user(
    controls: Controls, login: str, *, seconds: float | None, by: str
) -> MuteOutcome:
    """Mute ``login`` (for ``seconds``, or until unmuted) and drop their speech at once.

    The mute is committed to the database before this returns, so an acknowledgement that
    follows survives a crash; their queued and playing messages are removed right after.

    Args:
        controls: The chat pipeline (store, speaker, recent users).
        login: Who to mute, already validated (``bot.chat.arguments.parse_login``).
        seconds: How long, or None for "until unmuted".
        by: Login of who muted (shown in the panel and kept in the database).

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    login = login.casefold()
    user_id = user_id_for(controls, login)
    store = controls.store
    until = store.now() + seconds if seconds is not None else None
    await store.mute(login, user_id, until=until, by=by)
    removed = controls.speaker.remove_where(
        lambda it: same_user(it, login, user_id), include_current=True
    )
    return MuteOutcome(login, user_id, until, removed, seconds)


async def unmute_user(controls: Controls, login: str) -> Said:
    """Lift a mute on ``login`` (once committed): ``unmuted bob`` / ``bob was not muted``.

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    login = login.casefold()
    lifted = await controls.store.unmute(login, user_id_for(controls, login))
    return Said(f"unmuted {login}" if lifted else f"{login} was not muted")


async def set_voice_of(controls: Controls, login: str, voice: str) -> Said:
    """Choose ``voice`` (a real voice name) for ``login``, also before they ever chatted.

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    login = login.casefold()
    await controls.store.set_voice(
        login, user_id_for(controls, login), stored_voice(controls, voice)
    )
    return Said(f"{login}'s voice is now {voice}")


def stored_voice(controls: Controls, voice: str) -> str | None:
    """What is saved for a choice: None for the default, so a changed default applies too."""
    return None if voice.casefold() == controls.default_voice.casefold() else voice


def skip(controls: Controls) -> Said:
    """Stop the playing message at once."""
    skipped = controls.speaker.skip()
    if skipped is None:
        return Said("nothing is playing")
    return Said(f"skipped {skipped.message.user.login}'s message")


def clear(controls: Controls) -> Said:
    """Empty the queue (the playing message finishes)."""
    removed = controls.speaker.clear()
    return Said(f"cleared {plural(removed, 'queued message')}")


async def pause(controls: Controls) -> Said:
    """Hold the queue (the playing message finishes); saved."""
    await controls.set_paused(True)
    return Said(f"paused; {controls.command_name('resume')} continues")


async def resume(controls: Controls) -> Said:
    """Play the queue again; saved."""
    await controls.set_paused(False)
    return Said("resumed")


async def set_volume(controls: Controls, percent: float) -> Said:
    """Set the volume (0-100 %); saved."""
    percent = min(100.0, max(0.0, percent))
    await controls.set_volume(percent / 100.0)
    return Said(f"volume {round(percent)}%")


async def set_tts(controls: Controls, enabled: bool) -> Said:
    """Turn reading on, or off (which drops the queue and the playing message); saved."""
    await controls.set_enabled(enabled)
    if enabled:
        return Said("TTS is on")
    return Said(f"TTS is off; {controls.command_name('ttson')} turns it back on")


def remove_item(controls: Controls, item_id: int) -> SpeechItem | None:
    """Drop one queued message (``SpeechItem.seq``); returns it, or None when it is gone.

    Only queued items: the playing one is stopped with skip, which the panel shows separately.
    """
    target = next((it for it in controls.speaker.queue.snapshot() if it.seq == item_id), None)
    if target is None:
        return None
    controls.speaker.remove_where(lambda it: it is target, include_current=False)
    return target


def removed_reply(item: SpeechItem) -> str:
    """What the panel says after :func:`remove_item`."""
    return f"removed {item.message.user.login}'s message"
