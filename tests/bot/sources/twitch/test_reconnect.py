"""No event lost or doubled while Twitch moves the connection (``session_reconnect``).

Twitch sends ``session_reconnect`` on the old websocket and goes on delivering there until
the new socket is welcomed, sometimes a little after, and may send an event on both. Each
try below moves the connection of the real twitchio client (through the source) while chat
lines and deletions are sent at random moments around the move: before the welcome, during a
random linger of the old socket after it, routed to the old socket, to both (duplicates with
the same notification id) or to either at random, and with the double sometimes closing the
old socket itself. Every line must reach the bot exactly once, every deletion exactly once,
and twitchio must never fall back to a full reconnect (no second sign-in, no resubscription).
A deleted line may reach the bot or not (the deletion may overtake it), never twice.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bot.core.messages import MessageDeleted
from tests.bot.sources.twitch.harness import Sink, running_source, sign_in
from tests.support.twitch_double import TwitchDouble, User

TRIES = 12
LINES = 8


@pytest.mark.parametrize(("routing", "seed"), [("old", 11), ("both", 12), ("random", 13)])
async def test_events_sent_around_a_move_arrive_exactly_once(
    double: TwitchDouble, alice: User, tmp_path: Path, routing: str, seed: int
) -> None:
    rng = random.Random(seed)
    double.rng.seed(seed)
    double.reconnect_routing = routing
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    expected: list[str] = []
    deleted: list[str] = []
    in_window = 0
    duplicated = 0
    async with running_source(double, store, sink):
        for attempt in range(TRIES):
            old = double.current()
            double.reconnect_welcome_delay_s = rng.uniform(0.02, 0.25)
            double.reconnect_linger_s = rng.uniform(0.05, 0.3)
            double.reconnect_close_old_code = rng.choice([None, 1000])
            before_move = len(old.notified)
            mover = asyncio.ensure_future(double.session_reconnect(old))
            ids: list[str] = []
            for i in range(LINES):
                await asyncio.sleep(rng.uniform(0.0, 0.06))  # random moments, not a wait
                ids.append(await double.chat(alice, f"try {attempt} line {i}"))
                if i == LINES // 2:
                    victim = rng.choice(ids)
                    await double.delete(victim, alice)
                    deleted.append(victim)
            await mover
            expected += ids
            await double.wait_closed(old)
            new = double.current()
            in_window += len(old.notified) - before_move
            duplicated += len(set(old.notified[before_move:]) & set(new.notified))
            # A deleted line may rightly never reach the bot.
            waiting: set[str] = set(ids) - set(deleted)

            def arrived(_e: object, waiting: set[str] = waiting) -> bool:
                return waiting <= {m.id for m in sink.messages}

            await sink.wait(arrived)
        # Everything is in; let a late duplicate show itself before counting.
        last = await double.chat(alice, "the end")
        await sink.wait(lambda _e: last in [m.id for m in sink.messages])
    delivered = [m.id for m in sink.messages]
    assert len(delivered) == len(set(delivered))  # nothing twice
    kept = [*(i for i in expected if i not in deleted), last]
    assert set(kept) <= set(delivered) <= {*expected, last}  # nothing lost
    deletions = [e.message_id for e in sink.events if isinstance(e, MessageDeleted)]
    assert sorted(deletions) == sorted(deleted)  # each deletion once
    assert in_window > 0  # the old socket really carried events during the moves
    if routing == "both":
        assert duplicated > 0  # and Twitch really sent some of them twice
    # twitchio moved every time; it never started over (sign-in and subscriptions once).
    assert len(double.moves) == TRIES
    assert double.request_count("GET", "/oauth2/validate") == 1
    assert double.request_count("POST", "/helix/eventsub/subscriptions") == 4


async def test_a_failed_move_falls_back_to_a_fresh_connection(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    """A reconnect URL that does not answer: twitchio's own fallback (resubscribe) still runs."""
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        old = double.current()
        await double.session_reconnect(old, url="ws://127.0.0.1:9/ws")  # nobody listens
        during = await double.chat(alice, "while the move fails")
        await double.wait_subscribed(exclude=[old], timeout=20)
        after = await double.chat(alice, "after the fallback")
        await sink.wait(lambda _e: after in [m.id for m in sink.messages])
        assert [m.id for m in sink.messages] == [during, after]
