"""AutoMod holds (issue 18.7) and shared chat (issue 18.8), with the real twitchio client
against the double.

AutoMod: Twitch shows a held message in chat only once a moderator approves it. By default
the bot therefore speaks approved messages and never sees denied ones; watching the holds
(``twitch.automod.watch``) keeps a held line parked even if it arrives early, and
``approved: drop`` drops approved ones too.

Shared chat: messages from the other channels of a session are read or not
(``twitch.shared_chat``), a message is spoken once however many copies arrive, and a
deletion by the id it has in its own channel removes the copy here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, parse_config
from bot.core.messages import ChannelEventKind, MessageDeleted, UserPurged
from bot.setup.doctor import check_twitch
from bot.sources.twitch.auth import TokenStore, token_path
from bot.state.settings import state_dir
from tests.bot.sources.twitch.harness import EventSink, Sink, running_app, running_source, sign_in
from tests.support.twitch_double import (
    ALL_SCOPES,
    AUTOMOD_HOLD,
    AUTOMOD_UPDATE,
    CHAT_TYPES,
    MODERATOR_SCOPES,
    NOTIFICATION,
    TwitchDouble,
    User,
)

WATCHED = (*CHAT_TYPES, AUTOMOD_HOLD, AUTOMOD_UPDATE)
MOD_SCOPES = (*ALL_SCOPES, *MODERATOR_SCOPES)


def moderator_sign_in(double: TwitchDouble, tmp_path: Path) -> TokenStore:
    double.moderators.add(double.bot.id)
    store, _ = sign_in(double, tmp_path / "t.json", scopes=MOD_SCOPES)
    return store


def ids(sink: Sink) -> list[str]:
    return [m.id for m in sink.messages]


def arrived(sink: Sink, message_id: str) -> Callable[[list[Any]], bool]:
    """A wait condition: ``message_id`` reached ``sink``."""
    return lambda _e: message_id in ids(sink)


# -- AutoMod -------------------------------------------------------------------------------


async def test_by_default_approved_is_spoken_and_denied_never(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        approved = await double.automod_hold(alice, "held then approved")
        denied = await double.automod_hold(alice, "held then denied")
        await double.automod_resolve(denied, "Denied")
        await double.automod_resolve(approved, "Approved")
        after = await double.chat(alice, "after")
        await sink.wait(lambda _e: after in ids(sink))
    assert ids(sink) == [approved, after]


async def test_a_watched_hold_is_never_spoken_while_held(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store = moderator_sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, types=WATCHED, automod={"watch": True}):
        held = await double.automod_hold(alice, "wait for it")
        # Even if the line reached chat before the decision, it waits for the moderator.
        await double.chat(alice, "wait for it", message_id=held)
        marker = await double.chat(alice, "meanwhile")
        await sink.wait(lambda _e: marker in ids(sink))
        assert held not in ids(sink)
        denied = await double.automod_hold(alice, "never")
        await double.chat(alice, "never", message_id=denied)
        await double.automod_resolve(denied, "Denied")
        await double.automod_resolve(held, "Approved")  # Twitch shows it again: once only
        end = await double.chat(alice, "the end")
        await sink.wait(lambda _e: end in ids(sink))
    assert ids(sink) == [marker, held, end]


async def test_approved_messages_can_be_dropped(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store = moderator_sign_in(double, tmp_path)
    sink = Sink()
    automod = {"watch": True, "approved": "drop"}
    async with running_source(double, store, sink, types=WATCHED, automod=automod):
        held = await double.automod_hold(alice, "approved but dropped")
        await double.automod_resolve(held, "Approved")
        end = await double.chat(alice, "the end")
        await sink.wait(lambda _e: end in ids(sink))
    assert ids(sink) == [end]


async def test_watching_without_the_scope_says_so_and_reads_chat(
    double: TwitchDouble, alice: User, tmp_path: Path, caplog: Any
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink, automod={"watch": True}):
        line = await double.chat(alice, "chat still works")
        await sink.wait(lambda _e: line in ids(sink))
    assert caplog.text.count("AutoMod holds are not watched") == 1


def test_automod_config_is_checked_and_the_doctor_wants_its_scope(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"twitch\.automod: .*watch: true"):
        parse_config({"twitch": {"automod": {"approved": "drop"}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"twitch\.automod\.approved"):
        parse_config({"twitch": {"automod": {"approved": "later"}}}, tmp_path)
    cfg = parse_config(
        {
            "storage": {"dir": str(tmp_path / "s")},
            "twitch": {"channel": "streamer", "client_id": "c", "automod": {"watch": True}},
            "announcements": {"enabled": True, "follow": {"enabled": True}},
        },
        tmp_path,
    )
    from bot.sources.twitch.auth import StoredToken

    TokenStore(token_path(state_dir(cfg.storage))).write(
        StoredToken("c", "1", "streamer", "a", "r", ALL_SCOPES)
    )
    result = check_twitch(cfg, validate_url=None)
    assert result.status == "warn"
    assert "moderator:manage:automod" in result.summary
    assert "moderator:read:followers" in result.summary


# -- shared chat ---------------------------------------------------------------------------


async def test_other_channels_are_read_only_when_asked(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    partner = double.add_user("partner")
    store, _ = sign_in(double, tmp_path / "t.json")
    for setting, expected in (("own", 1), ("all", 2)):
        sink = Sink()
        async with running_source(double, store, sink, shared_chat=setting):
            await double.chat(alice, "from the partner's chat", source_broadcaster=partner)
            mine = await double.chat(alice, "from here", source_broadcaster=double.broadcaster)
            await sink.wait(arrived(sink, mine))
            assert len(sink.messages) == expected, setting
        store, _ = sign_in(double, tmp_path / f"{setting}.json")


async def test_a_mirrored_message_is_spoken_once_and_moderation_is_honoured(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    partner = double.add_user("partner")
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink, shared_chat="all"):
        origin = "origin-1"
        first = await double.chat(
            alice, "hello both", source_broadcaster=partner, source_message_id=origin
        )
        await double.chat(alice, "hello both", source_broadcaster=partner, source_message_id=origin)
        other = await double.chat(
            bob, "second", source_broadcaster=partner, source_message_id="origin-2"
        )
        await sink.wait(lambda _e: other in ids(sink))
        await double.delete(origin, alice)  # deleted in the channel it was sent in
        await double.clear_user(bob)  # a ban in the session reaches bob everywhere
        await sink.wait(lambda _e: any(isinstance(e, UserPurged) for e in sink.events))
    assert ids(sink) == [first, other]
    deleted = [e.message_id for e in sink.events if isinstance(e, MessageDeleted)]
    assert first in deleted  # the copy shown here went too


async def test_shared_chat_notices_follow_the_setting(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    detail = {"sub_tier": "1000", "is_prime": False, "duration_months": 1}
    for setting, expected in (("own", 0), ("all", 1)):
        sink = EventSink(frozenset({ChannelEventKind.SUBSCRIPTION}))
        types = (*CHAT_TYPES, NOTIFICATION)
        async with running_source(double, store, sink, types=types, shared_chat=setting):
            await double.notice(double.notification_event(alice, "shared_chat_sub", detail))
            line = await double.chat(alice, "marker")
            await sink.wait(arrived(sink, line))
            assert len(sink.channel_events) == expected, setting
        store, _ = sign_in(double, tmp_path / f"{setting}.json")


async def test_the_app_never_speaks_a_held_or_denied_message(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    double.moderators.add(double.bot.id)
    async with running_app(
        double, tmp_path, scopes=MOD_SCOPES, types=WATCHED, automod={"watch": True}
    ) as (_app, player, speech):
        player.release.set()
        held = await double.automod_hold(alice, "held line")
        await double.chat(alice, "held line", message_id=held)  # early: parked
        denied = await double.automod_hold(alice, "denied line")
        await double.automod_resolve(denied, "Denied")
        free = await double.chat(alice, "free line")
        await speech.until(free, "finished", "played")
        assert speech.of(held) == []
        await double.automod_resolve(held, "Approved")
        await speech.until(held, "finished", "played")
        assert speech.texts[held] == ["held line"]  # once, though Twitch showed it twice
        assert speech.of(denied) == []
