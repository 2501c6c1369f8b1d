"""Text planning for F5-TTS: where to split long messages and how long each piece should last.

F5-TTS does not predict durations: the caller tells it how many mel frames to fill, and the
model stretches or squeezes the words to fit. Stock f5-tts estimates the length from the
reference's speaking rate, but silently switches to ``speed=0.3`` for any text under 10 UTF-8
bytes, so "gg" comes out three times too slow. Here the same rate-based estimate is used for
every length, with a floor that keeps one-word messages short but audible.

Long messages are cut at sentence, then clause, then word boundaries so each piece stays
within what the model handles well (reference + generated audio under ~22 s), and so the
first piece can be played while the rest is synthesised.
"""

from __future__ import annotations

import re

SAMPLE_RATE = 24_000
"""F5-TTS (Vocos 24 kHz) output rate."""

HOP_LENGTH = 256
"""Samples per mel frame."""

FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH

MIN_SPEECH_S = 0.5
"""Shortest generated speech: "gg" or "ok" is over quickly, yet long enough to be heard."""

MIN_SECONDS_PER_BYTE = 0.04
MAX_SECONDS_PER_BYTE = 0.25
"""Sane speaking rates (4 to 25 UTF-8 bytes per second) so a wrong transcript cannot make a
message last a minute or a blip."""

MAX_TOTAL_S = 22.0
"""Reference plus generated audio that F5-TTS handles well (stock f5-tts uses the same bound)."""

MIN_CHUNK_CHARS = 20

_SPACES = re.compile(r"\s+")
# A sentence ends at . ! ? … (plus closing quotes/brackets) before a space, or right after a
# CJK full stop, question or exclamation mark (CJK text has no spaces).
_SENTENCE_END = re.compile(r"(?<=[.!?…][\"')\]]) |(?<=[.!?…]) |(?<=[。！？])")
# A clause ends at , ; : or a dash before a space, or right after CJK clause punctuation.
_CLAUSE_END = re.compile(r"(?<=[,;:—–]) |(?<=[，；：、])")
_WORD_GAP = re.compile(r" ")
_SENTENCE_PUNCT = (".", "!", "?", "。", "！", "？", "…")


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return _SPACES.sub(" ", text).strip()


