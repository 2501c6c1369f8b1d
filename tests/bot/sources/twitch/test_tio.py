"""Loud failures for a twitchio upgrade: what bot/sources/twitch/tio.py relies on is still so.

tio.py is the one module that reaches into twitchio's private state (its websocket's move
on ``session_reconnect``, its socket table and flags, its default token). These tests fail
with a message naming what to re-check when any of it changes:

* the installed twitchio is the version the code was read from, and pyproject pins it;
* every twitchio method tio.py overrides, copies or depends on has the source it was read
  from (a fingerprint of its text);
* behaviour: twitchio's own websocket still loses the events sent on the old socket during a
  move (so the workaround is still needed and still hooks the right place), and ours
  delivers them, each once.
"""

from __future__ import annotations

import hashlib
import inspect
import tomllib
from pathlib import Path

import pytest
import twitchio
from twitchio.authentication.tokens import ManagedHTTPClient
from twitchio.eventsub.websockets import Websocket

from bot.sources.twitch import tio
from tests.bot.sources.twitch.harness import Sink, running_source, sign_in
from tests.support import REPO
from tests.support.twitch_double import TwitchDouble, User

RECHECK = (
    "twitchio changed; re-read its websocket (eventsub/websockets.py) and re-check every "
    "override and private access in bot/sources/twitch/tio.py, then update this fingerprint"
)

FINGERPRINTS = {
    "Websocket.__init__": "c0edd49adb4f2c39",
    "Websocket.connect": "f785965c43bdf2eb",
    "Websocket.close": "869a3d84ca3c22d6",
    "Websocket._listen": "3ff2aa28a67d51f3",
    "Websocket._reconnect": "ddd0d977a00c2434",
    "Websocket._process_reconnect": "d67a9fde62e80b3f",
    "Websocket._process_welcome": "ba439d38e22a318a",
    "Websocket._process_notification": "6c7c8769778731ff",
    "Websocket._create_connection_task": "6edc3ba603259e04",
    "Websocket._cleanup": "3fffd4630be85da4",
    "Websocket._process_keepalive": "90af7404872e52f2",
    "Client.subscribe_websocket": "5e059e809a137321",
    "Client.close": "d86ea17987c252e0",
    "ManagedHTTPClient.request": "3e526566d916ab4f",
}
_OWNERS = {
    "Websocket": Websocket,
    "Client": twitchio.Client,
    "ManagedHTTPClient": ManagedHTTPClient,
}


def test_twitchio_is_the_tested_version_and_pinned() -> None:
    assert twitchio.__version__ == tio.TESTED_VERSION, RECHECK
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("twitchio")]
    assert pins == [f"twitchio=={tio.TESTED_VERSION}"], "twitchio must be pinned exactly"


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_the_twitchio_code_tio_relies_on_is_unchanged(name: str) -> None:
    owner, method = name.split(".")
    source = inspect.getsource(getattr(_OWNERS[owner], method))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == FINGERPRINTS[name], (
        f"{name}: {RECHECK}"
    )


def test_the_private_names_tio_uses_exist() -> None:
    assert tio.internals_problems() == [], RECHECK
    assert tio.usable()


async def _one_move_with_chat_in_the_window(
    double: TwitchDouble, alice: User, sink: Sink, lines: int
) -> list[str]:
    """Move once; send ``lines`` chat lines while the new socket waits for its welcome."""
    old = double.current()
    double.reconnect_welcome_delay_s = 0.4
    await double.session_reconnect(old)
    sent = [await double.chat(alice, f"in the window {i}") for i in range(lines)]
    await double.wait_subscribed(exclude=[old])
    after = await double.chat(alice, "after the move")
    await sink.wait(lambda _e: after in [m.id for m in sink.messages])
    return sent


async def test_stock_twitchio_still_loses_events_sent_during_a_move(
    double: TwitchDouble, alice: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If this fails, twitchio reads the old socket during a move now: tio.py may go."""

    async def stock_socket(*_args: object, **_kwargs: object) -> None:
        return None  # the source then lets twitchio open its own websocket

    monkeypatch.setattr(tio, "open_socket", stock_socket)
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        sent = await _one_move_with_chat_in_the_window(double, alice, sink, lines=3)
        delivered = {m.id for m in sink.messages}
        assert not set(sent) & delivered, (
            "twitchio 3.3.2 drops what arrives on the old socket during a move; it no longer "
            "does: " + RECHECK
        )


async def test_draining_socket_delivers_events_sent_during_a_move(
    double: TwitchDouble, alice: User, tmp_path: Path
) -> None:
    store, _ = sign_in(double, tmp_path / "t.json")
    sink = Sink()
    async with running_source(double, store, sink):
        sent = await _one_move_with_chat_in_the_window(double, alice, sink, lines=3)
        delivered = [m.id for m in sink.messages]
        assert delivered == [*sent, delivered[-1]]


async def test_the_default_token_follows_a_refresh(double: TwitchDouble) -> None:
    """set_default_token changes the Device Code Flow's default token, never sets one."""
    client = twitchio.Client(client_id=double.client_id, client_secret=None)
    try:
        http = client.http
        tio.set_default_token(client, "fresh")
        assert http._app_token is None  # no default set: nothing to follow
        http._app_token = "stale"
        tio.set_default_token(client, "fresh")
        assert http._app_token == "fresh"
    finally:
        await client.close()
