"""The control panel's access token: made on first run, kept in the state folder, mode 0600.

Why a token at all when the server listens on loopback only: any web page the streamer opens
can make the browser send requests to ``127.0.0.1``, and any local program can too. Control
actions and the ingest endpoint therefore need a secret that only the streamer has; it lives
next to the other local state (never in the repository), readable by the user alone.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

from bot.core.platform import make_private_dir, tighten, write_private_file

log = logging.getLogger(__name__)

TOKEN_FILE_NAME = "web-token"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}\Z")


class TokenError(RuntimeError):
    """The token file cannot be read or written; the message says where and why."""


def load_or_create_token(folder: Path) -> tuple[str, bool]:
    """Return the panel token from ``folder``, creating it (mode 0600) when missing.

    Blocking file I/O: call it through ``asyncio.to_thread``.

    Args:
        folder: The state folder (``storage.dir`` or the platform's user state folder).

    Returns:
        (token, created): ``created`` is True when this call made a new token, so the caller
        shows the ready-to-open URL once.

    Raises:
        TokenError: The folder or file cannot be created, read or written.
    """
    path = folder / TOKEN_FILE_NAME
    try:
        make_private_dir(folder)
        existing = _read(path)
        if existing is not None:
            return existing, False
        token = secrets.token_urlsafe(32)
        _write(path, token)
    except OSError as exc:
        raise TokenError(f"cannot keep the control panel token in {path}: {exc}") from exc
    return token, True


def _read(path: Path) -> str | None:
    """The stored token, or None when there is none (or it is unusable and gets replaced)."""
    if not path.exists():
        return None
    if tighten(path):  # POSIX modes; Windows relies on the folder's access list
        log.warning("%s was readable by other users; restricted it to you (mode 0600)", path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if _TOKEN_RE.match(text):
        return text
    log.warning("%s does not hold a usable token; making a new one", path)
    return None


def _write(path: Path, token: str) -> None:
    """Write the token atomically, never readable by anyone else even for a moment."""
    write_private_file(path, f"{token}\n".encode("ascii"))


def tokens_match(given: str | None, expected: str) -> bool:
    """Compare in constant time, so the token cannot be guessed one character at a time."""
    if not given:
        return False
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
