"""``ishowtts serve`` from the command line: build the engine like the bot does, serve it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.config import Config
from bot.core.platform import install_stop_handler
from bot.serve.server import ServeServer, ServeSetupError
from bot.serve.token import ServeTokenError, load_or_create_serve_token
from bot.state.settings import state_dir
from engine.base import EngineState

log = logging.getLogger(__name__)


def print_token(cfg: Config) -> int:
    """Print the serve token (making it on first use), for the other PC's bot."""
    try:
        token, _created, where = load_or_create_serve_token(state_dir(cfg.storage))
    except ServeTokenError as exc:
        log.error("%s", exc)
        return 2
    print(token)
    log.info("(from %s)", where)
    return 0


async def serve(
    cfg: Config, on_engine_state: Callable[[EngineState, str], None] | None = None
) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status.

    The engine is chosen exactly as for the bot (``engine.name``: auto, f5 or espeak, with
    the same fallback banner), so a gaming PC without a working GPU still serves eSpeak NG
    voices and says why.
    """
    if cfg.engine.name == "remote":
        log.error(
            "engine.name is 'remote': ishowtts serve speaks itself; set engine.name to auto, "
            "f5 or espeak on the serving PC (remote is for the bot that uses it)"
        )
        return 2
    from engine.factory import create_engine

    folder = state_dir(cfg.storage)
    server = ServeServer(
        cfg.serve,
        create_engine(cfg.engine, cfg.voices, cache_dir=folder),
        state_dir=folder,
        default_voice=cfg.voices.default,
        timeout_s=cfg.engine.timeout_s,
        on_engine_state=on_engine_state,
    )
    stop = asyncio.Event()
    remove = install_stop_handler(asyncio.get_running_loop(), stop.set)
    try:
        try:
            await server.start()
        except (ServeSetupError, ServeTokenError) as exc:
            log.error("%s", exc)
            return 2
        await stop.wait()
        log.info("stopping ishowtts serve")
        return 0
    finally:
        await server.close()
        remove()
