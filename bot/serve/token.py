"""The ``serve`` bearer token: made on first start, kept in the state folder, mode 0600.

It is kept like the control panel's token (``bot.web.token``), in its own file
(``engine.config.SERVE_TOKEN_FILE``): the bot on the same machine reads that file for
``engine.name: remote``; a bot on another PC gets it from ``ISHOWTTS_SERVE_TOKEN`` or a copy
of the file. The environment variable, when set, wins over the file on both sides.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

from bot.core.platform import make_private_dir, tighten, write_private_file
from engine.config import SERVE_TOKEN_FILE, TOKEN_ENV

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}\Z")


class ServeTokenError(RuntimeError):
    """The token cannot be read, written or used; the message says where and why."""


def load_or_create_serve_token(folder: Path, env: str = TOKEN_ENV) -> tuple[str, bool, str]:
    """The server's token: from the environment, else the file, made (0600) when missing.

    Blocking file I/O: call it through ``asyncio.to_thread`` from the event loop.

    Args:
        folder: The state folder.
        env: The environment variable that may hold the token.

    Returns:
        (token, created, where): ``created`` when this call made a new one; ``where`` names
        its source for messages (the variable or the file path).

    Raises:
        ServeTokenError: The variable holds no usable token, or the file cannot be kept.
    """
    given = os.environ.get(env)
    if given is not None:
        given = given.strip()
        if not _TOKEN_RE.match(given):
            raise ServeTokenError(
                f"${env} is not a usable token: 16-256 letters, digits, '-' or '_'"
            )
        return given, False, f"${env}"
    path = folder / SERVE_TOKEN_FILE
    try:
        make_private_dir(folder)
        if path.exists():
            if tighten(path):
                log.warning("%s was readable by other users; restricted it to you (0600)", path)
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if _TOKEN_RE.match(text):
                return text, False, str(path)
            log.warning("%s does not hold a usable token; making a new one", path)
        token = secrets.token_urlsafe(32)
        write_private_file(path, f"{token}\n".encode("ascii"))
    except OSError as exc:
        raise ServeTokenError(f"cannot keep the serve token in {path}: {exc}") from exc
    return token, True, str(path)
