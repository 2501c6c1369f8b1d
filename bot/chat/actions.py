"""Control actions shared by the chat commands and the web control panel.

One implementation per action, whoever asks: ``!mute @bob 10m`` in chat and the panel's mute
button both end up in :func:`mute_user`, so they persist the same way and silence the same
queued messages. Pause, resume, volume and TTS on/off already live on the chat pipeline
(``bot.chat.pipeline.ChatPipeline``, the ``Controls`` of ``bot.chat.commands``) and
skip / clear on the speaker; the panel calls those directly. What needed a shared home is
collected here: the mute logic (database write plus removal of the user's speech) and
removing one queued item.

Nothing here replies to anyone: callers word the outcome for their own audience (a chat line,
a panel notice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.speech.speaker import SpeechItem

if TYPE_CHECKING:
    from bot.chat.commands import Controls


@dataclass(frozen=True, slots=True)
class MuteOutcome:
    """What a mute did.

    Attributes:
        login: The muted login (lower case).
        user_id: Their platform id when known (they chatted, or the database knows them).
        until: Epoch seconds when the mute ends, or None for "until unmuted".
        removed: Queued or playing messages of theirs that were dropped at once.
    """

    login: str
    user_id: str | None
    until: float | None
    removed: int


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
        login: Who to mute, already validated (``bot.chat.commands.parse_login``).
        seconds: How long, or None for "until unmuted".
        by: Login of who muted (shown in the panel and kept in the database).

    Raises:
        bot.store.StoreError: The write failed; nothing changed.
    """
    login = login.casefold()
    user_id = user_id_for(controls, login)
    store = controls.store
    until = store.now() + seconds if seconds is not None else None
    await store.mute(login, user_id, until=until, by=by)
    removed = controls.speaker.remove_where(
        lambda it: same_user(it, login, user_id), include_current=True
    )
    return MuteOutcome(login, user_id, until, removed)


async def unmute_user(controls: Controls, login: str) -> bool:
    """Lift a mute on ``login``; returns whether an active mute was lifted (once committed).

    Raises:
        bot.store.StoreError: The write failed; nothing changed.
    """
    login = login.casefold()
    return await controls.store.unmute(login, user_id_for(controls, login))


def remove_item(controls: Controls, item_id: int) -> SpeechItem | None:
    """Drop one queued message (``SpeechItem.seq``); returns it, or None when it is gone.

    Only queued items: the playing one is stopped with skip, which the panel shows separately.
    """
    target = next((it for it in controls.speaker.queue.snapshot() if it.seq == item_id), None)
    if target is None:
        return None
    controls.speaker.remove_where(lambda it: it is target, include_current=False)
    return target
