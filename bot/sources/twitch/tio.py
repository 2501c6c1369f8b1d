"""The one module that relies on twitchio's internals (tested against twitchio 3.3.2).

twitchio has no public API for three things the Twitch source needs, so this module reaches
into its private state, and nothing else in the bot does. ``tests/bot/sources/twitch/
test_tio.py`` fails loudly, naming what changed, when an upgrade moves any of it: the version
pin, a fingerprint of every twitchio method whose behaviour the code here depends on, and a
behavioural check against the Twitch double.

1. **No chat lost in a ``session_reconnect``.** Twitch asks a client to move with a
   ``session_reconnect`` message on the old websocket and keeps delivering events on the old
   socket until the new one is welcomed (and, in practice, a little after). twitchio 3.3.2
   handles that message *inside* the old socket's read loop: it opens the new socket, waits
   for its welcome, then closes the old one, and the events buffered on the old socket in the
   meantime are never read. :class:`DrainingWebsocket` moves in the background instead, so
   the old socket keeps being read, and closes it only once Twitch has closed it or it has
   been quiet for a moment after the move. Twitch may deliver an event on both sockets; every
   socket of one client shares one set of notification ids (``metadata.message_id``, the same
   for a resent event), so each event is handed to twitchio's dispatcher once.
2. **Health.** twitchio gives up for good after close codes 4001/4003, a failed welcome or
   all subscriptions revoked, and its reader task can die on a frame without metadata, with
   no public signal for any of it. :func:`has_live_socket` and :func:`closed_for_good` read
   its socket table and socket flags.
3. **The default token.** Under the Device Code Flow twitchio uses the signed-in user's token
   as its "app token" for requests made without a user, and does not update it after a
   refresh (each such request then refreshes again, burning the single-use refresh token).
   :func:`set_default_token` points it at the fresh token.

When the installed twitchio differs from the tested one and its internals no longer look as
expected, the source logs it once and falls back to twitchio's own sockets (chat sent during a
move may then be lost again) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import twitchio
from twitchio.eventsub.websockets import Websocket

from bot.core.lru import LRU

log = logging.getLogger(__name__)

TESTED_VERSION = "3.3.2"
"""The twitchio release the internals used here were read from and tested against."""

MOVE_QUIET_S = 1.0
"""After a move, the old socket is closed once it has delivered nothing for this long."""
MOVE_GRACE_S = 10.0
"""After a move, the old socket is closed after this long whatever it still delivers."""
SEEN_NOTIFICATIONS = 4096
"""Notification ids remembered per client against a delivery on two sockets."""

_WEBSOCKET_INTERNALS = (
    "_client",
    "_closed",
    "_closing",
    "_connecting",
    "_http",
    "_keep_alive_timeout",
    "_listen_task",
    "_original_attempts",
    "_shard_id",
    "_subscriptions",
    "_token_for",
)
_WEBSOCKET_METHODS = (
    "_create_connection_task",
    "_process_notification",
    "_process_reconnect",
    "close",
    "connect",
)


def internals_problems() -> list[str]:
    """What of twitchio's internals used here is missing (empty when all is as tested).

    Cheap and without I/O: slot and attribute names only. The test suite checks more (a
    fingerprint of each method's source), since a renamed slot is not the only way an upgrade
    can break this module.
    """
    problems: list[str] = []
    slots = set(getattr(Websocket, "__slots__", ()))
    problems += [f"Websocket.{name}" for name in _WEBSOCKET_INTERNALS if name not in slots]
    problems += [
        f"Websocket.{m}()" for m in _WEBSOCKET_METHODS if not callable(getattr(Websocket, m, None))
    ]
    probe = twitchio.Client.__init__
    if "_websockets" not in probe.__code__.co_names:
        problems.append("Client._websockets")
    return problems


def usable() -> bool:
    """Whether :class:`DrainingWebsocket` can be used with the installed twitchio."""
    return not internals_problems()


class DrainingWebsocket(Websocket):  # type: ignore[misc]
    """twitchio's EventSub websocket, moving on ``session_reconnect`` without losing events.

    Only the move differs from twitchio's socket: the new socket is opened while this one
    keeps reading, and this one is closed after Twitch stops using it (module docstring).
    """

    __slots__ = (
        "_ishowtts_grace_s",
        "_ishowtts_heard",
        "_ishowtts_moved",
        "_ishowtts_moving",
        "_ishowtts_quiet_s",
        "_ishowtts_seen",
        "_ishowtts_tasks",
    )

    def __init__(
        self,
        *,
        seen: LRU[str, None],
        quiet_s: float = MOVE_QUIET_S,
        grace_s: float = MOVE_GRACE_S,
        **kwargs: Any,
    ) -> None:
        """Create the socket (no I/O; :meth:`connect` opens it).

        Args:
            seen: Notification ids already dispatched, shared by every socket of a client.
            quiet_s: After a move, close the old socket once it was silent this long.
            grace_s: After a move, close the old socket after this long in any case.
            **kwargs: twitchio's ``Websocket`` arguments (``client``, ``token_for``, ``http``...).
        """
        super().__init__(**kwargs)
        self._ishowtts_seen = seen
        self._ishowtts_moving = False
        self._ishowtts_moved = False
        self._ishowtts_heard = time.monotonic()
        self._ishowtts_tasks: set[asyncio.Task[None]] = set()
        self._ishowtts_quiet_s = quiet_s
        self._ishowtts_grace_s = grace_s

    @property
    def moved(self) -> bool:
        """Whether this socket handed its subscriptions to a new one (it only drains now)."""
        return bool(self._ishowtts_moved)

    # -- what differs from twitchio ----------------------------------------------------------
    async def _process_reconnect(self, data: Any) -> None:
        """Move in the background, so this socket's reader goes on reading meanwhile."""
        if self._ishowtts_moving or self._ishowtts_moved:
            return
        url = str(data["payload"]["session"]["reconnect_url"])
        log.debug("Twitch asked to move websocket %s to a new connection", self.session_id)
        self._ishowtts_moving = True
        task = asyncio.create_task(self._move(url), name=f"twitch-move-{self.session_id}")
        self._ishowtts_tasks.add(task)
        task.add_done_callback(self._ishowtts_tasks.discard)

    async def _move(self, url: str) -> None:
        new = DrainingWebsocket(
            seen=self._ishowtts_seen,
            quiet_s=self._ishowtts_quiet_s,
            grace_s=self._ishowtts_grace_s,
            keep_alive_timeout=self._keep_alive_timeout,
            reconnect_attempts=self._original_attempts,
            client=self._client,
            token_for=self._token_for,
            http=self._http,
            shard_id=self._shard_id,
        )
        new._subscriptions = self._subscriptions  # Twitch moves them with the session
        handed_over = False
        try:
            try:
                await new.connect(url=url, reconnect=False, fail_once=True)
            except Exception as exc:
                # As twitchio does: start over at the base URL and subscribe again.
                log.debug("moving to %s failed (%s); reconnecting from scratch", url, exc)
                self._ishowtts_moving = False
                await self.connect(reconnect=True)
                return
            if self._client is not None:
                self._client._websockets[self._token_for][new.session_id] = new
            handed_over = True
            self._ishowtts_moved = True
            self._ishowtts_moving = False
            await self._drain()
            await self.close()
        finally:
            if not handed_over:
                with contextlib.suppress(Exception):
                    await new.close()

    async def _drain(self) -> None:
        """Keep reading until Twitch closes this socket, it falls quiet, or the grace ends."""
        start = time.monotonic()
        self._ishowtts_heard = max(self._ishowtts_heard, start)
        reader = self._listen_task
        while reader is not None and not reader.done():
            now = time.monotonic()
            quiet_left = self._ishowtts_heard + self._ishowtts_quiet_s - now
            grace_left = start + self._ishowtts_grace_s - now
            if quiet_left <= 0 or grace_left <= 0:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), min(quiet_left, grace_left))

    async def _create_connection_task(self) -> None:
        """Start over on a lost connection as twitchio does, except while (or after) moving.

        The old socket of a move ends when Twitch closes it; that is no reason to reconnect,
        and a move in progress reconnects by itself if the new socket fails.
        """
        if self._ishowtts_moving or self._ishowtts_moved:
            return
        await super()._create_connection_task()

    async def _process_notification(self, data: Any) -> None:
        """Dispatch each notification once, whichever socket it came on first."""
        self._ishowtts_heard = time.monotonic()
        metadata = data.get("metadata") if isinstance(data, dict) else None
        notification_id = metadata.get("message_id") if isinstance(metadata, dict) else None
        anonymous = not isinstance(notification_id, str) or not notification_id
        if not anonymous and not self._ishowtts_seen.add(str(notification_id), None):
            log.debug("Twitch notification %s delivered again; ignored", notification_id)
            return
        await super()._process_notification(data)

    async def close(self, cleanup: bool = True, *, reassociate: bool = True) -> None:
        """Close as twitchio does, and stop a move still in progress (the client is closing)."""
        if cleanup:
            current = asyncio.current_task()
            for task in list(self._ishowtts_tasks):
                if task is not current:
                    task.cancel()
        await super().close(cleanup, reassociate=reassociate)


