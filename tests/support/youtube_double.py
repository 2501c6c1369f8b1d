"""An in-process double of Google's OAuth device flow and the YouTube Data API v3 chat endpoints.

The real client libraries talk to it over real HTTP on 127.0.0.1 (a free port): oauthlib /
requests-oauthlib for the device flow, google-auth for refreshes, google-api-python-client
(built from its bundled discovery document, root pointed here with ``youtube.api_url``) for
the unary calls, and google-auth's ``AuthorizedSession`` for the chat stream. Nothing of the
libraries is patched; the ``youtube_double`` fixture only sets ``OAUTHLIB_INSECURE_TRANSPORT``
(oauthlib refuses plain http, and the double has no TLS).

Where the bot depends on it, it behaves like Google (docs/youtube.md lists what it does not
cover):

* OAuth: ``/device/code`` (only the ``youtube`` and ``youtube.readonly`` scopes; asking for
  ``youtube.force-ssl`` is ``invalid_scope``, as for real limited-input clients), ``/token``
  with the device-code grant (``authorization_pending`` until a test approves, ``slow_down``
  when polled faster than the interval, ``access_denied``, ``expired_token``) and the
  refresh-token grant (refresh tokens are reusable; a revoked one is ``invalid_grant``). The
  client secret is checked.
* API: ``channels.list mine=true``, ``liveBroadcasts.list broadcastStatus=active``,
  ``videos.list`` (``liveStreamingDetails.activeLiveChatId``), ``liveChatMessages.list``
  (history on the first page, ``nextPageToken``, ``pollingIntervalMillis``, ``offlineAt`` once
  the chat ended; ``liveChatEnded`` afterwards), ``liveChatMessages.insert`` (the posted line
  comes back as a chat item of the bot's channel; ``youtube.readonly`` may not post), and the
  server-streamed ``liveChatMessages.stream`` (a chunked JSON array, one element per page,
  resumable with ``pageToken``). Expired or unknown access tokens get 401 with Google's error
  body. Quota units are counted per call with Google's costs; a quota limit or injected
  failures answer ``quotaExceeded`` / ``rateLimitExceeded`` with Google's JSON errors.

Tests drive it with :meth:`YouTubeDouble.say`, :meth:`super_chat`, :meth:`delete`,
:meth:`ban`, :meth:`add_raw`, :meth:`stream_raw`, :meth:`drop_streams`, :meth:`fail`, ...
and wait on :meth:`wait_for` (a condition notified on every request and chat change).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import itertools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/youtube"
READONLY = "https://www.googleapis.com/auth/youtube.readonly"
FORCE_SSL = "https://www.googleapis.com/auth/youtube.force-ssl"
DEVICE_SCOPES = frozenset({SCOPE, READONLY})
COSTS = {
    "channels.list": 1,
    "liveBroadcasts.list": 1,
    "videos.list": 1,
    "liveChatMessages.list": 5,
    "liveChatMessages.stream": 5,
    "liveChatMessages.insert": 20,
}


def _ts(when: datetime.datetime | None = None) -> str:
    when = when or datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _id(prefix: str = "", n: int = 27) -> str:
    return prefix + secrets.token_urlsafe(n)[:n]


@dataclass
class Channel:
    """A YouTube channel (an author in chat, or the signed-in account)."""

    id: str
    title: str
    handle: str

    def author(self, **flags: bool) -> dict[str, Any]:
        return {
            "channelId": self.id,
            "channelUrl": f"http://www.youtube.com/channel/{self.id}",
            "displayName": f"@{self.handle}",
            "profileImageUrl": "https://example.invalid/p.jpg",
            "isVerified": flags.get("verified", False),
            "isChatOwner": flags.get("owner", False),
            "isChatSponsor": flags.get("member", False),
            "isChatModerator": flags.get("moderator", False),
        }


@dataclass
class Token:
    access: str
    refresh: str
    channel: Channel
    scopes: tuple[str, ...]
    client_id: str
    expires_at: float


@dataclass
class Chat:
    """One broadcast's live chat."""

    id: str
    video_id: str
    title: str
    owner: Channel
    items: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    offline_at: str | None = None


