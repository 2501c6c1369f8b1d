"""A platform's saved sign-in: one JSON file, private from creation, replaced atomically.

The Twitch and YouTube sources keep their tokens the same way; only the token type, the
platform's name and the command that signs in again differ, so :class:`TokenFile` holds the
file handling once and each source's store names those three.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from bot.core.platform import make_private_dir, tighten, write_private_file

log = logging.getLogger(__name__)


def now_iso() -> str:
    """The current UTC time as token files write it (ISO 8601, seconds)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class SavedToken(Protocol):
    """What a token type offers the file: its JSON form, and parsing it back."""

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        ...

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse the file's content (ValueError when it is not a token)."""
        ...


T = TypeVar("T", bound=SavedToken)


class TokenFile(Generic[T]):
    """A token file: JSON, mode 0600, replaced atomically on every change.

    Construction does no I/O. The async methods run file access on a worker thread so the
    event loop never waits on the disk; saves are serialised so two quick refreshes cannot
    interleave and leave an older token on disk.

    Subclasses set :attr:`token_type`, :attr:`platform` (in messages), :attr:`login` (the
    command that signs in again) and :attr:`error` (what an unusable file raises).
    """

    token_type: ClassVar[type[SavedToken]]
    platform: ClassVar[str]
    login: ClassVar[str]
    error: ClassVar[type[Exception]]

    def __init__(self, path: Path) -> None:
        """Name the file (nothing is read yet)."""
        self.path = path
        self._lock = asyncio.Lock()

    def read(self) -> T | None:
        """Read the file (blocking); None when nobody has signed in yet.

        A file that others can read is tightened to 0600 with a warning.

        Raises:
            Exception: :attr:`error`, when the file exists but cannot be used (the message
                says how to recover).
        """
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(
                f"cannot read the {self.platform} token file {self.path}: {exc}"
            ) from None
        with contextlib.suppress(OSError):
            if tighten(self.path):
                log.warning(
                    "the %s token file %s was readable by others; now 0600",
                    self.platform,
                    self.path,
                )
        try:
            token: T = self.token_type.from_json(json.loads(raw))  # type: ignore[assignment]
        except (ValueError, json.JSONDecodeError) as exc:
            raise self.error(
                f"the {self.platform} token file {self.path} is damaged ({exc}); "
                f"run `{self.login}` to sign in again"
            ) from None
        return token

    def write(self, token: T) -> None:
        """Replace the file atomically, private from creation, in a private folder (blocking).

        The data goes to a temporary file created private in the same folder, is flushed to
        disk, then renamed over the old file: a crash leaves either the old or the new token,
        never half of one, and it is never readable by others, not even for a moment.
        """
        make_private_dir(self.path.parent)
        write_private_file(self.path, json.dumps(token.to_json(), indent=2).encode("utf-8"))

    async def load(self) -> T | None:
        """Read the file without blocking the event loop (see :meth:`read`)."""
        return await asyncio.to_thread(self.read)

    async def save(self, token: T) -> None:
        """Write the file without blocking the event loop (see :meth:`write`).

        Raises:
            OSError: When the file cannot be written.
        """
        async with self._lock:
            await asyncio.to_thread(self.write, token)
