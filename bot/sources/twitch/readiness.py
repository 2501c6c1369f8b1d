"""Whether Twitch can be used: the one place that knows (the source and the doctor ask here).

Twitch chat can be read when ``twitch.channel`` and a client id are set, someone signed in
with ``ishowtts login`` for that client id, and the sign-in holds the scopes reading chat
needs. Features beyond chat (replies, reward titles, follow announcements, AutoMod) need more
scopes; without them the bot still reads chat and that feature is off, which the doctor
reports as a warning.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.sources.twitch.auth import (
    REQUIRED_SCOPES,
    SCOPE_USES,
    AuthError,
    StoredToken,
    TokenStore,
    token_path,
)
from bot.sources.twitch.settings import TwitchConfig

ALWAYS_WANTED = ("user:write:chat", "channel:read:redemptions")
"""Scopes every sign-in should hold: replies in chat; reward titles (broadcaster sign-in)."""
FOLLOW_SCOPE = "moderator:read:followers"
AUTOMOD_SCOPE = "moderator:manage:automod"
RELOGIN = "run `ishowtts login`"


class Problem(enum.Enum):
    """Why Twitch cannot be used."""

    NO_CHANNEL = "no channel"
    NO_CLIENT_ID = "no client id"
    UNREADABLE = "token file unusable"
    NOT_SIGNED_IN = "not signed in"
    OTHER_CLIENT = "signed in for another client id"
    MISSING_SCOPE = "missing a scope chat needs"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer: usable, or why not (``reason`` says it in plain words, with the fix).

    Attributes:
        problem: Why Twitch cannot be used; None when it can.
        reason: The problem in words a streamer can act on ("" when ready).
        fix: What to do about it ("" when ready).
        token: The saved sign-in, when one could be read.
        missing: Scopes a configured feature wants that the sign-in lacks (that feature is
            off; chat still works).
    """

    problem: Problem | None = None
    reason: str = ""
    fix: str = ""
    token: StoredToken | None = None
    missing: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        """Whether Twitch chat can be read."""
        return self.problem is None

    @property
    def message(self) -> str:
        """The reason and the fix in one line (for errors and the log)."""
        if not self.fix or self.fix in self.reason:
            return self.reason
        return f"{self.reason}: {self.fix}"

    def lost(self, live_scopes: Iterable[str]) -> tuple[str, ...]:
        """Scopes chat needs that Twitch no longer grants (from a live token check)."""
        return tuple(sorted(REQUIRED_SCOPES - set(live_scopes)))


def wanted_scopes(twitch: TwitchConfig, *, follows: bool = False) -> tuple[str, ...]:
    """The optional scopes the configuration makes use of, in login order.

    Args:
        twitch: The ``twitch`` section (``automod.watch`` wants the AutoMod scope).
        follows: Whether follow announcements are on (``announcements.follow``).
    """
    wanted = list(ALWAYS_WANTED)
    if follows:
        wanted.append(FOLLOW_SCOPE)
    if twitch.automod.watch:
        wanted.append(AUTOMOD_SCOPE)
    return tuple(wanted)


def login_scopes(wanted: Iterable[str] = ALWAYS_WANTED) -> tuple[str, ...]:
    """What ``ishowtts login`` asks for: what chat needs, then the wanted optional scopes."""
    return tuple(dict.fromkeys([*sorted(REQUIRED_SCOPES), *wanted]))


def describe_missing(missing: Iterable[str]) -> str:
    """What the missing optional scopes would give, in the doctor's words."""
    return "; ".join(f"{s} {SCOPE_USES.get(s, 'is used by a configured feature')}" for s in missing)


class Feature(enum.Enum):
    """Optional Twitch features a sign-in may be unable to serve."""

    FOLLOWS = "follows are not announced"
    REDEMPTIONS = "redemptions are not announced"
    AUTOMOD = "AutoMod holds are not watched"


@dataclass(frozen=True, slots=True)
class FeatureOff:
    """A configured feature this sign-in cannot serve, and why.

    Attributes:
        feature: Which one.
        reason: Why, with what to do.
        scope: The scope whose grant would fix it (None: the account itself is the reason).
    """

    feature: Feature
    reason: str
    scope: str | None = None

    @property
    def message(self) -> str:
        """One line for the log and the doctor."""
        return f"{self.feature.value}: {self.reason}"


