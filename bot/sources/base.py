"""The contract between chat sources and the rest of the bot."""

from __future__ import annotations

from typing import Protocol

from bot.core.messages import ChatMessage, ModerationEvent


class ChatSink(Protocol):
    """Where a source delivers normalized events (the bot's message handler)."""

    async def on_message(self, message: ChatMessage) -> None:
        """Handle one chat message; never raises for bad input."""

    async def on_moderation(self, event: ModerationEvent) -> None:
        """Apply a moderation event (delete, purge, clear) at once."""


class ChatSource(Protocol):
    """A platform adapter: turns platform events into ChatMessage / ModerationEvent."""

    name: str

    async def run(self, sink: ChatSink) -> None:
        """Deliver events to ``sink`` until the source ends (EOF) or is closed."""

    async def close(self) -> None:
        """Stop delivering and release connections."""
