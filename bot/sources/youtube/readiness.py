"""Whether YouTube chat can be used: the one place that knows (the source and the doctor ask).

YouTube Live chat can be read when the streamer's own OAuth client is set, someone signed in
with ``ishowtts login youtube`` for that client, and the sign-in holds a scope that reads chat.
Posting replies needs the ``youtube`` scope; a read-only sign-in still reads chat, which the
doctor reports as a warning. Whether a broadcast is live, and whether Google still accepts the
sign-in, only an API call can tell (:func:`probe`, one quota unit).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sources.youtube.auth import (
    YouTubeAuthError,
    YouTubeToken,
    YouTubeTokenStore,
    build_youtube,
    token_path,
)
from bot.sources.youtube.settings import YouTubeConfig

RELOGIN = "run `ishowtts login youtube`"


class Problem(enum.Enum):
    """Why YouTube chat cannot be read."""

    NO_CLIENT = "no OAuth client"
    UNREADABLE = "token file unusable"
    NOT_SIGNED_IN = "not signed in"
    OTHER_CLIENT = "signed in for another client"
    MISSING_SCOPE = "missing the youtube scope"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer from the saved files alone (no network).

    Attributes:
        problem: Why YouTube cannot be used; None when it can.
        reason: The problem in words a streamer can act on ("" when ready).
        fix: What to do about it ("" when ready).
        token: The saved sign-in, when one could be read.
    """

    problem: Problem | None = None
    reason: str = ""
    fix: str = ""
    token: YouTubeToken | None = None

    @property
    def ready(self) -> bool:
        """Whether chat can be read (as far as the files tell)."""
        return self.problem is None


def read_readiness(cfg: YouTubeConfig, state_folder: Path) -> Readiness:
    """Judge the ``youtube`` section and the saved sign-in (blocking file read).

    The client id and secret may be left out of the config once signed in: the token file
    holds the pair it was made with. A client id that *is* configured must match it.
    """
    try:
        token = YouTubeTokenStore(token_path(state_folder)).read()
    except YouTubeAuthError as exc:
        return Readiness(Problem.UNREADABLE, str(exc), RELOGIN)
    if token is None:
        if not cfg.client_id or not cfg.client_secret:
            return Readiness(
                Problem.NO_CLIENT,
                "no Google OAuth client (youtube.client_id and youtube.client_secret)",
                "make one as the README's YouTube section says, then " + RELOGIN,
            )
        return Readiness(
            Problem.NOT_SIGNED_IN,
            f"not signed in to YouTube: no token file at {token_path(state_folder)}",
            RELOGIN,
        )
    if cfg.client_id and token.client_id != cfg.client_id:
        return Readiness(
            Problem.OTHER_CLIENT,
            "the saved YouTube sign-in was made for another youtube.client_id",
            RELOGIN + " again (tokens only work with the client that made them)",
            token,
        )
    if not token.can_read:
        return Readiness(
            Problem.MISSING_SCOPE,
            "the saved YouTube sign-in lacks the youtube scope (chat cannot be read)",
            RELOGIN + " again and allow access to the YouTube account",
            token,
        )
    return Readiness(token=token)


@dataclass(frozen=True, slots=True)
class Probe:
    """What one API call said about the sign-in and the live broadcast.

    Attributes:
        reached: Whether YouTube answered at all.
        accepted: Whether Google accepted the sign-in (after a refresh if it had expired).
        live_title: The live broadcast's title; None while nothing is live.
        problem: Why it failed, in plain words ("" when it worked).
        fatal: Whether the failure stops the bot (a revoked sign-in, the API not enabled).
    """

    reached: bool
    accepted: bool
    live_title: str | None = None
    problem: str = ""
    fatal: bool = False


def probe(cfg: YouTubeConfig, token: YouTubeToken, timeout_s: float) -> Probe:
    """Ask YouTube whether a broadcast is live (1 quota unit; blocking, at most ``timeout_s``).

    An expired access token is refreshed in memory only: Google's refresh tokens stay valid,
    so the file is left as it is (the bot saves the next refresh itself).
    """
    from bot.sources.youtube.source import describe, fatal_reason

    api = build_youtube(cfg, token.credentials(), timeout_s=timeout_s)
    try:
        answer: Any
        if cfg.video_id:
            answer = (
                api.videos().list(part="snippet,liveStreamingDetails", id=cfg.video_id).execute()
            )
            for item in items_of(answer):
                details = item.get("liveStreamingDetails") or {}
                if isinstance(details, dict) and details.get("activeLiveChatId"):
                    return Probe(True, True, title_of(item))
            return Probe(True, True)
        answer = (
            api.liveBroadcasts()
            .list(part="snippet", broadcastStatus="active", broadcastType="all", maxResults=5)
            .execute()
        )
        for item in items_of(answer):
            snippet = item.get("snippet") or {}
            if isinstance(snippet, dict) and snippet.get("liveChatId"):
                return Probe(True, True, title_of(item))
        return Probe(True, True)
    except Exception as exc:
        reason = fatal_reason(exc)
        if reason is not None:
            return Probe(True, False, problem=reason, fatal=True)
        return Probe(False, False, problem=describe(exc))


def items_of(answer: Any) -> list[dict[str, Any]]:
    """The ``items`` of a list response that are objects (anything else is skipped)."""
    items = answer.get("items") if isinstance(answer, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def title_of(item: dict[str, Any]) -> str:
    """A broadcast's or video's title, for messages."""
    snippet = item.get("snippet") or {}
    title = snippet.get("title") if isinstance(snippet, dict) else None
    return str(title or item.get("id") or "the live broadcast")[:200]
