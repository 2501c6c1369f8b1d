"""Each text filter on its own, then the chain, the name speller and the cooldown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.chat.filters import (
    BannedWordsFilterImpl,
    Cooldown,
    EmojiFilterImpl,
    EmotesFilterImpl,
    FilterChain,
    LengthFilterImpl,
    LinksFilterImpl,
    MessageIgnorer,
    RepeatsFilterImpl,
    ZalgoFilterImpl,
    speakable_name,
)
from bot.chat.settings import (
    BannedWordsFilter,
    CooldownFilter,
    EmojiFilter,
    EmotesFilter,
    FiltersConfig,
    IgnoreFilter,
    LengthFilter,
    LinksFilter,
    RepeatsFilter,
    ZalgoFilter,
)
from bot.config import parse_config
from bot.core.messages import ChatMessage, ChatUser, Platform, Role


def user(login: str = "viewer", role: Role = Role.EVERYONE, uid: str | None = None) -> ChatUser:
    return ChatUser(
        id=uid or f"id-{login}",
        login=login,
        display_name=login,
        roles=frozenset({role}),
        platform=Platform.TWITCH,
    )


def message(text: str, login: str = "viewer") -> ChatMessage:
    return ChatMessage(id=f"m-{text}", user=user(login), text=text, source="test")


def chain(**filters: Any) -> FilterChain:
    cfg = parse_config({"filters": filters}, Path.cwd())
    return FilterChain(cfg.filters, cfg.chat.max_length)


# -- links -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "see https://example.com/a?b=c now",
        "see http://x.y.example.org now",
        "see www.example.com now",
        "see twitch.tv/somebody now",
        "see discord.gg/abc123 now",
        "see EXAMPLE.COM now",
    ],
)
def test_links_are_replaced_by_a_word(text: str) -> None:
    assert LinksFilterImpl(LinksFilter(action="replace", word="link")).apply(text) == (
        "see link now"
    )


def test_links_can_be_removed_kept_or_drop_the_message() -> None:
    text = "go to https://example.com today"
    assert LinksFilterImpl(LinksFilter(action="remove")).apply(text) == "go to  today"
    assert LinksFilterImpl(LinksFilter(action="keep")).apply(text) == text
    assert LinksFilterImpl(LinksFilter(action="drop")).apply(text) is None
    # A message without links is never dropped by the links filter.
    assert LinksFilterImpl(LinksFilter(action="drop")).apply("no links here") == "no links here"


@pytest.mark.parametrize("text", ["e.g. this", "ok.so what", "3.14 is pi", "user@mail"])
def test_things_that_only_look_like_links_stay(text: str) -> None:
    assert LinksFilterImpl(LinksFilter(action="drop")).apply(text) == text


# -- emotes ------------------------------------------------------------------------------------
def test_configured_emote_words_and_pattern_are_removed() -> None:
    flt = EmotesFilterImpl(EmotesFilter(words=("Kappa", "LUL"), pattern=r"[a-z]+[A-Z]\w*"))
    assert flt.apply("Kappa that was LUL great pogU") == "that was great"
    # Emote names are case-sensitive: the word "kappa" is a word.
    assert flt.apply("kappa is a letter") == "kappa is a letter"


def test_no_emote_config_leaves_text_untouched() -> None:
    text = "Kappa   spaced   text"
    assert EmotesFilterImpl(EmotesFilter()).apply(text) == text


# -- repeats ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("soooooooo good", "sooo good"),
        ("!!!!!!!!!", "!!!"),
        ("hahahahahahaha", "hahaha"),
        ("lol lol lol lol lol", "lol lol"),
        ("LOL lol Lol lol!", "LOL lol"),
        ("go team go team go team go team", "go team go team"),
        ("1000000 viewers", "1000000 viewers"),
        ("bananas are fine", "bananas are fine"),
    ],
)
def test_runs_are_shortened(text: str, expected: str) -> None:
    assert RepeatsFilterImpl(RepeatsFilter(max_chars=3, max_words=2)).apply(text) == expected


def test_repeat_limits_can_be_switched_off() -> None:
    flt = RepeatsFilterImpl(RepeatsFilter(max_chars=0, max_words=0))
    assert flt.apply("soooooo lol lol lol lol") == "soooooo lol lol lol lol"


# -- zalgo and control characters ---------------------------------------------------------------
def test_zalgo_is_limited_and_controls_removed() -> None:
    zalgo = "Z" + "\u0301\u0302\u0303\u0304\u0305\u0306" + "a"
    assert ZalgoFilterImpl(ZalgoFilter(max_marks=2)).apply(zalgo) == "Z\u0301\u0302a"
    assert ZalgoFilterImpl(ZalgoFilter(max_marks=0)).apply(zalgo) == "Za"
    assert ZalgoFilterImpl(ZalgoFilter()).apply("a\x00b\u202ec\x07d\u200be") == "abcde"
    assert ZalgoFilterImpl(ZalgoFilter()).apply("line\nbreak\ttab") == "line break tab"


def test_real_diacritics_survive() -> None:
    assert ZalgoFilterImpl(ZalgoFilter()).apply("Việt Nam, café") == "Việt Nam, café"


# -- emoji --------------------------------------------------------------------------------------
def test_emoji_drop_keep_describe() -> None:
    text = "gg 😂😂😂 nice 👍🏽"
    assert EmojiFilterImpl(EmojiFilter(action="drop")).apply(text).split() == ["gg", "nice"]
    assert EmojiFilterImpl(EmojiFilter(action="keep")).apply(text) == text
    described = EmojiFilterImpl(EmojiFilter(action="describe")).apply(text)
    assert described is not None
    # One name per run of the same emoji; the skin tone is never read.
    assert " ".join(described.split()) == "gg face with tears of joy nice thumbs up sign"


def test_describe_is_capped_and_skips_joiners_and_flags_pairs() -> None:
    flt = EmojiFilterImpl(EmojiFilter(action="describe", max_described=2))
    out = flt.apply("🔥 🎉 😎 🚀")
    assert out is not None
    assert out.split() == ["fire", "party", "popper"]
    family = EmojiFilterImpl(EmojiFilter(action="describe", max_described=10)).apply("👨‍👩‍👧")
    assert family is not None
    assert "zero width" not in family
    assert "man" in family
    flags = EmojiFilterImpl(EmojiFilter(action="describe")).apply("🇺🇸🇫🇷")
    assert flags is not None
    assert flags.split() == ["flag"]


# -- banned words ---------------------------------------------------------------------------------
def test_banned_words_are_bleeped_as_whole_words_with_wildcards() -> None:
    flt = BannedWordsFilterImpl(BannedWordsFilter(words=("darn", "heck*"), bleep="beep"))
    assert flt.apply("Darn it, HECKING heck!") == "beep it, beep beep!"
    # Whole words only: "darning" is not "darn".
    assert flt.apply("darning socks") == "darning socks"


def test_banned_words_can_drop_the_message_and_see_through_fancy_letters() -> None:
    cfg = {"banned_words": {"words": ["darn"], "action": "drop"}}
    assert chain(**cfg).apply("well 𝐝𝐚𝐫𝐧 it").dropped_by == "banned_words"
    assert not chain(**cfg).apply("well done").dropped


# -- ignored users and prefixes --------------------------------------------------------------------
def test_other_bots_and_their_commands_are_ignored() -> None:
    ignorer = MessageIgnorer(IgnoreFilter(users=("@NightBot",), prefixes=("!", "?")))
    assert ignorer.reason(message("hi", login="nightbot")) == "ignored user"
    assert ignorer.reason(message("!discord")) == "another bot's command"
    assert ignorer.reason(message("  ?song")) == "another bot's command"
    assert ignorer.reason(message("hello!")) is None
    assert MessageIgnorer(IgnoreFilter(prefixes=())).reason(message("!x")) is None


# -- length -----------------------------------------------------------------------------------
def test_long_messages_are_cut_at_a_word_or_dropped() -> None:
    text = "word " * 100
    cut = LengthFilterImpl(LengthFilter(max_chars=50), 500).apply(text)
    assert cut is not None
    assert len(cut) <= 50
    assert cut.endswith("word")
    assert LengthFilterImpl(LengthFilter(max_chars=50, action="drop"), 500).apply(text) is None
    # Without its own limit the filter uses chat.max_length.
    assert LengthFilterImpl(LengthFilter(), 20).max_chars == 20


# -- the chain ------------------------------------------------------------------------------------
def test_the_chain_reports_which_filters_acted() -> None:
    result = chain(emoji={"action": "describe"}).apply("𝓱𝓮𝓵𝓵𝓸 https://x.com 🔥🔥 sooooo")
    assert result.text == "hello link fire sooo"
    assert result.changed_by == ("normalize", "emoji", "links", "repeats")
    assert result.dropped_by is None


def test_the_chain_drops_what_has_nothing_speakable() -> None:
    assert chain().apply("😂😂😂").dropped_by == "nothing_speakable"
    assert chain().apply("   ").dropped_by == "nothing_speakable"
    assert chain(links={"action": "drop"}).apply("https://x.com").dropped_by == "links"


def test_the_chain_bounds_work_on_huge_input() -> None:
    result = chain(length={"max_chars": 100}).apply("a" + "b c " * 200_000)
    assert 0 < len(result.text) <= 100


def test_filters_config_defaults() -> None:
    cfg = FiltersConfig()
    assert cfg.links.action == "replace"
    assert "nightbot" in cfg.ignore.users
    assert cfg.emoji.action == "drop"


def test_a_bad_emote_pattern_is_a_config_error() -> None:
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match=r"filters\.emotes\.pattern"):
        parse_config({"filters": {"emotes": {"pattern": "("}}}, Path.cwd())


# -- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("display", "login", "spoken"),
    [
        ("xX_Sniper_99", "", "xX Sniper 99"),
        ("CoolGuy", "", "Cool Guy"),
        ("user48213772", "", "user"),
        ("Mr_Beast-6000", "", "Mr Beast 6000"),
        ("小明", "", "小明"),
        ("🔥🔥", "fire_fan", "fire fan"),
        ("___", "", "someone"),
        ("12345678", "", "12345678"),
    ],
)
def test_display_names_are_made_speakable(display: str, login: str, spoken: str) -> None:
    assert speakable_name(display, login) == spoken


# -- cooldown -----------------------------------------------------------------------------------
def test_cooldown_per_user_with_exemptions() -> None:
    now = [100.0]
    cd = Cooldown(CooldownFilter(seconds=30, exempt="vip"), clock=lambda: now[0])
    viewer, other, vip = user("a"), user("b"), user("c", Role.VIP)
    assert cd.remaining(viewer) == 0
    cd.mark(viewer)
    cd.mark(vip)
    now[0] += 10
    assert cd.remaining(viewer) == pytest.approx(20)
    assert cd.remaining(other) == 0
    assert cd.remaining(vip) == 0
    assert cd.remaining(viewer, paid=True) == 0
    now[0] += 20
    assert cd.remaining(viewer) == 0


def test_cooldown_off_by_default() -> None:
    cd = Cooldown(CooldownFilter())
    cd.mark(user("a"))
    assert cd.remaining(user("a")) == 0
