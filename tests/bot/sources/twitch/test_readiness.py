"""Twitch readiness has one home: the source and the doctor ask ``readiness`` and agree.

Every way Twitch can be unusable (no channel, no client id, a damaged token file, nobody
signed in, a sign-in for another application, a sign-in without the chat scope) is judged by
``bot.sources.twitch.readiness``; the source refuses to start with that reason, and the doctor
reports the same reason and fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.setup.doctor import check_twitch
from bot.sources.twitch.auth import StoredToken, TokenStore, token_path
from bot.sources.twitch.readiness import (
    ALWAYS_WANTED,
    FOLLOW_SCOPE,
    Problem,
    assess,
    describe_missing,
    login_scopes,
    read_readiness,
    readiness,
    wanted_scopes,
)
from bot.sources.twitch.settings import TwitchConfig
from bot.sources.twitch.source import TwitchSetupError, twitch_source_from_config
from bot.state.settings import state_dir

CLIENT = "client-1"


def token(client_id: str = CLIENT, scopes: tuple[str, ...] = ("user:read:chat",)) -> StoredToken:
    return StoredToken(client_id, "42", "streamer", "a", "r", scopes)


def test_assess_names_each_problem_with_a_fix() -> None:
    cases: list[tuple[dict[str, Any], StoredToken | None, str | None, Problem]] = [
        ({}, None, None, Problem.NO_CHANNEL),
        ({"channel": "streamer"}, None, None, Problem.NO_CLIENT_ID),
        ({"channel": "streamer", "client_id": CLIENT}, None, "damaged", Problem.UNREADABLE),
        ({"channel": "streamer", "client_id": CLIENT}, None, None, Problem.NOT_SIGNED_IN),
        ({"channel": "streamer", "client_id": CLIENT}, token("x"), None, Problem.OTHER_CLIENT),
        (
            {"channel": "streamer", "client_id": CLIENT},
            token(scopes=("user:write:chat",)),
            None,
            Problem.MISSING_SCOPE,
        ),
    ]
    for values, saved, unreadable, problem in cases:
        cfg = TwitchConfig.model_validate({"client_id": "", **values})
        judged = assess(cfg, saved, unreadable=unreadable)
        assert judged.problem is problem, values
        assert not judged.ready
        assert judged.reason
        assert judged.fix
        assert judged.reason in judged.message


def test_a_ready_sign_in_reports_the_optional_scopes_it_lacks() -> None:
    cfg = TwitchConfig(channel="streamer", client_id=CLIENT)
    judged = assess(cfg, token(), wanted=wanted_scopes(cfg, follows=True))
    assert judged.ready
    assert judged.missing == (*ALWAYS_WANTED, FOLLOW_SCOPE)
    assert "follows" in describe_missing(judged.missing)
    assert judged.lost(["user:write:chat"]) == ("user:read:chat",)
    assert judged.lost(["user:read:chat"]) == ()
    assert login_scopes(wanted_scopes(cfg, follows=True)) == (
        "user:read:chat",
        *ALWAYS_WANTED,
        FOLLOW_SCOPE,
    )


def _config(tmp_path: Path, **twitch: Any) -> Any:
    return parse_config(
        {"chat": {"source": "twitch"}, "storage": {"dir": str(tmp_path / "s")}, "twitch": twitch},
        tmp_path,
    )


@pytest.mark.parametrize(
    ("twitch", "saved", "damaged"),
    [
        ({"client_id": CLIENT}, None, False),
        ({"channel": "streamer", "client_id": CLIENT}, None, False),
        ({"channel": "streamer", "client_id": CLIENT}, None, True),
        ({"channel": "streamer", "client_id": CLIENT}, token("other"), False),
        ({"channel": "streamer", "client_id": CLIENT}, token(scopes=("user:write:chat",)), False),
    ],
)
async def test_source_and_doctor_give_the_same_reason(
    tmp_path: Path, twitch: dict[str, Any], saved: StoredToken | None, damaged: bool
) -> None:
    cfg = _config(tmp_path, **twitch)
    path = token_path(state_dir(cfg.storage))
    if saved is not None:
        TokenStore(path).write(saved)
    if damaged:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{broken", encoding="utf-8")
    judged = read_readiness(cfg.twitch, state_dir(cfg.storage))
    assert (await readiness(cfg.twitch, TokenStore(path))) == judged  # the async read agrees
    with pytest.raises(TwitchSetupError) as refused:
        await twitch_source_from_config(cfg.twitch, state_dir(cfg.storage), required=True)
    doctor = check_twitch(cfg, validate_url=None)
    assert doctor.status == "fail"
    assert judged.reason in str(refused.value)
    assert judged.reason in doctor.summary
    assert doctor.fix == judged.fix


def _login_requests(tmp_path: Path, extra: dict[str, Any]) -> set[str]:
    """Run ``ishowtts login`` against the double (on its own loop); the scopes it asked for."""
    import asyncio
    import threading

    from bot.setup.login import login_command
    from tests.support.twitch_double import TwitchDouble, running_double

    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), threading.Event()
    box: dict[str, TwitchDouble] = {}

    async def serve() -> None:
        async with running_double() as d:
            box["double"] = d
            started.set()
            while not stop.is_set():
                for entry in list(d.device_codes.values()):
                    if entry["approved"] is None:  # approve exactly what was asked for
                        d.approve_device(entry["user_code"], d.bot, entry["scopes"].split())
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert started.wait(10)
        double = box["double"]
        twitch = {"channel": "streamer", "client_id": double.client_id, **extra.pop("twitch", {})}
        data = {"storage": {"dir": str(tmp_path / "state")}, "twitch": twitch, **extra}
        cfg = parse_config(data, tmp_path)
        assert login_command(cfg) == 0
    finally:
        stop.set()
        thread.join(10)
        loop.close()
    (entry,) = double.device_codes.values()
    saved = TokenStore(token_path(state_dir(cfg.storage))).read()
    assert saved is not None
    assert set(saved.scopes) == set(entry["scopes"].split())
    return set(entry["scopes"].split())


def test_login_asks_for_the_scopes_the_config_uses(tmp_path: Path, capsys: Any) -> None:
    from bot.sources.twitch.auth import SCOPES

    assert _login_requests(tmp_path / "plain", {}) == set(SCOPES)  # unchanged by default
    asked = _login_requests(
        tmp_path / "features",
        {
            "announcements": {"enabled": True, "follow": {"enabled": True}},
            "twitch": {"automod": {"watch": True}},
        },
    )
    assert asked == {*SCOPES, "moderator:read:followers", "moderator:manage:automod"}
    capsys.readouterr()


def test_features_the_account_cannot_serve_are_named_by_source_and_doctor(
    tmp_path: Path,
) -> None:
    from bot.sources.twitch.readiness import Feature, features_off

    data = {
        "storage": {"dir": str(tmp_path / "s")},
        "twitch": {"channel": "streamer", "client_id": CLIENT, "automod": {"watch": True}},
        "announcements": {"enabled": True, "follow": {"enabled": True}},
    }
    cfg = parse_config(data, tmp_path)
    bot = StoredToken(CLIENT, "9", "ishowbot", "a", "r", ("user:read:chat", *ALWAYS_WANTED))
    off = {o.feature: o for o in features_off(cfg.twitch, bot, follows=True, redemptions=True)}
    assert set(off) == {Feature.FOLLOWS, Feature.REDEMPTIONS, Feature.AUTOMOD}
    assert off[Feature.REDEMPTIONS].scope is None  # the account, not a scope
    assert "signed in as ishowbot" in off[Feature.REDEMPTIONS].message
    streamer = StoredToken(CLIENT, "1", "Streamer", "a", "r", ("user:read:chat", *ALWAYS_WANTED))
    off2 = features_off(cfg.twitch, streamer, follows=False, redemptions=True)
    assert [o.feature for o in off2] == [Feature.AUTOMOD]  # the broadcaster gets redemptions
    TokenStore(token_path(state_dir(cfg.storage))).write(bot)
    doctor = check_twitch(cfg, validate_url=None)
    assert doctor.status == "warn"
    assert off[Feature.REDEMPTIONS].message in doctor.summary
    assert "moderator:read:followers" in doctor.summary
