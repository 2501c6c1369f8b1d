"""Control actions shared by the chat commands and the web control panel, with their wording.

One implementation per action, whoever asks: ``!mute @bob 10m`` in chat and the panel's mute
button both end up in :func:`mute_user`, so they persist the same way, silence the same queued
messages and answer in the same words. Every action returns a small outcome whose ``reply``
is the sentence both audiences get (a chat line, a panel notice); the chat command decides
only whether to send it (``commands.acknowledge``), the panel always shows it.

Writes are committed before an action returns, so a reply that follows survives a crash;
a failed write raises ``bot.state.store.StoreError`` and changes nothing.

Whom an ``@login`` names depends on where it is said: people of different platforms never
mix (docs/commands.md, "Who is who"), so every action on a person takes the platform, and
a chat command passes its issuer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.chat.arguments import format_duration
from bot.core.messages import ChatUser, Platform
from bot.state.store import Target

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
        platform: Where the muted person chats.
    """

    login: str
    user_id: str | None
    until: float | None
    removed: int
    seconds: float | None = None
    platform: Platform = Platform.TWITCH

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


def target_for(controls: Controls, platform: Platform, login: str) -> Target:
    """Whom ``@login`` names on ``platform``: who chatted there lately, else the database's.

    Only ``platform`` is searched: an HTTP-ingest message under a Twitch login never makes a
    Twitch moderator's ``!mute @login`` land on the ingest identity. When nobody is known
    there yet, the target is login-only and binds to whoever first chats there as ``login``.
    """
    login = login.casefold()
    recent = controls.recent_user(platform, login)
    if recent is not None:
        return Target(platform, login, recent[0])
    record = controls.store.find_login(platform, login)
    return Target(platform, login, record.user_id if record is not None else None)


PLATFORM_ORDER = (
    Platform.TWITCH,
    Platform.YOUTUBE,
    Platform.HTTP,
    Platform.TERMINAL,
    Platform.PANEL,
)
"""Which platform an ``@login`` without one means, first match wins (the panel's mute)."""


def known_platform(controls: Controls, login: str) -> Platform:
    """The platform that a login given without one names (the panel's mute and unmute).

    The first of :data:`PLATFORM_ORDER` on which someone chatted lately as ``login`` or the
    database knows them, else Twitch. Chat platforms come first, so an HTTP-ingest message
    under a Twitch viewer's login never turns the panel's mute of that viewer into a mute of
    the ingest name.
    """
    login = login.casefold()
    for platform in PLATFORM_ORDER:
        if controls.recent_user(platform, login) is not None:
            return platform
        if controls.store.find_login(platform, login) is not None:
            return platform
    return Platform.TWITCH


CONSOLES = frozenset({Platform.TERMINAL, Platform.PANEL})
"""The streamer's own consoles: nobody else chats there, so their ``@login`` means a viewer."""


def platform_for(controls: Controls, issuer: ChatUser, login: str) -> Platform:
    """Where the person a command names as ``@login`` chats.

    A command given in a chat (Twitch, YouTube) names someone of that chat, whatever other
    platforms know the same login. From the terminal or the panel, where only the streamer
    types, it is :func:`known_platform`.
    """
    if issuer.platform in CONSOLES:
        return known_platform(controls, login)
    return issuer.platform


def same_user(item: SpeechItem, target: Target) -> bool:
    """Whether ``item`` was written by ``target`` (same platform; by id when known)."""
    user = item.message.user
    if user.platform is not target.platform:
        return False
    if target.user_id is not None:
        return user.id == target.user_id
    return user.login.casefold() == target.login.casefold()


async def mute_user(
    controls: Controls, login: str, *, platform: Platform, seconds: float | None, by: str
) -> MuteOutcome:
    """Mute ``login`` (for ``seconds``, or until unmuted) and drop their speech at once.

    The mute is committed to the database before this returns, so an acknowledgement that
    follows survives a crash; their queued and playing messages are removed right after.

    Args:
        controls: The chat pipeline (store, speaker, recent users).
        login: Who to mute, already validated (``bot.chat.arguments.parse_login``).
        platform: Where they chat: the issuing command's platform, or the panel's choice.
        seconds: How long, or None for "until unmuted".
        by: Login of who muted (shown in the panel and kept in the database).

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    target = target_for(controls, platform, login)
    store = controls.store
    until = store.now() + seconds if seconds is not None else None
    await store.mute(target, until=until, by=by)
    removed = controls.speaker.remove_where(lambda it: same_user(it, target), include_current=True)
    return MuteOutcome(target.login, target.user_id, until, removed, seconds, platform)


async def unmute_user(controls: Controls, login: str, platform: Platform) -> Said:
    """Lift a mute on ``login`` of ``platform`` (once committed): ``unmuted bob``.

    ``bob was not muted`` when there was none to lift.

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    target = target_for(controls, platform, login)
    lifted = await controls.store.unmute(target)
    return Said(f"unmuted {target.login}" if lifted else f"{target.login} was not muted")


async def set_voice_of(controls: Controls, login: str, voice: str, platform: Platform) -> Said:
    """Choose ``voice`` (a real voice name) for ``login`` of ``platform``.

    Also before they ever chatted: the entry binds when they first chat there.

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    target = target_for(controls, platform, login)
    await controls.store.set_voice(target, stored_voice(controls, voice))
    return Said(f"{target.login}'s voice is now {voice}")


def stored_voice(controls: Controls, voice: str) -> str | None:
    """What is saved for a choice: None for the default, so a changed default applies too.

    Unless new viewers get voices automatically: then "the default" is saved by name, or
    the viewer's explicit choice would look like no choice and be replaced.
    """
    if controls.assigns_voices:
        return voice
    return None if voice.casefold() == controls.default_voice.casefold() else voice


async def teach_word(controls: Controls, word: str, spoken: str, *, by: str) -> Said:
    """Save how ``word`` is said from now on (``!say GG as good game``).

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    await controls.set_pronunciation(word, spoken, by=by)
    return Said(f'{word} is now said "{spoken}"')


async def forget_word(controls: Controls, word: str, *, by: str) -> Said:
    """Say ``word`` as written again (``!unsay GG``).

    Raises:
        bot.state.store.StoreError: The write failed; nothing changed.
    """
    if await controls.set_pronunciation(word, None, by=by):
        return Said(f"{word} is said as written again")
    return Said(f"{word} had no saved pronunciation")


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
