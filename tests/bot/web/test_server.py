"""The web server's HTTP API against the running bot: tokens, ingest, actions, live state.

Real components throughout (tiny F5 weights on the CPU, the engine thread, the sounddevice
player on the PulseAudio null sink, SQLite in the test folder); requests go over real
loopback HTTP and WebSockets with aiohttp's client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.config import ConfigError, parse_config
from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.speech.speaker import Outcome, SpeechEventKind
from bot.web.server import HANDLING_FAILED
from bot.web.token import TOKEN_FILE_NAME, load_or_create_token, tokens_match
from engine.base import EngineState
from tests.support import REPO
from tests.support.audio import PulseServer
from tests.support.web_harness import EventLog, bot_config, espeak_bot, running_bot

pytestmark = [pytest.mark.audio]


def _auth(app: App) -> dict[str, str]:
    assert app.web is not None
    assert app.web.token is not None
    return {"Authorization": f"Bearer {app.web.token}"}


def _url(app: App, path: str) -> str:
    assert app.web is not None
    return app.web.base_url + path


async def _ready(app: App) -> None:
    assert await asyncio.wait_for(app.worker.wait_ready(), 120) is EngineState.READY


async def _next_state(
    ws: aiohttp.ClientWebSocketResponse,
    check: Callable[[dict[str, Any]], bool],
    timeout_s: float = 30,
) -> dict[str, Any]:
    """Read pushed states until one passes ``check``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no matching state was pushed")
        msg = await ws.receive(timeout=left)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data: dict[str, Any] = json.loads(msg.data)
        if check(data):
            return data


