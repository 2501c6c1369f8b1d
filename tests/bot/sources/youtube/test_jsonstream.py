"""The chat stream's splitter: Google's growing JSON array, cut anywhere by the network."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sources.youtube.source import JsonStream

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=4)


@settings(max_examples=500, deadline=None)
@given(
    pages=st.lists(objects, min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    ascii_only=st.booleans(),
)
def test_pages_come_out_whole_however_the_bytes_are_cut(
    pages: list[dict[str, Any]], cuts: list[int], ascii_only: bool
) -> None:
    body = "[" + ",\r\n".join(json.dumps(p, ensure_ascii=ascii_only) for p in pages) + "]"
    data = body.encode("utf-8")
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    stream = JsonStream()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(stream.feed(chunk))
    assert out == pages


def test_a_broken_object_is_reported_and_the_next_one_still_arrives() -> None:
    stream = JsonStream()
    out = stream.feed(b'[{"items": [{"id": broken}]},\r\n{"items": []}]')
    assert isinstance(out[0], ValueError)
    assert out[1] == {"items": []}


def test_an_object_larger_than_the_limit_is_dropped_and_reading_goes_on() -> None:
    stream = JsonStream(limit=100)
    out = stream.feed(b'[{"text": "' + b"x" * 200)
    assert len(out) == 1
    assert isinstance(out[0], ValueError)
    assert stream.feed(b'"}, {"ok": true}]') == [{"ok": True}]
