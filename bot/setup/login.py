"""``ishowtts login``: sign in to Twitch with the Device Code Flow and save the tokens.

The source (``bot.sources.twitch``) reads the saved tokens; this module only obtains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

from bot.config import Config
from bot.sources.tokens import now_iso
from bot.sources.twitch.auth import (
    REQUIRED_SCOPES,
    SCOPES,
    AuthError,
    StoredToken,
    TokenStore,
    token_path,
)
from bot.sources.twitch.readiness import login_scopes, wanted_scopes
from bot.state.settings import state_dir


async def device_login(
    client_id: str,
    store: TokenStore,
    show: Callable[[str], None],
    *,
    scopes: tuple[str, ...] = SCOPES,
) -> StoredToken:
    """Sign in with Twitch's Device Code Flow and save the tokens.

    Args:
        client_id: The Twitch application's client id (no secret is needed or used).
        store: Where to save the tokens once Twitch hands them over.
        show: Shows a line to the person signing in (the code and the URL).
        scopes: Scopes to request.

    Returns:
        The saved token.

    Raises:
        AuthError: Twitch refused, the code expired, or Twitch could not be reached.
    """
    import aiohttp
    import twitchio

    client = twitchio.Client(client_id=client_id, scopes=twitchio.Scopes(list(scopes)))
    try:
        flow = await client.login_dcf(load_token=False, save_token=False, force_flow=True)
        if not flow:
            raise AuthError("Twitch did not start a device sign-in; try again")
        uri = flow.get("verification_uri") or "https://www.twitch.tv/activate"
        expires = int(flow.get("expires_in") or 1800)
        show(f"To sign in, open {uri}")
        show(f"and enter the code {flow['user_code']} (valid for {expires // 60} minutes).")
        show("Waiting for you to approve in the browser...")
        await client.start_dcf(
            device_code=flow["device_code"],
            interval=max(1, int(flow.get("interval") or 5)),
            timeout=expires,
            block=False,
        )
        pairs = list(client.tokens.values())
        if not pairs:
            raise AuthError("Twitch approved the sign-in but sent no token; try again")
        pair = pairs[0]
        valid = await client.http.validate_token(pair["token"])
        granted = tuple(valid.scopes)
        missing = REQUIRED_SCOPES - set(granted)
        if missing:
            raise AuthError(f"Twitch did not grant {', '.join(sorted(missing))}; sign in again")
        token = StoredToken(
            client_id=client_id,
            user_id=str(pair["user_id"]),
            login=valid.login or str(pair["user_id"]),
            access_token=pair["token"],
            refresh_token=pair["refresh"],
            scopes=granted,
            saved_at=now_iso(),
        )
        try:
            await store.save(token)
        except OSError as exc:
            raise AuthError(f"signed in, but cannot write {store.path}: {exc}") from None
        return token
    except TimeoutError:
        raise AuthError(
            "the code expired before it was approved; run `ishowtts login` again"
        ) from None
    except twitchio.DeviceCodeFlowException as exc:
        raise AuthError(f"Twitch refused the sign-in ({exc.reason.value})") from None
    except twitchio.HTTPException as exc:
        raise AuthError(_http_problem(exc)) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise AuthError(f"could not reach Twitch: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.close(save_tokens=False)


def _http_problem(exc: Any) -> str:
    extra = getattr(exc, "extra", None)
    message = extra.get("message") if isinstance(extra, dict) else None
    status = getattr(exc, "status", "?")
    if status in (400, 403) and message and "client" in str(message).lower():
        return (
            f"Twitch rejected the client id ({message}); check twitch.client_id and that the "
            "application is of type Public with Device Code Flow allowed"
        )
    return f"Twitch answered {status}: {message or exc}"


def login_command(cfg: Config) -> int:
    """``ishowtts login``: sign in and save the tokens; returns the process exit status."""
    client_id = cfg.twitch.client_id
    if not client_id:
        print(
            "ishowtts login: no Twitch client id. Set twitch.client_id in config.yaml or the "
            "ISHOWTTS_TWITCH_CLIENT_ID environment variable (see docs/twitch.md).",
            file=sys.stderr,
        )
        return 2
    store = TokenStore(token_path(state_dir(cfg.storage)))
    try:
        scopes = login_scopes(wanted_scopes(cfg.twitch, follows=cfg.announcements.wants_follows))
        token = asyncio.run(device_login(client_id, store, show=print, scopes=scopes))
    except AuthError as exc:
        print(f"ishowtts login: {exc}", file=sys.stderr)
        return 1
    print(f"Signed in to Twitch as {token.login}.")
    print(f"Tokens saved to {store.path} (readable only by you).")
    channel = cfg.twitch.channel
    if channel is None:
        print("Set twitch.channel in config.yaml to the channel whose chat should be spoken.")
    elif channel.lower() != token.login.lower():
        print(
            f"The bot will read #{channel.lower()} as {token.login}. Rewards listed by title in "
            "twitch.rewards need the broadcaster's own sign-in; rewards listed by id always work."
        )
    return 0


def youtube_login_command(cfg: Config) -> int:
    """``ishowtts login youtube``: Google's device sign-in, tokens saved 0600; exit status.

    The client is the streamer's own (README, "YouTube"); the flow for TVs and limited-input
    devices grants the ``youtube`` scope, which reads live chat and posts replies.
    """
    from bot.sources.youtube import auth as youtube

    yt = cfg.youtube
    if not yt.client_id or not yt.client_secret:
        print(
            "ishowtts login youtube: no Google OAuth client. Set youtube.client_id and "
            "youtube.client_secret in config.yaml (or ISHOWTTS_YOUTUBE_CLIENT_ID and "
            "ISHOWTTS_YOUTUBE_CLIENT_SECRET); the README's YouTube section says how to make one.",
            file=sys.stderr,
        )
        return 2
    store = youtube.YouTubeTokenStore(youtube.token_path(state_dir(cfg.storage)))
    try:
        token = youtube.device_login(yt, show=print)
        store.write(token)
    except youtube.YouTubeAuthError as exc:
        print(f"ishowtts login youtube: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"ishowtts login youtube: signed in, but cannot write {store.path}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"Signed in to YouTube as {token.channel_title} ({token.channel_id}).")
    print(f"Tokens saved to {store.path} (readable only by you).")
    if not token.can_post:
        print("This sign-in can read chat but not post replies.")
    if not yt.enabled:
        print("Set youtube.enabled: true in config.yaml to read YouTube Live chat.")
    return 0
