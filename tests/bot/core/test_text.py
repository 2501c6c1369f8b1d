from bot.core.text import cap_length, clean_for_speech, has_speakable, strip_unspeakable


def test_control_characters_are_stripped_and_whitespace_collapsed() -> None:
    assert strip_unspeakable("hel\x00lo\x07\tworld\r\n  again\u202e") == "hello world again"


def test_zero_width_and_bidi_characters_go() -> None:
    assert strip_unspeakable("a\u200bb\u2066c\u2069") == "abc"


def test_zalgo_is_reduced_but_accents_survive() -> None:
    zalgo = "h" + "\u0301\u0302\u0303\u0304\u0305\u0306" * 5 + "i"
    assert strip_unspeakable(zalgo) == "h\u0301\u0302i"
    assert strip_unspeakable("café naïve") == "café naïve"


def test_emoji_only_lines_produce_nothing() -> None:
    assert clean_for_speech("😂😂😂 🔥", 500) == ""
    assert clean_for_speech("!!! ??? ...", 500) == ""
    assert clean_for_speech("   \t  ", 500) == ""


def test_text_with_emoji_keeps_its_words() -> None:
    assert has_speakable("gg 😂")
    assert clean_for_speech("gg 😂", 500) == "gg 😂"


def test_a_5000_character_line_is_capped_at_a_word_boundary() -> None:
    text = ("spam " * 1000).strip()
    out = clean_for_speech(text, 500)
    assert len(out) <= 500
    assert out.endswith("spam")


def test_cap_without_spaces_cuts_hard() -> None:
    assert cap_length("x" * 50, 10) == "x" * 10


def test_non_latin_scripts_are_speakable() -> None:
    assert clean_for_speech("你好 世界", 500) == "你好 世界"
