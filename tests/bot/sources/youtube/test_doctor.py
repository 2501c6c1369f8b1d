"""``ishowtts doctor``'s YouTube line: the saved sign-in, its scopes, and (online, against the
double through the real client library) whether Google accepts it and what is live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import parse_config
from bot.setup.doctor import check_youtube
from tests.bot.sources.youtube.harness import sign_in
from tests.support.youtube_double import READONLY, YouTubeDouble


def _cfg(double: YouTubeDouble, tmp_path: Path, **youtube: Any) -> Any:
    data = {
        "storage": {"dir": str(tmp_path / "state")},
        "youtube": {**double.config(), "enabled": True, **youtube},
    }
    return parse_config(data, tmp_path)


def test_off_is_skipped(tmp_path: Path) -> None:
    cfg = parse_config({"storage": {"dir": str(tmp_path)}}, tmp_path)
    assert check_youtube(cfg).status == "skip"


async def test_off_but_signed_in_says_how_to_switch_it_on(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    sign_in(youtube_double, tmp_path / "state")
    result = check_youtube(_cfg(youtube_double, tmp_path, enabled=False))
    assert result.status == "skip"
    assert "signed in as Streamer" in result.summary
    assert result.fix is not None
    assert "youtube.enabled: true" in result.fix


async def test_not_signed_in_fails_with_the_login_command(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    result = check_youtube(_cfg(youtube_double, tmp_path), online=False)
    assert result.status == "fail"
    assert result.fix is not None
    assert "ishowtts login youtube" in result.fix


async def test_no_client_at_all_says_where_to_make_one(tmp_path: Path) -> None:
    cfg = parse_config({"storage": {"dir": str(tmp_path)}, "youtube": {"enabled": True}}, tmp_path)
    result = check_youtube(cfg, online=False)
    assert result.status == "fail"
    assert "client" in result.summary


async def test_signed_in_and_live_is_ok(youtube_double: YouTubeDouble, tmp_path: Path) -> None:
    double = youtube_double
    sign_in(double, tmp_path / "state")
    cfg = _cfg(double, tmp_path)
    idle = await _check(cfg)
    assert idle.status == "ok"
    assert "nothing is live" in idle.summary
    double.go_live(title="Friday stream")
    live = await _check(cfg)
    assert live.status == "ok"
    assert "Friday stream" in live.summary
    assert double.quota_used["liveBroadcasts.list"] == 2


async def test_an_expired_token_is_refreshed_in_memory_and_the_file_left_alone(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    double = youtube_double
    store, token = sign_in(double, tmp_path / "state")
    double.expire(token.access)
    before = store.path.read_bytes()
    result = await _check(_cfg(double, tmp_path))
    assert result.status == "ok"
    assert store.path.read_bytes() == before


async def test_a_revoked_sign_in_fails(youtube_double: YouTubeDouble, tmp_path: Path) -> None:
    double = youtube_double
    _store, token = sign_in(double, tmp_path / "state")
    double.expire(token.access)
    double.revoke(token.refresh)
    result = await _check(_cfg(double, tmp_path))
    assert result.status == "fail"
    assert "login youtube" in result.summary


async def test_a_read_only_sign_in_warns_that_replies_are_off(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    sign_in(youtube_double, tmp_path / "state", scopes=(READONLY,))
    result = await _check(_cfg(youtube_double, tmp_path))
    assert result.status == "warn"
    assert "cannot post" in result.summary


async def test_an_unreachable_youtube_is_said_not_failed(
    youtube_double: YouTubeDouble, tmp_path: Path
) -> None:
    sign_in(youtube_double, tmp_path / "state")
    cfg = _cfg(youtube_double, tmp_path, api_url="http://127.0.0.1:9/")
    result = await _check(cfg)
    assert result.status == "ok"
    assert "could not be reached" in result.summary


async def _check(cfg: Any) -> Any:
    import asyncio

    # the doctor blocks (it is a command-line tool); the double needs this loop to answer
    return await asyncio.to_thread(check_youtube, cfg, online=True, timeout_s=3.0)
