"""Twitch chat through the real twitchio 3 client, against the in-process Twitch double.

Nothing of twitchio is replaced: it signs in, opens its EventSub websocket, subscribes and
reconnects over real HTTP/websockets on 127.0.0.1; only its base URLs point at the double
(tests/support/twitch_double.py). The speech tests run the real App, Speaker and engine thread
with a deterministic tone engine and a player the test can hold mid-message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.core.messages import ChatCleared, ChatMessage, MessageDeleted, Role, UserPurged
from bot.setup.login import device_login
from bot.sources.twitch.auth import SCOPES, AuthError, StoredToken, TokenStore, token_path
from bot.sources.twitch.settings import TwitchConfig
from bot.sources.twitch.source import (
    MAX_TEXT,
    ConnectionReason,
    ConnectionState,
    TwitchSetupError,
    TwitchSource,
    roles_from_badges,
    twitch_source_from_config,
)
from bot.state.settings import StorageConfig, state_dir
from tests.bot.sources.twitch.harness import (
    Changes,
    Sink,
    eventually,
    running_app,
    running_source,
    sign_in,
    twitch_cfg,
    until_subscribed,
)
from tests.support import REPO
from tests.support.twitch_double import CHAT_TYPES, TwitchDouble, User, running_double

__all__ = ["eventually", "running_app", "sign_in"]  # used by tests/test_reliability.py

# -- pure parts ----------------------------------------------------------------------------


def test_roles_come_from_badges() -> None:
    assert roles_from_badges(["subscriber", "vip"]) == {Role.SUBSCRIBER, Role.VIP}
    assert roles_from_badges(["founder", "premium"]) == {Role.SUBSCRIBER}
    assert roles_from_badges(["lead_moderator"]) == {Role.MODERATOR}
    assert roles_from_badges([], is_broadcaster=True) == {Role.BROADCASTER}
    assert roles_from_badges(["bits", "turbo"]) == frozenset()


# -- token file ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state" / "twitch-tokens.json")
    assert store.read() is None
    token = StoredToken("cid", "42", "bot", "access-1", "refresh-1", ("user:read:chat",))
    old_umask = os.umask(0o000)  # the file must be private whatever the umask
    try:
        store.write(token)
    finally:
        os.umask(old_umask)
    assert _mode(store.path) == 0o600
    assert _mode(store.path.parent) == 0o700
    saved = store.read()
    assert saved is not None
    assert saved.saved_at
    assert dataclasses.replace(saved, saved_at="") == token
    store.write(token.with_pair("access-2", "refresh-2"))
    assert _mode(store.path) == 0o600
    assert store.read().access_token == "access-2"  # type: ignore[union-attr]
    assert [p.name for p in store.path.parent.iterdir()] == ["twitch-tokens.json"]
    assert "access-2" not in repr(store.read())  # tokens never reach logs through repr


def test_token_file_readable_by_others_is_tightened(tmp_path: Path, caplog: Any) -> None:
    store = TokenStore(tmp_path / "t.json")
    store.write(StoredToken("cid", "42", "bot", "a", "r"))
    os.chmod(store.path, 0o644)
    assert store.read() is not None
    assert _mode(store.path) == 0o600
    assert "readable by others" in caplog.text


def test_damaged_token_file_says_how_to_recover(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    store.path.write_text("{not json")
    with pytest.raises(AuthError, match="ishowtts login"):
        store.read()
    store.path.write_text(json.dumps({"version": 1, "client_id": "x"}))
    with pytest.raises(AuthError, match="missing"):
        store.read()


def test_tokens_live_in_the_state_folder_outside_the_repo(tmp_path: Path) -> None:
    default = state_dir(StorageConfig())
    repo = REPO
    assert repo not in default.parents
    cfg = parse_config({"storage": {"dir": str(tmp_path)}}, tmp_path)
    assert token_path(state_dir(cfg.storage)) == tmp_path / "twitch-tokens.json"


async def test_device_code_login_saves_a_private_token(
    double: TwitchDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # twitchio would write .tio.tokens.json here
    store = TokenStore(tmp_path / "state" / "twitch-tokens.json")
    shown: list[str] = []
    login = asyncio.create_task(device_login(double.client_id, store, show=shown.append))
    await eventually(lambda: bool(double.device_codes))
    (entry,) = double.device_codes.values()
    assert any(entry["user_code"] in line for line in shown)
    assert any("activate" in line for line in shown)
    assert set(entry["scopes"].split()) >= set(SCOPES) or "user%3Aread%3Achat" in entry["scopes"]
    assert not login.done()  # waiting for the streamer to approve
    double.approve_device(entry["user_code"], double.broadcaster)
    token = await asyncio.wait_for(login, 15)
    assert token.user_id == double.broadcaster.id
    assert token.login == "streamer"
    assert _mode(store.path) == 0o600
    saved = store.read()
    assert saved is not None
    assert saved.access_token in double.tokens
    assert not (tmp_path / ".tio.tokens.json").exists()


async def test_device_code_login_with_a_wrong_client_id_is_a_clear_error(
    double: TwitchDouble, tmp_path: Path
) -> None:
    store = TokenStore(tmp_path / "t.json")
    with pytest.raises(AuthError, match="client id"):
        await device_login("not-the-client", store, show=lambda _line: None)
    assert not store.path.exists()


# -- chat through the real twitchio client ---------------------------------------------------


async def test_chat_message_is_normalized(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink) as source:
        assert source.state is ConnectionState.CONNECTED
        mid = await double.chat(alice, "hello Kappa @bob there", badges=["subscriber", "vip"])
        msg = await sink.wait_text("hello @bob there")
        assert msg.id == mid
        assert (msg.user.id, msg.user.login, msg.user.display_name) == (alice.id, "alice", "Alice")
        assert msg.user.roles == {Role.SUBSCRIBER, Role.VIP}
        assert (msg.source, msg.bits, msg.reward, msg.paid, msg.is_reply) == (
            "twitch",
            0,
            None,
            False,
            False,
        )
        await double.chat(double.broadcaster, "welcome in")
        streamer = await sink.wait_text("welcome in")
        assert streamer.user.role is Role.BROADCASTER
        mod = double.add_user("mia")
        await double.chat(mod, "keep it civil", badges=["moderator"])
        assert (await sink.wait_text("keep it civil")).user.role is Role.MODERATOR


async def test_emote_only_message_produces_nothing(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        await double.chat(alice, "Kappa PogChamp  LUL")
        await double.chat(alice, "Cheer100")  # a cheer with no words has nothing to say
        await double.chat(alice, "kappa is a word, Kappa is an emote")
        await sink.wait_text("kappa is a word, is an emote")
        assert sink.texts() == ["kappa is a word, is an emote"]


async def test_moderation_events_are_normalized(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        mid = await double.chat(alice, "something rude")
        await sink.wait_text("something rude")
        await double.delete(mid, alice)
        await double.clear_user(alice)
        await double.clear_chat()
        await sink.wait(lambda events: len(events) == 4)
        assert sink.events[1:] == [
            MessageDeleted(message_id=mid),
            UserPurged(user_id=alice.id, login="alice"),
            ChatCleared(),
        ]


class BusySink(Sink):
    """A bot still busy with each message (a ``!voice`` waiting for the engine) until let go."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = asyncio.Event()
        self.go = asyncio.Event()

    async def on_message(self, message: ChatMessage) -> None:
        self.busy.set()
        await self.go.wait()
        await super().on_message(message)