async def open_socket(
    client: Any,
    user_id: str,
    *,
    quiet_s: float = MOVE_QUIET_S,
    grace_s: float = MOVE_GRACE_S,
) -> str | None:
    """Open the EventSub socket for ``user_id``'s token as a :class:`DrainingWebsocket`.

    twitchio opens a socket on the first ``subscribe_websocket`` for a token unless one is
    registered; this registers ours first, as twitchio registers its own. Subscribe with
    ``socket_id`` set to the returned session id.

    Returns:
        The socket's session id, or None when the installed twitchio does not look like the
        tested one (then twitchio opens its own socket on the first subscription).

    Raises:
        twitchio.WebsocketConnectionException: Twitch could not be reached or sent no welcome.
    """
    problems = internals_problems()
    if problems:
        log.warning(
            "Twitch: twitchio %s is not the tested %s and lacks %s; using its own websocket, "
            "which may lose chat sent while Twitch moves the connection",
            getattr(twitchio, "__version__", "?"),
            TESTED_VERSION,
            ", ".join(problems),
        )
        return None
    socket = DrainingWebsocket(
        seen=LRU(SEEN_NOTIFICATIONS),
        quiet_s=quiet_s,
        grace_s=grace_s,
        client=client,
        token_for=user_id,
        http=client.http,
    )
    await socket.connect(fail_once=True)
    session_id = socket.session_id
    client._websockets[user_id] = {session_id: socket}
    return str(session_id)


