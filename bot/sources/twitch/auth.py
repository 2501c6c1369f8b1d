"""Twitch sign-in for ``ishowtts login``, and the token file the bot reads afterwards.

Why it works this way:

* The bot runs on the streamer's own machine, where a client *secret* cannot be kept secret,
  so sign-in uses Twitch's Device Code Flow (through twitchio): the terminal shows a short
  code and a URL, the streamer approves on any browser, and Twitch hands over a user token
  and a single-use refresh token. No secret, no local web server, no redirect URL.
* twitchio saves tokens only when its client closes, to ``.tio.tokens.json`` in the working
  directory (inside the repo, world-readable, and lost on a crash or SIGTERM). Refresh tokens
  are single-use, so a lost update means signing in again. The bot therefore keeps its own
  file in the user's state folder, mode 0600, and rewrites it atomically the moment twitchio
  reports a refresh (see :class:`TokenStore` and ``bot.sources.twitch.source``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.sources.tokens import TokenFile, now_iso

log = logging.getLogger(__name__)

SCOPES: tuple[str, ...] = (
    "user:read:chat",
    "user:write:chat",
    "channel:read:redemptions",
)
"""Scopes requested at sign-in, and why:

* ``user:read:chat``: receive chat over EventSub (``channel.chat.message``) and the
  moderation events that act on speech (``message_delete``, ``clear_user_messages``,
  ``clear``).
* ``user:write:chat``: answer in chat (replies to commands, "still warming up").
* ``channel:read:redemptions``: look up channel-points reward *titles*. Only useful when the
  signed-in account is the broadcaster; rewards configured by id work without it.
"""

SCOPE_USES: dict[str, str] = {
    "user:read:chat": "reads chat, sub/resub/gift/raid notices and moderation",
    "user:write:chat": "lets the bot reply in chat",
    "channel:read:redemptions": "finds rewards by title and announces redemptions",
    "moderator:read:followers": "announces follows (the account must moderate the channel)",
    "moderator:manage:automod": "sees messages AutoMod holds (the account must moderate)",
}
"""What each scope the bot may ask for is used for (the doctor's words)."""

REQUIRED_SCOPES = frozenset({"user:read:chat"})
"""Without these the bot cannot read chat at all."""

TOKEN_FILE_NAME = "twitch-tokens.json"
_FILE_VERSION = 1


class AuthError(Exception):
    """Signing in failed or the token file is unusable; ``str()`` tells the user what to do."""


def token_path(folder: Path) -> Path:
    """Where the Twitch tokens are stored inside the state folder ``folder``."""
    return folder / TOKEN_FILE_NAME


@dataclass(frozen=True, slots=True)
class StoredToken:
    """One signed-in Twitch account.

    Attributes:
        client_id: The application the tokens belong to (they are useless with another).
        user_id: Twitch user id of the signed-in account (the bot's identity in chat).
        login: Its login name, for messages.
        access_token: The current user access token.
        refresh_token: The current single-use refresh token.
        scopes: Scopes Twitch granted.
        saved_at: When this pair was written (UTC, ISO 8601).
    """

    client_id: str
    user_id: str
    login: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    saved_at: str = ""

    def with_pair(
        self, access_token: str, refresh_token: str, scopes: tuple[str, ...] | None = None
    ) -> StoredToken:
        """The same account with a refreshed token pair."""
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token,
            scopes=self.scopes if scopes is None else scopes,
            saved_at=now_iso(),
        )

    def to_json(self) -> dict[str, Any]:
        """The file format (versioned, so a later release can migrate it)."""
        return {
            "version": _FILE_VERSION,
            "client_id": self.client_id,
            "user_id": self.user_id,
            "login": self.login,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "scopes": list(self.scopes),
            "saved_at": self.saved_at or now_iso(),
        }

    @classmethod
    def from_json(cls, data: Any) -> StoredToken:
        """Parse the file format.

        Raises:
            ValueError: When a field is missing or has the wrong type.
        """
        if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
            raise ValueError("unknown token file format")
        fields = ("client_id", "user_id", "login", "access_token", "refresh_token")
        values = {k: data.get(k) for k in fields}
        bad = [k for k, v in values.items() if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"missing {', '.join(bad)}")
        scopes = data.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("scopes must be a list of strings")
        saved_at = data.get("saved_at", "")
        return cls(
            client_id=str(values["client_id"]),
            user_id=str(values["user_id"]),
            login=str(values["login"]),
            access_token=str(values["access_token"]),
            refresh_token=str(values["refresh_token"]),
            scopes=tuple(scopes),
            saved_at=saved_at if isinstance(saved_at, str) else "",
        )


class TokenStore(TokenFile[StoredToken]):
    """The Twitch token file (``bot.sources.tokens.TokenFile``: 0600, replaced atomically)."""

    token_type = StoredToken
    platform = "Twitch"
    login = "ishowtts login"
    error = AuthError