async def test_moderation_overtakes_a_message_still_being_handled(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    """Control beats data at the source, and a delete is never overtaken by its message."""
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = BusySink()
    async with running_source(double, store, sink):
        first = await double.chat(alice, "first")
        await sink.busy.wait()  # the bot is handling "first"
        second = await double.chat(alice, "second")  # waits behind it
        await double.delete(first, alice)
        await double.clear_user(alice)
        purged = UserPurged(user_id=alice.id, login="alice")
        # Both reach the bot while it is still busy with "first": nothing waits behind chat.
        await sink.wait(lambda e: e == [MessageDeleted(message_id=first), purged])
        sink.go.set()
        third = await double.chat(bob, "third")
        await sink.wait(lambda _e: third in [m.id for m in sink.messages])
        assert [getattr(e, "id", e) for e in sink.events] == [
            MessageDeleted(message_id=first),
            purged,
            first,  # handed over before the deletion came ...
            MessageDeleted(message_id=first),  # ... so removed again once the bot is done
            third,
        ]
        assert second not in [m.id for m in sink.messages]  # its author was purged first


async def test_cheers_at_or_above_min_bits_are_paid(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink, min_bits=100):
        await double.chat(alice, "Cheer50 small one")
        await double.chat(alice, "Cheer100 great stream Cheer100")
        big = await sink.wait_text("great stream")
        small = await sink.wait_text("small one")
        assert (big.bits, big.paid) == (200, True)
        assert (small.bits, small.paid) == (0, False)


async def test_paid_only_reads_cheers_and_rewards_and_still_takes_commands(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    """``twitch.messages: paid``: free chat is not read out, commands still reach the bot."""
    ask = double.add_reward("Ask the bot")
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink, min_bits=100, rewards=(ask,), messages="paid"):
        await double.chat(alice, "free chat is not read")
        await double.chat(alice, "Cheer50 too small to count")
        await double.chat(alice, "!voice narrator")
        await double.chat(alice, "Cheer100 a paid line")
        await double.chat(alice, "a question for the bot", reward_id=ask)
        await sink.wait_text("a question for the bot")  # the last one: all before were seen
        texts = [m.text for m in sink.messages]
        assert "!voice narrator" in texts
        assert any("a paid line" in t for t in texts)
        assert not any("free chat" in t or "too small" in t for t in texts), texts


def test_twitch_messages_takes_all_or_paid_only() -> None:
    assert TwitchConfig().messages == "all"
    with pytest.raises(ValueError, match="messages"):
        TwitchConfig(messages="some")  # type: ignore[arg-type]


async def test_rewards_by_title_need_the_broadcaster_sign_in(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    """Signed in as the streamer: rewards listed by title are matched through Helix."""
    ask = double.add_reward("Ask the bot")
    other = double.add_reward("Hydrate")
    store, _ = sign_in(double, tmp_path / "t.json", user=double.broadcaster)
    sink = Sink()
    async with running_source(double, store, sink, rewards=("ask the BOT", "Later reward")):
        late = double.add_reward("Later reward")  # created after start-up
        await double.chat(alice, "what is your name", reward_id=ask)
        await double.chat(alice, "drink water", reward_id=other)
        await double.chat(alice, "late one", reward_id=late)
        paid = await sink.wait_text("what is your name")
        free = await sink.wait_text("drink water")
        assert (paid.reward, paid.paid) == ("Ask the bot", True)
        assert (free.reward, free.paid) == (None, False)
        assert (await sink.wait_text("late one")).reward == "Later reward"


async def test_rewards_by_id_work_for_a_separate_bot_account(
    double: TwitchDouble, alice: User, tmp_path: Path, caplog: Any
) -> None:
    ask = double.add_reward("Ask the bot")
    store, _ = sign_in(double, tmp_path / "t.json")  # the bot, not the broadcaster
    sink = Sink()
    async with running_source(double, store, sink, rewards=(ask, "Some title")):
        await double.chat(alice, "hello from a reward", reward_id=ask)
        msg = await sink.wait_text("hello from a reward")
        assert msg.paid
        assert msg.reward == ask
    assert double.request_count("GET", "/helix/channel_points/custom_rewards") == 0
    assert "titles cannot be looked up" in caplog.text


async def test_replies_go_to_the_parent_and_the_echo_is_not_spoken(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        await double.chat(alice, "hi bot")
        msg = await sink.wait_text("hi bot")
        await msg.reply("hello   Alice")
        await eventually(lambda: bool(double.sent))
        assert double.sent[0]["message"] == "hello Alice"
        assert double.sent[0]["reply_parent_message_id"] == msg.id
        assert double.sent[0]["sender_id"] == double.bot.id
        sent_id = double.sent[0]["message_id"]
        await double.chat(alice, "thanks", reply_to=sent_id)
        answer = await sink.wait_text("@ishowbot thanks")
        assert answer.is_reply
        assert sink.texts() == ["hi bot", "@ishowbot thanks"]  # the bot's line never came in


async def test_streamer_account_as_bot_keeps_the_streamers_own_messages(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    """Same account: only what the bot sent is dropped, even when its echo beats the answer."""
    double.echo_before_response = True
    store, _ = sign_in(double, tmp_path / "t.json", user=double.broadcaster)
    sink = Sink()
    async with running_source(double, store, sink) as source:
        await double.chat(alice, "hey streamer")
        msg = await sink.wait_text("hey streamer")
        assert await source.send("thanks", reply_to=msg.id)
        assert await source.send("queue is open")
        await double.chat(double.broadcaster, "thanks")  # typed by the streamer
        await sink.wait_text("thanks")
        assert sink.texts() == ["hey streamer", "thanks"]
        assert sink.messages[1].user.role is Role.BROADCASTER


async def test_redelivered_message_is_delivered_once(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        mid = await double.chat(alice, "only once")
        await double.chat(alice, "only once", message_id=mid)
        await double.chat(alice, "next")
        await sink.wait_text("next")
        assert sink.texts() == ["only once", "next"]


# -- staying connected ----------------------------------------------------------------------


async def test_session_reconnect_moves_without_loss_or_duplicates(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    changes = Changes()
    async with running_source(double, store, sink, changes=changes) as source:
        first = double.current()
        mid = await double.chat(alice, "before the move")
        await sink.wait_text("before the move")
        await double.session_reconnect()
        await eventually(lambda: not first.open and len(double.live_sessions()) == 1)
        moved = double.current()
        assert moved is not first
        assert {double.subscriptions[s]["type"] for s in moved.subscriptions} == set(CHAT_TYPES)
        await double.chat(alice, "before the move", message_id=mid)  # Twitch resends it
        await double.chat(alice, "after the move")
        await sink.wait_text("after the move")
        assert sink.texts() == ["before the move", "after the move"]
        assert source.state is ConnectionState.CONNECTED
        # twitchio handled the move itself: no second sign-in, no resubscription.
        assert double.request_count("GET", "/oauth2/validate") == 1
        assert double.request_count("POST", "/helix/eventsub/subscriptions") == 4
    assert ConnectionReason.MOVED in [c.reason for c in changes.events]


async def test_abrupt_drop_reconnects_and_resubscribes(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    changes = Changes()
    async with running_source(double, store, sink, changes=changes):
        first = double.current()
        mid = await double.chat(alice, "before the drop")
        await sink.wait_text("before the drop")
        await double.drop()
        await double.wait_subscribed(exclude=[first])
        await double.chat(alice, "before the drop", message_id=mid)
        await double.chat(alice, "after the drop")
        await sink.wait_text("after the drop")
        assert sink.texts() == ["before the drop", "after the drop"]
    reasons = [c.reason for c in changes.events]
    assert reasons.index(ConnectionReason.LOST) < reasons.index(ConnectionReason.RECONNECTED)


@pytest.mark.parametrize("code", [4001, 4003])
async def test_close_codes_twitchio_gives_up_on_make_the_source_rebuild(
    double: TwitchDouble, alice: User, tmp_path: Path, code: int
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    states: list[ConnectionState] = []
    changes = Changes()
    source = TwitchSource(
        twitch_cfg(double),
        store,
        health_interval_s=60.0,
        on_state=lambda s, _d: states.append(s),
        on_change=changes,
    )
    task = asyncio.create_task(source.run(sink))
    try:
        first = await until_subscribed(double, task)
        mid = await double.chat(alice, "before the close")
        await sink.wait_text("before the close")
        await double.close_session(code)
        # The health timer is far away: the websocket_closed event alone triggers the rebuild.
        await until_subscribed(double, task, exclude=(first,))
        await double.chat(alice, "before the close", message_id=mid)
        await double.chat(alice, "after the close")
        await sink.wait_text("after the close")
        assert sink.texts() == ["before the close", "after the close"]
        assert double.request_count("GET", "/oauth2/validate") == 2  # a fresh client signed in
        await changes.wait(lambda _e: states[-1] is ConnectionState.CONNECTED)
        assert states == [
            ConnectionState.CONNECTING,
            ConnectionState.CONNECTED,
            ConnectionState.RECONNECTING,
            ConnectionState.CONNECTED,
        ]
        lost = next(c for c in changes.events if c.state is ConnectionState.RECONNECTING)
        assert lost.reason is ConnectionReason.CLOSED
        assert lost.retry_in_s == pytest.approx(0.05)
    finally:
        await source.close()
        await asyncio.wait_for(task, 10)
    assert states[-1] is ConnectionState.STOPPED


async def test_unreachable_twitch_is_retried_with_backoff(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    from twitchio.eventsub import websockets

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{s.getsockname()[1]}/ws"
    websockets.WSS = dead
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    changes = Changes()
    source = TwitchSource(twitch_cfg(double), store, health_interval_s=0.2, on_change=changes)
    task = asyncio.create_task(source.run(sink))

    def failures(events: list[Any]) -> list[float]:
        return [c.retry_in_s for c in events if c.reason is ConnectionReason.UNREACHABLE]

    try:
        await changes.wait(lambda e: len(failures(e)) >= 2)
        waits = failures(changes.events)
        assert waits[1] == 2 * waits[0]
        assert source.state is ConnectionState.RECONNECTING
        websockets.WSS = double.wss  # Twitch is back
        await until_subscribed(double, task)
        await double.chat(alice, "we are back")
        await sink.wait_text("we are back")
    finally:
        websockets.WSS = double.wss
        await source.close()
        await asyncio.wait_for(task, 10)


async def test_malformed_payloads_are_skipped_without_a_reconnect(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        session = double.current()
        (sub_id,) = [
            s
            for s in session.subscriptions
            if double.subscriptions[s]["type"] == "channel.chat.message"
        ]
        sub = double.subscriptions[sub_id]
        meta = {
            "message_id": "m1",
            "message_type": "notification",
            "message_timestamp": "2024-01-01T00:00:00.000000Z",
            "subscription_type": "channel.chat.message",
            "subscription_version": "1",
        }
        broken_event = {"broadcaster_user_id": double.broadcaster.id, "message_id": "x"}
        await double.send_raw("this is not json")
        await double.send_raw(b"\x00\x01binary")
        await double.send_raw(json.dumps({"metadata": meta, "payload": {"subscription": sub}}))
        await double.send_raw(
            json.dumps({"metadata": meta, "payload": {"subscription": sub, "event": broken_event}})
        )
        unknown = {**meta, "subscription_type": "channel.unheard_of"}
        await double.send_raw(json.dumps({"metadata": unknown, "payload": {"event": {}}}))
        await double.send_raw(json.dumps({"metadata": {**meta, "message_type": "surprise"}}))
        await double.chat(alice, "word " * 40_000)  # ~200 kB of text in one message
        await double.chat(alice, "still here")
        await sink.wait_text("still here")
        huge = sink.messages[0]
        assert len(huge.text) <= MAX_TEXT
        assert huge.text.startswith("word word")
        assert double.current() is session  # nothing made twitchio reconnect
        assert double.request_count("GET", "/oauth2/validate") == 1


async def test_frames_that_break_the_connection_are_survived(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    changes = Changes()
    async with running_source(double, store, sink, changes=changes):
        # Over aiohttp's 4 MiB limit: the client closes (1009) and twitchio reconnects.
        first = double.current()
        await double.send_raw("x" * (5 * 1024 * 1024))
        second = await double.wait_subscribed(exclude=[first])
        await double.chat(alice, "after the oversized frame")
        await sink.wait_text("after the oversized frame")
        # JSON without metadata kills twitchio's reader task; the health check rebuilds.
        await double.send_raw("{}")
        await double.wait_subscribed(exclude=[first, second])
        await double.chat(alice, "after the broken frame")
        await sink.wait_text("after the broken frame")
        assert sink.texts() == ["after the oversized frame", "after the broken frame"]
    assert ConnectionReason.STALLED in [c.reason for c in changes.events]


@pytest.mark.slow
async def test_keepalive_silence_reconnects(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    """twitchio notices ~15-20 s of silence (its timeout cannot go below 10 s + 5 s)."""
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        first = double.current()
        double.silence()
        await double.wait_subscribed(exclude=[first], timeout=45)
        await double.chat(alice, "after the silence")
        await sink.wait_text("after the silence")


# -- sign-in problems and token refresh ----------------------------------------------------


async def test_not_signed_in_is_a_clear_error(double: TwitchDouble, tmp_path: Path) -> None:
    source = TwitchSource(twitch_cfg(double), TokenStore(tmp_path / "none.json"))
    with pytest.raises(TwitchSetupError, match="ishowtts login"):
        await source.run(Sink())


async def test_revoked_sign_in_is_a_clear_error(double: TwitchDouble, tmp_path: Path) -> None:
    store, token = sign_in(double, tmp_path / "t.json")
    double.expire(token.access)
    token.refresh_used = True  # the refresh token is gone too
    source = TwitchSource(twitch_cfg(double), store)
    with pytest.raises(TwitchSetupError, match="ishowtts login"):
        await asyncio.wait_for(source.run(Sink()), 10)
    assert double.request_count("POST", "/oauth2/device") == 0  # never starts a sign-in itself


async def test_unknown_channel_is_a_clear_error(double: TwitchDouble, tmp_path: Path) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    source = TwitchSource(twitch_cfg(double, channel="nobody_here"), store)
    with pytest.raises(TwitchSetupError, match=r"twitch\.channel"):
        await asyncio.wait_for(source.run(Sink()), 10)


async def test_sign_in_for_another_client_id_is_refused(
    double: TwitchDouble, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    source = TwitchSource(twitch_cfg(double, client_id="another-app"), store)
    with pytest.raises(TwitchSetupError, match="another client id"):
        await source.run(Sink())


async def test_refreshed_tokens_are_saved_at_once_and_used(
    double: TwitchDouble, alice: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where twitchio would drop .tio.tokens.json
    store, token = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        first = double.current()
        double.expire(token.access)
        assert await source_send(sink, double, alice)  # 401, refresh, retry
        # Saved while the bot runs (not at close): a crash now must not lose the new pair.
        await eventually(lambda: getattr(store.read(), "access_token", "") != token.access)
        saved = store.read()
        assert saved is not None
        assert saved.access_token != token.access
        assert saved.refresh_token != token.refresh  # the new single-use refresh token
        assert _mode(store.path) == 0o600
        # A rebuild signs in with the refreshed pair: no second refresh is needed.
        await double.close_session(4003)
        await double.wait_subscribed(exclude=[first])
        await double.chat(alice, "after the rebuild")
        await sink.wait_text("after the rebuild")
        assert double.request_count("POST", "/oauth2/token") == 1
    assert not (tmp_path / ".tio.tokens.json").exists()


async def source_send(sink: Sink, double: TwitchDouble, alice: User) -> bool:
    await double.chat(alice, "please answer")
    msg = await sink.wait_text("please answer")
    before = len(double.sent)
    await msg.reply("answered")
    await eventually(lambda: len(double.sent) > before)
    return True


async def test_expired_saved_token_is_refreshed_at_start_and_saved(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, token = sign_in(double, tmp_path / "t.json")
    double.expire(token.access)
    sink = Sink()
    async with running_source(double, store, sink):
        saved = store.read()
        assert saved is not None
        assert saved.access_token != token.access
        await double.chat(alice, "works")
        await sink.wait_text("works")


# -- through the real App -------------------------------------------------------------------


async def test_twitch_message_is_spoken_by_the_app(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    async with running_app(double, tmp_path) as (_app, player, speech):
        player.release.set()
        emotes = await double.chat(alice, "Kappa PogChamp")
        mid = await double.chat(alice, "hello from twitch")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(mid))
        assert speech.of(mid) == [("queued", None), ("started", None), ("finished", "played")]
        assert speech.of(emotes) == []  # emote-only: never reached the queue


async def test_delete_while_queued_and_while_playing(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    async with running_app(double, tmp_path) as (_app, player, speech):
        a = await double.chat(alice, "first message")
        b = await double.chat(bob, "second message")
        await speech.wait(lambda _e: speech.started(a) and ("queued", None) in speech.of(b))
        await double.delete(b, bob)  # queued
        await speech.wait(lambda _e: ("finished", "removed") in speech.of(b))
        assert speech.started(a)
        assert not speech.started(b)
        await double.delete(a, alice)  # playing
        await speech.wait(lambda _e: ("finished", "removed") in speech.of(a))
        assert player.stops >= 1
        player.release.set()
        c = await double.chat(bob, "third message")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(c))
        assert not speech.started(b)


async def test_ban_purges_the_user_and_clear_purges_everything(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    async with running_app(double, tmp_path) as (_app, _player, speech):
        a1 = await double.chat(alice, "alice one")
        b1 = await double.chat(bob, "bob one")
        a2 = await double.chat(alice, "alice two")
        await speech.wait(lambda _e: speech.started(a1) and ("queued", None) in speech.of(a2))
        await double.clear_user(alice)  # a timeout or ban
        await speech.wait(
            lambda _e: (
                ("finished", "removed") in speech.of(a1)
                and ("finished", "removed") in speech.of(a2)
            )
        )
        await speech.wait(lambda _e: speech.started(b1))  # bob is next, still held
        b2 = await double.chat(bob, "bob two")
        carol = double.add_user("carol")
        c1 = await double.chat(carol, "carol one")
        await speech.wait(lambda _e: ("queued", None) in speech.of(c1))
        await double.clear_chat()
        await speech.wait(
            lambda _e: all(("finished", "removed") in speech.of(m) for m in (b1, b2, c1))
        )
        assert not speech.started(a2)
        assert not speech.started(b2)
        assert not speech.started(c1)


async def test_reward_and_cheer_are_spoken_first(
    double: TwitchDouble, alice: User, bob: User, tmp_path: Path
) -> None:
    reward = double.add_reward("Say it")
    async with running_app(double, tmp_path, rewards=(reward,), min_bits=100) as (
        _app,
        player,
        speech,
    ):
        playing = await double.chat(bob, "holding the speaker")
        await speech.wait(lambda _e: speech.started(playing))
        free = await double.chat(bob, "free message")
        cheer = await double.chat(alice, "Cheer100 paid with bits")
        redeemed = await double.chat(alice, "paid with points", reward_id=reward)
        await speech.wait(lambda _e: ("queued", None) in speech.of(redeemed))
        player.release.set()
        await speech.wait(lambda _e: ("finished", "played") in speech.of(free))
        order = [m for k, m, _o in speech.events if k == "started"]
        assert order == [playing, cheer, redeemed, free]


async def test_reconnect_never_speaks_a_message_twice(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    async with running_app(double, tmp_path) as (_app, player, speech):
        player.release.set()
        first = double.current()
        mid = await double.chat(alice, "said once")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(mid))
        await double.drop()
        await double.wait_subscribed(exclude=[first])
        await double.chat(alice, "said once", message_id=mid)  # redelivered after reconnect
        after = await double.chat(alice, "said after")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(after))
        assert [k for k, _o in speech.of(mid)] == ["queued", "started", "finished"]


# -- choosing the source ---------------------------------------------------------------------


def _cfg(tmp_path: Path, **twitch: Any) -> Any:
    data = {"storage": {"dir": str(tmp_path / "state")}, "twitch": twitch}
    return parse_config(data, tmp_path)


def _args(cfg: Any) -> tuple[Any, Path]:
    """What the command line hands the Twitch source: its section and the state folder."""
    return cfg.twitch, state_dir(cfg.storage)


async def test_auto_source_is_twitch_only_when_configured_and_signed_in(
    double: TwitchDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.delenv("ISHOWTTS_TWITCH_CLIENT_ID", raising=False)
    assert await twitch_source_from_config(*_args(_cfg(tmp_path)), required=False) is None
    assert "twitch.channel is not set" in caplog.text
    no_id = _cfg(tmp_path, channel="streamer")
    assert await twitch_source_from_config(*_args(no_id), required=False) is None
    monkeypatch.setenv("ISHOWTTS_TWITCH_CLIENT_ID", double.client_id)
    cfg = _cfg(tmp_path, channel="streamer")
    assert cfg.twitch.client_id == double.client_id
    assert await twitch_source_from_config(*_args(cfg), required=False) is None
    assert "ishowtts login" in caplog.text
    sign_in(double, token_path(state_dir(cfg.storage)))
    source = await twitch_source_from_config(*_args(cfg), required=False)
    assert isinstance(source, TwitchSource)


async def test_forced_twitch_source_says_what_is_missing(
    double: TwitchDouble, tmp_path: Path
) -> None:
    with pytest.raises(TwitchSetupError, match=r"twitch\.channel is not set"):
        await twitch_source_from_config(*_args(_cfg(tmp_path, client_id="x")), required=True)
    with pytest.raises(TwitchSetupError, match="ishowtts login"):
        await twitch_source_from_config(
            *_args(_cfg(tmp_path, channel="streamer", client_id="x")), required=True
        )
    cfg = _cfg(tmp_path, channel="streamer", client_id="other")
    sign_in(double, token_path(state_dir(cfg.storage)))
    with pytest.raises(TwitchSetupError, match="another client id"):
        await twitch_source_from_config(*_args(cfg), required=True)


@pytest.fixture
def quiet_loggers() -> Iterator[None]:
    """``main()`` quiets third-party loggers; give them back their levels afterwards."""
    names = ("httpx", "urllib3", "numba", "matplotlib", "twitchio")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("quiet_loggers")
def test_cli_refuses_forced_twitch_without_sign_in(tmp_path: Path, caplog: Any) -> None:
    from bot.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(
        "chat: {source: twitch}\n"
        "storage: {dir: state}\n"
        "twitch: {channel: streamer, client_id: abc}\n"
    )
    assert main(["--config", str(config), "run"]) == 2
    assert "run `ishowtts login`" in caplog.text


@pytest.mark.usefixtures("quiet_loggers")
def test_cli_login_without_client_id_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from bot.cli import main

    monkeypatch.delenv("ISHOWTTS_TWITCH_CLIENT_ID", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("storage: {dir: state}\n")
    assert main(["--config", str(config), "login"]) == 2
    assert "client id" in capsys.readouterr().err


async def test_double_fixture_restores_twitchio_urls() -> None:
    from twitchio.eventsub import websockets
    from twitchio.http import Route

    before = (websockets.WSS, Route.BASE, Route.ID_BASE)
    async with running_double() as d:
        assert (d.wss, d.helix_base, d.id_base) == (websockets.WSS, Route.BASE, Route.ID_BASE)
        assert d.wss.startswith("ws://127.0.0.1:")
    assert before == (websockets.WSS, Route.BASE, Route.ID_BASE)
    assert before[0] == "wss://eventsub.wss.twitch.tv/ws"


@pytest.mark.usefixtures("quiet_loggers")
def test_cli_login_signs_in_and_saves_the_token(tmp_path: Path, capsys: Any) -> None:
    """``ishowtts login`` end to end; the double runs on its own loop in a thread."""
    from bot.cli import main

    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, TwitchDouble] = {}

    async def serve() -> None:
        async with running_double() as d:
            box["double"] = d
            started.set()
            while not stop.is_set():
                for entry in list(d.device_codes.values()):
                    if entry["approved"] is None:  # the streamer approves in the browser
                        d.approve_device(entry["user_code"], d.bot)
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert started.wait(10)
        double = box["double"]
        config = tmp_path / "config.yaml"
        twitch = f"twitch: {{channel: streamer, client_id: {double.client_id}}}\n"
        config.write_text("storage: {dir: state}\n" + twitch)
        assert main(["--config", str(config), "login"]) == 0
    finally:
        stop.set()
        thread.join(10)
        loop.close()
    out = capsys.readouterr().out
    (entry,) = double.device_codes.values()
    assert entry["user_code"] in out
    assert "Signed in to Twitch as ishowbot" in out
    assert "The bot will read #streamer as ishowbot" in out
    path = tmp_path / "state" / "twitch-tokens.json"
    assert _mode(path) == 0o600
    saved = TokenStore(path).read()
    assert saved is not None
    assert saved.user_id == double.bot.id
    assert set(saved.scopes) == set(SCOPES)
