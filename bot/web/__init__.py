"""The OBS caption overlay and the local control panel (see ``bot.web.server``)."""

from bot.web.server import WebServer

__all__ = ["WebServer"]
