"""Where local state lives (``storage``): the database, tokens and load timings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from engine.config import ConfigPath, Section


class StorageConfig(Section):
    """Local state: database, tokens (``storage``); defaults to the user's state folder."""

    dir: ConfigPath | None = None
    database: ConfigPath | None = Field(
        default=None, description="SQLite file (default: ishowtts.db in storage.dir)"
    )
    history_limit: int = Field(
        default=1000, ge=0, le=1_000_000, description="recent messages kept in the database"
    )


def state_dir(storage: StorageConfig) -> Path:
    """The folder for local state (database, tokens): ``storage.dir``, else the user's state folder.

    The default lives outside any repository (``~/.local/state/ishowtts`` on Linux, see
    ``bot.core.platform.user_state_dir`` for macOS and Windows), so tokens and the database are
    never committed by accident.
    """
    if storage.dir is not None:
        return storage.dir
    from bot.core.platform import user_state_dir

    return user_state_dir()


DATABASE_NAME = "ishowtts.db"


def database_path(storage: StorageConfig) -> Path:
    """Where the database lives: ``storage.database``, else ``ishowtts.db`` in ``storage.dir``.

    ``storage.dir`` defaults to the user's state folder (platformdirs), so the bot keeps its
    state wherever it is started from.
    """
    if storage.database is not None:
        return storage.database
    return state_dir(storage) / DATABASE_NAME
