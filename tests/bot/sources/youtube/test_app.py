"""YouTube chat through the real App: pipeline, speaker, engine thread and (once) the real
player on the PulseAudio test sink; Twitch and YouTube side by side in one queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, SourceGroup
from bot.config import parse_config
from bot.core.messages import Platform
from bot.sources.youtube.auth import YouTubeTokenStore, token_path
from bot.sources.youtube.source import YouTubeSource
from bot.state.settings import state_dir
from engine.base import EngineState
from tests.bot.sources.twitch.harness import HeldPlayer, Speech, ToneEngine
from tests.bot.sources.youtube.harness import eventually, sign_in, until
from tests.support.audio import PulseServer, SinkRecorder, rms
from tests.support.youtube_double import Chat, YouTubeDouble

STREAM = "/youtube/v3/liveChat/messages/stream"


def _data(double: YouTubeDouble, tmp_path: Path, **youtube: Any) -> dict[str, Any]:
    return {
        "audio": {"gap_ms": 0},
        "storage": {"dir": str(tmp_path / "state")},
        "tts": {"say_names": False},
        "web": {"enabled": False},
        "chat": {"source": "terminal"},
        "youtube": {**double.config(), "enabled": True, **youtube},
    }


@contextlib.asynccontextmanager
async def running_app(
    double: YouTubeDouble,
    tmp_path: Path,
    *,
    player: Any = None,
    config: dict[str, Any] | None = None,
    **youtube: Any,
) -> AsyncIterator[tuple[App, Any, Speech, Chat]]:
    """The real App reading the double's live chat (the streamer signed in)."""
    chat = double.go_live()
    sign_in(double, tmp_path / "state")
    data = _data(double, tmp_path, **youtube)
    data.update(config or {})
    cfg = parse_config(data, tmp_path)
    player = player if player is not None else HeldPlayer()
    app = App(cfg, engine=ToneEngine(), player=player)
    speech = Speech()
    app.speaker.add_listener(speech)
    await app.start()
    assert await app.worker.wait_ready() is EngineState.READY
    source = YouTubeSource(cfg.youtube, YouTubeTokenStore(token_path(state_dir(cfg.storage))))
    task = asyncio.create_task(app.run(source))
    try:
        await until(double, task, lambda: len(double.calls(STREAM)) >= 1)
        yield app, player, speech, chat
    finally:
        app.request_stop()
        assert await asyncio.wait_for(task, 15) == 0
        await app.close()


async def test_delete_stops_the_speech_at_once_and_a_ban_purges(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    alice = double.add_channel("Alice", "alice")
    bob = double.add_channel("Bob", "bob")
    async with running_app(double, tmp_path) as (_app, player, speech, chat):
        a1 = await double.say(chat, alice, "alice one")
        b1 = await double.say(chat, bob, "bob one")
        await speech.wait(lambda _e: speech.started(a1) and ("queued", None) in speech.of(b1))
        await double.delete(chat, a1)  # playing
        await speech.wait(lambda _e: ("finished", "removed") in speech.of(a1))
        assert player.stops >= 1
        await speech.wait(lambda _e: speech.started(b1))
        b2 = await double.say(chat, bob, "bob two")
        a2 = await double.say(chat, alice, "alice two")
        await speech.wait(lambda _e: ("queued", None) in speech.of(a2))
        await double.ban(chat, bob)  # bob: one playing, one queued
        await speech.wait(
            lambda _e: (
                ("finished", "removed") in speech.of(b1)
                and ("finished", "removed") in speech.of(b2)
            )
        )
        player.release.set()
        await speech.wait(lambda _e: ("finished", "played") in speech.of(a2))
        assert not speech.started(b2)


async def test_a_dropped_stream_never_speaks_a_message_twice(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    viewer = double.add_channel("Viewer", "viewer")
    async with running_app(double, tmp_path) as (_app, player, speech, chat):
        player.release.set()
        once = await double.say(chat, viewer, "said once")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(once))
        assert await double.drop_streams() == 1
        gap = await double.say(chat, viewer, "said while the stream was down")
        await double.add_raw(chat, next(i for i in chat.items if i["id"] == once))  # again
        after = await double.say(chat, viewer, "said after")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(after))
    assert [k for k, _o in speech.of(once)] == ["queued", "started", "finished"]
    assert ("finished", "played") in speech.of(gap)
    assert speech.queued() == [once, gap, after]