def _sockets(client: Any, user_id: str) -> list[Any]:
    table = getattr(client, "_websockets", None)
    if not isinstance(table, dict):
        return []
    return list((table.get(user_id) or {}).values())


def has_live_socket(client: Any, user_id: str) -> bool:
    """Whether twitchio still has (or is re-establishing) a socket for ``user_id``'s token.

    A socket closed for good (4001/4003, failed welcome, all subscriptions revoked) is marked
    closed and removed; one that is reconnecting is flagged as connecting; one whose reader
    task died is neither, and will never read again.
    """
    for sock in _sockets(client, user_id):
        if getattr(sock, "_closed", False):
            continue
        if getattr(sock, "_connecting", False):
            return True
        reader = getattr(sock, "_listen_task", None)
        if reader is not None and reader.done():
            continue
        return True
    return False


def closed_for_good(sock: Any) -> bool:
    """Whether a socket in a ``websocket_closed`` event was closed for good (no reconnect)."""
    return bool(getattr(sock, "_closed", True))


def set_default_token(client: Any, access_token: str) -> None:
    """Point twitchio's default token (used for requests without a user) at ``access_token``.

    Only changes a default that is set, i.e. the Device Code Flow's user token.
    """
    http = client.http
    if getattr(http, "_app_token", None) not in (None, access_token):
        http._app_token = access_token