def features_off(
    twitch: TwitchConfig, token: StoredToken, *, follows: bool, redemptions: bool
) -> tuple[FeatureOff, ...]:
    """The configured optional features the saved sign-in cannot serve (no I/O).

    Follows need ``moderator:read:followers`` (and an account that moderates the channel,
    which only Twitch can tell); redemptions reach only the broadcaster's own sign-in with
    ``channel:read:redemptions``; AutoMod holds need ``moderator:manage:automod``.

    Args:
        twitch: The ``twitch`` section.
        token: The saved sign-in.
        follows: Whether follows are announced.
        redemptions: Whether redemptions are announced.
    """
    scopes = set(token.scopes)
    again = f"{RELOGIN} again"
    off: list[FeatureOff] = []
    if follows and FOLLOW_SCOPE not in scopes:
        reason = f"the sign-in lacks {FOLLOW_SCOPE}; {again}"
        off.append(FeatureOff(Feature.FOLLOWS, reason, FOLLOW_SCOPE))
    if redemptions:
        channel = (twitch.channel or "").lower()
        if token.login.lower() != channel:
            reason = (
                f"Twitch tells them only to the broadcaster of #{channel}, and the bot is "
                f"signed in as {token.login}"
            )
            off.append(FeatureOff(Feature.REDEMPTIONS, reason))
        elif "channel:read:redemptions" not in scopes:
            reason = f"the sign-in lacks channel:read:redemptions; {again}"
            off.append(FeatureOff(Feature.REDEMPTIONS, reason, "channel:read:redemptions"))
    if twitch.automod.watch and AUTOMOD_SCOPE not in scopes:
        reason = f"the sign-in lacks {AUTOMOD_SCOPE}; {again}"
        off.append(FeatureOff(Feature.AUTOMOD, reason, AUTOMOD_SCOPE))
    return tuple(off)


def assess(
    twitch: TwitchConfig,
    token: StoredToken | None,
    *,
    unreadable: str | None = None,
    wanted: Iterable[str] = ALWAYS_WANTED,
) -> Readiness:
    """Judge a configuration and a saved sign-in (no I/O).

    Args:
        twitch: The ``twitch`` section.
        token: The saved sign-in, or None when there is none.
        unreadable: Why the token file could not be used, when it could not.
        wanted: Optional scopes to report when missing (see :func:`wanted_scopes`).
    """
    if not twitch.channel:
        return Readiness(
            Problem.NO_CHANNEL,
            "twitch.channel is not set (the channel whose chat is spoken)",
            "set twitch.channel to your channel's name",
        )
    if not twitch.client_id:
        return Readiness(
            Problem.NO_CLIENT_ID,
            "no Twitch client id",
            "set twitch.client_id or the ISHOWTTS_TWITCH_CLIENT_ID environment variable "
            "(docs/twitch.md says how to get one)",
        )
    if unreadable is not None:
        return Readiness(Problem.UNREADABLE, unreadable, RELOGIN)
    if token is None:
        return Readiness(Problem.NOT_SIGNED_IN, "not signed in to Twitch", RELOGIN)
    if token.client_id != twitch.client_id:
        return Readiness(
            Problem.OTHER_CLIENT,
            f"signed in as {token.login}, but with another client id than twitch.client_id",
            f"{RELOGIN} again (tokens only work with the application that made them)",
            token,
        )
    granted = set(token.scopes)
    lacking = sorted(REQUIRED_SCOPES - granted)
    if lacking:
        return Readiness(
            Problem.MISSING_SCOPE,
            f"signed in as {token.login}, but without the scope {', '.join(lacking)} "
            "(chat cannot be read)",
            f"{RELOGIN} again and approve every permission",
            token,
            tuple(lacking),
        )
    missing = tuple(dict.fromkeys(s for s in wanted if s not in granted))
    return Readiness(token=token, missing=missing)


def read_readiness(
    twitch: TwitchConfig, state_folder: Path, *, wanted: Iterable[str] = ALWAYS_WANTED
) -> Readiness:
    """:func:`assess` with the token file read from ``state_folder`` (blocking: the doctor)."""
    if not twitch.channel or not twitch.client_id:
        return assess(twitch, None, wanted=wanted)
    try:
        token = TokenStore(token_path(state_folder)).read()
    except AuthError as exc:
        return assess(twitch, None, unreadable=str(exc), wanted=wanted)
    return assess(twitch, token, wanted=wanted)


async def readiness(
    twitch: TwitchConfig, store: TokenStore, *, wanted: Iterable[str] = ALWAYS_WANTED
) -> Readiness:
    """:func:`assess` with the token file read without blocking the event loop."""
    if not twitch.channel or not twitch.client_id:
        return assess(twitch, None, wanted=wanted)
    try:
        token = await store.load()
    except AuthError as exc:
        return assess(twitch, None, unreadable=str(exc), wanted=wanted)
    return assess(twitch, token, wanted=wanted)
