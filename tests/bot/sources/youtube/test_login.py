"""``ishowtts login youtube``: Google's device flow through oauthlib/requests-oauthlib and the
google-auth credentials it yields, against the double's OAuth endpoints; the token file."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.sources.youtube.auth import (
    YouTubeAuthError,
    YouTubeToken,
    YouTubeTokenStore,
    device_login,
    token_path,
)
from tests.bot.sources.youtube.harness import youtube_cfg
from tests.support.youtube_double import SCOPE, YouTubeDouble, running_double


async def _approve_when_asked(double: YouTubeDouble, *, deny: bool = False) -> None:
    await double.wait_for(
        lambda: any(c["state"] == "pending" for c in double.device_codes.values())
    )
    double.approve_device(deny=deny)


async def test_device_sign_in_yields_a_refreshable_youtube_token(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    shown: list[str] = []
    approver = asyncio.ensure_future(_approve_when_asked(double))
    token = await asyncio.to_thread(device_login, youtube_cfg(double), shown.append)
    await approver
    assert token.channel_id == double.streamer.id
    assert token.channel_title == "Streamer"
    assert token.scopes == (SCOPE,)
    assert token.can_read
    assert token.can_post
    assert token.access_token in double.tokens
    assert token.refresh_token in double.refresh_tokens
    assert token.expiry  # google-auth knows when to refresh
    assert any("ABC-DEF-GHI" in line for line in shown)
    assert any("google.com/device" in line for line in shown)
    store = YouTubeTokenStore(token_path(tmp_path / "state"))
    store.write(token)
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    assert store.read() == token


async def test_a_declined_sign_in_is_a_clear_error(youtube_double: YouTubeDouble) -> None:
    double = youtube_double
    approver = asyncio.ensure_future(_approve_when_asked(double, deny=True))
    with pytest.raises(YouTubeAuthError, match="declined"):
        await asyncio.to_thread(device_login, youtube_cfg(double), lambda _l: None)
    await approver


async def test_a_wrong_client_is_a_clear_error(youtube_double: YouTubeDouble) -> None:
    cfg = youtube_cfg(youtube_double, client_id="wrong.apps.googleusercontent.com")
    with pytest.raises(YouTubeAuthError, match="TVs and Limited Input"):
        await asyncio.to_thread(device_login, cfg, lambda _l: None)


def test_no_client_says_where_to_set_it() -> None:
    from bot.sources.youtube.settings import YouTubeConfig

    with pytest.raises(YouTubeAuthError, match=r"youtube\.client_id"):
        device_login(YouTubeConfig(), lambda _l: None)


def test_a_damaged_token_file_says_how_to_recover(tmp_path: Path) -> None:
    store = YouTubeTokenStore(token_path(tmp_path))
    store.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(YouTubeAuthError, match="login youtube"):
        store.read()
    store.path.write_text(json.dumps({"version": 1, "client_id": "x"}), encoding="utf-8")
    with pytest.raises(YouTubeAuthError, match="missing"):
        store.read()


def test_a_token_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    store = YouTubeTokenStore(token_path(tmp_path))
    token = YouTubeToken(
        client_id="c",
        client_secret="s",
        channel_id="UC1",
        channel_title="t",
        access_token="a",
        refresh_token="r",
        token_uri="http://127.0.0.1/token",
        scopes=(SCOPE,),
    )
    store.write(token)
    os.chmod(store.path, 0o644)
    again = store.read()
    assert again is not None
    assert again.access_token == "a"
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_cli_login_youtube_signs_in_and_saves_the_token(tmp_path: Path, capsys: Any) -> None:
    """``ishowtts login youtube`` end to end; the double runs on its own loop in a thread."""
    from bot.cli import main

    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, YouTubeDouble] = {}

    async def serve() -> None:
        async with running_double() as d:
            box["double"] = d
            started.set()
            while not stop.is_set():
                if any(c["state"] == "pending" for c in d.device_codes.values()):
                    d.approve_device()  # the streamer approves in the browser
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    saved = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the double speaks plain http
    try:
        assert started.wait(10)
        double = box["double"]
        config = tmp_path / "config.yaml"
        section = {
            k: v
            for k, v in double.config().items()
            if k in ("client_id", "client_secret", "api_url", "oauth_url")
        }
        config.write_text(
            "storage: {dir: state}\nyoutube: " + json.dumps(section) + "\n", encoding="utf-8"
        )
        assert main(["--config", str(config), "login", "youtube"]) == 0
    finally:
        if saved is None:
            os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
        else:
            os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = saved
        stop.set()
        thread.join(10)
        loop.close()
    out = capsys.readouterr().out
    assert "Signed in to YouTube as Streamer" in out
    assert "youtube.enabled: true" in out
    token = YouTubeTokenStore(token_path(tmp_path / "state")).read()
    assert token is not None
    assert token.channel_id == double.streamer.id


def test_cli_login_youtube_without_a_client_explains(tmp_path: Path, capsys: Any) -> None:
    from bot.cli import main

    config = tmp_path / "config.yaml"
    config.write_text("storage: {dir: state}\n", encoding="utf-8")
    os.environ.pop("ISHOWTTS_YOUTUBE_CLIENT_ID", None)
    assert main(["--config", str(config), "login", "youtube"]) == 2
    assert "youtube.client_id" in capsys.readouterr().err
