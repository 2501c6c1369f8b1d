"""Chunking and duration estimates for F5-TTS (pure functions, no model)."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text import (
    FRAMES_PER_SECOND,
    MAX_TOTAL_S,
    MIN_SPEECH_S,
    chunk_limit,
    duration_frames,
    estimate_duration,
    prepare_reference_text,
    split_first_chunk,
    split_text,
)

# f5-tts's packaged English reference: 5.33 s for this transcript.
REF_TEXT = "Some call me nature, others call me mother nature."
REF_S = 5.33


def _stock_seconds(text: str) -> float:
    """What stock f5-tts infer_batch_process would generate (its speed=0.3 hack included)."""
    ref_frames = int(REF_S * FRAMES_PER_SECOND)
    ref_len = len((REF_TEXT + " ").encode())
    speed = 0.3 if len(text.encode()) < 10 else 1.0
    return int(ref_frames / ref_len * len(text.encode()) / speed) / FRAMES_PER_SECOND


def test_gg_is_short_but_audible() -> None:
    gg = estimate_duration("gg", REF_TEXT, REF_S)
    assert gg == MIN_SPEECH_S
    assert 0.3 <= gg < 1.0
    # Stock f5-tts slows every text under 10 bytes to speed 0.3.
    assert _stock_seconds("lol gg ok") > 2.5 * estimate_duration("lol gg ok", REF_TEXT, REF_S)


def test_sentence_follows_the_reference_speaking_rate() -> None:
    sentence = "That was the best play I have seen all week, do it again!"
    seconds = estimate_duration(sentence, REF_TEXT, REF_S)
    rate = REF_S / len(REF_TEXT)
    assert seconds == pytest.approx(rate * len(sentence), rel=0.01)
    assert seconds == pytest.approx(_stock_seconds(sentence), rel=0.05)
    assert estimate_duration(sentence, REF_TEXT, REF_S, speed=2.0) == pytest.approx(seconds / 2)
    doubled = estimate_duration(sentence + " " + sentence, REF_TEXT, REF_S)
    assert doubled == pytest.approx(2 * seconds, rel=0.03)


def test_duration_grows_with_text_and_never_goes_below_the_floor() -> None:
    previous = 0.0
    for n in range(1, 120):
        seconds = estimate_duration("a" * n, REF_TEXT, REF_S)
        assert seconds >= MIN_SPEECH_S
        assert seconds >= previous
        previous = seconds


def test_a_wrong_transcript_cannot_make_absurd_lengths() -> None:
    # Transcript of one character for a 10 s clip: the rate is clamped to plausible speech.
    long = estimate_duration("hello there friends", "a", 10.0)
    assert long < 6.0
    short = estimate_duration("hello there friends", "x" * 2000, 2.0)
    assert short >= 0.7


def test_frames_match_seconds() -> None:
    text = "a normal chat message"
    frames = duration_frames(text, REF_TEXT, REF_S)
    assert frames == round(estimate_duration(text, REF_TEXT, REF_S) * FRAMES_PER_SECOND)
    assert duration_frames("gg", REF_TEXT, REF_S) == round(MIN_SPEECH_S * FRAMES_PER_SECOND)


def test_reference_text_gets_the_stock_sentence_break() -> None:
    assert prepare_reference_text("  mother   nature.\n") == "mother nature.  "
    assert prepare_reference_text("no stop") == "no stop.  "
    assert prepare_reference_text("你好。") == "你好。"


def test_chunk_limit_leaves_room_for_long_references() -> None:
    assert chunk_limit(REF_TEXT, 3.0, 160) == 160
    assert chunk_limit(REF_TEXT, REF_S, 100) == 100
    # This slow reference (0.1 s per character) leaves 16.7 s: a bit under 160 characters.
    assert 150 <= chunk_limit(REF_TEXT, REF_S, 160) < 160
    # A 12 s reference leaves ~10 s; at this pace that is ~100 characters.
    limit = chunk_limit(REF_TEXT, 12.0, 160)
    assert 20 <= limit < 160
    rate = 12.0 / len(REF_TEXT)
    assert 12.0 + limit * rate <= MAX_TOTAL_S + 0.5


def _words(rng: random.Random, n: int) -> str:
    vocab = ["chat", "is", "wild", "today", "gg", "that", "clutch", "was", "insane", "lol"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def _five_thousand_chars() -> str:
    rng = random.Random(7)
    parts = []
    while sum(len(p) + 1 for p in parts) < 5000:
        kind = rng.random()
        if kind < 0.6:
            parts.append(_words(rng, rng.randint(3, 14)).capitalize() + rng.choice(".!?"))
        elif kind < 0.9:  # a long run-on sentence with clauses
            clauses = [_words(rng, rng.randint(4, 12)) for _ in range(rng.randint(3, 8))]
            parts.append(", ".join(clauses).capitalize() + ".")
        else:  # a key mash / URL without spaces
            parts.append("https://example.com/" + "x" * rng.randint(150, 400))
    return " ".join(parts)[:5000]


def test_chunking_a_5000_character_message() -> None:
    text = _five_thousand_chars()
    assert len(text) == 5000
    chunks = split_text(text, 160)
    assert all(0 < len(c) <= 160 for c in chunks)
    assert all(c == c.strip() for c in chunks)
    # Nothing lost or reordered.
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    assert len(chunks) >= 5000 // 160
    # Greedy packing: no two neighbours would have fitted together.
    assert all(len(a) + 1 + len(b) > 160 for a, b in itertools.pairwise(chunks))
    # Where a sentence fits, chunks end at sentence or clause boundaries, not mid-clause.
    boundary = re.compile(r"[.!?,]$")
    ending_cleanly = sum(1 for c in chunks if boundary.search(c))
    ends_of_hard_cuts = sum(1 for c in chunks if re.search(r"x{20,}", c))
    assert ending_cleanly + ends_of_hard_cuts >= len(chunks) - 1


def test_sentences_are_kept_whole_and_packed() -> None:
    text = "First one here. Second sentence is a bit longer! Third? Fourth, with a clause."
    assert split_text(text, 40) == [
        "First one here.",
        "Second sentence is a bit longer! Third?",
        "Fourth, with a clause.",
    ]
    assert split_text(text, 1000) == [text]


def test_long_sentence_is_cut_at_clauses_then_words() -> None:
    text = "one two three, four five six seven eight nine ten eleven twelve"
    assert split_text(text, 30) == [
        "one two three,",
        "four five six seven eight nine",
        "ten eleven twelve",
    ]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_cjk_sentences_split_without_spaces() -> None:
    text = "今天天气很好。我们去公园吧！好不好？"
    assert split_text(text, 8) == ["今天天气很好。", "我们去公园吧！", "好不好？"]


def test_whitespace_only_gives_nothing() -> None:
    assert split_text(" \n\t ", 50) == []
    with pytest.raises(ValueError, match="max_chars"):
        split_text("hi", 0)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=600), st.integers(min_value=1, max_value=200))
def test_chunking_never_loses_text_or_exceeds_the_limit(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(0 < len(c) <= limit for c in chunks)
    assert "".join("".join(c.split()) for c in chunks) == "".join(text.split())


LONG = (
    "alright everyone, quick update before we keep going: the giveaway winner gets picked "
    "at the end of the stream. also huge thanks for the raid, you guys are amazing."
)


def test_first_chunk_cut_at_a_pause():
    pieces = split_first_chunk(LONG, max_first_chars=40)
    assert pieces == [LONG[:17], LONG[18:]]
    assert pieces[0] == "alright everyone,"
    assert " ".join(pieces) == LONG


def test_first_chunk_falls_back_to_a_word_boundary():
    text = "this message has no punctuation at all but it goes on for quite a while longer"
    head, tail = split_first_chunk(text, max_first_chars=30)
    assert len(head) <= 30
    assert f"{head} {tail}" == text
    assert not head.endswith(" ")
    assert text.split()[: len(head.split())] == head.split()


def test_short_or_unsplittable_text_stays_whole():
    assert split_first_chunk("lol that was insane, do it again!") == [
        "lol that was insane, do it again!"
    ]
    blob = "x" * 200
    assert split_first_chunk(blob) == [blob]
    assert split_first_chunk("   ") == []
