"""YouTube sign-in for ``ishowtts login youtube``, and the token file the source reads afterwards.

Why it works this way:

* The bot runs on the streamer's own machine, with no web server and often no browser on the
  same screen, so sign-in uses Google's OAuth 2.0 flow for TVs and limited-input devices
  (RFC 8628 device authorization): the terminal shows a short code and a URL, the streamer
  approves on any browser, and Google hands over an access token and a refresh token.
  oauthlib's :class:`~oauthlib.oauth2.DeviceClient` builds the token requests,
  requests-oauthlib sends them, and google-auth-oauthlib turns the session into google-auth
  credentials, which refresh themselves from then on.
* That flow allows the ``youtube`` scope but not ``youtube.force-ssl``. ``youtube`` covers
  everything the bot does: finding the live broadcast, reading chat, posting replies.
* Google requires the client id *and* its secret for this client type. The client is the
  streamer's own (README, "YouTube"); since a secret on a streamer's PC is not secret anyway,
  it is stored with the tokens, so ``ishowtts run`` needs nothing in the environment.
* The tokens live in the user's state folder, mode 0600, replaced atomically whenever google-auth
  refreshes them (:class:`YouTubeTokenStore`, through :mod:`bot.core.platform`), exactly like
  the Twitch tokens.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.sources.tokens import TokenFile, now_iso
from bot.sources.youtube.settings import YouTubeConfig

if TYPE_CHECKING:
    from google.oauth2.credentials import Credentials

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/youtube"
"""Manage the account's YouTube content: read live chat and post to it. The device flow does not
allow ``youtube.force-ssl``; ``youtube.readonly`` would read chat but never reply."""
SCOPES: tuple[str, ...] = (SCOPE,)
READ_SCOPES = frozenset({SCOPE, "https://www.googleapis.com/auth/youtube.readonly"})
"""Any of these lets the bot read chat."""
WRITE_SCOPES = frozenset({SCOPE, "https://www.googleapis.com/auth/youtube.force-ssl"})
"""Any of these lets the bot post replies."""

TOKEN_FILE_NAME = "youtube-tokens.json"
_FILE_VERSION = 1
_HTTP_TIMEOUT_S = 30.0


class YouTubeAuthError(Exception):
    """Signing in failed or the token file is unusable; ``str()`` tells the user what to do."""


def token_path(folder: Path) -> Path:
    """Where the YouTube tokens are stored inside the state folder ``folder``."""
    return folder / TOKEN_FILE_NAME


def device_url(cfg: YouTubeConfig) -> str:
    """Google's device authorization endpoint (under ``youtube.oauth_url``)."""
    return cfg.oauth_url + "device/code"


def token_url(cfg: YouTubeConfig) -> str:
    """Google's token endpoint (under ``youtube.oauth_url``)."""
    return cfg.oauth_url + "token"


