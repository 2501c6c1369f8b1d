"""An in-process Twitch double: OAuth, the Helix endpoints twitchio uses, EventSub websocket.

The real twitchio client talks to it over real HTTP and websockets on 127.0.0.1 (a free port):
twitchio has no URL settings, but reads ``twitchio.eventsub.websockets.WSS``, ``Route.BASE`` and
``Route.ID_BASE`` at call time, so the ``twitch_double`` fixture points those at the double
and restores them afterwards.

It behaves like Twitch where the bot depends on it (see /work/shared/notes/twitchio.md):

* OAuth: ``/oauth2/validate``, ``/oauth2/token`` (refresh tokens are single-use; the device
  code grant answers ``authorization_pending`` until a test approves), ``/oauth2/device``.
* Helix: ``users``, ``eventsub/subscriptions`` (websocket transport, scope and condition
  checks, 409 on duplicates), ``chat/messages`` (the sent message comes back as a
  ``channel.chat.message``, like on Twitch), ``channel_points/custom_rewards`` (broadcaster
  token and scope required). Expired or unknown tokens get 401 "Invalid OAuth token".
* EventSub websocket: welcome, keepalives, notifications, ``session_reconnect`` (the new
  session inherits the subscriptions), close codes, an abrupt TCP drop, 4001 for any client
  text, optional 4003 for a session left without subscriptions; subscriptions of a session
  that ends are disabled.
* The window of a move, as hard as Twitch can make it: after ``session_reconnect`` every
  event still goes to the old socket until the new one is welcomed (``reconnect_welcome_delay_s``
  widens that window), and for ``reconnect_linger_s`` after the welcome the old socket may
  keep receiving events (``reconnect_routing``: ``old``, ``both`` sockets, or ``random``ly
  either or both), with the same notification id on both, as Twitch resends; optionally
  the double then closes the old socket itself (``reconnect_close_old_code``).

Tests drive it through methods such as :meth:`TwitchDouble.chat`, :meth:`delete`,
:meth:`session_reconnect`, :meth:`close_session`, :meth:`drop`, :meth:`send_raw`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import random
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

CHAT_TYPES = (
    "channel.chat.message",
    "channel.chat.message_delete",
    "channel.chat.clear_user_messages",
    "channel.chat.clear",
)
ALL_SCOPES = ("user:read:chat", "user:write:chat", "channel:read:redemptions")
MODERATOR_SCOPES = ("moderator:read:followers", "moderator:manage:automod")
NOTIFICATION = "channel.chat.notification"
FOLLOW = "channel.follow"
REDEMPTION = "channel.channel_points_custom_reward_redemption.add"
AUTOMOD_HOLD = "automod.message.hold"
AUTOMOD_UPDATE = "automod.message.update"
_CHEER_RE = re.compile(r"^(cheer|biblethump|kreygasm)(\d+)$", re.I)
_SCOPE_FOR = {
    **{t: "user:read:chat" for t in CHAT_TYPES},
    NOTIFICATION: "user:read:chat",
    FOLLOW: "moderator:read:followers",
    REDEMPTION: "channel:read:redemptions",
    AUTOMOD_HOLD: "moderator:manage:automod",
    AUTOMOD_UPDATE: "moderator:manage:automod",
}
"""The scope each subscription type needs (as Twitch checks it)."""
_WHO = {
    **{t: "user_id" for t in (*CHAT_TYPES, NOTIFICATION)},
    FOLLOW: "moderator_user_id",
    REDEMPTION: "broadcaster_user_id",
    AUTOMOD_HOLD: "moderator_user_id",
    AUTOMOD_UPDATE: "moderator_user_id",
}
"""The condition field that must name the token's own account."""
_MODERATED = frozenset({FOLLOW, AUTOMOD_HOLD, AUTOMOD_UPDATE})
"""Types only a moderator (or the broadcaster) of the channel may subscribe to."""


def _ts() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class User:
    """A Twitch account known to the double."""

    id: str
    login: str
    display_name: str

    def as_helix(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "login": self.login,
            "display_name": self.display_name,
            "type": "",
            "broadcaster_type": "",
            "description": "",
            "profile_image_url": f"https://example.invalid/{self.login}.png",
            "offline_image_url": "",
            "view_count": 0,
            "created_at": "2020-01-01T00:00:00Z",
        }


@dataclass
class Token:
    access: str
    refresh: str
    user: User
    scopes: tuple[str, ...]
    client_id: str
    valid: bool = True
    refresh_used: bool = False


@dataclass
class Session:
    """One EventSub websocket connection."""

    id: str
    ws: web.WebSocketResponse
    transport: Any
    subscriptions: set[str] = field(default_factory=set)
    silent: bool = False
    open: bool = True
    close_code: int | None = None
    received: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    predecessor: Session | None = None
    """The session this one replaced in a move, while it may still receive events."""
    notified: list[str] = field(default_factory=list)
    """Notification ids (``metadata.message_id``) sent on this socket, in order."""


