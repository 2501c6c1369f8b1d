"""Fuzzing at 10,000 cases each: message text, command arguments and user names raise nothing
out of the bot (issue 7).

tests/bot/chat/test_fuzz.py runs the same kinds of input at a few hundred cases with varied filter
configs; here each kind gets 10,000 cases against the code chat actually reaches:

* message text: the command parser, the default and a strict filter chain, the baseline
  speech cleaner and the "NAME says" template (pure functions, so cases are cheap);
* command arguments: every command, with hostile arguments, through the real
  CommandProcessor of a running App (SQLite on disk, engine thread, speaker), as the
  broadcaster so no argument is stopped by a permission check first;
* user names: ids, logins and display names through the name speaker, the ``@user`` parser,
  the ignore list, the HTTP ingest's name cleaning and the template.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.arguments import (
    CommandError,
    format_duration,
    parse_command,
    parse_duration,
    parse_login,
)
from bot.chat.commands import COMMAND_KEYS, CommandStatus
from bot.chat.filters import FilterChain, MessageIgnorer, speakable_name
from bot.chat.pipeline import Action
from bot.config import parse_config
from bot.core.messages import ChatMessage, ChatUser, Platform, Role
from bot.core.text import clean_for_speech
from bot.web.server import clean_name, login_from_name
from engine.config import VOICE_NAME_RE
from tests.bot.chat.test_fuzz import CHAT_BITS, TEXT
from tests.support.chat_harness import STREAMER, Bot, make_config, start_bot

pytestmark = pytest.mark.slow

TEN_THOUSAND = settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_CFG = parse_config({}, Path.cwd())
DEFAULT_CHAIN = FilterChain(_CFG.filters, _CFG.chat.max_length)
STRICT_CFG = parse_config(
    {
        "filters": {
            "links": {"action": "drop"},
            "emoji": {"action": "describe", "max_described": 2},
            "banned_words": {"words": ["darn", "heck*"], "action": "bleep"},
            "emotes": {"words": ["Kappa"], "pattern": "^[A-Z][a-z]+[A-Z][A-Za-z]+$"},
            "repeats": {"max_chars": 2, "max_words": 1},
            "zalgo": {"max_marks": 0},
            "length": {"max_chars": 80, "action": "truncate"},
        }
    },
    Path.cwd(),
)
STRICT_CHAIN = FilterChain(STRICT_CFG.filters, STRICT_CFG.chat.max_length)
NEVER_SPOKEN = ("Cc", "Cs", "Co", "Cn")


def _speakable(text: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in text)


# -- message text ------------------------------------------------------------------------------
@TEN_THOUSAND
@given(text=TEXT)
def test_any_message_text_goes_through_parser_filters_and_template(text: str) -> None:
    parsed = parse_command(text, "!")
    if parsed is not None:
        assert parsed.name == parsed.name.casefold()
        assert parsed.name
    for chain, limit in ((DEFAULT_CHAIN, 500), (STRICT_CHAIN, 80)):
        result = chain.apply(text)
        hypothesis.event("dropped" if result.dropped else "spoken")
        if result.dropped:
            assert result.text == ""
            continue
        assert 0 < len(result.text) <= limit
        assert _speakable(result.text)
        assert not any(unicodedata.category(c) in NEVER_SPOKEN for c in result.text)
        said = _CFG.tts.template.format(name="bob", text=result.text)
        assert said == f"bob says {result.text}"  # braces in chat are never a template
    cleaned = clean_for_speech(text, 500)
    assert len(cleaned) <= 500
    assert not cleaned or _speakable(cleaned)
    cleaned.encode("utf-8")  # no lone surrogates reach an engine


# -- command arguments -------------------------------------------------------------------------
ARG = st.one_of(
    st.text(max_size=24),
    st.from_regex(r"[@+\-]?[0-9.]{0,12}[a-z%]{0,8}", fullmatch=True),
    st.sampled_from(
        [
            "@",
            "@alice",
            "@ALICE,",
            "alice",
            "ALICE",
            "reset",
            "default",
            "../../etc/passwd",
            "/etc/passwd",
            "a\x00b",
            "x" * 500,
            "10m",
            "1h30m",
            "perm",
            "0",
            "-5",
            "+500",
            "nan",
            "inf",
            "-inf",
            "1e308",
            "99999999999d",
            "50%",
            "1_000",
            "０",
            "٣",
        ]
    ),
)
COMMAND_LINES = st.tuples(
    st.sampled_from([*COMMAND_KEYS, "VOICE", "Mute", "unknown", "tts"]),
    st.lists(ARG, max_size=4),
    st.sampled_from([" ", "  ", "\t", " \u3000 "]),
)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    b = await start_bot(
        make_config(tmp_path, queue={"max_size": 5}, commands={"voices": {"cooldown_s": 0}})
    )
    yield b
    await b.close()


@TEN_THOUSAND
@given(line=COMMAND_LINES)
async def test_any_command_argument_goes_through_the_real_command_processor(
    bot: Bot, line: tuple[str, list[str], str]
) -> None:
    word, args, gap = line
    text = f"!{word}{gap}{gap.join(args)}"
    decision, replies = await bot.send(text, STREAMER)
    hypothesis.event(f"{word.casefold()}: {decision.command.status if decision.command else '-'}")
    assert decision.action in (Action.COMMAND, Action.QUEUED, Action.DROPPED)
    assert decision.command is not None
    assert decision.command.status in (
        CommandStatus.OK,
        CommandStatus.INVALID,
        CommandStatus.UNKNOWN,
        CommandStatus.COOLDOWN,
    )
    assert all(0 < len(r) <= 500 for r in replies)
    if decision.command.status is CommandStatus.INVALID:
        assert len(replies) == 1  # one clear answer
    if decision.item is not None:  # only !tts is spoken, and without the command word
        assert word.casefold() == "tts"
        spoken = decision.item.text.casefold()
        # What is spoken comes from the arguments (which may start with '!' themselves): the
        # command word never leaks into it.
        assert not spoken.startswith(f"!{word.casefold()}") or (
            f"!{word.casefold()}" in " ".join(args).casefold()
        )
    assert len(bot.app.queue) <= 5
    for voice in {r.voice for r in bot.app.store._records.values() if r.voice}:
        assert VOICE_NAME_RE.match(voice)  # only real voice names are ever stored


@TEN_THOUSAND
@given(arg=ARG)
def test_any_argument_parses_or_raises_a_command_error_only(arg: str) -> None:
    problem = ""
    try:
        seconds = parse_duration(arg)
    except CommandError as exc:
        problem = str(exc)
    if problem:
        assert "30s" in problem or "365d" in problem
    else:
        assert seconds is None or 0 < seconds <= 365 * 86400
        if seconds is not None:
            assert format_duration(seconds)
    problem = ""
    try:
        login = parse_login(arg)
    except CommandError as exc:
        problem = str(exc)
    if problem:
        assert "user name" in problem
    else:
        assert re.fullmatch(r"[a-z0-9_][a-z0-9_.\-]{0,39}", login)


# -- user names --------------------------------------------------------------------------------
NAME = st.one_of(st.text(max_size=40), CHAT_BITS, st.from_regex(r"[A-Za-z0-9_]{1,25}"))
USERS = st.builds(
    ChatUser,
    id=st.one_of(st.text(max_size=12), st.uuids().map(str)),
    login=NAME,
    display_name=NAME,
    roles=st.frozensets(st.sampled_from(list(Role)), max_size=3),
    platform=st.sampled_from(list(Platform)),
)
IGNORER = MessageIgnorer(_CFG.filters.ignore)


@TEN_THOUSAND
@given(user=USERS, text=st.sampled_from(["hello", "!voice", "!!!", "hi @bob"]))
def test_any_user_name_is_spoken_safely_and_never_becomes_a_path(user: ChatUser, text: str) -> None:
    assert user.role in Role
    assert user.at_least(Role.EVERYONE)
    spoken = speakable_name(user.display_name, user.login)
    assert spoken
    assert len(spoken) <= 40
    assert _speakable(spoken)
    said = _CFG.tts.template.format(name=spoken, text=text)
    assert said.endswith(f" says {text}")
    IGNORER.ignores_user(user)
    IGNORER.reason(ChatMessage(id="m", user=user, text=text, source="fuzz"))
    for raw in (user.login, user.display_name, f"@{user.login}"):
        try:
            login = parse_login(raw)
        except CommandError:
            continue
        assert re.fullmatch(r"[a-z0-9_][a-z0-9_.\-]{0,39}", login)  # no / or \ : never a path
    shown = clean_name(user.display_name)
    assert len(shown) <= 64
    assert not any(ord(c) < 32 for c in shown)
    ingest_login = login_from_name(shown)
    assert re.fullmatch(r"[a-z0-9_]{1,40}", ingest_login)
