"""YouTube Live chat (YouTube Data API v3), normalized into the bot's chat vocabulary.

What this source does, and why:

* **Finds the chat.** The signed-in channel's active broadcast (``liveBroadcasts.list``), or
  the live video named by ``youtube.video_id`` (``videos.list``). While nothing is live it
  says so once and looks again every ``youtube.offline_check_s``; when a chat ends it goes
  back to waiting for the next broadcast.
* **Reads it cheaply.** The server-streamed ``liveChatMessages.stream`` costs 5 quota units a
  connection, however long it stays open; where it does not work (``youtube.transport:
  auto`` finds out on the first try) ``liveChatMessages.list`` is polled, never faster than
  YouTube's ``pollingIntervalMillis`` nor than the quota allows (``youtube.quota_hours``).
  Both follow ``nextPageToken``: a dropped stream or a failed poll resumes from the last page,
  and message ids pass a bounded LRU, so nothing is ever spoken twice. History sent when a
  chat is first opened (messages older than the bot's arrival) is not read out.
* **Spends quota visibly.** Every call is counted at its documented cost
  (:data:`QUOTA_COSTS`); the total, its split and what four hours cost at this rate are logged
  every 15 minutes and at the end. ``quotaExceeded`` pauses YouTube chat with a plain message
  (the quota resets at midnight Pacific time) and tries again every ``youtube.quota_retry_s``;
  ``rateLimitExceeded`` and network trouble back off exponentially.
* **Normalization.** Text messages, Super Chats and Super Stickers (paid, with the amount and
  currency, so they are spoken ahead of free chat) become
  :class:`~bot.core.messages.ChatMessage`; new members, milestones and gifted memberships
  become :class:`~bot.core.messages.ChannelEvent` (sub, resub, gift: announced like Twitch
  subs when ``announcements`` asks for them); ``messageDeletedEvent`` and
  ``messageRetractedEvent`` become :class:`MessageDeleted` (the speech stops at once),
  ``userBannedEvent`` becomes :class:`UserPurged`. Owner, moderator, member and verified
  authors get the bot's broadcaster, moderator, subscriber and VIP roles, so chat commands
  work with the same permissions as on Twitch. Malformed items are logged and skipped.
* **Replies** go back with ``liveChatMessages.insert`` (20 units) when the sign-in may post;
  the bot's own lines are recognised when they come back and are not spoken.
* **Why the stream bypasses the discovery client.** google-api-python-client builds the
  ``liveChatMessages.stream`` request from its discovery document (URI, parameters), but its
  ``execute()`` reads the whole body through httplib2 before it parses anything, so a response
  that stays open for hours would never return. The built URI is read instead with google-auth's
  ``AuthorizedSession`` (requests, ``stream=True``, same credentials and refreshes), and the
  growing JSON array is split into pages by :class:`JsonStream`.
* **Off the loop.** The Google client is synchronous: unary calls run on one worker thread
  (httplib2 connections are not thread-safe), the stream is read on a thread of its own that
  hands pages to the loop with ``call_soon_threadsafe``. Token refreshes google-auth makes are
  written to the token file at once.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.core.lru import LRU
from bot.core.messages import (
    ChannelEvent,
    ChannelEventKind,
    ChannelEventSink,
    ChatMessage,
    ChatUser,
    MessageDeleted,
    ModerationEvent,
    Platform,
    Replier,
    Role,
    UserPurged,
)
from bot.core.tasks import TaskSet
from bot.sources.base import ChatSink
from bot.sources.youtube.auth import (
    YouTubeToken,
    YouTubeTokenStore,
    build_youtube,
    token_path,
)
from bot.sources.youtube.readiness import items_of, read_readiness, title_of
from bot.sources.youtube.settings import YouTubeConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

QUOTA_COSTS: dict[str, int] = {
    "liveBroadcasts.list": 1,
    "videos.list": 1,
    "channels.list": 1,
    "liveChatMessages.list": 5,
    "liveChatMessages.stream": 5,
    "liveChatMessages.insert": 20,
}
"""Quota units per call, as Google's quota table gives them (a failed call costs the same)."""

REPLY_SHARE = 0.15
"""Most of the daily quota replies may spend (1,500 units, 75 replies, of the default 10,000)."""
MAX_TEXT = 5000
"""Longest text passed on (YouTube allows 200; this bounds a hostile or broken payload)."""
MAX_SEND = 200
"""YouTube rejects chat messages longer than this."""
HISTORY_GRACE_S = 10.0
"""Messages published this long before the bot opened a chat still count as new."""
QUOTA_REPORT_S = 900.0
_STREAM_CONNECT_S = 30.0
_ECHO_WINDOW_S = 60.0
_PARTS = ("id", "snippet", "authorDetails")
_EMOJI_CODE = re.compile(r"(?<!\S):[A-Za-z_][\w-]*:(?!\S)")
_HANDLE_CHARS = re.compile(r"[^a-z0-9_.\-]")
_GIVE_UP_REASONS = frozenset(
    {"liveStreamingNotEnabled", "insufficientPermissions", "forbidden", "accessNotConfigured"}
)
_CHAT_GONE_REASONS = frozenset({"liveChatEnded", "liveChatNotFound", "liveChatDisabled"})
_MILESTONE = "memberMilestoneChatEvent"
_GIFTING = "membershipGiftingEvent"
_MEMBERSHIP_KINDS = frozenset({"newSponsorEvent", _MILESTONE, _GIFTING})


class YouTubeSetupError(RuntimeError):
    """A problem retrying cannot fix (not signed in, access refused); ``str()`` says what to do."""


class StreamUnsupported(Exception):
    """The chat stream endpoint is not available here; polling takes over."""