@dataclass(frozen=True, slots=True)
class YouTubeToken:
    """One signed-in YouTube channel.

    Attributes:
        client_id: The OAuth client the tokens belong to (useless with another).
        client_secret: That client's secret (Google needs it to refresh).
        channel_id: The signed-in channel (``UC...``): the bot's identity in chat.
        channel_title: Its name, for messages.
        access_token: The current access token.
        refresh_token: The refresh token (long-lived; Google may rotate it).
        token_uri: Where refreshes go.
        expiry: When the access token expires (UTC, ISO 8601; empty when unknown).
        scopes: Scopes Google granted.
        saved_at: When this was written (UTC, ISO 8601).
    """

    client_id: str
    client_secret: str = field(repr=False)
    channel_id: str
    channel_title: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_uri: str
    expiry: str = ""
    scopes: tuple[str, ...] = ()
    saved_at: str = ""

    @property
    def can_read(self) -> bool:
        """Whether the granted scopes let the bot read live chat."""
        return bool(READ_SCOPES & set(self.scopes))

    @property
    def can_post(self) -> bool:
        """Whether the granted scopes let the bot post replies."""
        return bool(WRITE_SCOPES & set(self.scopes))

    def credentials(self) -> Credentials:
        """google-auth credentials that refresh themselves through ``token_uri``."""
        from google.oauth2.credentials import Credentials

        creds = Credentials(  # type: ignore[no-untyped-call]
            self.access_token,
            refresh_token=self.refresh_token,
            token_uri=self.token_uri,
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=list(self.scopes) or None,
        )
        if self.expiry:
            with contextlib.suppress(ValueError):
                when = datetime.datetime.fromisoformat(self.expiry)
                # google-auth compares naive UTC datetimes
                creds.expiry = when.astimezone(datetime.UTC).replace(tzinfo=None)
        return creds

    def with_credentials(self, creds: Credentials) -> YouTubeToken:
        """This sign-in with the token pair ``creds`` holds now (after a refresh)."""
        expiry = ""
        if creds.expiry is not None:
            expiry = creds.expiry.replace(tzinfo=datetime.UTC).isoformat(timespec="seconds")
        return replace(
            self,
            access_token=str(creds.token),
            refresh_token=str(creds.refresh_token or self.refresh_token),
            expiry=expiry,
            saved_at=now_iso(),
        )

    def to_json(self) -> dict[str, Any]:
        """The file format (versioned, so a later release can migrate it)."""
        return {
            "version": _FILE_VERSION,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "channel_id": self.channel_id,
            "channel_title": self.channel_title,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_uri": self.token_uri,
            "expiry": self.expiry,
            "scopes": list(self.scopes),
            "saved_at": self.saved_at or now_iso(),
        }

    @classmethod
    def from_json(cls, data: Any) -> YouTubeToken:
        """Parse the file format.

        Raises:
            ValueError: When a field is missing or has the wrong type.
        """
        if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
            raise ValueError("unknown token file format")
        required = (
            "client_id",
            "client_secret",
            "channel_id",
            "access_token",
            "refresh_token",
            "token_uri",
        )
        values = {k: data.get(k) for k in required}
        bad = [k for k, v in values.items() if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"missing {', '.join(bad)}")
        scopes = data.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a list of strings")
        optional = {k: data.get(k, "") for k in ("channel_title", "expiry", "saved_at")}
        return cls(
            **{k: str(v) for k, v in values.items()},
            **{k: v if isinstance(v, str) else "" for k, v in optional.items()},
            scopes=tuple(scopes),
        )


class YouTubeTokenStore(TokenFile[YouTubeToken]):
    """The YouTube token file (``bot.sources.tokens.TokenFile``: 0600, replaced atomically)."""

    token_type = YouTubeToken
    platform = "YouTube"
    login = "ishowtts login youtube"
    error = YouTubeAuthError


def build_youtube(
    cfg: YouTubeConfig, creds: Credentials, timeout_s: float = _HTTP_TIMEOUT_S
) -> Any:
    """The YouTube Data API v3 client (google-api-python-client), blocking to call.

    Built from the discovery document bundled with the library (no network round trip at start,
    and the same document in tests), with its root replaced by ``youtube.api_url``. Requests go
    through httplib2 with a timeout (its default waits forever) and google-auth's
    ``AuthorizedHttp``, which refreshes an expired access token before the request.
    """
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout_s))
    return build(
        "youtube",
        "v3",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": cfg.api_url},
    )


