"""Twitch chat over EventSub (twitchio 3), normalized into the bot's chat vocabulary.

What this source adds on top of twitchio, and why:

* **Normalization.** ``channel.chat.message`` becomes a :class:`~bot.core.messages.ChatMessage`:
  emote, cheermote and GIF fragments are dropped (emote names are never read aloud), roles
  come from badges, a cheer at or above ``twitch.min_bits`` and a message carrying one of the
  configured channel-points rewards are *paid*. Deletes, timeouts/bans and chat clears become
  moderation events that act on queued and playing speech at once.
* **Rewards through chat, not redemption events.** A reward with text input posts the text
  in chat with the reward's id attached; speaking *that* message keeps one copy of it (a
  redemption subscription would deliver the same text a second time) and lets a moderator's
  delete stop it. Reward titles are looked up through Helix when the signed-in account is the
  broadcaster; rewards configured by id need no lookup.
* **Staying connected.** twitchio reconnects by itself after keepalive silence, dropped TCP
  connections, ``session_reconnect`` and most close codes, but gives up for good after close
  codes 4001/4003, a revoked subscription set or a failed welcome, and its reader can die on a
  frame without metadata. The source watches for a token with no live socket (on every
  ``websocket_closed`` event and on a short timer) and then rebuilds the whole client with
  exponential backoff. Every transition is logged in plain words.
* **Moderation first.** Deletions, timeouts/bans and clears go to the bot on their own path
  the moment twitchio hands them over, never behind a chat line the bot is still handling;
  tombstones (``inbox.Tombstones``) drop or withdraw the lines they removed.
* **Channel events.** Subs, resubs, gifts and raids (``channel.chat.notification``), cheers,
  redemptions and follows become :class:`~bot.core.messages.ChannelEvent` for a sink that
  wants them (``ChannelEventSink``); nothing is subscribed for one that does not.
* **AutoMod and shared chat.** Held messages are never spoken while held
  (``twitch.automod``); other channels of a shared chat are read by setting
  (``twitch.shared_chat``), each message once.
* **Never twice.** Message ids pass a bounded LRU, so a redelivery after a reconnect (Twitch
  may send an event more than once) is not spoken again.
* **Not its own echo.** The bot's own replies come back as chat messages; they are dropped. When
  the bot signs in as the streamer's own account, only what the bot itself sent is dropped:
  the streamer's typed messages are still spoken.
* **Tokens.** The saved sign-in is loaded from :class:`bot.sources.twitch.auth.TokenStore`,
  and every refresh twitchio makes is written back at once (refresh tokens are single-use).
  twitchio keeps sending with a stale token after a Device-Code-Flow refresh, so the source
  also points its default token at the fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import twitchio
from twitchio import eventsub

from bot.core.lru import LRU
from bot.core.messages import (
    ChannelEvent,
    ChannelEventKind,
    ChannelEventSink,
    ChatCleared,
    ChatMessage,
    ChatUser,
    MessageDeleted,
    ModerationEvent,
    Platform,
    Replier,
    UserPurged,
)
from bot.core.tasks import TaskSet
from bot.sources.base import ChatSink
from bot.sources.twitch import events, tio
from bot.sources.twitch.auth import StoredToken, TokenStore, token_path
from bot.sources.twitch.automod import Held, HeldMessages, decision
from bot.sources.twitch.inbox import Incoming, IncomingKind, Tombstones
from bot.sources.twitch.normalize import MAX_TEXT, roles_from_badges, speakable_text
from bot.sources.twitch.readiness import Feature, Problem, assess, features_off, readiness
from bot.sources.twitch.settings import TwitchConfig

__all__ = [
    "MAX_TEXT",
    "ConnectionChange",
    "ConnectionReason",
    "ConnectionState",
    "TwitchSetupError",
    "TwitchSource",
    "roles_from_badges",
    "speakable_text",
    "twitch_source_from_config",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SEND = 500
"""Twitch rejects chat messages longer than this."""
_ECHO_WINDOW_S = 60.0
_START_TIMEOUT_S = 60.0
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.I)
TOPICS = "chat messages, deletions, timeouts/bans and chat clears"
_NOTICE_KINDS = frozenset(
    {
        ChannelEventKind.SUBSCRIPTION,
        ChannelEventKind.RESUBSCRIPTION,
        ChannelEventKind.GIFT,
        ChannelEventKind.RAID,
    }
)
"""Channel events Twitch tells through ``channel.chat.notification``."""


class TwitchSetupError(RuntimeError):
    """A problem that retrying cannot fix (not signed in, unknown channel, access refused).

    ``str()`` tells the streamer what to do.
    """


class ConnectionState(enum.Enum):
    """Where the source stands, for logs and observers."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class ConnectionReason(enum.StrEnum):
    """Why the connection state changed (the words are what the log says)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    MOVED = "Twitch moved the connection"
    LOST = "connection lost; twitchio is reconnecting"
    RECONNECTED = "reconnected"
    CLOSED = "Twitch closed the connection and twitchio will not reconnect it"
    STALLED = "the connection to Twitch stopped and twitchio will not retry"
    UNREACHABLE = "could not connect"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    """One change of the connection, for observers and tests.

    Attributes:
        state: The state after the change.
        reason: Why it changed.
        retry_in_s: For a failed or lost connection, the wait before the next try.
        at: ``time.monotonic()`` of the change.
    """

    state: ConnectionState
    reason: ConnectionReason
    retry_in_s: float | None = None
    at: float = field(default_factory=time.monotonic)


def _describe(exc: BaseException) -> str:
    """One plain line for a connection failure."""
    if isinstance(exc, twitchio.HTTPException):
        extra = getattr(exc, "extra", None)
        message = extra.get("message") if isinstance(extra, dict) else None
        return f"Twitch answered {exc.status}" + (f": {message}" if message else "")
    if isinstance(exc, asyncio.TimeoutError):
        return "Twitch did not answer in time"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fatal(exc: BaseException) -> str | None:
    """The user-facing reason when ``exc`` means retrying cannot help, else None."""
    relogin = "run `ishowtts login` to sign in again"
    if isinstance(exc, twitchio.InvalidTokenException):
        return f"Twitch no longer accepts the saved sign-in (revoked or expired); {relogin}"
    if isinstance(exc, twitchio.HTTPException):
        route = getattr(exc, "route", None)
        path = str(getattr(route, "path", "") or "")
        if exc.status == 400 and path.endswith("oauth2/token"):
            return f"Twitch refused to refresh the saved sign-in; {relogin}"
        if exc.status in (401, 403):
            return f"{_describe(exc)}. The account may lack a needed scope; {relogin}"
    return None


@dataclass(eq=False)
class _Sent:
    """A line the bot sent, until its echo comes back (or the echo window passes)."""

    at: float
    text: str
    id: str | None = None


class _Client(twitchio.Client):  # type: ignore[misc]
    """twitchio's client, reading the bot's token file instead of ``.tio.tokens.json``."""

    def __init__(self, *, client_id: str, session: _Session) -> None:
        super().__init__(client_id=client_id, client_secret=None, fetch_client_user=False)
        self._ishowtts_session = session

    async def load_tokens(self, path: str | None = None, /) -> None:
        """Called by ``login_dcf``: add the saved sign-in (twitchio validates or refreshes it)."""
        await self._ishowtts_session.load_token(self)

    async def save_tokens(self, path: str | None = None, /) -> None:
        """Never write ``.tio.tokens.json``: the source saves every change when it happens."""


class _Session:
    """One twitchio client from login to close; rebuilt from scratch when it is lost."""

    def __init__(self, owner: TwitchSource, token: StoredToken) -> None:
        self.owner = owner
        self.bot_id = token.user_id
        self.bot_login = token.login
        self.client: Any = None
        self.broadcaster: Any = None
        self.broadcaster_id = ""
        self.ready = False
        self.closing = False
        self.lost = asyncio.Event()
        self.reason = ConnectionReason.CLOSED
        self._tasks = TaskSet("Twitch session")
        self._closed: asyncio.Future[None] | None = None

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Sign in, find the channel and subscribe; raises when any step fails."""
        owner = self.owner
        client = _Client(client_id=owner.client_id, session=self)
        self.client = client
        for event, handler in (
            ("event_message", self._on_message),
            ("event_message_delete", self._on_delete),
            ("event_chat_clear_user", self._on_clear_user),
            ("event_chat_clear", self._on_clear),
            ("event_websocket_welcome", self._on_welcome),
            ("event_websocket_closed", self._on_closed),
            ("event_token_refreshed", self._on_token_refreshed),
            ("event_subscription_revoked", self._on_revoked),
            ("event_chat_notification", self._on_notification),
            ("event_follow", self._on_follow),
            ("event_custom_redemption_add", self._on_redemption),
            ("event_automod_message_hold", self._on_automod_hold),
            ("event_automod_message_update", self._on_automod_update),
        ):
            client.add_listener(handler, event=event)
        flow = await client.login_dcf(load_token=True, save_token=False)
        if flow is not None:  # pragma: no cover - load_token raises before this can happen
            raise TwitchSetupError("not signed in to Twitch; run `ishowtts login`")
        await client.start_dcf(block=False)
        await owner.sync_tokens(self)
        if str(client.bot_id) != self.bot_id:
            raise TwitchSetupError("the saved Twitch sign-in does not match its account")
        users = await client.fetch_users(logins=[owner.channel], token_for=self.bot_id)
        if not users:
            raise TwitchSetupError(
                f"twitch.channel: no Twitch channel is named {owner.channel!r}; check the spelling"
            )
        self.broadcaster = users[0]
        self.broadcaster_id = str(users[0].id)
        await owner.prefetch_rewards(self)
        # Our own socket first (it keeps reading through a session_reconnect), then subscribe.
        socket_id = await tio.open_socket(client, self.bot_id, quiet_s=owner.move_quiet_s)
        condition = {"broadcaster_user_id": self.broadcaster_id, "user_id": self.bot_id}
        for payload in (
            eventsub.ChatMessageSubscription(**condition),
            eventsub.ChatMessageDeleteSubscription(**condition),
            eventsub.ChatClearUserMessagesSubscription(**condition),
            eventsub.ChatClearSubscription(**condition),
        ):
            await client.subscribe_websocket(payload, token_for=self.bot_id, socket_id=socket_id)
        for what, optional in owner.optional_subscriptions(self):
            try:
                await client.subscribe_websocket(
                    optional, token_for=self.bot_id, socket_id=socket_id
                )
            except twitchio.HTTPException as exc:
                owner.warn_once(what, f"Twitch refused {what} ({_describe(exc)}); it is off")
        self.ready = True
        self._tasks.spawn(self._watch(), "twitch-health")

    async def close(self) -> None:
        """Save any token change and close the client; every caller waits for the end."""
        if self._closed is None:
            self.closing = True
            self._closed = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closed)

    async def _close(self) -> None:
        await self._tasks.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.owner.sync_tokens(self)
            try:
                await self.client.close(save_tokens=False)
            except Exception as exc:  # closing must never stop the bot
                log.debug("closing the twitchio client failed: %s", exc)

    def mark_lost(self, reason: ConnectionReason) -> None:
        """Ask the source to rebuild this session."""
        if not self.lost.is_set() and not self.closing:
            self.reason = reason
            self.lost.set()

    # -- tokens ---------------------------------------------------------------------------
    async def load_token(self, client: Any) -> None:
        """Add the saved sign-in to ``client`` (validated, or refreshed when expired)."""
        token = self.owner.token
        try:
            await client.add_token(token.access_token, token.refresh_token)
        except twitchio.InvalidTokenException:
            raise TwitchSetupError(
                "Twitch no longer accepts the saved sign-in (revoked or expired); "
                "run `ishowtts login` to sign in again"
            ) from None
        if token.user_id not in client.tokens:
            raise TwitchSetupError(
                "the saved Twitch token is not a user sign-in; run `ishowtts login`"
            )

    # -- connection health ----------------------------------------------------------------
    def alive(self) -> bool:
        """Whether twitchio still has (or is re-establishing) a socket for the bot's token."""
        return self.client is not None and tio.has_live_socket(self.client, self.bot_id)

    async def _watch(self) -> None:
        """Check on a timer too: not every way of giving up emits ``websocket_closed``."""
        interval = self.owner.health_interval_s
        while not self.closing and not self.lost.is_set():
            await asyncio.sleep(interval)
            if not self.closing and not self.alive():
                self.mark_lost(ConnectionReason.STALLED)

    async def _on_welcome(self, payload: Any) -> None:
        if self.closing:
            return
        if self.ready:
            log.info("Twitch: reconnected (session %s)", getattr(payload, "id", "?"))
            moved = self.owner.state is ConnectionState.CONNECTED
            self.owner.set_state(
                ConnectionState.CONNECTED,
                ConnectionReason.MOVED if moved else ConnectionReason.RECONNECTED,
            )
        else:
            log.debug("Twitch: websocket session %s opened", getattr(payload, "id", "?"))

    async def _on_closed(self, payload: Any) -> None:
        if self.closing or not self.ready:
            return
        sock = getattr(payload, "socket", None)
        if sock is not None and not tio.closed_for_good(sock):
            log.warning("Twitch: connection lost; twitchio is reconnecting")
            self.owner.set_state(ConnectionState.RECONNECTING, ConnectionReason.LOST)
            return
        if self.alive():
            log.debug("Twitch: the previous connection closed after a move to a new one")
            return
        self.mark_lost(ConnectionReason.CLOSED)

    async def _on_revoked(self, payload: Any) -> None:
        log.warning(
            "Twitch: a subscription was revoked (%s, %s)",
            getattr(payload, "type", "?"),
            getattr(payload, "reason", "?"),
        )

    async def _on_token_refreshed(self, payload: Any) -> None:
        if str(getattr(payload, "user_id", "")) == self.bot_id:
            await self.owner.sync_tokens(self)

    # -- chat -----------------------------------------------------------------------------
    # twitchio runs each handler in its own task, in arrival order; they hand the event over
    # before their first await, so the source sees events in the order Twitch sent them.
    async def _on_message(self, payload: Any) -> None:
        self.owner.post(self, IncomingKind.MESSAGE, payload)

    async def _on_delete(self, payload: Any) -> None:
        self.owner.control(MessageDeleted(message_id=str(payload.message_id)))

    async def _on_clear_user(self, payload: Any) -> None:
        user = payload.user
        self.owner.control(UserPurged(str(user.id), str(user.name or "")))

    async def _on_clear(self, _payload: Any) -> None:
        self.owner.control(ChatCleared())

    async def _on_notification(self, payload: Any) -> None:
        self.owner.post(self, IncomingKind.NOTIFICATION, payload)

    async def _on_follow(self, payload: Any) -> None:
        self.owner.post(self, IncomingKind.FOLLOW, payload)

    async def _on_redemption(self, payload: Any) -> None:
        self.owner.post(self, IncomingKind.REDEMPTION, payload)

    async def _on_automod_hold(self, payload: Any) -> None:
        self.owner.automod_hold(payload)

    async def _on_automod_update(self, payload: Any) -> None:
        self.owner.automod_decided(self, payload)


