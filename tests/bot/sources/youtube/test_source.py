"""YouTube chat through the real Google client libraries, against the in-process YouTube double.

google-api-python-client (bundled discovery document, root pointed at the double), google-auth
(credentials, refresh, ``AuthorizedSession`` for the stream) and oauthlib talk real HTTP to
tests/support/youtube_double.py; nothing of them is replaced.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import threading
import time
from pathlib import Path

import pytest

from bot.core.messages import ChannelEventKind, MessageDeleted, Platform, Role, UserPurged
from bot.sources.youtube.auth import YouTubeTokenStore, token_path
from bot.sources.youtube.settings import YouTubeConfig
from bot.sources.youtube.source import (
    YouTubeSetupError,
    YouTubeSource,
    youtube_source_from_config,
)
from tests.bot.sources.youtube.harness import (
    EventSink,
    Sink,
    eventually,
    running_source,
    sign_in,
    until,
    youtube_cfg,
)
from tests.support.youtube_double import READONLY, YouTubeDouble

STREAM = "/youtube/v3/liveChat/messages/stream"
LIST = "/youtube/v3/liveChat/messages"
BROADCASTS = "/youtube/v3/liveBroadcasts"


@pytest.mark.parametrize("transport", ["stream", "poll"])
async def test_chat_is_normalized(
    youtube_double: YouTubeDouble, tmp_path: Path, transport: str
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Alice Viewer", "alice")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, transport=transport) as (source, task):
        path = STREAM if transport == "stream" else LIST
        await until(double, task, lambda: len(double.calls(path)) >= 1)
        mid = await double.say(
            chat, viewer, "hello from youtube :face-blue-smiling:", moderator=True
        )
        message = await sink.wait_text("hello from youtube")
        assert source.chat_id == chat.id
    # closing cut the connection: the stream thread is not left blocked in a read
    await eventually(lambda: not any(t.name == "youtube-stream" for t in threading.enumerate()))
    assert message.id == mid
    assert message.source == "youtube"
    assert message.user.platform is Platform.YOUTUBE
    assert message.user.id == viewer.id
    assert message.user.login == "alice"
    assert message.user.display_name == "alice"
    assert message.user.roles == frozenset({Role.MODERATOR})
    assert not message.paid


# -- finding the chat -------------------------------------------------------------------------


async def test_waits_while_nothing_is_live_then_reads_the_broadcast(
    youtube_double: YouTubeDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    double = youtube_double
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, offline_check_s=0.05) as (source, task):
        await until(double, task, lambda: len(double.calls(BROADCASTS)) >= 3)
        assert source.chat_id is None
        waiting = [r for r in caplog.records if "nothing is live" in r.getMessage()]
        assert len(waiting) == 1  # said once, not on every look
        chat = double.go_live()
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "now we are live")
        await sink.wait_text("now we are live")
        assert source.chat_id == chat.id


async def test_a_configured_video_id_is_read_instead_of_the_own_broadcast(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    other = double.add_channel("Other Streamer")
    own = double.go_live()
    theirs = double.go_live(other, "their stream")
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, video_id=theirs.video_id) as (source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        assert source.chat_id == theirs.id
        await double.say(own, viewer, "in the own chat")
        await double.say(theirs, viewer, "in their chat")
        await sink.wait_text("in their chat")
    assert "in the own chat" not in sink.texts()
    assert double.calls(BROADCASTS) == []


async def test_history_from_before_the_bot_joined_is_not_read(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    await double.say(chat, viewer, "said long ago", published=old)
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "said now")
        await sink.wait_text("said now")
    assert sink.texts() == ["said now"]


async def test_later_pages_are_read_whatever_their_timestamps_say(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    """A PC clock that runs fast only ever filters the first page (the history)."""
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "first")
        await sink.wait_text("first")
        stamped = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        await double.say(chat, viewer, "stamped an hour ago", published=stamped)
        await sink.wait_text("stamped an hour ago")


async def test_an_ended_chat_goes_back_to_waiting_for_the_next_broadcast(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    first = double.go_live(title="first")
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, offline_check_s=0.05) as (source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(first, viewer, "in the first")
        await sink.wait_text("in the first")
        await double.end_chat(first)
        await until(double, task, lambda: source.chat_id is None)
        second = double.go_live(title="second")
        await until(double, task, lambda: source.chat_id == second.id)
        await double.say(second, viewer, "in the second")
        await sink.wait_text("in the second")
    assert sink.texts() == ["in the first", "in the second"]


# -- what chat carries ------------------------------------------------------------------------


async def test_roles_and_paid_messages_are_translated(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    fan = double.add_channel("Fan", "fan")
    star = double.add_channel("Verified Star", "star")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        sc = await double.super_chat(chat, fan, "take my money", micros=5_000_000, member=True)
        st = await double.super_sticker(chat, fan, "dancing cat", micros=2_000_000)
        yen = await double.super_chat(chat, star, "", micros=500_000_000, currency="JPY")
        await double.say(chat, star, "verified here", verified=True)
        await double.say(chat, double.streamer, "streamer here")
        await double.new_member(chat, fan, "Fans")  # a channel event: this sink takes none
        await double.say(chat, fan, "the end")
        await sink.wait_text("the end")
    by_id = {m.id: m for m in sink.messages}
    assert by_id[sc].text == "take my money"
    assert by_id[sc].reward == "Super Chat $5.00"
    assert by_id[sc].paid
    assert by_id[sc].user.roles == frozenset({Role.SUBSCRIBER})
    assert by_id[st].reward == "Super Sticker $2.00"
    assert "dancing cat" in by_id[st].text
    assert by_id[yen].reward == "Super Chat 500.00 JPY"
    assert by_id[yen].text == "sent a Super Chat of 500.00 JPY"
    verified = next(m for m in sink.messages if m.text == "verified here")
    assert verified.user.roles == frozenset({Role.VIP})
    assert not verified.paid
    owner = next(m for m in sink.messages if m.text == "streamer here")
    assert owner.user.role is Role.BROADCASTER
    assert len(sink.messages) == 6


async def test_memberships_are_channel_events(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    fan = double.add_channel("Fan", "fan")
    star = double.add_channel("Star", "star")
    lucky = double.add_channel("Lucky", "lucky")
    store, _ = sign_in(double, tmp_path)
    sink = EventSink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        joined = await double.new_member(chat, fan, "Fans")
        months = await double.milestone(chat, fan, 6, "half a year")
        gift = await double.gift_memberships(chat, star, 3, recipients=[lucky])
        await double.say(chat, fan, "the end")
        await sink.wait_text("the end")
    events = {e.id: e for e in sink.channel_events}
    assert list(events) == [joined, months, gift]  # none per gift recipient
    assert events[joined].kind is ChannelEventKind.SUBSCRIPTION
    assert events[joined].tier == "Fans"
    assert events[joined].platform is Platform.YOUTUBE
    assert events[joined].user is not None
    assert events[joined].user.identity == (Platform.YOUTUBE, fan.id)
    assert events[months].kind is ChannelEventKind.RESUBSCRIPTION
    assert events[months].months == 6
    assert events[months].message == "half a year"
    assert events[gift].kind is ChannelEventKind.GIFT
    assert events[gift].count == 3
    assert sink.texts() == ["the end"]  # memberships are not chat lines


async def test_deletions_and_bans_become_moderation_events(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    troll = double.add_channel("Troll", "troll")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        mid = await double.say(chat, troll, "something bad")
        await double.delete(chat, mid)
        await double.ban(chat, troll, seconds=300)
        await sink.wait(lambda e: any(isinstance(x, UserPurged) for x in e))
    assert sink.events[1:] == [
        MessageDeleted(message_id=mid),
        UserPurged(user_id=troll.id, login="troll"),
    ]


async def test_malformed_payloads_are_logged_and_skipped(
    youtube_double: YouTubeDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        streams = len(double.streams)
        await double.add_raw(chat, "not an object")
        await double.add_raw(chat, {"id": "x1", "snippet": "not an object"})
        await double.add_raw(
            chat,
            {
                "id": "x2",
                "snippet": {"type": "superChatEvent", "superChatDetails": [1, 2]},
                "authorDetails": {"channelId": viewer.id},
            },
        )
        await double.add_raw(
            chat,
            {
                "id": "x3",
                "snippet": {
                    "type": "textMessageEvent",
                    "textMessageDetails": {"messageText": "no author"},
                },
            },
        )
        assert await double.stream_raw(b',{"items": [{"id": broken json}]}') == 1
        assert await double.stream_raw(b',"a stray string"') == 1
        await double.say(chat, viewer, "still here")
        await sink.wait_text("still here")
        assert len(double.streams) == streams  # no reconnect was needed
    assert sink.texts() == ["still here"]
    skipped = [
        r for r in caplog.records if r.levelname == "WARNING" and "skipped" in r.getMessage()
    ]
    assert len(skipped) >= 5
    assert not any(r.exc_info for r in caplog.records if r.levelname != "DEBUG")


# -- reading robustly -------------------------------------------------------------------------


async def test_a_dropped_stream_resumes_from_the_last_page_without_repeats(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "one")
        two = await double.say(chat, viewer, "two")
        await sink.wait(lambda _e: sink.texts() == ["one", "two"])
        assert await double.drop_streams() == 1
        await double.say(chat, viewer, "three")  # said while no stream was open
        await double.add_raw(chat, next(i for i in chat.items if i["id"] == two))  # sent again
        await until(double, task, lambda: len(double.calls(STREAM)) >= 2)
        await double.say(chat, viewer, "four")
        await sink.wait_text("four")
    assert sink.texts() == ["one", "two", "three", "four"]  # "two" once, though sent twice
    resumed = double.calls(STREAM)[1]
    assert resumed.get("pageToken") == "p2"  # after "one" and "two", before "three"


async def test_polling_follows_page_tokens_and_polling_interval(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.polling_interval_ms = 200
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, transport="poll") as (source, task):
        await until(double, task, lambda: len(double.calls(LIST)) >= 1)
        await double.say(chat, viewer, "polled one")
        await sink.wait_text("polled one")
        await double.say(chat, viewer, "polled two")
        await sink.wait_text("polled two")
        await until(double, task, lambda: len(double.calls(LIST)) >= 5)
    calls = double.calls(LIST)
    tokens = [c.get("pageToken") for c in calls]
    assert tokens[0] is None
    assert all(t is not None for t in tokens[1:])
    assert sink.texts() == ["polled one", "polled two"]
    assert double.calls(STREAM) == []
    assert source.quota.calls["liveChatMessages.list"] == len(calls)


async def test_polling_waits_at_least_the_interval_youtube_asks_for(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.polling_interval_ms = 300
    double.go_live()
    store, _ = sign_in(double, tmp_path)
    seen: list[float] = []
    async with running_source(double, store, Sink(), transport="poll") as (_source, task):

        def record() -> bool:
            if len(double.calls(LIST)) > len(seen):
                seen.append(time.monotonic())
            return len(seen) >= 4

        await until(double, task, record)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= 0.25, gaps  # the order YouTube gives, not a speed claim


def test_the_quota_sets_the_slowest_poll_rate() -> None:
    # 10,000 units over 4 hours, 80 % for polling: one 5-unit call every 9 s
    assert YouTubeConfig().poll_floor_s == pytest.approx(9.0)
    assert YouTubeConfig(quota_hours=8).poll_floor_s == pytest.approx(18.0)


async def test_a_stream_that_does_not_exist_falls_back_to_polling(
    youtube_double: YouTubeDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    double = youtube_double
    double.stream_enabled = False
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(LIST)) >= 1)
        await double.say(chat, viewer, "via polling")
        await sink.wait_text("via polling")
    assert len(double.calls(STREAM)) == 1  # tried once, then never again
    assert any("polling instead" in r.getMessage() for r in caplog.records)


async def test_a_stream_refused_before_it_ever_worked_falls_back_to_polling(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.fail("liveChatMessages.stream", "forbidden", status=403)
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(LIST)) >= 1)
        await double.say(chat, viewer, "polled instead")
        await sink.wait_text("polled instead")
    assert len(double.calls(STREAM)) == 1


async def test_forced_stream_that_does_not_work_is_a_clear_error(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.stream_enabled = False
    double.go_live()
    store, _ = sign_in(double, tmp_path)
    source = YouTubeSource(youtube_cfg(double, transport="stream"), store)
    with pytest.raises(YouTubeSetupError, match=r"use auto or poll"):
        await asyncio.wait_for(source.run(Sink()), 15)


@pytest.mark.parametrize("transport", ["stream", "poll"])
@pytest.mark.parametrize("reason", ["quotaExceeded", "rateLimitExceeded"])
async def test_quota_errors_back_off_and_recover(
    youtube_double: YouTubeDouble,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    reason: str,
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    method = "liveChatMessages.stream" if transport == "stream" else "liveChatMessages.list"
    path = STREAM if transport == "stream" else LIST
    double.fail(method, reason, times=3)
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, transport=transport, quota_retry_s=0.1) as (
        _source,
        task,
    ):
        await until(double, task, lambda: len(double.calls(path)) >= 4)
        await double.say(chat, viewer, "after the backoff")
        await sink.wait_text("after the backoff")
    warned = [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("bot.")]
    assert len(warned) >= 3
    if reason == "quotaExceeded":
        assert any("quota" in r.getMessage() and "midnight" in r.getMessage() for r in warned)
    assert sink.texts() == ["after the backoff"]


async def test_expired_access_token_is_refreshed_and_saved_at_once(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, token = sign_in(double, tmp_path)
    double.expire(token.access)
    sink = Sink()
    async with running_source(double, store, sink) as (_source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "after a refresh")
        await sink.wait_text("after a refresh")
        saved = store.read()
        assert saved is not None
        assert saved.access_token != token.access
        assert saved.access_token in double.tokens
        assert saved.refresh_token == token.refresh
        assert store.path.stat().st_mode & 0o777 == 0o600
        # the hour passes again mid-stream: the next call refreshes once more
        double.expire(saved.access_token)
        await double.drop_streams()
        await until(double, task, lambda: len(double.calls(STREAM)) >= 2)
        await double.say(chat, viewer, "after another")
        await sink.wait_text("after another")
    again = store.read()
    assert again is not None
    assert again.access_token not in (token.access, saved.access_token)


async def test_a_revoked_sign_in_stops_with_a_clear_error(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.go_live()
    store, token = sign_in(double, tmp_path)
    double.expire(token.access)
    double.revoke(token.refresh)
    source = YouTubeSource(youtube_cfg(double), store)
    with pytest.raises(YouTubeSetupError, match="login youtube"):
        await asyncio.wait_for(source.run(Sink()), 15)


async def test_not_signed_in_is_a_clear_error(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    store = YouTubeTokenStore(token_path(tmp_path))
    source = YouTubeSource(youtube_cfg(youtube_double), store)
    with pytest.raises(YouTubeSetupError, match="ishowtts login youtube"):
        await source.run(Sink())
    assert not await youtube_source_from_config(
        youtube_cfg(youtube_double), tmp_path, required=False
    )
    with pytest.raises(YouTubeSetupError, match=r"chat\.sources|youtube\.enabled"):
        await youtube_source_from_config(youtube_cfg(youtube_double), tmp_path, required=True)


# -- replies ----------------------------------------------------------------------------------


async def test_replies_are_posted_and_their_echo_is_not_delivered(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink) as (source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "!voices")
        asked = await sink.wait_text("!voices")
        await asked.reply("voices: alice, default")
        await until(double, task, lambda: len(double.posted) == 1)
        await double.say(chat, double.streamer, "the streamer talks")
        await sink.wait_text("the streamer talks")
        assert source.quota.calls["liveChatMessages.insert"] == 1
    assert double.posted[0]["snippet"]["textMessageDetails"]["messageText"] == (
        "voices: alice, default"
    )
    assert sink.texts() == ["!voices", "the streamer talks"]


async def test_a_read_only_sign_in_reads_but_never_posts(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path, scopes=(READONLY,))
    sink = Sink()
    async with running_source(double, store, sink) as (source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "hello")
        message = await sink.wait_text("hello")
        await message.reply("not posted")
        assert not await source.send("not posted either")
    assert double.posted == []


def test_the_quota_meter_counts_costs_and_projects_four_hours() -> None:
    from bot.sources.youtube.source import QuotaMeter

    now = [0.0]
    meter = QuotaMeter(10_000, clock=lambda: now[0])
    meter.spend("liveBroadcasts.list")
    meter.spend("liveChatMessages.stream")
    meter.spend("liveChatMessages.insert")
    now[0] = 3600.0
    assert meter.used == 26
    assert meter.per_hours(4) == 104
    line = meter.summary()
    assert "26 units in 1h00m" in line
    assert "liveChatMessages.insert 1x20" in line
    assert "4 hours cost 104 of the 10,000" in line
    assert meter.due(900.0)
    assert not meter.due(900.0)


def test_the_quota_resets_at_pacific_midnight() -> None:
    from bot.sources.youtube.source import until_quota_reset

    noon_utc = datetime.datetime(2026, 1, 15, 20, 0, tzinfo=datetime.UTC)  # 12:00 in LA (PST)
    assert until_quota_reset(noon_utc) == pytest.approx(12 * 3600)


async def test_replies_stop_before_they_eat_the_quota_reading_needs(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    double.go_live()
    store, _ = sign_in(double, tmp_path)
    # 1,000 units a day: replies may spend 150, i.e. 7 replies of 20 units
    async with running_source(double, store, Sink(), daily_quota=1000) as (source, task):
        await until(double, task, lambda: source.chat_id is not None)
        posted = [await source.send(f"reply {i}") for i in range(9)]
    assert posted == [True] * 7 + [False] * 2
    assert len(double.posted) == 7


@pytest.mark.slow
async def test_a_silent_stream_is_reopened_from_the_last_page(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, stream_idle_s=5) as (source, task):
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        await double.say(chat, viewer, "before the silence")
        await sink.wait_text("before the silence")
        await until(double, task, lambda: len(double.calls(STREAM)) >= 2)  # idle: reopened
        await double.say(chat, viewer, "after the silence")
        await sink.wait_text("after the silence")
        assert source.quota.calls["liveChatMessages.stream"] == 2
    assert double.calls(STREAM)[1].get("pageToken") == "p1"
    assert sink.texts() == ["before the silence", "after the silence"]


async def test_malformed_items_in_polled_pages_are_skipped(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    chat = double.go_live()
    viewer = double.add_channel("Viewer")
    store, _ = sign_in(double, tmp_path)
    sink = Sink()
    async with running_source(double, store, sink, transport="poll") as (_source, task):
        await until(double, task, lambda: len(double.calls(LIST)) >= 1)
        await double.add_raw(chat, 42)
        await double.add_raw(chat, {"id": "y1", "snippet": {"type": 7}})
        await double.add_raw(
            chat,
            {
                "id": "y2",
                "snippet": {"type": "userBannedEvent", "userBannedDetails": {}},
                "authorDetails": {"channelId": viewer.id},
            },
        )
        await double.say(chat, viewer, "polled after junk")
        await sink.wait_text("polled after junk")
    assert sink.events == sink.messages  # no moderation event from the broken ban
    assert sink.texts() == ["polled after junk"]