class _StreamIdle(Exception):
    """The chat stream was silent for ``youtube.stream_idle_s``; it is reopened."""


# -- quota ---------------------------------------------------------------------------------------


class QuotaMeter:
    """Counts the quota units this run spent, by method, and says what a stream costs.

    Attributes:
        used: Units spent since the bot started.
        calls: Calls made, by method.
    """

    def __init__(self, daily_quota: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.daily_quota = daily_quota
        self.used = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self._clock = clock
        self._started = clock()
        self._reported = self._started

    def spend(self, method: str) -> int:
        """Count one call of ``method``; returns its cost."""
        cost = QUOTA_COSTS.get(method, 1)
        self.used += cost
        self.calls[method] += 1
        return cost

    def may_reply(self) -> bool:
        """Whether one more reply stays within :data:`REPLY_SHARE` of the daily quota.

        Reading chat is planned to spend at most 80 % of the quota (``youtube.quota_hours``);
        replies at 20 units each could otherwise eat the rest and pause chat mid-stream.
        """
        spent = self.calls["liveChatMessages.insert"] * QUOTA_COSTS["liveChatMessages.insert"]
        return spent + QUOTA_COSTS["liveChatMessages.insert"] <= REPLY_SHARE * self.daily_quota

    def per_hours(self, hours: float) -> int:
        """Units ``hours`` of streaming cost at the rate seen so far."""
        elapsed = max(self._clock() - self._started, 60.0)
        return round(self.used * hours * 3600.0 / elapsed)

    def summary(self) -> str:
        """One line: the total, how it splits, and the four-hour projection."""
        elapsed = self._clock() - self._started
        split = ", ".join(
            f"{method} {count}x{QUOTA_COSTS.get(method, 1)}"
            for method, count in sorted(self.calls.items())
        )
        return (
            f"YouTube quota: {self.used:,} units in {_duration(elapsed)} ({split or 'no calls'}); "
            f"at this rate 4 hours cost {self.per_hours(4):,} of the {self.daily_quota:,} a day"
        )

    def due(self, every_s: float = QUOTA_REPORT_S) -> bool:
        """Whether a periodic report is due (and mark it given)."""
        now = self._clock()
        if now - self._reported < every_s:
            return False
        self._reported = now
        return True


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def until_quota_reset(now: datetime.datetime | None = None) -> float:
    """Seconds until YouTube's daily quota resets (midnight Pacific time)."""
    try:
        from zoneinfo import ZoneInfo

        pacific: datetime.tzinfo = ZoneInfo("America/Los_Angeles")
    except Exception:  # no time zone database (some Windows installs): standard time
        pacific = datetime.timezone(datetime.timedelta(hours=-8))
    now = (now or datetime.datetime.now(datetime.UTC)).astimezone(pacific)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


# -- errors --------------------------------------------------------------------------------------


def error_reasons(exc: BaseException) -> set[str]:
    """The ``reason`` words of a Google API error (``quotaExceeded``, ``liveChatEnded``, ...)."""
    content = getattr(exc, "content", None)
    if not isinstance(content, bytes | str):
        return set()
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return set()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return set()
    reasons: set[str] = set()
    for key in ("errors", "details"):
        entries = error.get(key)
        if isinstance(entries, list):
            reasons.update(
                str(e["reason"]) for e in entries if isinstance(e, dict) and e.get("reason")
            )
    return reasons


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "resp", None)
    status = getattr(resp, "status", None)
    return int(status) if isinstance(status, int | str) and str(status).isdigit() else None


def describe(exc: BaseException) -> str:
    """One plain line for a failed call."""
    status = _status(exc)
    if status is not None:
        reasons = error_reasons(exc)
        return f"YouTube answered {status}" + (
            f" ({', '.join(sorted(reasons))})" if reasons else ""
        )
    if isinstance(exc, TimeoutError):
        return "YouTube did not answer in time"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def fatal_reason(exc: BaseException) -> str | None:
    """The user-facing reason when ``exc`` means retrying cannot help, else None."""
    relogin = "run `ishowtts login youtube` to sign in again"
    from google.auth.exceptions import RefreshError

    if isinstance(exc, RefreshError):
        return f"Google no longer accepts the saved YouTube sign-in (revoked or expired); {relogin}"
    status = _status(exc)
    reasons = error_reasons(exc)
    if status == 401:
        return f"YouTube refused the saved sign-in; {relogin}"
    if status == 403 and reasons & _GIVE_UP_REASONS:
        if "liveStreamingNotEnabled" in reasons:
            return "live streaming is not enabled on this YouTube channel (YouTube Studio, Go live)"
        if "accessNotConfigured" in reasons:
            return (
                "the YouTube Data API v3 is not enabled for the Google project of "
                "youtube.client_id (Google Cloud console, APIs & Services, Library)"
            )
        return f"YouTube refused access ({', '.join(sorted(reasons))}); {relogin}"
    return None


# -- payloads -----------------------------------------------------------------------------------