# -- the token file ------------------------------------------------------------------------
def test_token_is_created_once_readable_only_by_the_user(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "nested"
    token, created = load_or_create_token(folder)
    assert created
    assert len(token) >= 32
    path = folder / TOKEN_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    again, created_again = load_or_create_token(folder)
    assert (again, created_again) == (token, False)
    assert list(folder.iterdir()) == [path]  # no temporary file left behind


def test_a_token_file_readable_by_others_is_locked_down(tmp_path: Path) -> None:
    token, _ = load_or_create_token(tmp_path)
    path = tmp_path / TOKEN_FILE_NAME
    os.chmod(path, 0o644)
    again, created = load_or_create_token(tmp_path)
    assert (again, created) == (token, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unusable_token_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE_NAME
    path.write_text("short\n")
    token, created = load_or_create_token(tmp_path)
    assert created
    assert token != "short"
    assert path.read_text().strip() == token


def test_token_comparison() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abd", "abc")
    assert not tokens_match("", "abc")
    assert not tokens_match(None, "abc")
    assert not tokens_match("ü", "abc")


def test_config_refuses_a_public_address_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web\.host.*allow_remote"):
        parse_config({"web": {"host": "0.0.0.0"}}, tmp_path)
    cfg = parse_config({"web": {"host": "0.0.0.0", "allow_remote": True}}, tmp_path)
    assert cfg.web.host == "0.0.0.0"
    assert parse_config({"web": {"host": "::1"}}, tmp_path).web.host == "::1"
    assert parse_config({}, tmp_path).web.host == "127.0.0.1"


# -- the running server --------------------------------------------------------------------
async def test_first_start_prints_a_ready_link_and_later_starts_do_not(
    tmp_path: Path,
    tiny_f5: dict[str, Any],
    pulse_server: PulseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.web.server.server")
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        assert app.web is not None
        assert app.web.running
        token = app.web.token
        assert token is not None
        first = caplog.text
        assert f"{app.web.base_url}/?token={token}" in first
        assert f"{app.web.base_url}/overlay" in first
        token_file = tmp_path / "state" / TOKEN_FILE_NAME
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    caplog.clear()
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        assert app.web is not None
        assert app.web.token == token
        assert token not in caplog.text
        assert str(token_file) in caplog.text


async def test_requests_without_the_right_token_are_refused(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        assert app.web.token is not None
        for method, path in [("GET", "/api/state"), ("POST", "/api/skip"), ("POST", "/api/ingest")]:
            async with http.request(method, _url(app, path)) as res:
                assert res.status == 401, path
                assert "Bearer" in res.headers["WWW-Authenticate"]
                body = await res.json()
                assert body["ok"] is False
                assert "token" in body["error"]
            async with http.request(
                method, _url(app, path), headers={"Authorization": "Bearer wrong-token"}
            ) as res:
                assert res.status == 403, path
        # The WebSocket of the panel refuses the handshake without the token.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(_url(app, "/ws/panel"))
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
            await http.ws_connect(_url(app, "/ws/panel?token=nope"))
        assert wrong.value.status == 403
        # Nothing was done by the refused requests.
        assert app.speaker.current is None
        assert len(app.speaker.queue) == 0
        # The token works in the header, the X-Ishowtts-Token header and the query string.
        token = app.web.token
        assert token is not None
        ways: list[tuple[dict[str, str], dict[str, str]]] = [
            ({"Authorization": f"Bearer {token}"}, {}),
            ({"X-Ishowtts-Token": token}, {}),
            ({}, {"token": token}),
        ]
        for headers, params in ways:
            async with http.get(_url(app, "/api/state"), headers=headers, params=params) as res:
                assert res.status == 200
                assert (await res.json())["type"] == "state"
        # The pages themselves hold no secret and need no token.
        for path in ("/", "/overlay", "/static/panel.js", "/static/overlay.css"):
            async with http.get(_url(app, path)) as res:
                assert res.status == 200, path
                assert res.headers["Referrer-Policy"] == "no-referrer"
        async with http.get(_url(app, "/overlay")) as res:
            assert "script-src 'self'" in res.headers["Content-Security-Policy"]
        overlay = await http.ws_connect(_url(app, "/ws/overlay"))
        first = await overlay.receive_json(timeout=10)
        assert first == {"type": "caption", "caption": None, "audio": False}
        await overlay.close()


async def test_a_foreign_host_header_is_refused(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    """A web page on another domain resolving to 127.0.0.1 (DNS rebinding) gets nothing."""
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app, aiohttp.ClientSession() as http:
        headers = {**_auth(app), "Host": "evil.example:80"}
        async with http.get(_url(app, "/api/state"), headers=headers) as res:
            assert res.status == 403
        async with http.get(_url(app, "/overlay"), headers={"Host": "evil.example"}) as res:
            assert res.status == 403
        async with http.get(_url(app, "/overlay"), headers={"Host": "localhost:1234"}) as res:
            assert res.status == 200


async def test_ingest_goes_through_the_chat_pipeline(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    sections = {"filters": {"banned_words": {"words": ["darn"], "action": "bleep"}}}
    async with running_bot(tmp_path, tiny_f5, pulse_server, **sections) as app:
        await _ready(app)
        app.speaker.pause()  # keep what arrives in the queue, to look at it
        async with aiohttp.ClientSession(headers=_auth(app)) as http:
            url = _url(app, "/api/ingest")
            async with http.post(
                url, json={"user": "Cool Viewer", "text": "darn that was great", "voice": "Alice"}
            ) as res:
                assert res.status == 202
                body = await res.json()
            assert body["status"] == "queued"
            # Filters applied (bleep), the template announced the name, the voice was matched.
            assert body["text"] == "Cool Viewer says bleep that was great"
            assert body["voice"] == "alice"
            (item,) = app.speaker.queue.snapshot()
            assert item.seq == body["id"]
            assert item.message.source == "http"
            assert item.message.user.login == "cool_viewer"
            assert item.message.user.display_name == "Cool Viewer"
            assert item.message.user.role is Role.EVERYONE

            # A form post works too (curl -d user=... -d text=...).
            async with http.post(url, data={"user": "formy", "text": "hello from a form"}) as res:
                assert res.status == 202
                assert (await res.json())["voice"] == "default"

            # Same rules as chat: a muted user is not spoken, and the answer says why.
            async with http.post(_url(app, "/api/mute"), json={"user": "@cool_viewer"}) as res:
                assert res.status == 200
                assert "muted cool_viewer" in (await res.json())["message"]
            assert all(
                it.message.user.login != "cool_viewer" for it in app.speaker.queue.snapshot()
            )
            async with http.post(url, json={"user": "cool_viewer", "text": "still here"}) as res:
                assert res.status == 200
                assert await res.json() == {"ok": True, "status": "dropped", "reason": "muted"}
            # Text that the filters reduce to nothing is dropped, not queued.
            async with http.post(url, json={"user": "x", "text": "😂😂😂"}) as res:
                assert (await res.json())["status"] == "dropped"
            # A repeated id (a webhook retried) is spoken once.
            for expected in ("queued", "ignored"):
                async with http.post(url, json={"user": "a", "text": "once", "id": "m1"}) as res:
                    assert (await res.json())["status"] == expected
            assert [it.message.user.login for it in app.speaker.queue.snapshot()] == ["formy", "a"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"text": "no user"}, 400, "user: missing"),
        ({"user": "bob"}, 400, "text: must be a non-empty string"),
        ({"user": "bob", "text": "   "}, 400, "text: must be a non-empty string"),
        ({"user": "bob", "text": 42}, 400, "text: must be a non-empty string"),
        ({"user": "bob", "text": "x" * 5001}, 400, "longer than 5000"),
        ({"user": "bob", "text": "hi", "voice": "../etc"}, 400, "voice: names are"),
        ({"user": "bob", "text": "hi", "voice": "nobody"}, 400, "no voice called 'nobody'"),
        ({"user": "\u202e\x00", "text": "hi"}, 400, "user: must name who"),
        ({"user": ["a"], "text": "hi"}, 400, "user: must be a string"),
        ({"user": "bob", "text": "hi", "bits": -1}, 400, "bits: must be a whole number"),
        ("[1, 2]", 400, "send a JSON object"),
        ("{not json", 400, "not valid JSON"),
    ],
)
async def test_bad_ingest_requests_get_a_clear_answer(
    tmp_path: Path,
    tiny_f5: dict[str, Any],
    pulse_server: PulseServer,
    body: Any,
    status: int,
    error: str,
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        await _ready(app)
        headers = {**_auth(app), "Content-Type": "application/json"}
        raw = body if isinstance(body, str) else json.dumps(body)
        async with (
            aiohttp.ClientSession() as http,
            http.post(_url(app, "/api/ingest"), data=raw, headers=headers) as res,
        ):
            assert res.status == status
            answer = await res.json()
        assert answer["ok"] is False
        assert error in answer["error"]
        assert len(app.speaker.queue) == 0
        assert app.speaker.current is None


@pytest.mark.parametrize(
    ("fails", "status", "answer"),
    [
        # Nothing reached the speech queue: the bot failed, it did not filter or mute it.
        ("before the queue", 500, {"ok": False, "error": HANDLING_FAILED}),
        # The queue took it: it will be spoken, and the answer says so with its number.
        ("after queueing", 202, {"ok": True, "status": "queued", "reason": ""}),
        # The queue refused it (a fourth pending line from one person): its own reason.
        (
            "after a refusal",
            200,
            {"ok": True, "status": "dropped", "reason": "too many pending messages from this user"},
        ),
    ],
)
async def test_a_message_whose_handling_fails_is_answered_with_what_really_happened(
    tmp_path: Path,
    pulse_server: PulseServer,
    monkeypatch: pytest.MonkeyPatch,
    fails: str,
    status: int,
    answer: dict[str, Any],
) -> None:
    """``App.submit`` answers None when handling raised; the speech queue's events say the rest."""
    async with espeak_bot(tmp_path, pulse_server) as app:
        app.speaker.pause()  # what is queued stays queued, to look at it
        async with aiohttp.ClientSession(headers=_auth(app)) as http:
            url = _url(app, "/api/ingest")
            if fails == "after a refusal":
                for n in range(3):  # queue.per_user_limit
                    async with http.post(url, json={"user": "fan", "text": f"line {n}"}) as res:
                        assert res.status == 202
            pipeline = app.chat.handle

            async def handle_then_fail(message: ChatMessage) -> Any:
                if fails != "before the queue":
                    await pipeline(message)
                raise RuntimeError("a bug past the pipeline")

            monkeypatch.setattr(app.chat, "handle", handle_then_fail)
            async with http.post(url, json={"user": "fan", "text": "one more"}) as res:
                got = (res.status, await res.json())
        queued = [it for it in app.speaker.queue.snapshot() if it.text.endswith("one more")]
        if fails == "after queueing":
            (item,) = queued
            answer = {**answer, "id": item.seq, "text": item.text, "voice": item.voice}
        else:
            assert queued == []
        assert got == (status, answer)


async def test_panel_actions_use_the_same_state_as_chat_commands(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app:
        await _ready(app)
        async with aiohttp.ClientSession(headers=_auth(app)) as http:

            async def post(path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
                async with http.post(_url(app, path), json=body or {}) as res:
                    return res.status, await res.json()

            # The panel answers in the chat command's words (one wording per action).
            assert await post("/api/pause") == (
                200,
                {"ok": True, "message": "paused; !resume continues"},
            )
            assert app.speaker.paused
            assert app.store.settings.paused
            for text in ("first message", "second message", "third message"):
                status, body = await post("/api/ingest", {"user": "viewer", "text": text})
                assert status == 202, body
            ids = [it.seq for it in app.speaker.queue.snapshot()]
            assert len(ids) == 3

            # Remove one item: only that one goes.
            status, body = await post("/api/remove", {"id": ids[1]})
            assert status == 200
            assert body["message"] == "removed viewer's message"
            assert [it.seq for it in app.speaker.queue.snapshot()] == [ids[0], ids[2]]
            status, body = await post("/api/remove", {"id": ids[1]})
            assert status == 404
            assert "no longer queued" in body["error"]
            assert (await post("/api/remove", {"id": "x"}))[0] == 400

            # Volume: the player and the database both change (as !volume does).
            assert await post("/api/volume", {"volume": 35}) == (
                200,
                {"ok": True, "message": "volume 35%"},
            )
            assert app.player.volume == pytest.approx(0.35)
            assert app.store.settings.volume == pytest.approx(0.35)
            assert (await post("/api/volume", {"volume": 101}))[0] == 400
            assert (await post("/api/volume", {"volume": True}))[0] == 400

            # Mute with a duration, shown in the state; unmute lifts it.
            status, body = await post("/api/mute", {"user": "Troll", "duration": "10m"})
            assert status == 200
            assert body["message"] == "muted troll for 10 minutes"
            troll = ChatUser(id="99", login="troll", display_name="Troll", platform=Platform.TWITCH)
            mute = app.store.mute_of(troll)
            assert mute is not None
            assert mute.by == "panel"
            assert mute.until == pytest.approx(time.time() + 600, abs=30)
            async with http.get(_url(app, "/api/state")) as res:
                state = await res.json()
            assert [m["user"] for m in state["mutes"]] == ["troll"]
            assert (await post("/api/mute", {"user": "bad name!!"}))[0] == 400
            assert (await post("/api/mute", {"user": "x", "duration": "soon"}))[0] == 400
            assert await post("/api/unmute", {"user": "troll"}) == (
                200,
                {"ok": True, "message": "unmuted troll"},
            )
            assert app.store.mute_of(troll) is None
            assert (await post("/api/unmute", {"user": "troll"}))[1]["message"] == (
                "troll was not muted"
            )

            # TTS off drops the queue (as !ttsoff does) and is remembered.
            assert (await post("/api/tts", {"enabled": False}))[0] == 200
            assert not app.chat.enabled
            assert not app.store.settings.enabled
            assert len(app.speaker.queue) == 0
            status, body = await post("/api/ingest", {"user": "viewer", "text": "hello?"})
            assert (status, body["reason"]) == (200, "tts off")
            assert (await post("/api/tts", {"enabled": "on"}))[0] == 200
            assert app.chat.enabled

            # Clear empties the queue; resume and the rest plays.
            for text in ("one", "two"):
                await post("/api/ingest", {"user": "viewer2", "text": text})
            assert await post("/api/clear") == (
                200,
                {"ok": True, "message": "cleared 2 queued messages"},
            )
            assert await post("/api/skip") == (200, {"ok": True, "message": "nothing is playing"})
            assert (await post("/api/resume"))[0] == 200
            assert not app.speaker.paused
            assert not app.store.settings.paused


async def test_the_panel_is_pushed_changes_made_from_chat(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    """A moderator's !volume and !mute in chat show up on the open panel at once."""
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app, aiohttp.ClientSession() as http:
        assert app.web is not None
        ws = await http.ws_connect(_url(app, f"/ws/panel?token={app.web.token}"))
        state = await _next_state(ws, lambda s: s["type"] == "state")
        assert state["volume"] == 100
        assert state["mutes"] == []
        assert state["engine"]["state"] in ("stopped", "loading", "warming", "ready")
        state = await _next_state(ws, lambda s: s["engine"]["state"] == "ready")
        assert state["engine"]["detail"]
        replies: list[str] = []

        async def reply(text: str) -> None:
            replies.append(text)

        mod = ChatUser(
            id="7",
            login="mod",
            display_name="Mod",
            roles=frozenset({Role.MODERATOR}),
            platform=Platform.TWITCH,
        )
        await app.on_message(ChatMessage("c1", mod, "!volume 40", "terminal", reply=reply))
        state = await _next_state(ws, lambda s: s["volume"] == 40)
        await app.on_message(ChatMessage("c2", mod, "!mute @spammer 1h", "terminal", reply=reply))
        state = await _next_state(ws, lambda s: bool(s["mutes"]))
        assert state["mutes"][0]["user"] == "spammer"
        assert state["mutes"][0]["by"] == "mod"
        assert replies == ["volume 40%", "muted spammer for 1 hour"]
        await ws.close()


async def test_the_overlay_shows_the_caption_while_it_plays_then_clears(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server) as app, aiohttp.ClientSession() as http:
        await _ready(app)
        log = EventLog(app)
        overlay = await http.ws_connect(_url(app, "/ws/overlay"))
        assert (await overlay.receive_json(timeout=10))["caption"] is None
        viewer = ChatUser(
            id="5", login="viewer", display_name="Viewer_42", platform=Platform.TWITCH
        )
        await app.on_message(ChatMessage("m1", viewer, "what a play that was", "terminal"))
        shown = await overlay.receive_json(timeout=60)
        shown_at = time.monotonic()
        # The caption is the filtered text without "NAME says", with the name on its own.
        assert shown["caption"]["name"] == "Viewer_42"
        assert shown["caption"]["text"] == "what a play that was"
        cleared = await overlay.receive_json(timeout=60)
        cleared_at = time.monotonic()
        assert cleared == {"type": "caption", "caption": None, "audio": False}
        started_at, _ = await log.wait_for(lambda e: e.kind is SpeechEventKind.STARTED)
        finished_at, finished = await log.wait_for(lambda e: e.kind is SpeechEventKind.FINISHED)
        assert finished.outcome is Outcome.PLAYED
        assert started_at <= shown_at < finished_at <= cleared_at
        await overlay.close()


ITEM_KEYS = {"id", "user", "name", "text", "caption", "voice", "source", "platform", "paid"}
"""What panel.js reads of a queued or playing message."""


async def test_the_pages_json_keeps_the_fields_the_pages_read(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    """The typed models (bot/web/models.py) send the same fields as the pages have always read,
    including the shapes that differ: history read back from the database after a restart has
    no item number and no platform key."""
    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        log = EventLog(app)
        get = {"headers": _auth(app)}
        overlay = await http.ws_connect(_url(app, "/ws/overlay"))
        assert await overlay.receive_json(timeout=10) == {
            "type": "caption",
            "caption": None,
            "audio": False,
        }
        app.speaker.pause()
        async with http.post(
            _url(app, "/api/ingest"), json={"user": "Shape Fan", "text": "hello shapes"}, **get
        ) as res:
            assert res.status == 202
            queued = await res.json()
        assert set(queued) == {"ok", "status", "reason", "id", "text", "voice"}
        async with http.post(_url(app, "/api/mute"), json={"user": "troll"}, **get) as res:
            assert set(await res.json()) == {"ok", "message"}
        async with http.get(_url(app, "/api/state"), **get) as res:
            state = await res.json()
        assert set(state) == {
            "type",
            "now",
            "engine",
            "paused",
            "enabled",
            "volume",
            "current",
            "queue",
            "history",
            "mutes",
            "voices",
            "default_voice",
            "synthesis",
        }
        assert state["type"] == "state"
        assert set(state["engine"]) == {"state", "detail"}
        assert state["synthesis"] == {  # nothing heard yet
            "first_chunk_s": None,
            "synthesis_s": None,
            "rtf": None,
            "batch_size": None,
        }
        (item,) = state["queue"]
        assert item == {
            "id": queued["id"],
            "user": "shape_fan",
            "name": "Shape Fan",
            "text": queued["text"],
            "caption": "hello shapes",
            "voice": queued["voice"],
            "source": "http",
            "platform": "http",
            "paid": False,
        }
        (mute,) = state["mutes"]
        assert mute == {"user": "troll", "platform": mute["platform"], "until": None, "by": "panel"}
        async with http.get(_url(app, "/api/voices"), **get) as res:
            assert set(await res.json()) == {"voices", "default"}

        app.speaker.resume()
        shown = await overlay.receive_json(timeout=60)
        assert shown["caption"] == {
            "id": queued["id"],
            "name": "Shape Fan",
            "text": "hello shapes",
            "voice": queued["voice"],
            "platform": "http",
        }
        await log.wait_for(lambda e: e.kind is SpeechEventKind.FINISHED)
        await overlay.close()
        async with http.get(_url(app, "/api/state"), **get) as res:
            (spoken,) = (await res.json())["history"]
        assert set(spoken) == ITEM_KEYS | {"outcome", "detail", "at"}
        assert (spoken["id"], spoken["platform"], spoken["outcome"]) == (
            queued["id"],
            "http",
            "played",
        )

    async with espeak_bot(tmp_path, pulse_server) as app, aiohttp.ClientSession() as http:
        state = await _next_state(
            await http.ws_connect(_url(app, "/ws/panel"), headers=_auth(app)),
            lambda s: bool(s["history"]),
        )
        (remembered,) = state["history"]
        assert remembered == {
            "id": None,
            "user": "shape_fan",
            "name": "shape_fan",
            "text": queued["text"],
            "caption": queued["text"],
            "voice": queued["voice"],
            "source": "",
            "paid": False,
            "outcome": "played",
            "detail": remembered["detail"],
            "at": remembered["at"],
        }


async def test_a_busy_port_leaves_the_bot_running_without_the_panel(
    tmp_path: Path,
    tiny_f5: dict[str, Any],
    pulse_server: PulseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        async with running_bot(tmp_path, tiny_f5, pulse_server, web={"port": port}) as app:
            assert app.web is not None
            assert not app.web.running
            assert "web.port" in caplog.text
            await _ready(app)
            await app.on_message(
                ChatMessage(
                    "m1",
                    ChatUser("1", "a", "a", platform=Platform.TERMINAL),
                    "still speaking",
                    "terminal",
                )
            )
            assert app.speaker.current is not None or len(app.speaker.queue) == 1


async def test_web_enabled_false_starts_no_server(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    async with running_bot(tmp_path, tiny_f5, pulse_server, web={"enabled": False}) as app:
        assert app.web is None
    assert not (tmp_path / "state" / TOKEN_FILE_NAME).exists()


# -- the real process, as a streamer runs it ---------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    """``python -m bot`` with stdin kept open (the terminal chat) and stderr collected."""

    def __init__(self, config: Path, cwd: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_line(self, needle: str, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never logged:\n" + "\n".join(self.lines))

    def finish(self) -> int:
        """End the terminal input: the bot drains its queue and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=180)
        self._reader.join(timeout=10)
        return code


def test_the_cli_prints_a_ready_link_once_and_the_documented_curl_works(
    tmp_path: Path, tiny_f5: dict[str, Any], pulse_server: PulseServer
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    port = _free_port()
    config = bot_config(tmp_path, tiny_f5, pulse_server, web={"port": port})
    env = {**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)}

    bot = _Process(config, tmp_path, env)
    try:
        line = bot.wait_line("control panel: ")
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/)\?token=([A-Za-z0-9_-]+)", line)
        assert match is not None, line
        assert int(match.group(2)) == port
        token = match.group(3)
        token_file = tmp_path / "state" / TOKEN_FILE_NAME
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        bot.wait_line(f"http://127.0.0.1:{port}/overlay")
        bot.wait_line("f5 engine ready")
        # The example from docs/web.md, verbatim apart from the address and the token.
        body = '{"user": "AlertBox", "text": "Thanks for the sub, friend!", "voice": "alice"}'
        answer = subprocess.run(
            [
                curl,
                "-sS",
                f"http://127.0.0.1:{port}/api/ingest",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        reply = json.loads(answer.stdout)
        assert reply["status"] == "queued"
        assert reply["text"] == "Alert Box says Thanks for the sub, friend!"
        assert reply["voice"] == "alice"
        bot.wait_line("speaking alertbox (voice alice): Alert Box says Thanks for the sub, friend!")
        refused = subprocess.run(
            [
                curl,
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                f"http://127.0.0.1:{port}/api/skip",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert refused.stdout == "401"
        assert bot.finish() == 0
    finally:
        if bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait()
    assert not any("Traceback" in ln for ln in bot.lines), "\n".join(bot.lines)

    # A second run reuses the token and does not print it.
    again = _Process(config, tmp_path, env)
    try:
        again.wait_line("control panel: ")
        assert again.finish() == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()
    assert not any(token in ln for ln in again.lines)
    assert any(str(token_file) in ln for ln in again.lines)
