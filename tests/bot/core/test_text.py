import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# -- terminal escape sequences (issue 12, item 13) ---------------------------------------------

ESCAPES = [
    "\x1b[31m",  # colour
    "\x1b[0m",
    "\x1b[38;5;196m",  # 256 colours
    "\x1b[2J\x1b[H",  # clear screen, cursor home
    "\x1b[?25l",  # private mode
    "\x1b]0;window title\x07",  # OSC with BEL
    "\x1b]8;;https://example.com\x1b\\",  # hyperlink with ST
    "\x1bc",  # reset
    "\x1b(B",  # charset (nF)
    "\x9b1;31m",  # 8-bit CSI
    "\x9d2;title\x9c",  # 8-bit OSC
    "\x1bP+q544e\x1b\\",  # DCS
]


@pytest.mark.parametrize("seq", ESCAPES)
def test_escape_sequences_go_whole_with_their_parameters(seq: str) -> None:
    assert clean_for_speech(f"red {seq}alert{seq} now", 500) == "red alert now"
    assert strip_unspeakable(f"café {seq}noir") == "café noir"


def test_a_sequence_cut_off_at_the_end_leaves_nothing_behind() -> None:
    assert clean_for_speech("hello \x1b[31", 500) == "hello"
    assert clean_for_speech("hello \x1b]0;never closed", 500) == "hello"


def test_brackets_typed_as_text_stay() -> None:
    assert clean_for_speech("press [31m] to win", 500) == "press [31m] to win"


_SAFE = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(
    before=_SAFE,
    after=_SAFE,
    params=st.text("0123456789;:<=>?", max_size=12),
    final=st.sampled_from([chr(c) for c in range(0x40, 0x7F)]),
)
def test_any_csi_sequence_disappears_without_touching_its_neighbours(
    before: str, after: str, params: str, final: str
) -> None:
    with_seq = f"{before} \x1b[{params}{final} {after}"
    assert strip_unspeakable(with_seq) == strip_unspeakable(f"{before}  {after}")
    assert "\x1b" not in strip_unspeakable(with_seq)