async def test_a_super_chat_goes_ahead_of_free_chat(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    fan = double.add_channel("Fan", "fan")
    viewer = double.add_channel("Viewer", "viewer")
    async with running_app(double, tmp_path) as (_app, player, speech, chat):
        playing = await double.say(chat, viewer, "holding the speaker")
        await speech.wait(lambda _e: speech.started(playing))
        free = await double.say(chat, viewer, "free message")
        paid = await double.super_chat(chat, fan, "paid message")
        await speech.wait(lambda _e: ("queued", None) in speech.of(paid))
        player.release.set()
        await speech.wait(lambda _e: ("finished", "played") in speech.of(free))
    order = [m for k, m, _o in speech.events if k == "started"]
    assert order == [playing, paid, free]


async def test_youtube_moderators_may_skip_and_viewers_may_not(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    mod = double.add_channel("Mod", "mod")
    viewer = double.add_channel("Viewer", "viewer")
    async with running_app(double, tmp_path) as (_app, player, speech, chat):
        playing = await double.say(chat, viewer, "a long message")
        await speech.wait(lambda _e: speech.started(playing))
        await double.say(chat, viewer, "!skip")
        marker = await double.say(chat, viewer, "after the viewer's skip")
        await speech.wait(lambda _e: ("queued", None) in speech.of(marker))  # handled in order
        assert player.stops == 0
        assert speech.of(playing) == [("queued", None), ("started", None)]
        await double.say(chat, mod, "!skip", moderator=True)
        await speech.wait(lambda _e: ("finished", "skipped") in speech.of(playing))
        assert player.stops == 1


async def test_paid_only_reads_super_chats_and_still_takes_commands(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    fan = double.add_channel("Fan", "fan")
    mod = double.add_channel("Mod", "mod")
    async with running_app(double, tmp_path, messages="paid") as (app, player, speech, chat):
        player.release.set()
        free = await double.say(chat, fan, "free words")
        await double.say(chat, mod, "!ttsoff", moderator=True)
        await eventually(lambda: not app.chat.enabled)
        await double.say(chat, mod, "!ttson", moderator=True)
        await eventually(lambda: app.chat.enabled)
        paid = await double.super_chat(chat, fan, "paid words")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(paid))
    assert speech.of(free) == []


async def test_a_new_member_is_announced_when_announcements_are_on(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    fan = double.add_channel("Fan", "fan")
    config = {"announcements": {"enabled": True}}
    async with running_app(double, tmp_path, config=config) as (_app, player, speech, chat):
        player.release.set()
        joined = await double.new_member(chat, fan, "Fans")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(joined))
    assert speech.texts[joined] == ["fan just subscribed!"]  # YouTube shows the handle


@pytest.mark.audio
async def test_a_youtube_message_is_heard_at_the_sink(
    youtube_double: YouTubeDouble,
    tmp_path: Path,
    pulse_server: PulseServer,
    sink_recorder: SinkRecorder,
) -> None:
    """Real AudioPlayer (sounddevice) on the PulseAudio null sink, its monitor recorded."""
    double = youtube_double
    viewer = double.add_channel("Viewer", "viewer")
    from bot.speech.player import AudioPlayer
    from bot.speech.settings import AudioConfig

    player = AudioPlayer(AudioConfig(device=pulse_server.device_name, gap_ms=0))
    config = {"audio": {"device": pulse_server.device_name, "gap_ms": 0}}
    async with running_app(double, tmp_path, player=player, config=config) as (
        app,
        _player,
        speech,
        chat,
    ):
        sink_recorder.start()
        silent = sink_recorder.stop(settle_s=0.2)
        sink_recorder.start()
        mid = await double.say(chat, viewer, "hello from youtube chat")
        await speech.wait(lambda _e: ("finished", "played") in speech.of(mid), timeout=30)
        heard = sink_recorder.stop(settle_s=0.3)
        assert app.speaker is not None
    assert rms(silent) < 0.005
    assert rms(heard) > 0.02  # the tone engine's 200 ms at 0.1-0.3 amplitude arrived
    assert speech.texts[mid] == ["hello from youtube chat"]


# -- Twitch and YouTube at once ---------------------------------------------------------------


async def test_twitch_and_youtube_share_one_queue_and_never_mix_identities(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    from bot.sources.twitch.auth import TokenStore
    from bot.sources.twitch.auth import token_path as twitch_token_path
    from bot.sources.twitch.source import TwitchSource
    from tests.bot.sources.twitch.harness import sign_in as twitch_sign_in
    from tests.bot.sources.twitch.harness import until_subscribed
    from tests.support.twitch_double import running_double as twitch_double

    yt = youtube_double
    async with twitch_double() as tw:
        tw_alice = tw.add_user("alice")
        yt_alice = yt.add_channel("Alice", "alice")  # the same name on the other platform
        yt_mod = yt.add_channel("Mod", "mod")
        chat = yt.go_live()
        state = tmp_path / "state"
        twitch_sign_in(tw, twitch_token_path(state))
        sign_in(yt, state)
        data = _data(yt, tmp_path)
        data["chat"] = {"source": "twitch"}
        data["twitch"] = {
            "channel": tw.broadcaster.login,
            "client_id": tw.client_id,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        }
        cfg = parse_config(data, tmp_path)
        player = HeldPlayer()
        player.release.set()
        app = App(cfg, engine=ToneEngine(), player=player)
        speech = Speech()
        app.speaker.add_listener(speech)
        platforms: dict[str, Platform] = {}
        app.speaker.add_listener(
            lambda ev: platforms.setdefault(ev.item.message.id, ev.item.message.user.platform)
        )
        await app.start()
        assert await app.worker.wait_ready() is EngineState.READY
        group = SourceGroup(
            [
                TwitchSource(
                    cfg.twitch,
                    TokenStore(twitch_token_path(state)),
                    health_interval_s=0.2,
                    move_quiet_s=0.3,
                ),
                YouTubeSource(cfg.youtube, YouTubeTokenStore(token_path(state))),
            ]
        )
        assert group.name == "twitch+youtube"
        task = asyncio.create_task(app.run(group))
        try:
            await until_subscribed(tw, task)
            await until(yt, task, lambda: len(yt.calls(STREAM)) >= 1)
            t1 = await tw.chat(tw_alice, "hello from twitch")
            y1 = await yt.say(chat, yt_alice, "hello from youtube")
            await speech.wait(
                lambda _e: all(("finished", "played") in speech.of(m) for m in (t1, y1))
            )
            # a YouTube moderator mutes @alice: the YouTube Alice, never the Twitch one
            await yt.say(chat, yt_mod, "!mute @alice", moderator=True)
            y2 = await yt.say(chat, yt_alice, "youtube alice again")
            y3 = await yt.say(chat, yt_mod, "after the mute", moderator=True)
            await speech.wait(lambda _e: ("finished", "played") in speech.of(y3))
            t2 = await tw.chat(tw_alice, "twitch alice again")
            await speech.wait(lambda _e: ("finished", "played") in speech.of(t2))
        finally:
            app.request_stop()
            assert await asyncio.wait_for(task, 15) == 0
            await app.close()
    assert speech.of(y2) == []  # muted on YouTube
    assert platforms[t1] == platforms[t2] == Platform.TWITCH
    assert platforms[y1] == platforms[y3] == Platform.YOUTUBE


def test_cli_refuses_youtube_enabled_without_a_sign_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(
        "storage: {dir: state}\nchat: {source: terminal}\nyoutube: {enabled: true}\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "run"]) == 2
    assert any("ishowtts login youtube" in r.getMessage() for r in caplog.records)


class _Failing:
    name = "youtube"

    async def run(self, sink: Any) -> None:
        raise RuntimeError("the saved YouTube sign-in was revoked")

    async def close(self) -> None:
        pass


class _Lines:
    """A source that says a few lines, then waits to be closed."""

    name = "twitch"

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.said = asyncio.Event()

    async def run(self, sink: Any) -> None:
        from bot.core.messages import ChatMessage, ChatUser

        user = ChatUser("1", "alice", "alice", platform=Platform.TWITCH)
        await asyncio.sleep(0)  # after the other source has failed
        await sink.on_message(ChatMessage("m1", user, "still here", "twitch"))
        self.said.set()
        await self.closed.wait()

    async def close(self) -> None:
        self.closed.set()


async def test_one_failing_source_leaves_the_others_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.bot.sources.youtube.harness import Sink

    lines = _Lines()
    group = SourceGroup([lines, _Failing()])
    sink = Sink()
    task = asyncio.create_task(group.run(sink))
    await sink.wait_text("still here")
    await eventually(
        lambda: any("the other sources go on" in r.getMessage() for r in caplog.records)
    )
    assert not task.done()
    await group.close()
    with pytest.raises(RuntimeError, match="revoked"):
        await asyncio.wait_for(task, 5)