@dataclass
class Stream:
    """One open ``liveChatMessages.stream`` connection."""

    id: int
    chat: Chat
    start: int
    page_token: str | None
    response: web.StreamResponse
    request: web.Request
    position: int = 0
    closed: bool = False


class YouTubeDouble:
    """Google OAuth + the YouTube Data API v3 chat endpoints, on 127.0.0.1."""

    def __init__(self) -> None:
        self.client_id = "1234-ishowtts.apps.googleusercontent.com"
        self.client_secret = "GOCSPX-double-secret"
        self.channels: dict[str, Channel] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.revoked: set[str] = set()
        self.device_codes: dict[str, dict[str, Any]] = {}
        self.chats: dict[str, Chat] = {}
        self.live: dict[str, Chat] = {}  # channel id -> the chat of its active broadcast
        self.streams: list[Stream] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.quota_used: collections.Counter[str] = collections.Counter()
        self.quota_limit: int | None = None
        self.failures: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
        self.polling_interval_ms = 50
        self.device_interval_s = 1
        self.stream_enabled = True
        self.token_lifetime_s = 3600.0
        self.posted: list[dict[str, Any]] = []
        self._stream_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        self.streamer = self.add_channel("Streamer", "streamer")

    # -- set-up ---------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return self.base

    @property
    def oauth_url(self) -> str:
        return self.base + "oauth/"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A ``youtube`` config section pointing at this double."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_url": self.api_url,
            "oauth_url": self.oauth_url,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.2,
            "offline_check_s": 1,
            # a quota so large that the poll floor (youtube.quota_hours) never slows a test
            "daily_quota": 100_000_000,
            **overrides,
        }

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**2, middlewares=[self._record])
        app.router.add_post("/oauth/device/code", self._device)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/youtube/v3/channels", self._channels)
        app.router.add_get("/youtube/v3/liveBroadcasts", self._broadcasts)
        app.router.add_get("/youtube/v3/videos", self._videos)
        app.router.add_get("/youtube/v3/liveChat/messages", self._list)
        app.router.add_post("/youtube/v3/liveChat/messages", self._insert)
        app.router.add_get("/youtube/v3/liveChat/messages/stream", self._stream)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        await self.drop_streams()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def add_channel(self, title: str, handle: str | None = None) -> Channel:
        channel = Channel(_id("UC", 22), title, handle or title.lower().replace(" ", ""))
        self.channels[channel.id] = channel
        return channel

    def issue_token(self, channel: Channel, scopes: Iterable[str] = (SCOPE,)) -> Token:
        token = Token(
            _id("ya29."),
            _id("1//"),
            channel,
            tuple(scopes),
            self.client_id,
            time.time() + self.token_lifetime_s,
        )
        self.tokens[token.access] = token
        self.refresh_tokens[token.refresh] = token
        return token

    def expire(self, access: str) -> None:
        """The access token stops working (as after its hour)."""
        self.tokens[access].expires_at = 0.0

    def revoke(self, refresh: str) -> None:
        """The streamer removed the app's access: the refresh token is dead."""
        self.revoked.add(refresh)

    def approve_device(self, channel: Channel | None = None, *, deny: bool = False) -> str:
        """Approve (or deny) the pending device code, as the streamer does in a browser."""
        pending = [c for c in self.device_codes.values() if c["state"] == "pending"]
        assert pending, "no device code is pending"
        code = pending[-1]
        code["state"] = "denied" if deny else "approved"
        code["channel"] = channel or self.streamer
        return str(code["user_code"])

    def fail(self, method: str, reason: str, *, status: int = 403, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` fail with Google's error ``reason``."""
        self.failures[method].extend([(status, reason)] * times)

    # -- broadcasts and chat ----------------------------------------------------------------
    def go_live(self, channel: Channel | None = None, title: str = "Live now") -> Chat:
        channel = channel or self.streamer
        chat = Chat(_id("Cg0KC", 30), _id("", 11), title, channel)
        self.chats[chat.id] = chat
        self.live[channel.id] = chat
        return chat

    async def end_chat(self, chat: Chat) -> None:
        """The broadcast ends: a chatEndedEvent, then the chat is gone."""
        self._append(chat, self._item(chat, chat.owner, "chatEndedEvent", {}, owner=True))
        chat.ended = True
        chat.offline_at = _ts()
        self.live.pop(chat.owner.id, None)
        await self._notify()

    def _item(
        self,
        chat: Chat,
        author: Channel,
        kind: str,
        details: dict[str, Any],
        *,
        display: str = "",
        published: datetime.datetime | None = None,
        message_id: str | None = None,
        **flags: bool,
    ) -> dict[str, Any]:
        snippet: dict[str, Any] = {
            "type": kind,
            "liveChatId": chat.id,
            "authorChannelId": author.id,
            "publishedAt": _ts(published),
            "hasDisplayContent": bool(display),
            "displayMessage": display,
            **details,
        }
        if author.id == chat.owner.id:
            flags.setdefault("owner", True)
        return {
            "kind": "youtube#liveChatMessage",
            "etag": _id("", 12),
            "id": message_id or _id("LCC.", 40),
            "snippet": snippet,
            "authorDetails": author.author(**flags),
        }

    def _append(self, chat: Chat, item: dict[str, Any]) -> str:
        chat.items.append(item)
        return str(item.get("id", ""))

    async def add(self, chat: Chat, item: dict[str, Any]) -> str:
        mid = self._append(chat, item)
        await self._notify()
        return mid

    async def say(
        self,
        chat: Chat,
        author: Channel,
        text: str,
        *,
        published: datetime.datetime | None = None,
        **flags: bool,
    ) -> str:
        details = {"textMessageDetails": {"messageText": text}}
        item = self._item(
            chat, author, "textMessageEvent", details, display=text, published=published, **flags
        )
        return await self.add(chat, item)

    async def super_chat(
        self,
        chat: Chat,
        author: Channel,
        comment: str,
        *,
        micros: int = 5_000_000,
        currency: str = "USD",
        **flags: bool,
    ) -> str:
        shown = f"${micros / 1e6:.2f}" if currency == "USD" else f"{micros / 1e6:.2f} {currency}"
        details = {
            "superChatDetails": {
                "amountMicros": str(micros),
                "currency": currency,
                "amountDisplayString": shown,
                "userComment": comment,
                "tier": 2,
            }
        }
        display = f"{shown} from {author.title}: {comment}"
        return await self.add(
            chat, self._item(chat, author, "superChatEvent", details, display=display, **flags)
        )

    async def super_sticker(
        self, chat: Chat, author: Channel, alt: str, *, micros: int = 2_000_000, **flags: bool
    ) -> str:
        details = {
            "superStickerDetails": {
                "superStickerMetadata": {"stickerId": "s1", "altText": alt, "language": "en"},
                "amountMicros": str(micros),
                "currency": "USD",
                "amountDisplayString": f"${micros / 1e6:.2f}",
                "tier": 1,
            }
        }
        return await self.add(chat, self._item(chat, author, "superStickerEvent", details, **flags))

    async def new_member(self, chat: Chat, author: Channel, level: str = "Fans") -> str:
        details = {"newSponsorDetails": {"memberLevelName": level, "isUpgrade": False}}
        return await self.add(
            chat, self._item(chat, author, "newSponsorEvent", details, member=True)
        )

    async def milestone(self, chat: Chat, author: Channel, months: int, comment: str = "") -> str:
        details = {
            "memberMilestoneChatDetails": {
                "memberLevelName": "Fans",
                "memberMonth": months,
                "userComment": comment,
            }
        }
        return await self.add(
            chat, self._item(chat, author, "memberMilestoneChatEvent", details, member=True)
        )

    async def gift_memberships(
        self, chat: Chat, author: Channel, count: int, recipients: Iterable[Channel] = ()
    ) -> str:
        details = {
            "membershipGiftingDetails": {
                "giftMembershipsCount": count,
                "giftMembershipsLevelName": "Fans",
            }
        }
        gift = self._item(chat, author, "membershipGiftingEvent", details)
        self._append(chat, gift)
        for recipient in recipients:
            received = {
                "giftMembershipReceivedDetails": {
                    "memberLevelName": "Fans",
                    "gifterChannelId": author.id,
                    "associatedMembershipGiftingMessageId": gift["id"],
                }
            }
            self._append(
                chat,
                self._item(chat, recipient, "giftMembershipReceivedEvent", received, member=True),
            )
        await self._notify()
        return str(gift["id"])

    async def delete(self, chat: Chat, message_id: str, by: Channel | None = None) -> str:
        """A moderator deletes a message (the API reports it as a messageDeletedEvent)."""
        details = {"messageDeletedDetails": {"deletedMessageId": message_id}}
        by = by or chat.owner
        return await self.add(chat, self._item(chat, by, "messageDeletedEvent", details))

    async def ban(
        self, chat: Chat, user: Channel, by: Channel | None = None, *, seconds: int | None = None
    ) -> str:
        """A moderator bans (``seconds``: times out) a user: a userBannedEvent."""
        banned: dict[str, Any] = {
            "bannedUserDetails": {
                "channelId": user.id,
                "channelUrl": f"http://www.youtube.com/channel/{user.id}",
                "displayName": f"@{user.handle}",
                "profileImageUrl": "https://example.invalid/p.jpg",
            },
            "banType": "temporary" if seconds else "permanent",
        }
        if seconds:
            banned["banDurationSeconds"] = str(seconds)
        by = by or chat.owner
        return await self.add(
            chat, self._item(chat, by, "userBannedEvent", {"userBannedDetails": banned})
        )

    async def add_raw(self, chat: Chat, item: Any) -> None:
        """Append anything as a chat item (malformed payload tests)."""
        chat.items.append(item)
        await self._notify()

    async def stream_raw(self, data: bytes) -> int:
        """Write raw bytes into every open stream; returns how many got them."""
        sent = 0
        for stream in list(self.streams):
            if not stream.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await stream.response.write(data)
                    sent += 1
        return sent

    async def drop_streams(self) -> int:
        """Cut every open stream abruptly (TCP closed without ending the chunked body)."""
        dropped = 0
        for stream in list(self.streams):
            if not stream.closed:
                stream.closed = True
                transport = stream.request.transport
                if transport is not None:
                    transport.abort()
                dropped += 1
        await self._notify()
        return dropped

    def open_streams(self) -> list[Stream]:
        return [s for s in self.streams if not s.closed]

    def calls(self, path: str) -> list[dict[str, str]]:
        """The query of every request to ``path`` (e.g. ``/youtube/v3/liveChat/messages``)."""
        return [q for p, q in self.requests if p == path]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate()`` holds (checked on every request and chat change)."""

        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(waiter(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- plumbing -------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        await self._notify()
        return await handler(request)

    @staticmethod
    def _error(
        status: int, reason: str, message: str = "", domain: str = "youtube"
    ) -> web.Response:
        body = {
            "error": {
                "code": status,
                "message": message or reason,
                "errors": [{"message": message or reason, "domain": domain, "reason": reason}],
            }
        }
        return web.json_response(body, status=status)

    def _auth(self, request: web.Request) -> Token | web.Response:
        header = request.headers.get("Authorization", "")
        token = self.tokens.get(header.removeprefix("Bearer "))
        if not header.startswith("Bearer ") or token is None or token.expires_at < time.time():
            body = {
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "errors": [
                        {
                            "message": "Invalid Credentials",
                            "domain": "global",
                            "reason": "authError",
                            "location": "Authorization",
                            "locationType": "header",
                        }
                    ],
                    "status": "UNAUTHENTICATED",
                }
            }
            return web.json_response(body, status=401)
        return token

    def _charge(self, method: str) -> web.Response | None:
        """Count the call's quota; an injected failure or an exhausted quota answers instead."""
        self.quota_used[method] += COSTS[method]
        queued = self.failures.get(method)
        if queued:
            status, reason = queued.pop(0)
            return self._error(status, reason, f"injected {reason}")
        if self.quota_limit is not None and sum(self.quota_used.values()) > self.quota_limit:
            return self._error(
                403,
                "quotaExceeded",
                "The request cannot be completed because you have exceeded your quota.",
                domain="youtube.quota",
            )
        return None

    # -- OAuth ----------------------------------------------------------------------------
    async def _device(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != self.client_id:
            return web.json_response(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                status=401,
            )
        scopes = str(form.get("scope", "")).split()
        if not scopes or not set(scopes) <= DEVICE_SCOPES:
            return web.json_response({"error": "invalid_scope"}, status=400)
        code = {
            "device_code": _id("AH-", 40),
            "user_code": "ABC-DEF-GHI",
            "scopes": tuple(scopes),
            "state": "pending",
            "last_poll": 0.0,
            "expires_at": time.time() + 1800,
        }
        self.device_codes[str(code["device_code"])] = code
        return web.json_response(
            {
                "device_code": code["device_code"],
                "user_code": code["user_code"],
                "expires_in": 1800,
                "interval": self.device_interval_s,
                "verification_url": "https://www.google.com/device",
            }
        )

    def _token_body(self, token: Token, *, with_refresh: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": token.access,
            "expires_in": int(self.token_lifetime_s),
            "scope": " ".join(token.scopes),
            "token_type": "Bearer",
        }
        if with_refresh:
            body["refresh_token"] = token.refresh
        return body

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Unauthorized"}, status=401
            )
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            code = self.device_codes.get(str(form.get("device_code", "")))
            if code is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            now = time.time()
            too_fast = now - float(code["last_poll"]) < self.device_interval_s * 0.9
            code["last_poll"] = now
            if now > float(code["expires_at"]):
                return web.json_response({"error": "expired_token"}, status=400)
            if code["state"] == "denied":
                return web.json_response({"error": "access_denied"}, status=403)
            if code["state"] == "pending":
                if too_fast:
                    return web.json_response({"error": "slow_down"}, status=403)
                return web.json_response({"error": "authorization_pending"}, status=428)
            if code["state"] == "used":
                return web.json_response({"error": "invalid_grant"}, status=400)
            code["state"] = "used"
            token = self.issue_token(code["channel"], code["scopes"])
            return web.json_response(self._token_body(token, with_refresh=True))
        if grant == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            old = self.refresh_tokens.get(refresh)
            if old is None or refresh in self.revoked:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Token has been revoked."},
                    status=400,
                )
            fresh = Token(
                _id("ya29."),
                refresh,
                old.channel,
                old.scopes,
                old.client_id,
                time.time() + self.token_lifetime_s,
            )
            self.tokens[fresh.access] = fresh
            self.refresh_tokens[refresh] = fresh
            return web.json_response(self._token_body(fresh, with_refresh=False))
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    # -- API ------------------------------------------------------------------------------
    async def _channels(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if (failed := self._charge("channels.list")) is not None:
            return failed
        channel = token.channel
        return web.json_response(
            {
                "kind": "youtube#channelListResponse",
                "items": [
                    {
                        "kind": "youtube#channel",
                        "id": channel.id,
                        "snippet": {"title": channel.title, "customUrl": f"@{channel.handle}"},
                    }
                ],
            }
        )

    async def _broadcasts(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if (failed := self._charge("liveBroadcasts.list")) is not None:
            return failed
        chat = self.live.get(token.channel.id)
        items = []
        if chat is not None and request.query.get("broadcastStatus") == "active":
            items.append(
                {
                    "kind": "youtube#liveBroadcast",
                    "id": chat.video_id,
                    "snippet": {
                        "title": chat.title,
                        "channelId": chat.owner.id,
                        "liveChatId": chat.id,
                    },
                }
            )
        return web.json_response({"kind": "youtube#liveBroadcastListResponse", "items": items})

    async def _videos(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if (failed := self._charge("videos.list")) is not None:
            return failed
        wanted = request.query.get("id", "")
        items = []
        for chat in self.chats.values():
            if chat.video_id == wanted:
                details: dict[str, Any] = {"actualStartTime": _ts()}
                if not chat.ended:
                    details["activeLiveChatId"] = chat.id
                items.append(
                    {
                        "id": chat.video_id,
                        "snippet": {"title": chat.title},
                        "liveStreamingDetails": details,
                    }
                )
        return web.json_response({"kind": "youtube#videoListResponse", "items": items})

    def _chat_for(self, request: web.Request) -> Chat | web.Response:
        chat = self.chats.get(request.query.get("liveChatId", ""))
        if chat is None:
            return self._error(404, "liveChatNotFound", "The live chat was not found.")
        return chat

    @staticmethod
    def _start(token: str | None) -> int | None:
        if not token:
            return 0
        if not token.startswith("p") or not token[1:].isdigit():
            return None
        return int(token[1:])

    def _page(self, chat: Chat, start: int) -> dict[str, Any]:
        items = chat.items[start:]
        page: dict[str, Any] = {
            "kind": "youtube#liveChatMessageListResponse",
            "etag": _id("", 12),
            "pollingIntervalMillis": self.polling_interval_ms,
            "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            "nextPageToken": f"p{start + len(items)}",
            "items": items,
        }
        if chat.offline_at:
            page["offlineAt"] = chat.offline_at
        return page

    async def _list(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if (failed := self._charge("liveChatMessages.list")) is not None:
            return failed
        chat = self._chat_for(request)
        if isinstance(chat, web.Response):
            return chat
        start = self._start(request.query.get("pageToken"))
        if start is None:
            return self._error(400, "pageTokenInvalid", "The page token is not valid.")
        if chat.ended and start >= len(chat.items):
            return self._error(403, "liveChatEnded", "The live chat is no longer live.")
        return web.json_response(self._page(chat, start))

    async def _insert(self, request: web.Request) -> web.Response:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if (failed := self._charge("liveChatMessages.insert")) is not None:
            return failed
        if not {SCOPE, FORCE_SSL} & set(token.scopes):
            return self._error(403, "insufficientPermissions", "Insufficient permissions")
        try:
            body = await request.json()
            snippet = body["snippet"]
            chat = self.chats[snippet["liveChatId"]]
            text = str(snippet["textMessageDetails"]["messageText"])
        except (ValueError, KeyError, TypeError):
            return self._error(400, "invalidValue", "bad liveChatMessage")
        if chat.ended:
            return self._error(403, "liveChatEnded", "The live chat is no longer live.")
        if len(text) > 200:
            return self._error(400, "messageTextInvalid", "The message is too long.")
        item = self._item(
            chat,
            token.channel,
            "textMessageEvent",
            {"textMessageDetails": {"messageText": text}},
            display=text,
        )
        self.posted.append(item)
        await self.add(chat, item)
        return web.json_response(item)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        token = self._auth(request)
        if isinstance(token, web.Response):
            return token
        if not self.stream_enabled:
            return web.Response(status=404, text="Not Found")
        if (failed := self._charge("liveChatMessages.stream")) is not None:
            return failed
        chat = self._chat_for(request)
        if isinstance(chat, web.Response):
            return chat
        page_token = request.query.get("pageToken")
        start = self._start(page_token)
        if start is None:
            return self._error(400, "pageTokenInvalid", "The page token is not valid.")
        if chat.ended and start >= len(chat.items):
            return self._error(403, "liveChatEnded", "The live chat is no longer live.")
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        stream = Stream(next(self._stream_ids), chat, start, page_token, response, request, start)
        self.streams.append(stream)
        await self._notify()
        first = True
        try:
            while not stream.closed:
                if stream.position < len(chat.items) or first:
                    page = self._page(chat, stream.position)
                    stream.position = len(chat.items)
                    await response.write((b"[" if first else b",\r\n") + json.dumps(page).encode())
                    first = False
                    if chat.ended:
                        break
                    continue
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: stream.closed or stream.position < len(chat.items)
                    )
            if not stream.closed:
                await response.write(b"]")
                await response.write_eof()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            stream.closed = True
            await self._notify()
        return response


@contextlib.asynccontextmanager
async def running_double() -> AsyncIterator[YouTubeDouble]:
    double = YouTubeDouble()
    await double.start()
    try:
        yield double
    finally:
        await double.close()


@pytest.fixture
async def youtube_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[YouTubeDouble]:
    """A running double; oauthlib is told that plain http to it is acceptable."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    async with running_double() as double:
        yield double