class JsonStream:
    """Splits a streamed JSON array (``[{...},{...}``) or newline-delimited JSON into objects.

    Google's REST transcoding sends each response of a server-streaming method as one element
    of a JSON array that grows while the connection is open. The objects are found by brace
    counting (strings and escapes respected), so one malformed object is reported and skipped
    without losing the ones after it, and a half-received object simply waits for more bytes.
    """

    def __init__(self, limit: int = 8 * 1024 * 1024) -> None:
        self._limit = limit
        self._buf = ""
        self._pos = 0
        self._start = -1
        self._depth = 0
        self._in_str = False
        self._escaped = False
        self.objects = 0
        self.junk = 0
        import codecs

        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> list[Any]:
        """Objects completed by ``data`` (an unparsable one becomes a :class:`ValueError`)."""
        self._buf += self._utf8.decode(data)
        out: list[Any] = []
        buf = self._buf
        i = self._pos
        while i < len(buf):
            ch = buf[i]
            if self._start < 0:
                if ch == "{":
                    self._start, self._depth = i, 1
                elif ch not in " \t\r\n,[]":
                    self.junk += 1
                i += 1
                continue
            if self._in_str:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_str = False
            elif ch == '"':
                self._in_str = True
            elif ch == "{":
                self._depth += 1
            elif ch == "}":
                self._depth -= 1
                if self._depth == 0:
                    text = buf[self._start : i + 1]
                    self._start = -1
                    self.objects += 1
                    try:
                        out.append(json.loads(text))
                    except ValueError as exc:
                        out.append(ValueError(f"unreadable chat payload ({exc})"))
            i += 1
        if self._start < 0:
            self._buf, self._pos = "", 0
        else:
            self._buf, self._pos = buf[self._start :], i - self._start
            self._start = 0
            if len(self._buf) > self._limit:
                out.append(ValueError(f"a chat payload larger than {self._limit} bytes"))
                self._buf, self._pos, self._start, self._depth = "", 0, -1, 0
                self._in_str = self._escaped = False
        return out


def _text(value: Any) -> str:
    """Chat text as the bot speaks it: custom-emoji codes removed, whitespace folded, capped."""
    if not isinstance(value, str):
        return ""
    value = _EMOJI_CODE.sub(" ", value[: MAX_TEXT * 2])
    return " ".join(value.split())[:MAX_TEXT].strip()


def roles_from_author(author: dict[str, Any]) -> frozenset[Role]:
    """Chat roles from YouTube's author flags.

    Owner is the broadcaster, a chat moderator is a moderator, a channel member is a
    subscriber, and a verified channel (YouTube's check mark) ranks like a Twitch VIP: known,
    but without moderator powers.
    """
    roles: set[Role] = set()
    if author.get("isChatOwner") is True:
        roles.add(Role.BROADCASTER)
    if author.get("isChatModerator") is True:
        roles.add(Role.MODERATOR)
    if author.get("isChatSponsor") is True:
        roles.add(Role.SUBSCRIBER)
    if author.get("isVerified") is True:
        roles.add(Role.VIP)
    return frozenset(roles)


def login_for(display_name: str, channel_id: str) -> str:
    """The ``@name`` moderators use for a YouTube author: the handle, lower case.

    YouTube shows handles (``@name``, letters, digits, ``_ . -``); older channels show a free
    display name, which loses its spaces and other characters. A name with nothing left falls
    back to the channel id, so every author can still be named.
    """
    name = _HANDLE_CHARS.sub("", display_name.strip().lstrip("@").casefold())[:40]
    name = name.lstrip(".-")
    return name or channel_id.casefold()[:40]


def _published(snippet: dict[str, Any]) -> datetime.datetime | None:
    value = snippet.get("publishedAt")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _count(value: Any, default: int) -> int:
    """A positive whole number from a payload (YouTube sends some as text), else ``default``."""
    if isinstance(value, bool):
        return default
    try:
        number = int(str(value))
    except ValueError:
        return default
    return number if 0 < number <= 1_000_000 else default


def _micros(value: Any) -> int:
    try:
        micros = int(str(value))
    except ValueError:
        return 0
    return max(micros, 0)


@dataclass(eq=False)
class _Sent:
    """A line the bot posted, until its echo comes back (or the echo window passes)."""

    at: float
    text: str
    id: str | None = None


@dataclass
class _Chat:
    """The chat being read: where to resume, and what counts as history.

    Only the first page of a chat (read before any ``nextPageToken``) holds history: YouTube
    sends the recent messages first. Its items older than ``history_before`` are not read;
    every later page is new whatever its timestamps say, so a PC clock that runs fast can at
    most hide part of that first page.
    """

    id: str
    title: str
    history_before: datetime.datetime
    page_token: str | None = None
    ended: bool = False


# -- the source ----------------------------------------------------------------------------------