class TwitchSource:
    """Delivers a Twitch channel's chat and moderation events to the bot.

    Construction does no I/O; :meth:`run` signs in, subscribes and keeps the connection alive
    until :meth:`close`.

    Attributes:
        name: ``"twitch"`` (the ``source`` of every message).
        state: The connection state (also reported to ``on_state``).
    """

    name = "twitch"

    def __init__(
        self,
        cfg: TwitchConfig,
        store: TokenStore,
        *,
        health_interval_s: float = 5.0,
        move_quiet_s: float = tio.MOVE_QUIET_S,
        dedupe_size: int = 4096,
        on_state: Callable[[ConnectionState, str], None] | None = None,
        on_change: Callable[[ConnectionChange], None] | None = None,
        command_prefix: str = "!",
    ) -> None:
        """Prepare the source.

        Args:
            cfg: The ``twitch`` config section (channel and client id must be set).
            store: The saved sign-in (see ``ishowtts login``).
            health_interval_s: How often to check that twitchio still has a live socket.
            move_quiet_s: After Twitch moves the connection, how long the old socket must be
                quiet before it is closed (events still arriving on it are read).
            dedupe_size: How many message ids to remember against redelivery.
            on_state: Observer of connection state changes (e.g. a control panel).
            on_change: Observer of every connection change, typed (state, reason, retry).
            command_prefix: ``commands.prefix``: with ``twitch.messages: paid`` free lines
                that are commands still reach the bot.

        Raises:
            TwitchSetupError: ``twitch.channel`` or the client id is missing.
        """
        configured = assess(cfg, None)
        if configured.problem in (Problem.NO_CHANNEL, Problem.NO_CLIENT_ID):
            raise TwitchSetupError(configured.message)
        assert cfg.channel is not None  # assess said so
        assert cfg.client_id is not None
        self.cfg = cfg
        self._command_prefix = command_prefix
        self.channel = cfg.channel.lower()
        self.client_id = cfg.client_id
        self.store = store
        self.health_interval_s = health_interval_s
        self.move_quiet_s = move_quiet_s
        self.state = ConnectionState.STOPPED
        self._on_state = on_state
        self._on_change = on_change
        self._reason: ConnectionReason | None = None
        self._seen: LRU[str, None] = LRU(dedupe_size)
        self._tombstones = Tombstones(dedupe_size)
        self._events_seen: LRU[str, None] = LRU(dedupe_size)
        self._source_ids: LRU[str, str] = LRU(dedupe_size)
        self._held = HeldMessages(dedupe_size)
        self._wanted: frozenset[ChannelEventKind] = frozenset()
        self._warned: set[str] = set()
        self._sent: collections.deque[_Sent] = collections.deque(maxlen=64)
        self._token: StoredToken | None = None
        self._token_lock = asyncio.Lock()
        self._session: _Session | None = None
        self._sink: ChatSink | None = None
        self._closed = asyncio.Event()
        self._data: asyncio.Queue[Incoming] = asyncio.Queue()
        self._moderation: asyncio.Queue[ModerationEvent] = asyncio.Queue()
        self._seq = itertools.count()
        self._tasks = TaskSet("Twitch source")
        self._reward_ids = {r.casefold() for r in cfg.rewards if _UUID_RE.match(r)}
        self._reward_titles = {r.casefold() for r in cfg.rewards}
        self._titles: dict[str, str] = {}
        self._looked_up: set[str] = set()
        self._titles_warned = False
        self._unmatched_rewards: set[str] = set()

    # -- public ---------------------------------------------------------------------------
    @property
    def token(self) -> StoredToken:
        """The current sign-in (updated in memory before it is written to disk)."""
        if self._token is None:
            raise TwitchSetupError("not signed in to Twitch; run `ishowtts login`")
        return self._token

    @property
    def bot_login(self) -> str | None:
        """The signed-in account's login, once known."""
        return self._token.login if self._token is not None else None

    async def run(self, sink: ChatSink) -> None:
        """Deliver chat to ``sink`` until :meth:`close`, reconnecting with backoff.

        Raises:
            TwitchSetupError: Not signed in, the channel does not exist, or Twitch refused
                access; the message says what to do. Network trouble never raises: it is
                retried, with waits doubling from ``twitch.reconnect_min_s`` up to
                ``twitch.reconnect_max_s``.
        """
        self._sink = sink
        self._wanted = sink.wanted_events() if isinstance(sink, ChannelEventSink) else frozenset()
        ready = await readiness(self.cfg, self.store)
        if not ready.ready or ready.token is None:
            raise TwitchSetupError(ready.message)
        token = ready.token
        self._token = token
        delay = self.cfg.reconnect_min_s
        first = True
        self._tasks.spawn(self._deliver_data(), "twitch-data")
        self._tasks.spawn(self._deliver_moderation(), "twitch-moderation")
        try:
            while not self._closed.is_set():
                self.set_state(
                    ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING,
                    ConnectionReason.CONNECTING,
                )
                log.info("Twitch: connecting to #%s as %s", self.channel, token.login)
                session = _Session(self, self.token)
                self._session = session
                started = time.monotonic()
                try:
                    finished = await self._until_closed(
                        asyncio.wait_for(session.start(), _START_TIMEOUT_S)
                    )
                except TwitchSetupError:
                    raise
                except Exception as exc:
                    reason = _fatal(exc)
                    if reason is not None:
                        raise TwitchSetupError(reason) from None
                    await session.close()
                    if self._closed.is_set():
                        break
                    log.warning(
                        "Twitch: could not connect (%s); retrying in %.1f s",
                        _describe(exc),
                        delay,
                    )
                    log.debug("connection failure", exc_info=True)
                    self.set_state(
                        ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING,
                        ConnectionReason.UNREACHABLE,
                        retry_in_s=delay,
                    )
                    await self._pause(delay)
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
                    first = False
                    continue
                if not finished:
                    break
                first = False
                log.info(
                    "Twitch: connected; reading %s in #%s as %s",
                    TOPICS,
                    self.channel,
                    session.bot_login,
                )
                self.set_state(ConnectionState.CONNECTED, ConnectionReason.CONNECTED)
                await self._until_closed(session.lost.wait())
                await session.close()
                if self._closed.is_set():
                    break
                if time.monotonic() - started >= self.cfg.reconnect_max_s:
                    delay = self.cfg.reconnect_min_s
                log.warning("Twitch: %s; reconnecting in %.1f s", session.reason, delay)
                self.set_state(ConnectionState.RECONNECTING, session.reason, retry_in_s=delay)
                await self._pause(delay)
                delay = min(delay * 2, self.cfg.reconnect_max_s)
        finally:
            session_ = self._session
            self._session = None
            if session_ is not None:
                await session_.close()
            await self._tasks.close()
            self.set_state(ConnectionState.STOPPED, ConnectionReason.STOPPED)
            log.info("Twitch: disconnected")

    async def close(self) -> None:
        """Stop delivering and close the connection."""
        self._closed.set()
        session = self._session
        if session is not None:
            await session.close()
        await self._tasks.close()

    async def send(self, text: str, *, reply_to: str | None = None) -> bool:
        """Send a line to the channel's chat (as a reply when ``reply_to`` is a message id).

        Never raises: a failure is logged, since a reply is a courtesy, not the bot's job.

        Returns:
            Whether Twitch accepted the message.
        """
        session = self._session
        if session is None or not session.ready or session.closing:
            log.info("Twitch: not connected; reply not sent: %s", text)
            return False
        line = " ".join(text.split())
        if len(line) > MAX_SEND:
            line = line[: MAX_SEND - 1].rstrip() + "…"
        if not line:
            return False
        entry = _Sent(time.monotonic(), line)
        self._sent.append(entry)
        try:
            sent = await session.broadcaster.send_message(
                line, session.bot_id, token_for=session.bot_id, reply_to_message_id=reply_to
            )
        except Exception as exc:
            with contextlib.suppress(ValueError):
                self._sent.remove(entry)
            log.warning("Twitch: could not send a chat message: %s", _describe(exc))
            return False
        entry.id = str(getattr(sent, "id", "") or "") or None
        if not getattr(sent, "sent", True):
            reason = getattr(sent, "drop_reason", None)
            log.warning("Twitch dropped the bot's chat message: %s", reason)
            return False
        return True

    # -- used by sessions -----------------------------------------------------------------
    def set_state(
        self,
        state: ConnectionState,
        reason: ConnectionReason,
        *,
        retry_in_s: float | None = None,
    ) -> None:
        """Record and report a connection change (observers never break the source)."""
        if state is self.state and reason is self._reason and retry_in_s is None:
            return
        changed = state is not self.state
        self.state = state
        self._reason = reason
        observers: list[Callable[[], None]] = []
        if self._on_change is not None:
            on_change = self._on_change
            change = ConnectionChange(state, reason, retry_in_s)
            observers.append(lambda: on_change(change))
        if changed and self._on_state is not None:
            on_state = self._on_state
            observers.append(lambda: on_state(state, str(reason)))
        for observe in observers:
            try:
                observe()
            except Exception:
                log.exception("connection state observer failed")

    async def sync_tokens(self, session: _Session) -> None:
        """Persist a token pair twitchio refreshed, the moment it changed.

        Also points twitchio's default token at the fresh one: under the Device Code Flow it
        keeps the first token for requests without an explicit user, and would otherwise
        refresh again on every such request, burning the single-use refresh token each time.
        """
        async with self._token_lock:  # a second caller waits until the first one has saved
            await self._sync_tokens(session)

    async def _sync_tokens(self, session: _Session) -> None:
        client = session.client
        current = self._token
        if client is None or current is None:
            return
        pair = client.tokens.get(current.user_id)
        if not pair:
            return
        access, refresh = str(pair["token"]), str(pair["refresh"])
        tio.set_default_token(client, access)
        if access == current.access_token and refresh == current.refresh_token:
            return
        updated = current.with_pair(access, refresh)
        self._token = updated  # before the await: a rebuild must never reuse a spent refresh
        try:
            await self.store.save(updated)
        except OSError as exc:
            log.error(
                "Twitch: the sign-in was refreshed but could not be saved to %s (%s); "
                "after a restart you may need `ishowtts login`",
                self.store.path,
                exc,
            )
            return
        log.info("Twitch: sign-in refreshed and saved")

    def post(self, session: _Session, kind: IncomingKind, payload: Any) -> None:
        """Queue a data event (chat, channel events) for the data path, in Twitch's order."""
        if not self._closed.is_set():
            self._data.put_nowait(
                Incoming(session, kind, payload, next(self._seq), time.monotonic())
            )

    def control(self, event: ModerationEvent) -> None:
        """Take a moderation event: remembered at once, applied ahead of any waiting data.

        Remembering happens here, before anything else runs, so a message still on the data
        path (or arriving later) that this event removes is dropped (:class:`Tombstones`).
        A deletion naming a shared-chat message by its id in the channel it was sent in
        also removes the copy shown here.
        """
        if self._closed.is_set():
            return
        seq = next(self._seq)
        self._tombstones.record(event, seq)
        self._moderation.put_nowait(event)
        if isinstance(event, MessageDeleted):
            local = self._source_ids.get(event.message_id)
            if local is not None and local != event.message_id:
                copy = MessageDeleted(message_id=local)
                self._tombstones.record(copy, seq)
                self._moderation.put_nowait(copy)

    # -- optional subscriptions and AutoMod -----------------------------------------------
    def warn_once(self, key: str, text: str) -> None:
        """Log a feature that cannot work once per run, not on every reconnect."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning("Twitch: %s", text)

    def optional_subscriptions(self, session: _Session) -> list[tuple[str, Any]]:
        """What the bot subscribes to beyond chat, for the events the sink wants.

        Each needs its scope, and some an account that moderates or owns the channel; one
        that cannot work is named once in the log and left out, and chat goes on.
        """
        broadcaster, bot = session.broadcaster_id, session.bot_id
        wanted = self._wanted
        off = {
            o.feature: o
            for o in features_off(
                self.cfg,
                self.token,
                follows=ChannelEventKind.FOLLOW in wanted,
                redemptions=ChannelEventKind.REDEMPTION in wanted,
            )
        }
        for item in off.values():
            self.warn_once(item.feature.name, item.message)
        subs: list[tuple[str, Any]] = []
        if wanted & _NOTICE_KINDS:
            subs.append(
                (
                    "sub, gift and raid notices",
                    eventsub.ChatNotificationSubscription(
                        broadcaster_user_id=broadcaster, user_id=bot
                    ),
                )
            )
        moderated = {"broadcaster_user_id": broadcaster, "moderator_user_id": bot}
        if ChannelEventKind.FOLLOW in wanted and Feature.FOLLOWS not in off:
            subs.append(("follow announcements", eventsub.ChannelFollowSubscription(**moderated)))
        if ChannelEventKind.REDEMPTION in wanted and Feature.REDEMPTIONS not in off:
            subs.append(
                (
                    "redemption announcements",
                    eventsub.ChannelPointsRedeemAddSubscription(broadcaster_user_id=broadcaster),
                )
            )
        if self.cfg.automod.watch and Feature.AUTOMOD not in off:
            subs.append(("AutoMod holds", eventsub.AutomodMessageHoldSubscription(**moderated)))
            subs.append(
                ("AutoMod decisions", eventsub.AutomodMessageUpdateSubscription(**moderated))
            )
        return subs

    def automod_hold(self, payload: Any) -> None:
        """AutoMod held a message: it is not spoken while held (called in arrival order)."""
        try:
            message_id = str(payload.message_id)
        except Exception as exc:
            self.warn_once("bad-automod", f"skipped an AutoMod hold that could not be read: {exc}")
            return
        log.info("Twitch: AutoMod held message %s", message_id)
        self._held.hold(message_id)

    def automod_decided(self, session: _Session, payload: Any) -> None:
        """A moderator approved or denied a held message; a parked chat line goes on or not."""
        try:
            message_id = str(payload.message_id)
            fate = decision(str(payload.status))
        except Exception as exc:
            self.warn_once(
                "bad-automod", f"skipped an AutoMod decision that could not be read: {exc}"
            )
            return
        log.info("Twitch: AutoMod message %s was %s", message_id, fate.value)
        if fate is Held.DENIED:
            self._tombstones.record(MessageDeleted(message_id=message_id), next(self._seq))
        parked = self._held.decide(message_id, fate)
        if parked is not None and fate is Held.APPROVED:
            self.post(session, IncomingKind.MESSAGE, parked.payload)

    async def _deliver_moderation(self) -> None:
        """The control path: moderation in Twitch's order, never behind a chat line."""
        while True:
            await self.moderate(await self._moderation.get())

    async def _deliver_data(self) -> None:
        """The data path: normalizes and hands over chat strictly in arrival order."""
        while True:
            item = await self._data.get()
            try:
                await self._handle(item)
            except Exception as exc:
                log.warning(
                    "Twitch: skipped a %s event that could not be read: %s", item.kind.value, exc
                )
                log.debug("unreadable %s event", item.kind.value, exc_info=True)

    async def _handle(self, item: Incoming) -> None:
        kind = item.kind
        if kind is IncomingKind.MESSAGE:
            await self._handle_message(item)
            return
        broadcaster = item.session.broadcaster_id
        event: ChannelEvent | None = None
        if kind is IncomingKind.NOTIFICATION:
            event = events.from_notification(
                item.payload, broadcaster, shared=self.cfg.shared_chat == "all"
            )
        elif kind is IncomingKind.FOLLOW:
            follower = str(item.payload.user.id)
            event = events.from_follow(item.payload, broadcaster, f"follow:{follower}")
        elif kind is IncomingKind.REDEMPTION:
            event = events.from_redemption(item.payload, broadcaster)
        if event is not None:
            await self._deliver_event(event, item)

    async def _handle_message(self, item: Incoming) -> None:
        """A chat line: AutoMod's word first, then normalization, its cheer, delivery."""
        payload = item.payload
        message_id = str(payload.id)
        held = self._held.state(message_id)
        if held is Held.HELD:
            log.debug("Twitch: message %s is held by AutoMod; waiting for a moderator", message_id)
            self._held.park(message_id, item)
            return
        if held is Held.DENIED or (held is Held.APPROVED and self.cfg.automod.approved == "drop"):
            log.debug("Twitch: message %s was held by AutoMod (%s); not spoken", message_id, held)
            return
        message = await self.to_chat_message(item.session, payload)
        if message is None:
            return
        bits = max(0, int(getattr(getattr(payload, "cheer", None), "bits", 0) or 0))
        if bits and ChannelEventKind.CHEER in self._wanted:
            await self._deliver_event(
                events.cheer(message.id, message.user, bits, message.text), item
            )
        if (
            self.cfg.messages == "paid"
            and not message.paid
            and not message.text.startswith(self._command_prefix)
        ):
            log.debug("Twitch: %s is free chat (twitch.messages: paid)", message.id)
            return
        await self._deliver_unless_removed(message, item)

    async def _deliver_event(self, event: ChannelEvent, item: Incoming) -> None:
        """Hand a channel event to the sink once, unless moderation removed its author."""
        sink = self._sink
        if event.kind not in self._wanted or not isinstance(sink, ChannelEventSink):
            return
        if not self._events_seen.add(f"{event.kind.value}:{event.id}", None):
            log.debug("Twitch: %s %s delivered again; ignored", event.kind.value, event.id)
            return
        user_id = event.user.id if event.user is not None else None
        if self._tombstones.removes(event.id, user_id, item.seq, item.at):
            log.debug("Twitch: %s %s was removed by a moderator", event.kind.value, event.id)
            return
        try:
            await sink.on_channel_event(event)
        except Exception:
            log.exception("the bot failed on Twitch %s %s", event.kind.value, event.id)

    async def _deliver_unless_removed(self, message: ChatMessage, item: Incoming) -> None:
        """Deliver ``message`` unless moderation removed it; remove it again if that came meanwhile.

        A message being handled by the bot when its deletion (or its author's ban, or a
        clear) arrives may be queued for speech just after the moderation was applied; it is
        removed again the moment the bot is done with it.
        """
        if self._tombstones.removes(message.id, message.user.id, item.seq, item.at):
            log.debug(
                "Twitch: message %s was removed by a moderator before it was read", message.id
            )
            return
        await self.deliver(message)
        if self._tombstones.removes(message.id, message.user.id, item.seq, item.at):
            log.debug("Twitch: message %s was removed while the bot handled it", message.id)
            await self.moderate(MessageDeleted(message_id=message.id), quiet=True)

    async def deliver(self, message: ChatMessage) -> None:
        """Hand a message to the sink; the sink's failure never reaches twitchio."""
        sink = self._sink
        if sink is None:
            return
        try:
            await sink.on_message(message)
        except Exception:
            log.exception("the bot failed on Twitch message %s", message.id)

    async def moderate(self, event: ModerationEvent, *, quiet: bool = False) -> None:
        """Hand a moderation event to the sink at once (``quiet``: a repeat, not logged)."""
        sink = self._sink
        if sink is None:
            return
        if quiet:
            pass
        elif isinstance(event, MessageDeleted):
            log.info("Twitch: a moderator deleted message %s", event.message_id)
        elif isinstance(event, UserPurged):
            log.info("Twitch: %s was timed out or banned", event.login or event.user_id)
        else:
            log.info("Twitch: the chat was cleared")
        try:
            await sink.on_moderation(event)
        except Exception:
            log.exception("the bot failed on a Twitch moderation event %s", event)

    async def to_chat_message(self, session: _Session, m: Any) -> ChatMessage | None:
        """Normalize one ``channel.chat.message``; None when there is nothing to speak.

        Dropped: repeats of a message id (or of a shared-chat message's id in its own
        channel), the bot's own messages, messages shown here from another channel of a
        shared chat unless ``twitch.shared_chat`` is ``all``, and messages with no text once
        emotes and cheermotes are removed.
        """
        message_id = str(m.id)
        if not self._seen.add(message_id, None):
            log.debug("Twitch: message %s delivered again; ignored", message_id)
            return None
        source_id = str(getattr(m, "source_id", None) or "")
        if source_id and source_id != message_id:
            # A shared-chat message: one message, whichever channel's copy comes.
            if not self._seen.add(source_id, None):
                log.debug("Twitch: shared-chat message %s seen already; ignored", source_id)
                return None
            self._source_ids.put(source_id, message_id)
        chatter = m.chatter
        chatter_id = str(chatter.id)
        if self._is_own(session, chatter_id, message_id, str(m.text or "")):
            log.debug("Twitch: ignoring the bot's own message %s", message_id)
            return None
        source = getattr(m, "source_broadcaster", None)
        if (
            source is not None
            and str(source.id) != session.broadcaster_id
            and self.cfg.shared_chat == "own"
        ):
            log.debug("Twitch: message %s comes from a shared chat; ignored", message_id)
            return None
        text = speakable_text(m.fragments)
        if not text:
            log.debug("Twitch: message %s has only emotes; nothing to say", message_id)
            return None
        bits = int(m.cheer.bits) if getattr(m, "cheer", None) is not None else 0
        if bits < 0:
            log.debug("Twitch: message %s claims a cheer of %d bits; not a cheer", message_id, bits)
            bits = 0
        elif 0 < bits < self.cfg.min_bits:
            log.debug("Twitch: cheer of %d bits is below twitch.min_bits", bits)
            bits = 0
        reward = await self._reward_for(session, getattr(m, "channel_points_id", None))
        badges = [str(b.set_id) for b in (getattr(m, "badges", None) or [])]
        user = ChatUser(
            id=chatter_id,
            login=str(chatter.name or "").lower(),
            display_name=str(chatter.display_name or chatter.name or ""),
            roles=roles_from_badges(badges, is_broadcaster=chatter_id == session.broadcaster_id),
            platform=Platform.TWITCH,
        )
        return ChatMessage(
            id=message_id,
            user=user,
            text=text,
            source=self.name,
            bits=bits,
            reward=reward,
            is_reply=getattr(m, "reply", None) is not None,
            reply=self._replier(message_id),
        )

    # -- rewards --------------------------------------------------------------------------
    def _can_fetch_titles(self, session: _Session) -> bool:
        return (
            session.bot_id == session.broadcaster_id
            and "channel:read:redemptions" in self.token.scopes
        )

    async def prefetch_rewards(self, session: _Session) -> None:
        """Learn reward titles at start-up, or say once why titles cannot be matched."""
        if not self._reward_titles - self._reward_ids:
            return  # every configured reward is an id: nothing to look up
        if self._can_fetch_titles(session):
            await self._fetch_titles(session)
        elif not self._titles_warned:
            self._titles_warned = True
            log.warning(
                "Twitch: twitch.rewards lists reward titles, but %s is not the broadcaster of "
                "#%s, so titles cannot be looked up. List reward ids instead (the id of each "
                "reward message is logged when it arrives), or sign in as the broadcaster.",
                session.bot_login,
                self.channel,
            )

    async def _fetch_titles(self, session: _Session) -> None:
        try:
            rewards = await session.broadcaster.fetch_custom_rewards()
        except Exception as exc:
            log.warning("Twitch: could not look up channel-points rewards: %s", _describe(exc))
            return
        self._titles.update({str(r.id): str(r.title) for r in rewards})
        log.debug("Twitch: %d channel-points rewards known", len(self._titles))

    async def _reward_for(self, session: _Session, reward_id: str | None) -> str | None:
        """The configured reward a message carries (its title, or id), else None."""
        if not reward_id or not self._reward_titles:
            return None
        reward_id = str(reward_id)
        title = self._titles.get(reward_id)
        if title is None and reward_id not in self._looked_up and self._can_fetch_titles(session):
            self._looked_up.add(reward_id)  # a reward created after start-up: look it up once
            await self._fetch_titles(session)
            title = self._titles.get(reward_id)
        if reward_id.casefold() in self._reward_titles:
            return title or reward_id
        if title is not None and title.casefold() in self._reward_titles:
            return title
        if reward_id not in self._unmatched_rewards:
            self._unmatched_rewards.add(reward_id)
            log.info(
                "Twitch: a message came with channel-points reward %s%s, which is not in "
                "twitch.rewards; it is spoken as ordinary chat",
                reward_id,
                f" ({title!r})" if title else "",
            )
        return None

    # -- echo and replies -----------------------------------------------------------------
    def _is_own(self, session: _Session, chatter_id: str, message_id: str, text: str) -> bool:
        """Whether a message is the bot's own (sent through :meth:`send`)."""
        if chatter_id != session.bot_id:
            return False
        if session.bot_id != session.broadcaster_id:
            return True  # a separate bot account: everything it says is the bot's
        # The streamer's own account: drop only lines the bot sent. The echo is matched by
        # message id, or by text while Twitch's answer to the send (with the id) is pending,
        # since the echo can overtake it.
        now = time.monotonic()
        while self._sent and now - self._sent[0].at > _ECHO_WINDOW_S:
            self._sent.popleft()
        said = " ".join(text.split())
        match = next((e for e in self._sent if e.id == message_id), None)
        if match is None:
            match = next(
                (
                    e
                    for e in self._sent
                    if e.id is None and (said == e.text or said.endswith(" " + e.text))
                ),
                None,
            )
        if match is None:
            return False
        self._sent.remove(match)
        return True

    def _replier(self, parent_id: str) -> Replier:
        """A reply sent in the background: the bot never waits on Twitch to go on."""

        async def reply(text: str) -> None:
            if self._closed.is_set():
                return
            self._tasks.spawn(self._send_quietly(text, parent_id), name="twitch-reply")

        return reply

    async def _send_quietly(self, text: str, parent_id: str) -> None:
        await self.send(text, reply_to=parent_id)

    # -- waiting --------------------------------------------------------------------------
    async def _until_closed(self, aw: Awaitable[T]) -> bool:
        """Await ``aw`` unless :meth:`close` comes first; True when ``aw`` finished.

        Raises:
            Exception: Whatever ``aw`` raised.
        """
        work = asyncio.ensure_future(aw)
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({work, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        if work.cancelled():
            return False
        work.result()
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)


async def twitch_source_from_config(
    twitch: TwitchConfig, state_folder: Path, *, required: bool, command_prefix: str = "!"
) -> TwitchSource | None:
    """The Twitch source for ``chat.source: auto`` / ``twitch``, when it can work.

    ``auto`` (``required=False``) means Twitch when ``twitch.channel`` and a client id are set
    and someone has signed in with ``ishowtts login``; otherwise the reason is logged and None
    is returned, so the caller falls back to the terminal. ``twitch`` (``required=True``)
    turns each missing piece into a :class:`TwitchSetupError` that says how to fix it.
    """
    store = TokenStore(token_path(state_folder))
    ready = await readiness(twitch, store)
    if not ready.ready:
        if required:
            raise TwitchSetupError(f"chat.source is twitch, but {ready.message}")
        log.info("Twitch chat is not used: %s", ready.message)
        return None
    return TwitchSource(twitch, store, command_prefix=command_prefix)
