"""Control beats data from the socket on (issue 12.11).

A deletion, timeout/ban or chat clear takes effect at once even while the bot is still busy
with an earlier chat line: here a ``!voice`` whose voice list waits on the engine thread (held
by an event, as while the model loads). The real twitchio client reads the double; the real
App runs its pipeline and speaker.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from bot.core.messages import ChatCleared, MessageDeleted, UserPurged
from bot.sources.twitch.inbox import REORDER_WINDOW_S, Incoming, IncomingKind, Tombstones
from tests.bot.sources.twitch.harness import ToneEngine, running_app
from tests.support.twitch_double import TwitchDouble, User


def test_tombstones_remove_what_moderation_removed() -> None:
    now = [100.0]
    stones = Tombstones(8, clock=lambda: now[0])
    stones.record(MessageDeleted(message_id="m1"), seq=5)
    assert stones.removes("m1", "u1", seq=1, at=0.0)  # before or after: deleted is deleted
    assert stones.removes("m1", "u1", seq=9, at=200.0)
    assert not stones.removes("m2", "u1", seq=1, at=0.0)
    stones.record(UserPurged("u2", "bob"), seq=10)
    assert stones.removes("m3", "u2", seq=9, at=99.0)  # arrived before the ban
    assert stones.removes("m4", "u2", seq=11, at=100.0 + REORDER_WINDOW_S / 2)  # reordered
    assert not stones.removes("m5", "u2", seq=12, at=100.0 + REORDER_WINDOW_S)  # later chat
    assert not stones.removes("m6", None, seq=1, at=0.0)
    stones.record(ChatCleared(), seq=20)
    assert stones.removes("m7", "u9", seq=19, at=0.0)
    assert not stones.removes("m8", "u9", seq=21, at=0.0)


def test_inbox_items_are_typed() -> None:
    item = Incoming(None, IncomingKind.MESSAGE, object(), 3, 1.0)
    assert item.kind is IncomingKind.MESSAGE
    assert IncomingKind("channel.chat.notification") is IncomingKind.NOTIFICATION


async def test_ban_and_delete_overtake_a_command_waiting_on_the_engine(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    engine = ToneEngine()
    async with running_app(double, tmp_path, engine=engine) as (_app, player, speech):
        b1 = await double.chat(bob, "bob one is playing")
        b2 = await double.chat(bob, "bob two is queued")
        await speech.wait(lambda _e: speech.started(b1) and ("queued", None) in speech.of(b2))
        gate = threading.Event()
        engine.voices_gate = gate
        engine.voices_asked.clear()
        try:
            await double.chat(alice, "!voice nosuchvoice")  # asks the engine, which is busy
            assert await asyncio.to_thread(engine.voices_asked.wait, 10)
            carol = double.add_user("carol")
            c1 = await double.chat(carol, "carol waits behind the command")
            await double.clear_user(bob)  # a ban while the command is still waiting
            await double.delete(c1, carol)
            # Less than the voice list's 5 s patience: with one inbox, the ban waited for the
            # command to give up on the engine.
            await speech.wait(
                lambda _e: (
                    ("finished", "removed") in speech.of(b1)
                    and ("finished", "removed") in speech.of(b2)
                ),
                timeout=4.0,
            )
            assert not gate.is_set()  # the command is still waiting on the engine
            assert player.stops >= 1  # the playing line was cut
        finally:
            gate.set()
        player.release.set()
        after = await double.chat(alice, "after the command")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(after))
        assert speech.of(c1) == []  # deleted before it was read: never reached the queue
        assert not speech.started(b2)
