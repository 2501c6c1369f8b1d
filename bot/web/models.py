"""The JSON the overlay, the control panel and the API's callers read, as typed models.

One model per shape, and one place that turns a model into JSON (``as_text``): the pages
(``static/panel.js``, ``static/overlay.js``) and other stream tools depend on these field names,
so they are written down once, here, instead of as dictionaries built in several places.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from bot.chat.pipeline import Action
from bot.core.messages import Platform
from engine.base import EngineState


class _Model(BaseModel):
    """Frozen, and strict about its fields: a typo in a field name is an error, not a key."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PanelItem(_Model):
    """A queued or playing message as the pages see it."""

    id: int
    """The speech item's number (what ``/api/remove`` takes)."""
    user: str
    """The author's login."""
    name: str
    """The author's display name."""
    text: str
    """What is spoken ("NAME says ..." included)."""
    caption: str
    """What the overlay shows (the text without the announcement)."""
    voice: str
    source: str
    """Where it came from: a chat source, ``panel`` or ``http``."""
    platform: Platform
    paid: bool


class HistoryItem(_Model):
    """A message that was handled, newest first in the panel's history.

    Those spoken since the start carry every field of ``PanelItem``; those read back from the
    database after a restart have no item number (``id`` is null), no voice when none was
    kept, and no ``platform`` key at all (the pages show no platform for them).
    """

    id: int | None
    user: str
    name: str
    text: str
    caption: str
    voice: str | None
    source: str
    platform: Platform | None = None
    paid: bool
    outcome: str
    """``played``, ``skipped``, ``dropped``, ``failed``... (empty when unknown)."""
    detail: str
    at: float
    """When it finished (Unix time)."""

    @classmethod
    def finished(cls, item: PanelItem, outcome: str, detail: str, at: float) -> HistoryItem:
        """The history entry of an item that just finished."""
        return cls(**item.model_dump(), outcome=outcome, detail=detail, at=at)

    @model_serializer(mode="wrap")
    def _without_unknown_platform(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.platform is None:
            del data["platform"]
        return data


class Caption(_Model):
    """The overlay's caption of the playing message."""

    id: int
    name: str
    text: str
    voice: str
    platform: Platform


class OverlayState(_Model):
    """What the overlay shows: the caption of the playing message, or none."""

    type: Literal["caption"] = "caption"
    caption: Caption | None
    audio: bool
    """Whether the page should play the speech itself (``web.browser_audio``)."""


class EngineView(_Model):
    """The engine thread's state, as the panel shows it."""

    state: EngineState
    detail: str


class MuteView(_Model):
    """One muted person."""

    user: str
    platform: Platform
    until: float | None
    """When the mute ends (Unix time); null for a mute without an end."""
    by: str
    """Who muted (a login, or ``panel``)."""


class SynthesisView(_Model):
    """The last heard message's synthesis figures (``bot.web.metrics.Latest``); null: unknown."""

    first_chunk_s: float | None = None
    """From the engine starting on it to its first audio chunk."""
    synthesis_s: float | None = None
    """From the engine starting on it to its last chunk (null when it was cut short)."""
    rtf: float | None = None
    """Real-time factor: synthesis time / audio duration (below 1: faster than real time)."""
    batch_size: int | None = None
    """How many messages were synthesised together with it."""


class PanelState(_Model):
    """Everything the control panel shows."""

    type: Literal["state"] = "state"
    now: float
    engine: EngineView
    paused: bool
    enabled: bool
    volume: int
    """Percent."""
    current: PanelItem | None
    queue: list[PanelItem]
    history: list[HistoryItem]
    mutes: list[MuteView]
    voices: list[str]
    default_voice: str
    synthesis: SynthesisView = SynthesisView()


class VoicesAnswer(_Model):
    """``GET /api/voices``."""

    voices: list[str]
    default: str


class ActionAnswer(_Model):
    """A control action that was done; ``message`` is the same reply as the chat command's."""

    ok: Literal[True] = True
    message: str


class ErrorAnswer(_Model):
    """A refused or failed request, with a message a person can act on."""

    ok: Literal[False] = False
    error: str


class MessageAnswer(_Model):
    """What became of a message sent with ``/api/say`` or ``/api/ingest``.

    ``id``, ``text`` and ``voice`` are there only for a queued message (the key is left out
    otherwise, so a caller can test for it).
    """

    ok: Literal[True] = True
    status: Action
    reason: str
    id: int | None = None
    text: str | None = None
    voice: str | None = None

    @model_serializer(mode="wrap")
    def _only_what_is_known(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("id", "text", "voice"):
            if data[key] is None:
                del data[key]
        return data


class AudioStart(_Model):
    """``/ws/audio``: a clip begins; its PCM frames follow at ``rate`` samples a second."""

    type: Literal["start"] = "start"
    clip: int
    rate: int


class AudioEnd(_Model):
    """``/ws/audio``: every frame of the clip has been sent."""

    type: Literal["end"] = "end"
    clip: int


class AudioStop(_Model):
    """``/ws/audio``: silence the clip now (a skip, a deleted message, a ban)."""

    type: Literal["stop"] = "stop"
    clip: int


class AudioVolume(_Model):
    """``/ws/audio``: the playback volume changed (0.0 to 1.0)."""

    type: Literal["volume"] = "volume"
    volume: float


def as_json(model: BaseModel) -> dict[str, Any]:
    """The JSON object a model is sent as (enums as their values), as Python data."""
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def as_text(model: BaseModel) -> str:
    """The JSON text a model is sent as, over HTTP and WebSockets alike.

    ``json.dumps`` writes it, not pydantic's faster ``model_dump_json``: text from chat or
    another tool may hold lone surrogates (a JSON escape of one is valid JSON), which pydantic
    refuses to encode as UTF-8 and ``json.dumps`` escapes, as the pages have always been sent.
    """
    return json.dumps(as_json(model))