class TwitchDouble:
    """The double; ``await start()``, point twitchio at it, ``await close()``."""

    def __init__(
        self,
        *,
        client_id: str = "ishowtts-test-client",
        keepalive_s: float = 1.0,
        welcome_keepalive_s: int = 10,
        unused_timeout_s: float | None = None,
        device_interval_s: int = 1,
        seed: int | None = None,
    ) -> None:
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.welcome_keepalive_s = welcome_keepalive_s
        self.unused_timeout_s = unused_timeout_s
        self.device_interval_s = device_interval_s
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.device_codes: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, Session] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.rewards: list[dict[str, Any]] = []
        self.moderators: set[str] = set()
        """User ids that moderate the broadcaster's channel."""
        self.held: dict[str, tuple[User, str]] = {}
        """Messages AutoMod holds, by message id."""
        self.sent: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.emotes = {"Kappa", "PogChamp", "LUL", "catJAM"}
        self.echo_before_response = False
        self.reconnect_welcome_delay_s = 0.0
        self.reconnect_linger_s = 0.0
        self.reconnect_routing = "old"
        self.reconnect_close_old_code: int | None = None
        self.rng = random.Random(seed)
        self.moves: list[tuple[str, str]] = []
        self._ids = itertools.count(5000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.broadcaster = self.add_user("streamer")
        self.bot = self.add_user("ishowbot")

    # -- set-up -------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def helix_base(self) -> str:
        return f"{self.base}/helix/"

    @property
    def id_base(self) -> str:
        return f"{self.base}/"

    @property
    def wss(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**2)
        app.router.add_get("/oauth2/validate", self._validate)
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_post("/oauth2/device", self._device)
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/eventsub/subscriptions", self._subscribe)
        app.router.add_delete("/helix/eventsub/subscriptions", self._unsubscribe)
        app.router.add_post("/helix/chat/messages", self._send_chat)
        app.router.add_get("/helix/channel_points/custom_rewards", self._rewards)
        app.router.add_get("/ws", self._websocket)
        app.middlewares.append(self._record)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            for task in list(session.tasks):
                task.cancel()
            if session.open:
                with contextlib.suppress(Exception):
                    await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    def add_user(self, login: str, display_name: str | None = None) -> User:
        user = User(str(next(self._ids)), login.lower(), display_name or login)
        self.users[user.id] = user
        return user

    def issue_token(self, user: User, scopes: Iterable[str] = ALL_SCOPES) -> Token:
        token = Token(
            access=secrets.token_hex(12),
            refresh=secrets.token_hex(16),
            user=user,
            scopes=tuple(scopes),
            client_id=self.client_id,
        )
        self.tokens[token.access] = token
        self.refresh_tokens[token.refresh] = token
        return token

    def expire(self, access: str) -> None:
        """Make an access token invalid (as when it expires): Helix answers 401."""
        self.tokens[access].valid = False

    def add_reward(self, title: str, *, input_required: bool = True) -> str:
        reward_id = str(uuid.uuid4())
        b = self.broadcaster
        self.rewards.append(
            {
                "broadcaster_id": b.id,
                "broadcaster_login": b.login,
                "broadcaster_name": b.display_name,
                "id": reward_id,
                "title": title,
                "prompt": "",
                "cost": 500,
                "image": None,
                "default_image": {"url_1x": "x", "url_2x": "x", "url_4x": "x"},
                "background_color": "#00E5CB",
                "is_enabled": True,
                "is_user_input_required": input_required,
                "max_per_stream_setting": {"is_enabled": False, "max_per_stream": 0},
                "max_per_user_per_stream_setting": {
                    "is_enabled": False,
                    "max_per_user_per_stream": 0,
                },
                "global_cooldown_setting": {"is_enabled": False, "global_cooldown_seconds": 0},
                "is_paused": False,
                "is_in_stock": True,
                "should_redemptions_skip_request_queue": False,
                "redemptions_redeemed_current_stream": None,
                "cooldown_expires_at": None,
            }
        )
        return reward_id

    def approve_device(
        self, user_code: str, user: User, scopes: Iterable[str] = ALL_SCOPES
    ) -> None:
        """The person signing in approves the code in their browser."""
        for entry in self.device_codes.values():
            if entry["user_code"] == user_code:
                entry["approved"] = (user, tuple(scopes))
                return
        raise KeyError(user_code)

    # -- helpers for handlers -------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict"}
        body = {"error": reason.get(status, "Error"), "status": status, "message": message}
        return web.json_response(body, status=status)

    def _bearer(self, request: web.Request) -> Token | web.Response:
        if request.headers.get("Client-Id") != self.client_id:
            return self._error(401, "Client ID and OAuth token do not match")
        auth = request.headers.get("Authorization", "")
        access = auth.removeprefix("Bearer ").strip()
        token = self.tokens.get(access)
        if token is None or not token.valid:
            return self._error(401, "Invalid OAuth token")
        return token

    async def _changed_notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- OAuth ----------------------------------------------------------------------------
    async def _validate(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        access = auth.removeprefix("OAuth ").removeprefix("Bearer ").strip()
        token = self.tokens.get(access)
        if token is None or not token.valid:
            return self._error(401, "invalid access token")
        return web.json_response(
            {
                "client_id": token.client_id,
                "login": token.user.login,
                "scopes": list(token.scopes),
                "user_id": token.user.id,
                "expires_in": 14_000,
            }
        )

    def _token_body(self, token: Token) -> dict[str, Any]:
        return {
            "access_token": token.access,
            "refresh_token": token.refresh,
            "expires_in": 14_000,
            "scope": list(token.scopes),
            "token_type": "bearer",
        }

    async def _token(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = dict(request.query)
        params.update(await request.post())
        if params.get("client_id") != self.client_id:
            return self._error(400, "invalid client")
        grant = params.get("grant_type")
        if grant == "refresh_token":
            old = self.refresh_tokens.get(str(params.get("refresh_token", "")))
            if old is None or old.refresh_used:
                return self._error(400, "Invalid refresh token")
            old.refresh_used = True
            new = self.issue_token(old.user, old.scopes)
            return web.json_response(self._token_body(new))
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            entry = self.device_codes.get(str(params.get("device_code", "")))
            if entry is None or entry.get("used"):
                return self._error(400, "invalid device code")
            if entry.get("approved") is None:
                return self._error(400, "authorization_pending")
            entry["used"] = True
            user, scopes = entry["approved"]
            return web.json_response(self._token_body(self.issue_token(user, scopes)))
        return self._error(400, "unsupported grant type")

    async def _device(self, request: web.Request) -> web.Response:
        params: dict[str, Any] = dict(request.query)
        params.update(await request.post())
        if params.get("client_id") != self.client_id:
            return self._error(400, "invalid client")
        device_code = secrets.token_hex(10)
        user_code = secrets.token_hex(4).upper()
        self.device_codes[device_code] = {
            "user_code": user_code,
            "scopes": str(params.get("scopes", "")),
            "approved": None,
        }
        return web.json_response(
            {
                "device_code": device_code,
                "expires_in": 1800,
                "interval": self.device_interval_s,
                "user_code": user_code,
                "verification_uri": f"{self.base}/activate?device-code={user_code}",
            }
        )

    # -- Helix ----------------------------------------------------------------------------
    async def _users(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        ids = request.query.getall("id", [])
        logins = [x.lower() for x in request.query.getall("login", [])]
        if not ids and not logins:
            found = [token.user]
        else:
            found = [u for u in self.users.values() if u.id in ids or u.login in logins]
        return web.json_response({"data": [u.as_helix() for u in found]})

    async def _subscribe(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        body = await request.json()
        sub_type = body.get("type")
        condition = body.get("condition") or {}
        transport = body.get("transport") or {}
        session = self.sessions.get(str(transport.get("session_id")))
        if transport.get("method") != "websocket" or session is None or not session.open:
            return self._error(
                400, "websocket transport session does not exist or has already disconnected"
            )
        needed = _SCOPE_FOR.get(sub_type)
        if needed is None:
            return self._error(400, f"unsupported subscription type {sub_type}")
        if needed not in token.scopes or condition.get(_WHO[sub_type]) != token.user.id:
            return self._error(403, "subscription missing proper authorization")
        moderates = token.user.id in self.moderators or token.user.id == self.broadcaster.id
        if sub_type in _MODERATED and not moderates:
            return self._error(403, "subscription missing proper authorization")
        for sub_id in session.subscriptions:
            sub = self.subscriptions[sub_id]
            if sub["type"] == sub_type and sub["condition"] == condition:
                return self._error(409, f"subscription already exists id={sub_id}")
        sub = {
            "id": str(uuid.uuid4()),
            "status": "enabled",
            "type": sub_type,
            "version": str(body.get("version", "1")),
            "condition": condition,
            "created_at": _ts(),
            "transport": {"method": "websocket", "session_id": session.id, "connected_at": _ts()},
            "cost": 0,
        }
        self.subscriptions[sub["id"]] = sub
        session.subscriptions.add(sub["id"])
        await self._changed_notify()
        return web.json_response(
            {
                "data": [sub],
                "total": len(self.subscriptions),
                "total_cost": 0,
                "max_total_cost": 10,
            },
            status=202,
        )

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        sub = self.subscriptions.pop(request.query.get("id", ""), None)
        if sub is None:
            return self._error(404, "subscription not found")
        for session in self.sessions.values():
            session.subscriptions.discard(sub["id"])
        return web.Response(status=204)

    async def _send_chat(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        body = await request.json()
        if "user:write:chat" not in token.scopes or str(body.get("sender_id")) != token.user.id:
            return self._error(403, "missing user:write:chat or sender mismatch")
        text = str(body.get("message", ""))
        if len(text) > 500:
            return self._error(400, "message too long")
        message_id = str(uuid.uuid4())
        self.sent.append({**body, "message_id": message_id})
        reply_to = body.get("reply_parent_message_id")
        echo = self.chat(token.user, text, message_id=message_id, reply_to=reply_to)
        if self.echo_before_response:
            await echo
        else:
            task = asyncio.ensure_future(echo)
            self._keep(task)
        return web.json_response(
            {"data": [{"message_id": message_id, "is_sent": True, "drop_reason": None}]}
        )

    def _keep(self, task: asyncio.Future[Any]) -> None:
        holder: set[asyncio.Future[Any]] = getattr(self, "_echoes", set())
        self._echoes = holder
        holder.add(task)
        task.add_done_callback(holder.discard)

    async def _rewards(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if isinstance(token, web.Response):
            return token
        if request.query.get("broadcaster_id") != token.user.id:
            return self._error(403, "The ID in broadcaster_id must match the user ID in the token")
        if "channel:read:redemptions" not in token.scopes:
            return self._error(401, "Missing scope: channel:read:redemptions")
        return web.json_response({"data": self.rewards})

    # -- EventSub websocket ---------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1024**2)
        await ws.prepare(request)
        session = Session(id=str(uuid.uuid4()), ws=ws, transport=request.transport)
        old = self.sessions.get(request.query.get("reconnect", ""))
        self.sessions[session.id] = session
        if old is not None and self.reconnect_welcome_delay_s > 0:
            # Until the welcome, every event still goes to the old socket.
            await asyncio.sleep(self.reconnect_welcome_delay_s)
        if old is not None:
            # Twitch moves every subscription of the old session to the new one.
            for sub_id in old.subscriptions:
                self.subscriptions[sub_id]["transport"]["session_id"] = session.id
            session.subscriptions = old.subscriptions
            old.subscriptions = set()
            self.moves.append((old.id, session.id))
        await self._frame(
            session,
            "session_welcome",
            {
                "session": {
                    "id": session.id,
                    "status": "connected",
                    "connected_at": _ts(),
                    "keepalive_timeout_seconds": self.welcome_keepalive_s,
                    "reconnect_url": None,
                    "recovery_url": None,
                }
            },
        )
        if old is not None:
            session.predecessor = old
            self._spawn(session, self._end_linger(session, old))
        await self._changed_notify()
        self._spawn(session, self._keepalives(session))
        if self.unused_timeout_s is not None and not session.subscriptions:
            self._spawn(session, self._close_if_unused(session))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    # Twitch forbids client messages on EventSub: 4001.
                    session.received.append(msg.data)
                    await ws.close(code=4001, message=b"client sent inbound traffic")
                    break
        finally:
            await self._end(session, ws.close_code)
        return ws

    def _spawn(self, session: Session, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _end(self, session: Session, code: int | None) -> None:
        if not session.open:
            return
        session.open = False
        session.close_code = code
        for task in list(session.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for sub_id in session.subscriptions:
            self.subscriptions[sub_id]["status"] = "websocket_disconnected"
        await self._changed_notify()

    async def _end_linger(self, session: Session, old: Session) -> None:
        """After the linger, events go to the new socket only; maybe close the old one."""
        if self.reconnect_linger_s > 0:
            await asyncio.sleep(self.reconnect_linger_s)
        session.predecessor = None
        if self.reconnect_close_old_code is not None and old.open:
            await self.close_session(self.reconnect_close_old_code, session=old)

    def _recipients(self, session: Session) -> list[Session]:
        """Where an event for ``session``'s subscription goes (the old socket while lingering)."""
        old = session.predecessor
        if old is None or not old.open or self.reconnect_linger_s <= 0:
            return [session]
        routing = self.reconnect_routing
        if routing == "random":
            routing = self.rng.choice(["old", "new", "both"])
        if routing == "old":
            return [old]
        if routing == "new":
            return [session]
        both = [old, session]
        self.rng.shuffle(both)
        return both

    async def _keepalives(self, session: Session) -> None:
        while session.open:
            await asyncio.sleep(self.keepalive_s)
            if not session.silent and session.open:
                await self._frame(session, "session_keepalive", {})

    async def _close_if_unused(self, session: Session) -> None:
        assert self.unused_timeout_s is not None
        await asyncio.sleep(self.unused_timeout_s)
        if session.open and not session.subscriptions:
            await self.close_session(4003, session=session)

    async def _frame(
        self,
        session: Session,
        message_type: str,
        payload: dict[str, Any],
        *,
        subscription: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> bool:
        metadata: dict[str, Any] = {
            "message_id": message_id or str(uuid.uuid4()),
            "message_type": message_type,
            "message_timestamp": _ts(),
        }
        if subscription is not None:
            metadata["subscription_type"] = subscription["type"]
            metadata["subscription_version"] = subscription["version"]
        sent = await self._send_text(
            session, json.dumps({"metadata": metadata, "payload": payload})
        )
        if sent and message_type == "notification":
            session.notified.append(str(metadata["message_id"]))
        return sent

    async def _send_text(self, session: Session, data: str) -> bool:
        if not session.open or session.ws.closed:
            return False
        try:
            await session.ws.send_str(data)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("double: send on session %s failed: %s", session.id, exc)
            return False
        return True

    # -- what tests call ------------------------------------------------------------------
    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.open]

    def _active_types(self, session: Session) -> set[str]:
        return {
            self.subscriptions[s]["type"]
            for s in session.subscriptions
            if self.subscriptions[s]["status"] == "enabled"
        }

    async def wait_subscribed(
        self,
        types: Iterable[str] = CHAT_TYPES,
        *,
        exclude: Iterable[Session] = (),
        timeout: float = 15.0,
    ) -> Session:
        """Wait until one open session holds enabled subscriptions of every type in ``types``.

        Args:
            types: Subscription types that must be present.
            exclude: Sessions that do not count (e.g. the one before a reconnect).
            timeout: Seconds to wait.
        """
        wanted = set(types)
        skip = {s.id for s in exclude}

        def ready() -> Session | None:
            for session in self.live_sessions():
                if session.id not in skip and wanted <= self._active_types(session):
                    return session
            return None

        async def wait() -> Session:
            async with self._changed:
                while (found := ready()) is None:
                    await self._changed.wait()
            return found

        return await asyncio.wait_for(wait(), timeout)

    async def wait_closed(self, session: Session, timeout: float = 15.0) -> None:
        """Wait until ``session``'s socket has ended (closed by either side)."""

        async def wait() -> None:
            async with self._changed:
                while session.open:
                    await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def notify(self, sub_type: str, event: dict[str, Any]) -> list[str]:
        """Send a notification to every open session subscribed to ``sub_type`` for the channel.

        During a move the event may go to the old socket too (or instead), with the same
        notification id (see the module docstring).

        Returns:
            The ids of the sessions it was sent to.
        """
        delivered: list[str] = []
        notification_id = str(uuid.uuid4())
        for session in self.live_sessions():
            for sub_id in list(session.subscriptions):
                sub = self.subscriptions[sub_id]
                if sub["type"] != sub_type or sub["status"] != "enabled":
                    continue
                if not self._matches(sub["condition"], event):
                    continue
                for target in self._recipients(session):
                    ok = await self._frame(
                        target,
                        "notification",
                        {"subscription": sub, "event": event},
                        subscription=sub,
                        message_id=notification_id,
                    )
                    if ok:
                        delivered.append(target.id)
        return delivered

    @staticmethod
    def _matches(condition: dict[str, Any], event: dict[str, Any]) -> bool:
        """Whether an event belongs to a subscription's channel."""
        wanted = condition.get("broadcaster_user_id") or condition.get("to_broadcaster_user_id")
        have = event.get("broadcaster_user_id") or event.get("to_broadcaster_user_id")
        return bool(wanted) and wanted == have

    def _broadcaster_fields(self) -> dict[str, str]:
        b = self.broadcaster
        return {
            "broadcaster_user_id": b.id,
            "broadcaster_user_login": b.login,
            "broadcaster_user_name": b.display_name,
        }

    def fragments(self, text: str) -> list[dict[str, Any]]:
        """Split text into Twitch fragments: emotes, cheermotes and @mentions get their type."""
        out: list[dict[str, Any]] = []
        buf = ""

        def flush() -> None:
            nonlocal buf
            if buf:
                out.append(
                    {"type": "text", "text": buf, "cheermote": None, "emote": None, "mention": None}
                )
                buf = ""

        by_login = {u.login: u for u in self.users.values()}
        for piece in re.split(r"(\s+)", text):
            if not piece:
                continue
            cheer = _CHEER_RE.match(piece)
            mention = by_login.get(piece[1:].lower()) if piece.startswith("@") else None
            if piece in self.emotes:
                flush()
                out.append(
                    {
                        "type": "emote",
                        "text": piece,
                        "cheermote": None,
                        "emote": {
                            "id": str(abs(hash(piece)) % 100000),
                            "emote_set_id": "0",
                            "owner_id": "0",
                            "format": ["static"],
                        },
                        "mention": None,
                    }
                )
            elif cheer:
                flush()
                out.append(
                    {
                        "type": "cheermote",
                        "text": piece,
                        "cheermote": {"prefix": cheer[1], "bits": int(cheer[2]), "tier": 1},
                        "emote": None,
                        "mention": None,
                    }
                )
            elif mention is not None:
                flush()
                out.append(
                    {
                        "type": "mention",
                        "text": piece,
                        "cheermote": None,
                        "emote": None,
                        "mention": {
                            "user_id": mention.id,
                            "user_login": mention.login,
                            "user_name": mention.display_name,
                        },
                    }
                )
            else:
                buf += piece
        flush()
        return out

    def chat_event(
        self,
        user: User,
        text: str,
        *,
        message_id: str | None = None,
        badges: Iterable[str] = (),
        bits: int | None = None,
        reward_id: str | None = None,
        reply_to: str | None = None,
        source_broadcaster: User | None = None,
        source_message_id: str | None = None,
    ) -> dict[str, Any]:
        """A ``channel.chat.message`` event as Twitch sends it.

        ``source_broadcaster`` and ``source_message_id`` describe a message shown here from a
        shared-chat session (the channel it was sent in and its id there).
        """
        reply = None
        if reply_to is not None:
            parent = next((s for s in self.sent if s["message_id"] == reply_to), None)
            parent_user = self.users.get(str(parent["sender_id"])) if parent else None
            parent_user = parent_user or self.broadcaster
            text = f"@{parent_user.login} {text}"
            reply = {
                "parent_message_id": reply_to,
                "parent_message_body": parent["message"] if parent else "",
                "parent_user_id": parent_user.id,
                "parent_user_name": parent_user.display_name,
                "parent_user_login": parent_user.login,
                "thread_message_id": reply_to,
                "thread_user_id": parent_user.id,
                "thread_user_name": parent_user.display_name,
                "thread_user_login": parent_user.login,
            }
        fragments = self.fragments(text)
        if bits is None:
            cheered = sum(f["cheermote"]["bits"] for f in fragments if f["type"] == "cheermote")
            bits = cheered
        badge_list = [{"set_id": b, "id": "1", "info": ""} for b in badges]
        if user.id == self.broadcaster.id and "broadcaster" not in badges:
            badge_list.append({"set_id": "broadcaster", "id": "1", "info": ""})
        return {
            **self._broadcaster_fields(),
            "chatter_user_id": user.id,
            "chatter_user_login": user.login,
            "chatter_user_name": user.display_name,
            "message_id": message_id or str(uuid.uuid4()),
            "message": {"text": text, "fragments": fragments},
            "color": "#1E90FF",
            "badges": badge_list,
            "message_type": "text",
            "cheer": {"bits": bits} if bits else None,
            "reply": reply,
            "channel_points_custom_reward_id": reward_id,
            "channel_points_animation_id": None,
            "source_broadcaster_user_id": source_broadcaster.id if source_broadcaster else None,
            "source_broadcaster_user_login": (
                source_broadcaster.login if source_broadcaster else None
            ),
            "source_broadcaster_user_name": (
                source_broadcaster.display_name if source_broadcaster else None
            ),
            "source_message_id": source_message_id if source_broadcaster else None,
            "source_badges": [] if source_broadcaster else None,
            "is_source_only": False if source_broadcaster else None,
        }

    async def chat(self, user: User, text: str, **kwargs: Any) -> str:
        """Post a chat message from ``user``; returns its message id."""
        event = self.chat_event(user, text, **kwargs)
        await self.notify("channel.chat.message", event)
        return str(event["message_id"])

    async def delete(self, message_id: str, user: User) -> None:
        """A moderator deletes one message."""
        event = {
            **self._broadcaster_fields(),
            "target_user_id": user.id,
            "target_user_login": user.login,
            "target_user_name": user.display_name,
            "message_id": message_id,
        }
        await self.notify("channel.chat.message_delete", event)

    async def clear_user(self, user: User) -> None:
        """A timeout or ban: Twitch clears the user's messages."""
        event = {
            **self._broadcaster_fields(),
            "target_user_id": user.id,
            "target_user_login": user.login,
            "target_user_name": user.display_name,
        }
        await self.notify("channel.chat.clear_user_messages", event)

    async def clear_chat(self) -> None:
        """A moderator clears the whole chat."""
        await self.notify("channel.chat.clear", self._broadcaster_fields())

    # -- channel events -------------------------------------------------------------------
    _NOTICE_KEYS = (
        "sub",
        "resub",
        "sub_gift",
        "community_sub_gift",
        "gift_paid_upgrade",
        "prime_paid_upgrade",
        "raid",
        "unraid",
        "pay_it_forward",
        "announcement",
        "bits_badge_tier",
        "charity_donation",
        "shared_chat_sub",
        "shared_chat_resub",
        "shared_chat_sub_gift",
        "shared_chat_community_sub_gift",
        "shared_chat_gift_paid_upgrade",
        "shared_chat_prime_paid_upgrade",
        "shared_chat_raid",
        "shared_chat_pay_it_forward",
        "shared_chat_announcement",
        "watch_streak",
        "modiversary",
        "shared_chat_modiversary",
    )

    def notification_event(
        self,
        user: User | None,
        notice_type: str,
        detail: dict[str, Any],
        *,
        text: str = "",
        system_message: str = "",
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """A ``channel.chat.notification`` as Twitch sends it (``user`` None: anonymous)."""
        event: dict[str, Any] = {
            **self._broadcaster_fields(),
            "chatter_user_id": user.id if user else "274598607",
            "chatter_user_login": user.login if user else "ananonymousgifter",
            "chatter_user_name": user.display_name if user else "AnAnonymousGifter",
            "chatter_is_anonymous": user is None,
            "color": "",
            "badges": [],
            "system_message": system_message or f"{notice_type} notice",
            "message_id": message_id or str(uuid.uuid4()),
            "message": {"text": text, "fragments": self.fragments(text)},
            "notice_type": notice_type,
            "source_broadcaster_user_id": None,
            "source_broadcaster_user_login": None,
            "source_broadcaster_user_name": None,
            "source_message_id": None,
            "source_badges": None,
            "is_source_only": None,
        }
        event.update(dict.fromkeys(self._NOTICE_KEYS))
        event[notice_type] = detail
        return event

    async def notice(self, event: dict[str, Any]) -> str:
        """Send a notification event; returns its message id."""
        await self.notify(NOTIFICATION, event)
        return str(event["message_id"])

    async def sub(self, user: User, *, tier: str = "1000", prime: bool = False) -> str:
        """A new subscription."""
        detail = {"sub_tier": tier, "is_prime": prime, "duration_months": 1}
        return await self.notice(self.notification_event(user, "sub", detail))

    async def resub(self, user: User, months: int, text: str = "", *, tier: str = "1000") -> str:
        """A resubscription, shared with its message."""
        detail = {
            "cumulative_months": months,
            "duration_months": 1,
            "streak_months": None,
            "sub_tier": tier,
            "is_prime": False,
            "is_gift": False,
            "gifter_is_anonymous": None,
            "gifter_user_id": None,
            "gifter_user_name": None,
            "gifter_user_login": None,
        }
        return await self.notice(self.notification_event(user, "resub", detail, text=text))

    async def gift(
        self, gifter: User | None, count: int = 1, *, recipients: Iterable[User] = ()
    ) -> list[str]:
        """Gifted subs: one ``sub_gift`` per recipient, after a ``community_sub_gift`` when
        ``count`` > 1 (as Twitch sends them); returns the notification message ids."""
        ids: list[str] = []
        community = str(uuid.uuid4()) if count > 1 else None
        if community is not None:
            detail = {"id": community, "total": count, "sub_tier": "1000", "cumulative_total": None}
            ids.append(
                await self.notice(self.notification_event(gifter, "community_sub_gift", detail))
            )
        for recipient in list(recipients) or [self.add_user(f"lucky{len(self.users)}")]:
            detail = {
                "cumulative_total": None,
                "recipient_user_id": recipient.id,
                "recipient_user_name": recipient.display_name,
                "recipient_user_login": recipient.login,
                "sub_tier": "1000",
                "duration_months": 1,
                "community_gift_id": community,
            }
            ids.append(await self.notice(self.notification_event(gifter, "sub_gift", detail)))
        return ids

    async def raid(self, raider: User, viewers: int) -> str:
        """An incoming raid."""
        detail = {
            "user_id": raider.id,
            "user_name": raider.display_name,
            "user_login": raider.login,
            "viewer_count": viewers,
            "profile_image_url": f"https://example.invalid/{raider.login}.png",
        }
        return await self.notice(self.notification_event(raider, "raid", detail))

    async def follow(self, user: User) -> None:
        """A new follower (sent to ``channel.follow`` subscribers: moderators only)."""
        await self.notify(
            FOLLOW,
            {
                **self._broadcaster_fields(),
                "user_id": user.id,
                "user_login": user.login,
                "user_name": user.display_name,
                "followed_at": _ts(),
            },
        )

    async def redeem(self, user: User, reward_id: str, text: str = "") -> str:
        """A channel-points redemption of a reward from :meth:`add_reward`; returns its id."""
        reward = next(r for r in self.rewards if r["id"] == reward_id)
        redemption_id = str(uuid.uuid4())
        await self.notify(
            REDEMPTION,
            {
                **self._broadcaster_fields(),
                "id": redemption_id,
                "user_id": user.id,
                "user_login": user.login,
                "user_name": user.display_name,
                "user_input": text,
                "status": "unfulfilled",
                "reward": {
                    "id": reward_id,
                    "title": reward["title"],
                    "cost": reward["cost"],
                    "prompt": reward["prompt"],
                },
                "redeemed_at": _ts(),
            },
        )
        return redemption_id

    def _automod_event(self, user: User, text: str, message_id: str) -> dict[str, Any]:
        return {
            **self._broadcaster_fields(),
            "user_id": user.id,
            "user_login": user.login,
            "user_name": user.display_name,
            "message_id": message_id,
            "message": {"text": text, "fragments": self.fragments(text)},
            "category": "aggressive",
            "level": 4,
            "held_at": _ts(),
        }

    async def automod_hold(self, user: User, text: str) -> str:
        """AutoMod holds a message: moderators hear of it, chat does not show it."""
        message_id = str(uuid.uuid4())
        self.held[message_id] = (user, text)
        await self.notify(AUTOMOD_HOLD, self._automod_event(user, text, message_id))
        return message_id

    async def automod_resolve(
        self, message_id: str, status: str, *, moderator: User | None = None
    ) -> None:
        """A moderator approves (``Approved``) or denies (``Denied``) a held message.

        As on Twitch, an approved message then appears in chat under its id.
        """
        user, text = self.held.pop(message_id)
        mod = moderator or self.broadcaster
        event = {
            **self._automod_event(user, text, message_id),
            "moderator_user_id": mod.id,
            "moderator_user_login": mod.login,
            "moderator_user_name": mod.display_name,
            "status": status,
        }
        await self.notify(AUTOMOD_UPDATE, event)
        if status == "Approved":
            await self.chat(user, text, message_id=message_id)

    def current(self) -> Session:
        """The only open session (fails when there are several or none, as during a move)."""
        live = self.live_sessions()
        assert len(live) == 1, f"expected one open session, found {len(live)}"
        return live[0]

    async def session_reconnect(
        self, session: Session | None = None, *, url: str | None = None
    ) -> None:
        """Ask a session's client to move to a new connection (``session_reconnect``).

        Args:
            session: The session to move (the only open one by default).
            url: The reconnect URL to send (the double's own by default; another one makes
                the move fail).
        """
        session = session or self.current()
        await self._frame(
            session,
            "session_reconnect",
            {
                "session": {
                    "id": session.id,
                    "status": "reconnecting",
                    "keepalive_timeout_seconds": None,
                    "reconnect_url": url or f"{self.wss}?reconnect={session.id}",
                    "connected_at": _ts(),
                    "recovery_url": None,
                }
            },
        )

    async def close_session(self, code: int, *, session: Session | None = None) -> None:
        """Close a session with a websocket close code (4000-4007 are Twitch's)."""
        session = session or self.current()
        with contextlib.suppress(Exception):
            await session.ws.close(code=code, message=b"closed by the double")
        await self._end(session, code)

    async def drop(self, session: Session | None = None) -> None:
        """Cut the TCP connection without a close frame (a network failure)."""
        session = session or self.current()
        if session.transport is not None:
            session.transport.abort()
        await self._end(session, None)

    def silence(self, session: Session | None = None) -> None:
        """Stop keepalives on a session (Twitch gone quiet)."""
        (session or self.current()).silent = True

    async def send_raw(self, data: str | bytes, session: Session | None = None) -> bool:
        """Send an arbitrary frame (malformed or oversized payloads).

        Returns:
            False when the client hung up while it was being sent (as with an oversized frame).
        """
        session = session or self.current()
        try:
            if isinstance(data, bytes):
                await session.ws.send_bytes(data)
            else:
                await session.ws.send_str(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    def request_count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)


@contextlib.asynccontextmanager
async def running_double(**options: Any) -> AsyncIterator[TwitchDouble]:
    """Start a double and point twitchio's URLs at it; restore them and stop it on exit."""
    from twitchio.eventsub import websockets
    from twitchio.http import Route

    double = TwitchDouble(**options)
    await double.start()
    saved = (websockets.WSS, Route.BASE, Route.ID_BASE)
    websockets.WSS = double.wss
    Route.BASE = double.helix_base
    Route.ID_BASE = double.id_base
    try:
        yield double
    finally:
        websockets.WSS, Route.BASE, Route.ID_BASE = saved
        await double.close()


@pytest.fixture
async def twitch_double() -> AsyncIterator[TwitchDouble]:
    """A running double with twitchio pointed at it (restored afterwards)."""
    async with running_double() as double:
        yield double