def device_login(
    cfg: YouTubeConfig,
    show: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> YouTubeToken:
    """Sign in with Google's device flow (blocking: run it on a thread or from the CLI).

    Args:
        cfg: The ``youtube`` section (client id and secret must be set).
        show: Shows a line to the person signing in (the code and the URL).
        sleep: Waits between polls (a test passes one that does not wait).

    Returns:
        The token, not yet saved.

    Raises:
        YouTubeAuthError: Google refused, the code expired or Google could not be reached.
    """
    import requests
    from google_auth_oauthlib.helpers import credentials_from_session
    from oauthlib.oauth2 import DeviceClient, OAuth2Error
    from requests_oauthlib import OAuth2Session

    if not cfg.client_id or not cfg.client_secret:
        raise YouTubeAuthError(
            "set youtube.client_id and youtube.client_secret (or ISHOWTTS_YOUTUBE_CLIENT_ID and "
            "ISHOWTTS_YOUTUBE_CLIENT_SECRET): see the README's YouTube section"
        )
    client = DeviceClient(cfg.client_id, client_secret=cfg.client_secret, scope=list(SCOPES))
    session = OAuth2Session(client=client, scope=list(SCOPES))
    try:
        answer = session.post(
            device_url(cfg),
            data={"client_id": cfg.client_id, "scope": " ".join(SCOPES)},
            withhold_token=True,
            timeout=_HTTP_TIMEOUT_S,
        )
        flow = _json(answer)
        if "device_code" not in flow or "user_code" not in flow:
            raise YouTubeAuthError(_refusal(flow, answer.status_code))
        url = flow.get("verification_url") or flow.get("verification_uri")
        expires_s = float(flow.get("expires_in") or 1800)
        interval = max(1.0, float(flow.get("interval") or 5))
        show(f"To sign in to YouTube, open {url or 'https://www.google.com/device'}")
        show(f"and enter the code {flow['user_code']} (valid for {int(expires_s // 60)} minutes).")
        show("Waiting for you to approve in the browser...")
        deadline = time.monotonic() + expires_s
        while True:
            if time.monotonic() >= deadline:
                raise YouTubeAuthError(
                    "the code expired before it was approved; run `ishowtts login youtube` again"
                )
            sleep(interval)
            try:
                session.fetch_token(
                    token_url(cfg),
                    device_code=flow["device_code"],
                    client_secret=cfg.client_secret,
                    include_client_id=True,
                    timeout=_HTTP_TIMEOUT_S,
                )
                break
            except OAuth2Error as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5.0  # RFC 8628 section 3.5
                    continue
                if exc.error == "expired_token":
                    raise YouTubeAuthError(
                        "the code expired before it was approved; run `ishowtts login youtube`"
                    ) from None
                if exc.error == "access_denied":
                    raise YouTubeAuthError("the sign-in was declined in the browser") from None
                raise YouTubeAuthError(_refusal({"error": exc.error}, exc.status_code)) from None
        creds = credentials_from_session(
            session,
            {
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
                "token_uri": token_url(cfg),
            },
        )
        granted = _scopes(session.token.get("scope")) or SCOPES
        if not READ_SCOPES & set(granted):
            raise YouTubeAuthError("Google did not grant access to YouTube; sign in again")
        channel_id, title = _own_channel(cfg, creds)
    except requests.RequestException as exc:
        raise YouTubeAuthError(f"could not reach Google: {exc}") from None
    except Warning as exc:  # oauthlib: the granted scope differs from the one asked for
        raise YouTubeAuthError(f"Google granted other scopes than asked ({exc})") from None
    signed_in = YouTubeToken(
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
        channel_id=channel_id,
        channel_title=title,
        access_token="",
        refresh_token="",
        token_uri=token_url(cfg),
        scopes=granted,
    )
    return signed_in.with_credentials(creds)


def _scopes(value: Any) -> tuple[str, ...]:
    """Granted scopes as oauthlib hands them over: a list, or Google's space-separated text."""
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if v)
    return tuple(str(value or "").split())


def _json(answer: Any) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _refusal(body: dict[str, Any], status: int | None) -> str:
    """One line for a refused device-flow request."""
    error = str(body.get("error") or f"HTTP {status}")
    if error in ("invalid_client", "unauthorized_client"):
        return (
            f"Google rejected the OAuth client ({error}): check youtube.client_id and "
            "youtube.client_secret, and that the client's type is 'TVs and Limited Input devices'"
        )
    if error == "invalid_scope":
        return "Google refused the youtube scope for this client (is the YouTube Data API enabled?)"
    return f"Google refused the sign-in ({error})"


def _own_channel(cfg: YouTubeConfig, creds: Credentials) -> tuple[str, str]:
    """The signed-in account's channel id and title (``channels.list mine=true``, 1 unit)."""
    from googleapiclient.errors import HttpError

    try:
        answer = build_youtube(cfg, creds).channels().list(part="snippet", mine=True).execute()
    except HttpError as exc:
        raise YouTubeAuthError(
            f"signed in, but YouTube refused to name the channel: {exc}"
        ) from None
    items = answer.get("items") or []
    if not items:
        raise YouTubeAuthError(
            "this Google account has no YouTube channel; sign in with the channel's account"
        )
    item = items[0]
    return str(item["id"]), str((item.get("snippet") or {}).get("title") or item["id"])
