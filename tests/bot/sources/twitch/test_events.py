"""Channel events from Twitch (issue 18.3): subs, resubs, gifts, raids, cheers, redemptions,
follows, read by the real twitchio client from the double and spoken by the real App.

The source subscribes only to what the sink wants (nothing for a sink that wants nothing, as
before), each optional subscription needs its scope and, for follows, a moderator account;
one that cannot work is named once and chat goes on. Malformed notices are skipped without
losing what follows them.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from bot.core.messages import ChannelEvent, ChannelEventKind, Platform
from tests.bot.sources.twitch.harness import (
    EventSink,
    Sink,
    running_app,
    running_source,
    sign_in,
)
from tests.support.twitch_double import (
    ALL_SCOPES,
    CHAT_TYPES,
    FOLLOW,
    MODERATOR_SCOPES,
    NOTIFICATION,
    REDEMPTION,
    TwitchDouble,
    User,
)

K = ChannelEventKind


def subscribed_types(double: TwitchDouble) -> set[str]:
    return {s["type"] for s in double.subscriptions.values() if s["status"] == "enabled"}


async def test_a_sink_that_wants_nothing_subscribes_to_chat_only(
    double: TwitchDouble, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    async with running_source(double, store, Sink()):
        assert subscribed_types(double) == set(CHAT_TYPES)


async def test_notices_become_channel_events(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = EventSink()
    types = (*CHAT_TYPES, NOTIFICATION)
    async with running_source(double, store, sink, types=types):
        await double.sub(alice, tier="2000")
        await double.resub(bob, 14, "fourteen months Kappa already")
        carol = double.add_user("carol", "Carol")
        await double.gift(alice, recipients=[carol])  # one gift
        await double.gift(None, 5, recipients=[double.add_user(f"r{i}") for i in range(5)])
        await double.raid(bob, 321)
        cheer = await double.chat(alice, "Cheer150 take my bits")
        await sink.wait(lambda _e: len(sink.channel_events) == 6 and len(sink.messages) == 1)
    events = sink.channel_events
    assert [e.kind for e in events] == [
        K.SUBSCRIPTION,
        K.RESUBSCRIPTION,
        K.GIFT,
        K.GIFT,
        K.RAID,
        K.CHEER,
    ]
    sub, resub, single, community, raid, cheered = events
    assert (sub.user and sub.user.login, sub.tier) == ("alice", "2")
    assert (resub.months, resub.message) == (14, "fourteen months already")  # emote dropped
    assert (single.count, single.recipient) == (1, "Carol")
    assert (community.count, community.user) == (5, None)  # anonymous, announced once
    assert (raid.user and raid.user.login, raid.viewers) == ("bob", 321)
    assert (cheered.id, cheered.amount, cheered.unit) == (cheer, 150, "bits")
    assert sink.events.index(cheered) < sink.events.index(sink.messages[0])  # event first


async def test_follows_need_a_moderator_sign_in_with_the_scope(
    double: TwitchDouble, alice: User, tmp_path: Path, caplog: Any
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")  # no moderator scopes
    sink = EventSink(frozenset({K.FOLLOW}))
    async with running_source(double, store, sink):
        await double.follow(alice)
        line = await double.chat(alice, "still reading chat")
        await sink.wait(lambda _e: line in [m.id for m in sink.messages])
    assert FOLLOW not in subscribed_types(double)
    assert sink.channel_events == []
    assert caplog.text.count("moderator:read:followers") == 1  # said once

    double.moderators.add(double.bot.id)
    store, _ = sign_in(double, tmp_path / "m.json", scopes=(*ALL_SCOPES, *MODERATOR_SCOPES))
    sink = EventSink(frozenset({K.FOLLOW}))
    async with running_source(double, store, sink, types=(*CHAT_TYPES, FOLLOW)):
        await double.follow(alice)
        await sink.wait(lambda _e: len(sink.channel_events) == 1)
    assert sink.channel_events[0].kind is K.FOLLOW


async def test_follow_refused_for_a_non_moderator_leaves_chat_working(
    double: TwitchDouble, alice: User, tmp_path: Path, caplog: Any
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json", scopes=(*ALL_SCOPES, *MODERATOR_SCOPES))
    sink = EventSink(frozenset({K.FOLLOW}))
    async with running_source(double, store, sink):
        line = await double.chat(alice, "chat goes on")
        await sink.wait(lambda _e: line in [m.id for m in sink.messages])
    assert "Twitch refused follow announcements" in caplog.text


async def test_redemptions_are_read_with_the_broadcasters_sign_in(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    reward = double.add_reward("Hydrate", input_required=False)
    store, _ = sign_in(double, tmp_path / "t.json", user=double.broadcaster)
    sink = EventSink(frozenset({K.REDEMPTION}))
    async with running_source(double, store, sink, types=(*CHAT_TYPES, REDEMPTION)):
        first = await double.redeem(alice, reward, "drink   water")
        await sink.wait(lambda _e: len(sink.channel_events) == 1)
    event = sink.channel_events[0]
    assert (event.id, event.reward, event.amount, event.message) == (
        first,
        "Hydrate",
        500,
        "drink water",
    )


async def test_a_redelivered_or_malformed_notice_is_skipped_once(
    double: TwitchDouble, alice: User, tmp_path: Path, caplog: Any
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = EventSink()
    async with running_source(double, store, sink, types=(*CHAT_TYPES, NOTIFICATION)):
        again = double.notification_event(
            alice, "sub", {"sub_tier": "1000", "is_prime": True, "duration_months": 1}
        )
        await double.notice(again)
        await double.notice(again)  # Twitch may deliver twice
        broken = double.notification_event(alice, "raid", {"user_id": alice.id})  # no count
        await double.notice(broken)
        missing = double.notification_event(alice, "sub", {})
        missing["sub"] = None  # a sub notice without its details
        await double.notice(missing)
        sub = next(s for s in double.subscriptions.values() if s["type"] == NOTIFICATION)
        await double.send_raw(
            json.dumps(
                {
                    "metadata": {
                        "message_id": str(uuid.uuid4()),
                        "message_type": "notification",
                        "message_timestamp": "2026-01-01T00:00:00Z",
                        "subscription_type": NOTIFICATION,
                        "subscription_version": "1",
                    },
                    "payload": {"subscription": sub, "event": {"notice_type": "sub"}},
                }
            )
        )
        await double.raid(alice, 7)
        await sink.wait(lambda _e: len(sink.channel_events) == 2)
        line = await double.chat(alice, "and chat")
        await sink.wait(lambda _e: line in [m.id for m in sink.messages])
    assert [e.kind for e in sink.channel_events] == [K.SUBSCRIPTION, K.RAID]
    assert sink.channel_events[0].tier == "prime"
    ours = [r for r in caplog.records if r.name.startswith("bot.") and r.levelno >= logging.INFO]
    skipped = [r for r in ours if "could not be read" in r.getMessage()]
    assert len(skipped) == 1  # the notice twitchio passed on without its details: once
    assert not any(r.exc_info for r in ours)  # no traceback in the bot's log


async def test_app_speaks_events_through_templates_in_their_voices(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    config = {
        "announcements": {
            "enabled": True,
            "voice": "narrator",
            "raid": {"min_viewers": 10, "templates": ["{name} raids with {viewers}"]},
            "resub": {"voice": "default", "templates": ["{name}: {months} months. {message}"]},
            "cheer": {"min_bits": 100, "templates": ["{name} cheered {amount}"]},
        }
    }
    types = (*CHAT_TYPES, NOTIFICATION)
    async with running_app(double, tmp_path, config=config, types=types) as (_app, player, speech):
        player.release.set()
        small = await double.raid(bob, 9)  # below the minimum
        big = await double.raid(bob, 12)
        resub = await double.resub(alice, 3, "hello chat")
        tiny = await double.chat(alice, "Cheer50 small")
        cheer = await double.chat(bob, "Cheer100 big")
        # The cheer's announcement and its line share the message's id: both are played.
        await speech.wait(lambda _e: speech.of(cheer).count(("finished", "played")) == 2)
        await speech.until(big, "finished", "played")
        await speech.until(resub, "finished", "played")
        await speech.until(tiny, "finished", "played")  # free chat: after the paid and events
        assert speech.of(small) == []
        assert speech.texts[big] == ["Bob raids with 12"]
        assert speech.voices[big] == "narrator"
        assert speech.texts[resub] == ["Alice: 3 months. hello chat"]
        assert speech.voices[resub] == "default"
        assert speech.texts[tiny] == ["small"]  # the chat line, no announcement
        assert speech.texts[cheer] == ["Bob cheered 100", "big"]
        player.release.clear()
        held = await double.chat(alice, "Cheer500 hold this")
        await speech.wait(lambda _e: speech.started(held))
        await double.delete(held, alice)  # removes the cheer's announcement and its line
        await speech.wait(lambda _e: speech.of(held).count(("finished", "removed")) == 2)
        player.release.set()


async def test_app_without_announcements_speaks_no_event(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    async with running_app(double, tmp_path) as (_app, player, speech):
        player.release.set()
        assert NOTIFICATION not in subscribed_types(double)
        cheer = await double.chat(alice, "Cheer500 only the line")
        await speech.until(cheer, "finished", "played")
        assert speech.texts[cheer] == ["only the line"]


def test_event_types_stay_platform_neutral() -> None:
    """A YouTube Super Chat fits the same type as a Twitch cheer."""
    event = ChannelEvent("x", K.CHEER, None, "youtube", platform=Platform.YOUTUBE, amount=4.99)
    assert (event.kind.value, event.amount, event.user) == ("cheer", 4.99, None)
