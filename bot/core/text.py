"""Turning raw chat text into something a TTS engine can say without embarrassment.

This is the always-on baseline every message passes (whatever the configured filters are):
control characters go, whitespace collapses, absurd lengths are capped at a word boundary,
and lines with nothing pronounceable (emoji-only, punctuation-only) become empty so that they
are skipped instead of producing noise.
"""

from __future__ import annotations

import re
import unicodedata

_WS_RE = re.compile(r"\s+")
# Categories that never carry speech: controls, format chars (bidi overrides, zero-width),
# surrogates, private use and unassigned code points.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Combining marks beyond this many in a row are "zalgo" noise, not diacritics.
_MAX_COMBINING = 2


# Terminal escape sequences (ECMA-48): CSI "ESC [ params intermediates final" (colours, cursor
# moves), OSC "ESC ] ... BEL|ST" (titles, hyperlinks), DCS/SOS/PM/APC strings, two-byte
# "ESC X" sequences, and their 8-bit C1 forms. Removing only the ESC byte (a control
# character) would leave "[31m" to be spoken, so whole sequences go first.
_ESCAPE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI (a cut-off sequence at the end goes too)
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # strings
    r"|\x1b[ -/]*[0-~]?"  # nF / Fp / Fe / Fs two-byte sequences
)

_ASCII_CONTROLS = {cp: (" " if chr(cp) in "\t\r\n\v\f" else None) for cp in (*range(32), 127)}


def strip_unspeakable(
    text: str,
    max_marks: int = _MAX_COMBINING,
    keep: frozenset[int] = frozenset(),
    *,
    collapse: bool = True,
) -> str:
    """Remove terminal escape sequences, control/format characters and excess combining marks.

    Escape sequences (``ESC[31m``) go whole, parameters included. Tabs and newlines become
    spaces so words on separate lines stay separate.

    Args:
        text: Raw text.
        max_marks: Combining marks kept in a row (more is "zalgo" noise, not diacritics).
        keep: Code points never dropped and never counted as marks (the emoji filter keeps
            zero-width joiners and variation selectors for the emoji policy to judge).
        collapse: Collapse runs of whitespace and strip the ends.
    """
    if "\x1b" in text or "\x9b" in text or "\x9d" in text or "\x90" in text:
        text = _ESCAPE_RE.sub("", text)
    if text.isascii():
        out_text = text.translate(_ASCII_CONTROLS)
        return _WS_RE.sub(" ", out_text).strip() if collapse else out_text
    out: list[str] = []
    combining = 0
    for ch in text:
        if ch in "\t\r\n\v\f":
            out.append(" ")
            combining = 0
            continue
        if ord(ch) in keep:
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            continue
        if cat.startswith("M"):
            combining += 1
            if combining > max_marks:
                continue
        else:
            combining = 0
        out.append(ch)
    joined = "".join(out)
    return _WS_RE.sub(" ", joined).strip() if collapse else joined


def has_speakable(text: str) -> bool:
    """Whether any letter or digit remains (emoji, symbols and punctuation alone are noise)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def cap_length(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars``, at a word boundary when one is reasonably close."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space >= max_chars * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-")


def clean_for_speech(text: str, max_chars: int) -> str:
    """Baseline cleaning for any chat line; returns "" when there is nothing worth saying.

    Args:
        text: Raw text from a chat source (already without platform emote fragments).
        max_chars: Longest text to speak; longer lines are capped, not rejected.
    """
    cleaned = strip_unspeakable(text)
    if not has_speakable(cleaned):
        return ""
    return cap_length(cleaned, max_chars)