class YouTubeSource:
    """Delivers a YouTube live chat's messages and moderation events to the bot.

    Construction does no I/O; :meth:`run` signs in, finds the live chat and reads it until
    :meth:`close`, across broadcasts.

    Attributes:
        name: ``"youtube"`` (the ``source`` of every message).
        quota: What this run spent of the daily quota.
    """

    name = "youtube"

    def __init__(
        self,
        cfg: YouTubeConfig,
        store: YouTubeTokenStore,
        *,
        command_prefix: str = "!",
        dedupe_size: int = 8192,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        """Prepare the source.

        Args:
            cfg: The ``youtube`` section.
            store: The saved sign-in (see ``ishowtts login youtube``).
            command_prefix: ``commands.prefix``: with ``youtube.messages: paid`` free lines
                that start with it still pass, so chat commands work from YouTube.
            dedupe_size: How many message ids to remember against repeats.
            clock: Monotonic clock for waits and the quota report.
            wall_clock: UTC "now", compared with YouTube's ``publishedAt`` (for history).
        """
        self.cfg = cfg
        self.store = store
        self.quota = QuotaMeter(cfg.daily_quota, clock)
        self._command_prefix = command_prefix
        self._clock = clock
        self._wall = wall_clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._seen: LRU[str, None] = LRU(dedupe_size)
        self._sent: collections.deque[_Sent] = collections.deque(maxlen=64)
        self._token: YouTubeToken | None = None
        self._creds: Any = None
        self._api: Any = None
        self._sink: ChatSink | None = None
        self._wanted: frozenset[ChannelEventKind] = frozenset()
        self._closed = asyncio.Event()
        self._tasks = TaskSet("youtube")
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stream_stop: threading.Event | None = None
        self._stream_socket: socket.socket | None = None
        self._stream_lock = threading.Lock()
        self._delay = cfg.reconnect_min_s
        self._chat: _Chat | None = None
        self._ended_chats: LRU[str, None] = LRU(64)
        self._stream_works: bool | None = None
        self._can_post = False
        self._posting_refused = False
        self._reply_budget_said = False

    # -- public -------------------------------------------------------------------------------
    @property
    def channel_id(self) -> str | None:
        """The signed-in channel, once known."""
        return self._token.channel_id if self._token is not None else None

    @property
    def chat_id(self) -> str | None:
        """The live chat being read, if any."""
        return self._chat.id if self._chat is not None else None

    async def run(self, sink: ChatSink) -> None:
        """Deliver chat to ``sink`` until :meth:`close`, broadcast after broadcast.

        Raises:
            YouTubeSetupError: Not signed in, the sign-in was revoked, or YouTube refused
                access; the message says what to do. Network trouble, quota and rate limits
                never raise: they are waited out.
        """
        self._sink = sink
        self._wanted = sink.wanted_events() if isinstance(sink, ChannelEventSink) else frozenset()
        token = await self._load_token()
        self._token = token
        self._can_post = token.can_post
        self._creds = token.credentials()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="youtube")
        try:
            self._api = await self._blocking(lambda: build_youtube(self.cfg, self._creds))
            log.info(
                "YouTube: signed in as %s; %s",
                token.channel_title or token.channel_id,
                "replies go to chat" if self._can_post else "this sign-in cannot post replies",
            )
            while not self._closed.is_set():
                chat = await self._find_chat()
                if chat is None:
                    break
                self._chat = chat
                await self._read_chat(chat)
                self._chat = None
        finally:
            log.info("%s", self.quota.summary())
            await self._shutdown()

    async def close(self) -> None:
        """Stop reading (an open stream is cut) and release the worker threads."""
        self._closed.set()
        self._cut_stream()

    async def send(self, text: str) -> bool:
        """Post ``text`` to the live chat (20 quota units); False when it was not posted."""
        chat = self._chat
        if chat is None or self._api is None or not self._can_post or self._posting_refused:
            return False
        line = " ".join(text.split())[:MAX_SEND]
        if not line:
            return False
        if not self.quota.may_reply():
            if not self._reply_budget_said:
                self._reply_budget_said = True
                log.warning(
                    "YouTube: replies used %d%% of the daily quota; no more replies this run, so "
                    "reading chat keeps its share (%s)",
                    round(REPLY_SHARE * 100),
                    self.quota.summary(),
                )
            return False
        entry = _Sent(self._clock(), line)
        self._sent.append(entry)
        body = {
            "snippet": {
                "liveChatId": chat.id,
                "type": "textMessageEvent",
                "textMessageDetails": {"messageText": line},
            }
        }
        api = self._api
        try:
            answer = await self._call(
                "liveChatMessages.insert",
                lambda: api.liveChatMessages().insert(part="snippet", body=body).execute(),
            )
        except Exception as exc:
            with contextlib.suppress(ValueError):
                self._sent.remove(entry)
            reasons = error_reasons(exc)
            if _status(exc) == 403 and not reasons & {"quotaExceeded", "rateLimitExceeded"}:
                self._posting_refused = True
                log.warning(
                    "YouTube: the bot may not post in this chat (%s); replies stay off",
                    describe(exc),
                )
            else:
                log.warning("YouTube: could not post a chat message: %s", describe(exc))
            return False
        entry.id = str(answer.get("id") or "") or None if isinstance(answer, dict) else None
        return True

    # -- threads --------------------------------------------------------------------------------
    async def _blocking(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the API thread without blocking the loop."""
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _call(self, method: str, fn: Callable[[], T]) -> T:
        """One API call of ``method`` off the loop: counted, and any token refresh saved."""
        self.quota.spend(method)
        try:
            return await self._blocking(fn)
        finally:
            await self._sync_tokens()
            if self.quota.due():
                log.info("%s", self.quota.summary())

    async def _sync_tokens(self) -> None:
        """Write a token pair google-auth refreshed, the moment it changed."""
        token, creds = self._token, self._creds
        if token is None or creds is None or not creds.token:
            return
        if creds.token == token.access_token and (
            not creds.refresh_token or creds.refresh_token == token.refresh_token
        ):
            return
        updated = token.with_credentials(creds)
        self._token = updated
        try:
            await self.store.save(updated)
        except OSError as exc:
            log.error(
                "YouTube: the sign-in was refreshed but could not be saved to %s (%s)",
                self.store.path,
                exc,
            )
            return
        log.info("YouTube: sign-in refreshed and saved")

    async def _shutdown(self) -> None:
        self._cut_stream()
        await self._tasks.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    # -- sign-in --------------------------------------------------------------------------------
    async def _load_token(self) -> YouTubeToken:
        folder = self.store.path.parent
        readiness = await asyncio.to_thread(read_readiness, self.cfg, folder)
        if readiness.token is None or not readiness.ready:
            raise YouTubeSetupError(f"{readiness.reason}; {readiness.fix}")
        return readiness.token

    # -- finding the chat -----------------------------------------------------------------------
    async def _find_chat(self) -> _Chat | None:
        """The live chat to read; waits (saying so once) while nothing is live."""
        waiting_said = False
        while not self._closed.is_set():
            try:
                found = await self._live_chat()
            except Exception as exc:
                await self._failed(exc, "looking for the live broadcast")
                continue
            self._delay = self.cfg.reconnect_min_s
            if found is not None and found[0] not in self._ended_chats:
                chat_id, title = found
                log.info("YouTube: reading the live chat of %r", title)
                history = self._wall() - datetime.timedelta(seconds=HISTORY_GRACE_S)
                return _Chat(chat_id, title, history)
            if not waiting_said:
                waiting_said = True
                what = (
                    f"video {self.cfg.video_id} is not live"
                    if self.cfg.video_id
                    else "nothing is live on the channel"
                )
                log.info(
                    "YouTube: %s yet; looking again every %.0f s",
                    what,
                    self.cfg.offline_check_s,
                )
            await self._pause(self.cfg.offline_check_s)
        return None

    async def _live_chat(self) -> tuple[str, str] | None:
        """(live chat id, title) of the broadcast to read, or None while nothing is live."""
        api = self._api
        if self.cfg.video_id:
            video_id = self.cfg.video_id
            answer = await self._call(
                "videos.list",
                lambda: (
                    api.videos().list(part="snippet,liveStreamingDetails", id=video_id).execute()
                ),
            )
            for item in items_of(answer):
                details = item.get("liveStreamingDetails") or {}
                chat_id = details.get("activeLiveChatId") if isinstance(details, dict) else None
                if isinstance(chat_id, str) and chat_id:
                    return chat_id, title_of(item)
            return None
        answer = await self._call(
            "liveBroadcasts.list",
            lambda: (
                api.liveBroadcasts()
                .list(part="snippet", broadcastStatus="active", broadcastType="all", maxResults=5)
                .execute()
            ),
        )
        for item in items_of(answer):
            snippet = item.get("snippet") or {}
            chat_id = snippet.get("liveChatId") if isinstance(snippet, dict) else None
            if isinstance(chat_id, str) and chat_id:
                return chat_id, title_of(item)
        return None

    # -- reading the chat -----------------------------------------------------------------------
    async def _read_chat(self, chat: _Chat) -> None:
        """Read ``chat`` until it ends or the source closes, resuming after every failure."""
        while not self._closed.is_set() and not chat.ended:
            try:
                if self._use_stream():
                    await self._stream(chat)
                else:
                    await self._poll(chat)
            except StreamUnsupported as exc:
                if self.cfg.transport == "stream":
                    raise YouTubeSetupError(
                        f"youtube.transport is stream, but the chat stream does not work ({exc}); "
                        "use auto or poll"
                    ) from None
                self._stream_works = False
                log.warning(
                    "YouTube: the chat stream is not available (%s); polling instead, every "
                    "%.1f s at the most (youtube.quota_hours)",
                    exc,
                    self.cfg.poll_floor_s,
                )
            except _StreamIdle:
                log.debug("YouTube: the chat stream was idle; reopening it")
            except Exception as exc:
                if error_reasons(exc) & _CHAT_GONE_REASONS or _status(exc) == 404:
                    chat.ended = True
                    break
                await self._failed(exc, "reading chat")
        if chat.ended:
            self._ended_chats.put(chat.id, None)
            log.info("YouTube: the live chat of %r ended", chat.title)

    def _use_stream(self) -> bool:
        return self.cfg.transport == "stream" or (
            self.cfg.transport == "auto" and self._stream_works is not False
        )

    async def _poll(self, chat: _Chat) -> None:
        """``liveChatMessages.list`` in a loop, at YouTube's pace and the quota's."""
        api = self._api
        while not self._closed.is_set() and not chat.ended:
            request = api.liveChatMessages().list(
                liveChatId=chat.id,
                part=",".join(_PARTS),
                pageToken=chat.page_token,
                maxResults=2000,
            )
            answer = await self._call("liveChatMessages.list", request.execute)
            self._delay = self.cfg.reconnect_min_s
            await self._page(chat, answer)
            wait = self.cfg.poll_floor_s
            millis = answer.get("pollingIntervalMillis") if isinstance(answer, dict) else None
            if isinstance(millis, int | float) and not isinstance(millis, bool):
                wait = max(wait, min(float(millis) / 1000.0, 600.0))
            if not chat.ended:
                await self._pause(wait)

    async def _stream(self, chat: _Chat) -> None:
        """One connection of ``liveChatMessages.stream``; returns when it ends (to reopen it)."""
        api = self._api
        token = chat.page_token
        url: str = await self._blocking(
            lambda: (
                api.youtube()
                .v3()
                .liveChat()
                .messages()
                .stream(liveChatId=chat.id, part=list(_PARTS), pageToken=token)
                .uri
            )
        )
        self.quota.spend("liveChatMessages.stream")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def push(kind: str, value: Any) -> None:
            if stop.is_set():
                return
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, value))

        with self._stream_lock:
            self._stream_stop = stop
        reader = threading.Thread(
            target=self._read_stream, args=(url, push, stop), name="youtube-stream", daemon=True
        )
        reader.start()
        first = True
        try:
            while True:
                got = await self._until_closed(inbox.get())
                if got is None:
                    return
                kind, value = got
                if kind == "page":
                    if first:
                        first = False
                        self._stream_works = True
                    self._delay = self.cfg.reconnect_min_s
                    await self._page(chat, value)
                    await self._sync_tokens()
                    if self.quota.due():
                        log.info("%s", self.quota.summary())
                    if chat.ended:
                        return
                elif kind == "bad":
                    log.warning("YouTube: skipped a chat payload that could not be read: %s", value)
                elif kind == "end":
                    await self._sync_tokens()
                    log.debug("YouTube: the chat stream ended; resuming from the last page")
                    return
                elif kind == "error":
                    await self._sync_tokens()
                    raise value
        finally:
            stop.set()
            self._cut_stream()

    def _read_stream(
        self, url: str, push: Callable[[str, Any], None], stop: threading.Event
    ) -> None:
        """The stream thread: reads one connection and hands every page to the loop."""
        import requests
        from google.auth.transport.requests import AuthorizedSession

        session = AuthorizedSession(self._creds)  # type: ignore[no-untyped-call]
        response: Any = None
        try:
            response = session.get(
                url, stream=True, timeout=(_STREAM_CONNECT_S, self.cfg.stream_idle_s)
            )
            with self._stream_lock:
                if stop.is_set():
                    response.close()
                    return
                self._stream_socket = _socket_of(response)
            if response.status_code >= 400:
                content = response.content
                error = _http_error(response.status_code, content, url)
                push("error", self._stream_refusal(response.status_code, error))
                return
            decoder = JsonStream()
            for data in response.iter_content(chunk_size=None):
                if stop.is_set():
                    return
                for obj in decoder.feed(data):
                    if isinstance(obj, ValueError):
                        push("bad", str(obj))
                    else:
                        push("page", obj)
                if decoder.junk and not decoder.objects:
                    push("error", StreamUnsupported("the answer is not a stream of JSON objects"))
                    return
            push("end", None)
        except requests.exceptions.ConnectionError as exc:
            if stop.is_set():
                return
            cause = exc.args[0] if exc.args else None
            if "Read timed out" in str(cause) or isinstance(exc, requests.exceptions.ReadTimeout):
                push("error", _StreamIdle())
            else:
                push("error", exc)
        except Exception as exc:
            if not stop.is_set():
                push("error", exc)
        finally:
            with self._stream_lock:
                self._stream_socket = None
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
            session.close()  # type: ignore[no-untyped-call]

    def _stream_refusal(self, status: int, error: Exception) -> Exception:
        """What a refused stream request means: the stream is unavailable, or a real error.

        404/405/501 without Google's error body: the method does not exist here. Until a
        stream has worked once, any other refusal that is not about the sign-in, the quota or
        the rate (a 403 for a method this project may not use yet, a 400 for a parameter it
        does not know) also means "use polling": polling then meets the real problem, if
        there is one, through the documented method.
        """
        reasons = error_reasons(error)
        if status in (404, 405, 501) and not reasons:
            return StreamUnsupported(f"HTTP {status}")
        keep = {"quotaExceeded", "rateLimitExceeded", "dailyLimitExceeded"} | _CHAT_GONE_REASONS
        if (
            self._stream_works is not True
            and 400 <= status < 500
            and status not in (401, 429)
            and not reasons & keep
        ):
            return StreamUnsupported(describe(error))
        return error

    def _cut_stream(self) -> None:
        """Stop the stream thread: shutting its socket down ends the blocking read at once.

        Never ``response.close()`` from here: that waits for the buffered reader's lock, which
        the stream thread holds while it blocks in ``recv``, so the loop would hang until
        YouTube sent more. ``shutdown`` does not wait; the reader wakes up with end-of-file,
        sees ``stop`` and closes the response itself.
        """
        with self._stream_lock:
            if self._stream_stop is not None:
                self._stream_stop.set()
            sock, self._stream_socket = self._stream_socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- pages and items ------------------------------------------------------------------------
    async def _page(self, chat: _Chat, page: Any) -> None:
        """Deliver one response's items in order, then move the resume point past them."""
        if not isinstance(page, dict):
            log.warning("YouTube: skipped a chat response that is not an object")
            return
        items = page.get("items", [])
        if not isinstance(items, list):
            log.warning("YouTube: skipped a chat response whose items are not a list")
            items = []
        first = chat.page_token is None
        for item in items:
            try:
                await self._item(chat, item, first_page=first)
            except Exception as exc:
                log.warning("YouTube: skipped a chat item that could not be read: %s", exc)
                log.debug("unreadable YouTube chat item %r", item, exc_info=True)
        token = page.get("nextPageToken")
        if isinstance(token, str) and token:
            chat.page_token = token
        if page.get("offlineAt"):
            chat.ended = True

    async def _item(self, chat: _Chat, item: Any, *, first_page: bool = False) -> None:
        if not isinstance(item, dict):
            raise ValueError("not an object")
        message_id = item.get("id")
        snippet = item.get("snippet")
        if not isinstance(message_id, str) or not message_id or not isinstance(snippet, dict):
            raise ValueError("no id or snippet")
        kind = snippet.get("type")
        if not isinstance(kind, str):
            raise ValueError("no type")
        author = item.get("authorDetails") or {}
        if not isinstance(author, dict):
            raise ValueError("authorDetails is not an object")
        if not self._seen.add(message_id, None):
            log.debug("YouTube: item %s delivered again; ignored", message_id)
            return
        published = _published(snippet)
        if first_page and published is not None and published < chat.history_before:
            log.debug("YouTube: %s from before the bot joined; not read", message_id)
            return
        if kind == "chatEndedEvent":
            chat.ended = True
        elif kind == "messageDeletedEvent":
            details = snippet.get("messageDeletedDetails") or {}
            deleted = details.get("deletedMessageId") if isinstance(details, dict) else None
            if not isinstance(deleted, str) or not deleted:
                raise ValueError("messageDeletedEvent without deletedMessageId")
            await self._moderate(MessageDeleted(message_id=deleted))
        elif kind == "messageRetractedEvent":
            details = snippet.get("messageRetractedDetails") or {}
            retracted = details.get("retractedMessageId") if isinstance(details, dict) else None
            if isinstance(retracted, str) and retracted:
                await self._moderate(MessageDeleted(message_id=retracted))
        elif kind == "userBannedEvent":
            details = snippet.get("userBannedDetails") or {}
            banned = details.get("bannedUserDetails") if isinstance(details, dict) else None
            if not isinstance(banned, dict) or not isinstance(banned.get("channelId"), str):
                raise ValueError("userBannedEvent without bannedUserDetails.channelId")
            name = str(banned.get("displayName") or "")
            await self._moderate(
                UserPurged(banned["channelId"], login_for(name, banned["channelId"]))
            )
        elif kind in _MEMBERSHIP_KINDS:
            event = self._membership(message_id, kind, snippet, author)
            if event is not None:
                await self._deliver_event(event)
        else:
            message = self._message(message_id, kind, snippet, author)
            if message is None:
                return
            if (
                self.cfg.messages == "paid"
                and not message.paid
                and not message.text.startswith(self._command_prefix)
            ):
                log.debug("YouTube: %s is free chat (youtube.messages: paid)", message_id)
                return
            await self._deliver(message)

    def _message(
        self, message_id: str, kind: str, snippet: dict[str, Any], author: dict[str, Any]
    ) -> ChatMessage | None:
        """The chat message an item carries (None: nothing to say, or the bot's own echo)."""
        text, paid = self._content(kind, snippet)
        if text is None:
            log.debug("YouTube: %s item %s has nothing to say", kind, message_id)
            return None
        user = self._author(author, snippet)
        if self._is_own(user.id, message_id, text, author):
            log.debug("YouTube: ignoring the bot's own message %s", message_id)
            return None
        return ChatMessage(
            id=message_id,
            user=user,
            text=text,
            source=self.name,
            reward=paid,
            reply=self._replier(),
        )

    @staticmethod
    def _content(kind: str, snippet: dict[str, Any]) -> tuple[str | None, str | None]:
        """(text to speak, paid label) of a chat item; text None when it says nothing.

        The paid label names what was paid ("Super Chat $5.00", "membership", ...); paid
        messages take the reward path of the pipeline (``triggers.rewards``) and are spoken
        ahead of free chat.
        """

        def details(key: str) -> dict[str, Any]:
            value = snippet.get(key) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{key} is not an object")
            return value

        if kind == "textMessageEvent":
            text = _text(details("textMessageDetails").get("messageText"))
            return text or _text(snippet.get("displayMessage")) or None, None
        if kind == "superChatEvent":
            sc = details("superChatDetails")
            amount = _amount(sc)
            return _text(sc.get("userComment")) or f"sent a Super Chat of {amount}", (
                f"Super Chat {amount}"
            )
        if kind == "superStickerEvent":
            st = details("superStickerDetails")
            amount = _amount(st)
            meta = st.get("superStickerMetadata") or {}
            alt = _text(meta.get("altText")) if isinstance(meta, dict) else ""
            sticker = f"a {alt} Super Sticker" if alt else "a Super Sticker"
            return f"sent {sticker} of {amount}", f"Super Sticker {amount}"
        # Memberships are channel events (:meth:`_membership`); giftMembershipReceivedEvent
        # (one per recipient: the gifting event already said it), polls, members-only mode,
        # tombstones: nothing to speak.
        return None, None

    def _membership(
        self, message_id: str, kind: str, snippet: dict[str, Any], author: dict[str, Any]
    ) -> ChannelEvent | None:
        """A membership, milestone or gift as the platform-neutral :class:`ChannelEvent`.

        A new member is a ``SUBSCRIPTION`` (``tier``: the membership level's name), a
        milestone a ``RESUBSCRIPTION`` with its months and comment, a gift a ``GIFT`` of
        ``count`` memberships: the announcements speak them like Twitch subs (or not at all,
        unless ``announcements`` asks for that kind).
        """
        if kind == _MILESTONE:
            key = "memberMilestoneChatDetails"
        elif kind == _GIFTING:
            key = "membershipGiftingDetails"
        else:
            key = "newSponsorDetails"
        details = snippet.get(key) or {}
        if not isinstance(details, dict):
            raise ValueError(f"{key} is not an object")
        user = self._author(author, snippet)
        level = _text(details.get("memberLevelName") or details.get("giftMembershipsLevelName"))
        common: dict[str, Any] = {
            "id": message_id,
            "user": user,
            "source": self.name,
            "platform": Platform.YOUTUBE,
            "tier": level[:60],
        }
        if kind == _MILESTONE:
            return ChannelEvent(
                kind=ChannelEventKind.RESUBSCRIPTION,
                months=_count(details.get("memberMonth"), 0),
                message=_text(details.get("userComment")),
                **common,
            )
        if kind == _GIFTING:
            return ChannelEvent(
                kind=ChannelEventKind.GIFT,
                count=_count(details.get("giftMembershipsCount"), 1),
                **common,
            )
        return ChannelEvent(kind=ChannelEventKind.SUBSCRIPTION, **common)

    def _author(self, author: dict[str, Any], snippet: dict[str, Any]) -> ChatUser:
        """The author of an item as a YouTube :class:`ChatUser` (identity: the channel id)."""
        channel_id = author.get("channelId") or snippet.get("authorChannelId")
        if not isinstance(channel_id, str) or not channel_id:
            raise ValueError("no author channel id")
        display = str(author.get("displayName") or "")[:100]
        return ChatUser(
            id=channel_id,
            login=login_for(display, channel_id),
            display_name=display.lstrip("@") or channel_id,
            roles=roles_from_author(author),
            platform=Platform.YOUTUBE,
        )

    # -- delivery -------------------------------------------------------------------------------
    async def _deliver_event(self, event: ChannelEvent) -> None:
        """Hand a channel event to the sink, when it announces that kind."""
        sink = self._sink
        if not isinstance(sink, ChannelEventSink) or event.kind not in self._wanted:
            log.debug("YouTube: %s %s is not announced", event.kind.value, event.id)
            return
        try:
            await sink.on_channel_event(event)
        except Exception:
            log.exception("the bot failed on YouTube %s %s", event.kind.value, event.id)

    async def _deliver(self, message: ChatMessage) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            await sink.on_message(message)
        except Exception:
            log.exception("the bot failed on YouTube message %s", message.id)

    async def _moderate(self, event: ModerationEvent) -> None:
        sink = self._sink
        if sink is None:
            return
        if isinstance(event, MessageDeleted):
            log.info("YouTube: message %s was deleted", event.message_id)
        elif isinstance(event, UserPurged):
            log.info("YouTube: %s was banned or timed out", event.login or event.user_id)
        try:
            await sink.on_moderation(event)
        except Exception:
            log.exception("the bot failed on a YouTube moderation event %s", event)

    # -- echo and replies -----------------------------------------------------------------------
    def _is_own(self, channel_id: str, message_id: str, text: str, author: dict[str, Any]) -> bool:
        """Whether a message is the bot's own (posted through :meth:`send`)."""
        if channel_id != self.channel_id:
            return False
        if author.get("isChatOwner") is not True:
            return True  # a separate bot channel: everything it says is the bot's
        # The streamer's own channel: drop only what the bot posted, by id, or by text while
        # YouTube's answer to the insert (with the id) is still on its way.
        now = self._clock()
        while self._sent and now - self._sent[0].at > _ECHO_WINDOW_S:
            self._sent.popleft()
        match = next((e for e in self._sent if e.id == message_id), None)
        if match is None:
            said = " ".join(text.split())
            match = next((e for e in self._sent if e.id is None and e.text == said), None)
        if match is None:
            return False
        self._sent.remove(match)
        return True

    def _replier(self) -> Replier:
        """A reply posted in the background: the bot never waits on YouTube to go on."""

        async def reply(text: str) -> None:
            if not self._closed.is_set() and self._can_post and not self._posting_refused:
                self._tasks.spawn(self.send(text), name="youtube-reply")

        return reply

    # -- waiting --------------------------------------------------------------------------------
    async def _failed(self, exc: BaseException, doing: str) -> None:
        """Wait out a failed call, or raise when waiting cannot help."""
        reason = fatal_reason(exc)
        if reason is not None:
            raise YouTubeSetupError(reason) from None
        reasons = error_reasons(exc)
        if "quotaExceeded" in reasons:
            reset = until_quota_reset()
            log.warning(
                "YouTube: the daily API quota of this Google project is used up (%s); "
                "YouTube chat pauses. It resets at midnight Pacific time, in %s; trying again "
                "every %.0f s. Twitch and the other sources go on.",
                self.quota.summary(),
                _duration(reset),
                self.cfg.quota_retry_s,
            )
            await self._pause(self.cfg.quota_retry_s)
            return
        if "rateLimitExceeded" in reasons or _status(exc) == 429:
            log.warning("YouTube: asked to slow down while %s; waiting %.1f s", doing, self._delay)
        else:
            log.warning(
                "YouTube: %s failed (%s); retrying in %.1f s", doing, describe(exc), self._delay
            )
            log.debug("YouTube failure", exc_info=exc)
        await self._pause(self._delay)
        self._delay = min(self._delay * 2, self.cfg.reconnect_max_s)

    async def _until_closed(self, aw: Any) -> Any:
        """Await ``aw`` unless :meth:`close` comes first (then None)."""
        work = asyncio.ensure_future(aw)
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({work, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        return None if work.cancelled() else work.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)


def _amount(details: dict[str, Any]) -> str:
    """The paid amount as YouTube shows it ("$5.00"), else from micros and currency."""
    shown = details.get("amountDisplayString")
    if isinstance(shown, str) and shown.strip():
        return shown.strip()[:40]
    micros = _micros(details.get("amountMicros"))
    currency = str(details.get("currency") or "")[:8]
    return f"{micros / 1_000_000:.2f} {currency}".strip()


def _socket_of(response: Any) -> socket.socket | None:
    """The TCP socket under a streamed ``requests`` response (urllib3 2), to cut it from afar."""
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
    sock = getattr(fp, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _http_error(status: int, content: bytes, uri: str) -> Exception:
    """An HTTP failure of the stream as the same error type the API client raises."""
    import httplib2
    from googleapiclient.errors import HttpError

    error: Exception = HttpError(httplib2.Response({"status": status}), content, uri=uri)
    return error


async def youtube_source_from_config(
    youtube: YouTubeConfig, state_folder: Path, *, required: bool, command_prefix: str = "!"
) -> YouTubeSource | None:
    """The YouTube source, when someone has signed in with ``ishowtts login youtube``.

    ``required`` (``youtube.enabled`` is on) turns a missing sign-in into a
    :class:`YouTubeSetupError` that says how to fix it; otherwise the reason is logged and
    None returned.
    """
    readiness = await asyncio.to_thread(read_readiness, youtube, state_folder)
    if not readiness.ready:
        if required:
            raise YouTubeSetupError(
                f"youtube.enabled is on, but {readiness.reason}: {readiness.fix}"
            )
        log.info("YouTube chat is not used: %s", readiness.reason)
        return None
    store = YouTubeTokenStore(token_path(state_folder))
    return YouTubeSource(youtube, store, command_prefix=command_prefix)