def split_text(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into pieces of at most ``max_chars`` characters.

    Whole sentences are kept together and packed greedily; a sentence that is too long is cut
    at clause punctuation, then between words, and a single monster "word" (a URL, a key
    mash) is cut hard. Nothing is dropped: the pieces hold every non-space character of the
    input, in order.

    Args:
        text: The message; whitespace is normalised first.
        max_chars: Upper bound on each piece's length (at least 1).

    Returns:
        The pieces in speaking order; empty when ``text`` has no visible characters.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = normalize_space(text)
    if not text:
        return []
    if len(text) <= max_chars:
        return [text]
    return _split(text, max_chars, (_SENTENCE_END, _CLAUSE_END, _WORD_GAP))


def _split(text: str, max_chars: int, levels: tuple[re.Pattern[str], ...]) -> list[str]:
    """Cut ``text`` at one level of boundaries, recursing where parts are still too long.

    The results are packed afterwards, so each boundary level stays intact where it can.
    """
    if len(text) <= max_chars:
        return [text]
    if not levels:
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    units: list[str] = []
    for part in _split_keep(text, levels[0]):
        units.extend(_split(part, max_chars, levels[1:]))
    return _pack(units, max_chars)


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split at ``pattern`` (which matches the space after punctuation, or nothing)."""
    return [part.strip() for part in pattern.split(text) if part.strip()]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive pieces (with a space) while they fit in ``max_chars``."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def prepare_reference_text(transcript: str) -> str:
    """Format a reference transcript the way f5-tts conditions on it.

    The model was trained on "reference text + generated text" as one string; stock f5-tts
    makes the reference end with a sentence stop and a space (and one more space after an
    ASCII character) so the generated part starts as a new sentence.
    """
    text = normalize_space(transcript)
    if not text.endswith(("。",)):
        if not text.endswith(_SENTENCE_PUNCT):
            text += "."
        text += " "
    if len(text[-1].encode("utf-8")) == 1:
        text += " "
    return text


def _weight(text: str) -> int:
    """Length measure of spoken text: UTF-8 bytes, as stock f5-tts uses.

    A CJK character (three bytes) is roughly a syllable; an ASCII letter is one byte.
    """
    return len(normalize_space(text).encode("utf-8"))


def seconds_per_byte(reference_text: str, reference_seconds: float) -> float:
    """The reference speaker's pace, clamped to plausible speech rates."""
    weight = max(1, _weight(reference_text))
    rate = reference_seconds / weight
    return min(MAX_SECONDS_PER_BYTE, max(MIN_SECONDS_PER_BYTE, rate))


def estimate_duration(
    text: str, reference_text: str, reference_seconds: float, speed: float = 1.0
) -> float:
    """Seconds of speech to generate for ``text`` in the voice of the reference.

    The length follows the reference's speaking rate (seconds per UTF-8 byte of its
    transcript), divided by ``speed``, and never drops below ``MIN_SPEECH_S``. Unlike stock
    f5-tts there is no slow-down for short texts, which made "gg" last seconds.

    Args:
        text: The text to speak.
        reference_text: The exact transcript of the reference clip.
        reference_seconds: Length of the reference clip as conditioned on.
        speed: Speaking-speed factor (1.0 = the reference's pace).

    Returns:
        Duration in seconds (at least ``MIN_SPEECH_S``).
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    seconds = seconds_per_byte(reference_text, reference_seconds) * _weight(text) / speed
    return max(MIN_SPEECH_S, seconds)


def duration_frames(
    text: str, reference_text: str, reference_seconds: float, speed: float = 1.0
) -> int:
    """``estimate_duration`` in mel frames (24 kHz, hop 256), at least one frame."""
    seconds = estimate_duration(text, reference_text, reference_seconds, speed)
    return max(1, round(seconds * FRAMES_PER_SECOND))


def chunk_limit(
    reference_text: str, reference_seconds: float, max_chars: int, speed: float = 1.0
) -> int:
    """Largest piece (in characters) to synthesise at once with this reference.

    The configured ``max_chars`` applies, but a long reference leaves less room: reference
    plus generated audio should stay under ``MAX_TOTAL_S`` (stock f5-tts bounds it the same way).
    """
    room_s = max(0.0, MAX_TOTAL_S - reference_seconds)
    fits = int(room_s * speed / seconds_per_byte(reference_text, reference_seconds))
    return max(MIN_CHUNK_CHARS, min(max_chars, fits))


_FIRST_PAUSES = ".!?;:,"


def split_first_chunk(text: str, max_first_chars: int = 40, min_first_chars: int = 12) -> list[str]:
    """Split ``text`` so a short leading piece can be synthesised (and played) first.

    The cut goes at a pause (sentence or clause punctuation followed by a space) within
    ``max_first_chars`` when there is one, else at the last word boundary before it, so the
    seam falls where speech pauses anyway. Short texts stay whole.

    Args:
        text: Cleaned text.
        max_first_chars: Longest leading piece.
        min_first_chars: A pause earlier than this is ignored (too short to be worth a seam).

    Returns:
        One or two non-empty pieces whose concatenation (with one space) is ``text``.
    """
    text = text.strip()
    if len(text) <= max_first_chars + min_first_chars:
        return [text] if text else []
    window = text[: max_first_chars + 1]
    cut = -1
    for pos in range(len(window) - 1, min_first_chars - 1, -1):
        if window[pos - 1] in _FIRST_PAUSES and window[pos] == " ":
            cut = pos
            break
    if cut < 0:
        cut = window.rfind(" ")
        if cut < min_first_chars:
            return [text]
    head, tail = text[:cut].strip(), text[cut:].strip()
    return [head, tail] if tail else [head]
