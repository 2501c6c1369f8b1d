"""Several voices in one message: ``narrator: hello there obama: hi chat``.

A marker that names a known voice (``name:`` or ``(name)``, by ``tts.parts.syntax``) starts a
new part spoken in that voice; a marker that names no voice is ordinary text and is read as
written ("note: ..." stays "note: ..."). Past ``tts.parts.max_parts`` parts, further markers
are read as text too, so nothing anyone typed is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

_MARKERS: dict[str, re.Pattern[str]] = {
    # A word right before ":" and a space (or the end): "12:30" and "https://" are not markers.
    "colon": re.compile(r"(?<!\S)([A-Za-z0-9_-]{1,32}):(?=\s|\Z)"),
    "parens": re.compile(r"\(([A-Za-z0-9_-]{1,32})\)"),
}


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of the message and its voice (None: the author's own voice)."""

    text: str
    voice: str | None


def split_parts(
    text: str,
    syntax: Literal["colon", "parens"],
    resolve: Callable[[str], str | None],
    max_parts: int,
) -> list[Part]:
    """Split ``text`` at markers that name a voice.

    Args:
        text: The filtered message.
        syntax: ``colon`` (``name: text``) or ``parens`` (``(name) text``).
        resolve: The real name of a voice (any case), or None when there is none.
        max_parts: The most parts a message may have; later markers stay text.

    Returns:
        The parts in order, each with some text; one part (voice None) when there is no
        marker. Neighbouring parts in the same voice are joined.
    """
    parts: list[Part] = []
    voice: str | None = None
    start = 0  # where the current part's text begins

    def flush(upto: int) -> None:
        chunk = text[start:upto].strip()
        if not chunk:
            return
        if parts and parts[-1].voice == voice:
            parts[-1] = Part(f"{parts[-1].text} {chunk}", voice)
        else:
            parts.append(Part(chunk, voice))

    for match in _MARKERS[syntax].finditer(text):
        found = resolve(match.group(1))
        if found is None:
            continue  # not a voice: read as text
        before = len(parts) + (1 if text[start : match.start()].strip() else 0)
        if before >= max_parts:
            break  # the limit: the rest is read as text in the current voice
        flush(match.start())
        voice = found
        start = match.end()
    flush(len(text))
    return parts or [Part(text.strip(), None)]
