"""The pronunciation dictionary (``pronunciation``, ``!say``/``!unsay``, issue 18.6).

Through the real App and the real store on disk: entries from the config and from moderators
in chat change what is synthesised (after the filters), never what is shown or recorded, and
what moderators teach is saved and still applies after a restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chat.pronunciation import Pronouncer
from bot.chat.settings import PronunciationConfig, PronunciationPattern
from bot.config import Config, ConfigError, parse_config
from tests.support.chat_harness import MOD, VIEWER, Bot, make_config, start_bot

SAY_ON = {"say": {"enabled": True}, "unsay": {"enabled": True}}
QUIET = {"say_names": False}


def pronouncer(words: dict[str, str], *patterns: tuple[str, str]) -> Pronouncer:
    return Pronouncer(
        PronunciationConfig(
            words=words, patterns=tuple(PronunciationPattern(match=m, say=s) for m, s in patterns)
        )
    )


def test_words_match_whole_words_in_any_case_and_patterns_follow() -> None:
    p = pronouncer({"GG": "good game", "gg!": "good game!", "<3": "love"})
    # The longer entry wins where both match; "eggs" holds "gg" but not as a word.
    assert p.apply("gg all, GG! eggs <3 gg!") == "good game all, good game! eggs love good game!"
    p = pronouncer({}, (r"\bx+d+\b", "laughing"), (r"(\w)\1{3,}", "$1"))
    assert p.apply("xDDD ok xxd") == "laughing ok laughing"
    assert p.apply("zzzz") == "$1"  # a spoken form is plain text, no group references
    assert not pronouncer({}).active


def test_saved_entries_override_the_config() -> None:
    p = pronouncer({"gg": "good game"})
    p.use_saved({"GG": "gee gee", "pog": "pogue"})
    assert p.apply("gg pog") == "gee gee pogue"
    p.use_saved({})
    assert p.apply("gg pog") == "good game pog"


async def start(cfg: Config) -> Bot:
    bot = await start_bot(cfg)
    await bot.app.chat.settled()  # the saved dictionary is read in the background
    return bot


async def test_config_entries_change_what_is_spoken_not_what_is_shown(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        pronunciation={
            "words": {"GG": "good game", "link": "a link"},
            "patterns": [{"match": r"\bx+d+\b", "say": "laughing"}],
        },
    )
    bot = await start(cfg)
    try:
        decision, _ = await bot.send("GG xDDD see https://example.com")
        assert decision.item is not None
        # The links filter ran first ("link"), then the dictionary ("a link").
        assert decision.item.text == "viewer says GG xDDD see link"
        await bot.idle()
        assert bot.engine.calls == [("viewer says good game laughing see a link", "default")]
        history = await bot.store.history()
        assert history[0].text == "viewer says GG xDDD see link"
    finally:
        await bot.close()


async def test_moderators_teach_and_forget_words_and_they_are_saved(tmp_path: Path) -> None:
    bot = await start(make_config(tmp_path, commands=SAY_ON, tts=QUIET))
    try:
        _, replies = await bot.send("!say PogChamp as pog champ", MOD)
        assert replies == ['PogChamp is now said "pog champ"']
        _, replies = await bot.send("!say PogChamp as pog", VIEWER)
        assert replies == []  # not a moderator: nothing changes
        await bot.send("PogChamp that was close")
        await bot.idle()
        assert bot.engine.calls[-1] == ("pog champ that was close", "default")
        assert await bot.store.pronunciations() == {"pogchamp": "pog champ"}
    finally:
        await bot.close()
    bot = await start(make_config(tmp_path, commands=SAY_ON, tts=QUIET))
    try:
        await bot.send("pogchamp again")
        await bot.idle()
        assert bot.engine.calls == [("pog champ again", "default")]
        _, replies = await bot.send("!unsay POGCHAMP", MOD)
        assert replies == ["POGCHAMP is said as written again"]
        _, replies = await bot.send("!unsay POGCHAMP", MOD)
        assert replies == ["POGCHAMP had no saved pronunciation"]
        await bot.send("PogChamp as written")
        await bot.idle()
        assert bot.engine.calls[-1] == ("PogChamp as written", "default")
        assert await bot.store.pronunciations() == {}
    finally:
        await bot.close()


async def test_a_chat_entry_wins_over_the_config(tmp_path: Path) -> None:
    bot = await start(
        make_config(
            tmp_path, commands=SAY_ON, tts=QUIET, pronunciation={"words": {"gg": "good game"}}
        )
    )
    try:
        await bot.send("!say gg as gee gee", MOD)
        await bot.send("gg")
        await bot.idle()
        assert bot.engine.calls == [("gee gee", "default")]
        await bot.send("!unsay gg", MOD)
        await bot.send("gg", VIEWER, mid="second")
        await bot.idle()
        assert bot.engine.calls[-1] == ("good game", "default")
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("!say", "usage: !say WORD as SPOKEN"),
        ("!say GG as", "say what it should sound like: WORD as SPOKEN"),
        ("!say " + "w" * 41 + " as x", "the word is 1-40 characters without spaces"),
        ("!say GG as " + "long " * 50, "the spoken form is at most 200 characters"),
        ("!unsay", "usage: !unsay WORD"),
    ],
)
async def test_bad_chat_input_gets_a_reply_and_changes_nothing(
    tmp_path: Path, line: str, reply: str
) -> None:
    bot = await start(make_config(tmp_path, commands=SAY_ON))
    try:
        _, replies = await bot.send(line, MOD)
        assert replies == [reply]
        assert await bot.store.pronunciations() == {}
    finally:
        await bot.close()


async def test_say_is_off_by_default(tmp_path: Path) -> None:
    bot = await start(make_config(tmp_path))
    try:
        _, replies = await bot.send("!say GG as good game", MOD)
        assert replies == []
        assert await bot.store.pronunciations() == {}
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"patterns": [{"match": "(", "say": "x"}]},
            ["pronunciation.patterns[0].match", "not a valid regular expression"],
        ),
        (
            {"patterns": [{"match": "a*", "say": "x"}]},
            ["pronunciation.patterns[0].match", "matches empty text"],
        ),
        ({"patterns": [{"match": "a"}]}, ["pronunciation.patterns[0].say"]),
        ({"words": {"two words": "x"}}, ["pronunciation.words", "is not a word"]),
        ({"words": {"GG": "x", "gg": "y"}}, ["pronunciation.words", "'GG' and 'gg' are the same"]),
        ({"words": {"gg": ""}}, ["pronunciation.words", "the spoken form must be text"]),
        ({"words": {"gg": "x" * 201}}, ["pronunciation.words", "over 200 characters"]),
        ({"words": ["gg"]}, ["pronunciation.words"]),
        ({"word": {"gg": "x"}}, ["pronunciation.word", "unknown key"]),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, section: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"pronunciation": section}, tmp_path)
    for text in expected:
        assert text in str(info.value)
