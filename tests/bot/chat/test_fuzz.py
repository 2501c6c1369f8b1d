"""Property tests: no message text, command argument or user name raises out of the filters,
the command parser or the chat pipeline, and what they produce stays within its promises."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.arguments import parse_command, split_for_chat
from bot.chat.commands import COMMAND_KEYS
from bot.chat.filters import FilterChain, speakable_name
from bot.chat.pipeline import Action
from bot.config import parse_config
from bot.core.messages import ChatUser, Platform, Role
from tests.support.chat_harness import Bot, make_config, start_bot

# Text that looks like chat: every code point class, plus the things chat is full of.
CHAT_BITS = st.sampled_from(
    [
        "https://example.com/x?y=1",
        "www.site.gg",
        "twitch.tv/abc",
        "😂",
        "👍🏽",
        "👨‍👩‍👧",
        "🇺🇸",
        "Kappa",
        "\u0301" * 20,
        "\u202e",
        "\x00",
        "\ud800",
        "lol " * 5,
        "a" * 50,
        "ha" * 20,
        "@someone",
        "!voice",
        "!mute",
        "{name}",
        "{text}",
        "%s",
        "\n",
        "𝓱𝓮𝓵𝓵𝓸",
        "darn",
        "1000000",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=40), CHAT_BITS), max_size=12).map("".join)

FILTER_CONFIGS = st.fixed_dictionaries(
    {
        "links": st.fixed_dictionaries(
            {"action": st.sampled_from(["replace", "remove", "drop", "keep"])}
        ),
        "emoji": st.fixed_dictionaries(
            {
                "action": st.sampled_from(["drop", "keep", "describe"]),
                "max_described": st.integers(0, 5),
            }
        ),
        "repeats": st.fixed_dictionaries(
            {"max_chars": st.integers(0, 5), "max_words": st.integers(0, 4)}
        ),
        "zalgo": st.fixed_dictionaries({"max_marks": st.integers(0, 4)}),
        "banned_words": st.fixed_dictionaries(
            {
                "words": st.lists(st.text(min_size=1, max_size=10), max_size=4),
                "action": st.sampled_from(["bleep", "drop"]),
            }
        ),
        "emotes": st.fixed_dictionaries(
            {"words": st.lists(st.text(min_size=1, max_size=10), max_size=4)}
        ),
        "length": st.fixed_dictionaries(
            {"max_chars": st.integers(1, 600), "action": st.sampled_from(["truncate", "drop"])}
        ),
    }
)


@settings(max_examples=600, deadline=None)
@given(filters=FILTER_CONFIGS, text=TEXT)
def test_the_filter_chain_never_raises_and_keeps_its_promises(
    filters: dict[str, Any], text: str
) -> None:
    cfg = parse_config({"filters": filters}, Path.cwd())
    result = FilterChain(cfg.filters, cfg.chat.max_length).apply(text)
    if result.dropped:
        assert result.text == ""
        return
    limit = filters["length"]["max_chars"]
    assert 0 < len(result.text) <= limit
    assert result.text == result.text.strip()
    assert any(unicodedata.category(c)[0] in "LN" for c in result.text)
    for ch in result.text:
        assert unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn")
    result.text.encode("utf-8")  # speakable text is always valid UTF-8


@settings(max_examples=600, deadline=None)
@given(text=TEXT, prefix=st.text(min_size=1, max_size=3))
def test_the_command_parser_never_raises(text: str, prefix: str) -> None:
    parsed = parse_command(text, prefix)
    if parsed is not None:
        assert parsed.name
        assert parsed.name == parsed.name.casefold()
        assert all(arg.strip() == arg and arg for arg in parsed.args)


@settings(max_examples=400, deadline=None)
@given(display=st.text(max_size=40), login=st.text(max_size=40))
def test_any_name_becomes_something_speakable(display: str, login: str) -> None:
    spoken = speakable_name(display, login)
    assert spoken
    assert len(spoken) <= 40
    assert any(unicodedata.category(c)[0] in "LN" for c in spoken)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.text(max_size=80), max_size=60),
    limit=st.integers(50, 500),
)
def test_split_for_chat_never_exceeds_the_limit(items: list[str], limit: int) -> None:
    lines = split_for_chat("voices: ", items, limit)
    assert lines
    assert all(len(line) <= limit for line in lines)


# -- the whole pipeline ------------------------------------------------------------------------
@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    b = await start_bot(make_config(tmp_path, queue={"max_size": 5}))
    yield b
    await b.close()


COMMAND_WORDS = st.sampled_from([*COMMAND_KEYS, "tts", "unknown", "VOICE", "Mute"])
ARGS = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(["@alice", "@", "10m", "perm", "-5", "+500", "nan", "1e308", "alice"]),
    ),
    max_size=4,
)
USERS = st.builds(
    ChatUser,
    id=st.text(max_size=10),
    login=st.text(max_size=25),
    display_name=st.text(max_size=25),
    roles=st.frozensets(st.sampled_from(list(Role)), max_size=2),
    platform=st.sampled_from(list(Platform)),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    user=USERS,
    word=COMMAND_WORDS,
    args=ARGS,
    text=TEXT,
    as_command=st.booleans(),
    bits=st.sampled_from([0, 0, 1, 100]),
    reward=st.sampled_from([None, None, "Read it", ""]),
)
async def test_no_message_or_command_raises_out_of_the_pipeline(
    bot: Bot,
    user: ChatUser,
    word: str,
    args: list[str],
    text: str,
    as_command: bool,
    bits: int,
    reward: str | None,
) -> None:
    line = f"!{word} {' '.join(args)}" if as_command else text
    decision, replies = await bot.send(line, user, bits=bits, reward=reward)
    assert decision.action in set(Action)
    assert all(len(r) <= 500 for r in replies)
    if decision.item is not None:
        assert decision.item.text
        # A command line is never spoken; only !tts hands on the text after it.
        assert not as_command or word == "tts"
        assert f"!{word}" not in decision.item.text or not as_command
    assert len(bot.app.queue) <= 5


# -- voice parts, pronunciation, raid mode and new viewers (issue 18) ---------------------------
PART_WORDS = st.lists(
    st.one_of(
        st.sampled_from(["alice:", "Narrator:", "bob:", "12:30", "https://x.io", "(alice)", ":"]),
        st.text(max_size=8),
    ),
    max_size=20,
).map(" ".join)
VOICE_NAMES = {"alice": "alice", "narrator": "Narrator"}


@settings(max_examples=500, deadline=None)
@given(text=PART_WORDS, max_parts=st.integers(2, 6))
def test_voice_parts_lose_nothing_but_the_markers(text: str, max_parts: int) -> None:
    from bot.chat.parts import split_parts

    parts = split_parts(text, "colon", lambda n: VOICE_NAMES.get(n.casefold()), max_parts)
    assert parts
    assert len([p for p in parts if p.voice is not None]) <= max_parts
    kept = " ".join(p.text for p in parts).split()
    words = text.split()
    # What was kept is the message minus some markers that name a voice, in order.
    removed = list(words)
    for word in kept:
        assert word in removed
        del removed[removed.index(word)]
    assert all(w.endswith(":") and w[:-1].casefold() in VOICE_NAMES for w in removed)
    for syntax in ("colon", "parens"):
        for part in split_parts(text, syntax, lambda n: VOICE_NAMES.get(n.casefold()), max_parts):
            assert part.text == part.text.strip()


@pytest.fixture
async def featured(tmp_path: Path) -> AsyncIterator[Bot]:
    cfg = make_config(
        tmp_path,
        queue={"max_size": 5},
        tts={"parts": {"enabled": True}, "new_viewers": {"mode": "random"}, "max_speaking_s": 1},
        raid={
            "enabled": True,
            "steps": [{"queue": 2, "say_names": False}, {"queue": 4, "paid_only": True}],
        },
        pronunciation={
            "words": {"gg": "good game", "<3": "love"},
            "patterns": [{"match": "x+d+", "say": "lol"}],
        },
        commands={"say": {"enabled": True}, "unsay": {"enabled": True}},
    )
    b = await start_bot(cfg)
    await b.app.voices.names()
    yield b
    await b.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    user=USERS,
    text=st.one_of(TEXT, PART_WORDS),
    command=st.sampled_from(["", "", "!say ", "!unsay ", "!voice "]),
    bits=st.sampled_from([0, 0, 100]),
)
async def test_with_every_chat_feature_on_no_message_raises(
    featured: Bot, user: ChatUser, text: str, command: str, bits: int
) -> None:
    decision, replies = await featured.send(command + text, user, bits=bits)
    assert decision.action in set(Action)
    assert all(len(r) <= 500 for r in replies)
    item = decision.item
    if item is not None:
        assert item.text
        assert all(part.text and part.text == part.text.strip() for part in item.parts)
        assert len(item.parts) <= 5 + 2  # the voice parts, and "NAME says" around them
    assert len(featured.app.queue) <= 5
