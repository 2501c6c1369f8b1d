"""Fuzzing (2,000 pages) the way a YouTube chat response becomes the bot's events.

The seam is the one the live source uses for every page, streamed or polled:
``YouTubeSource._page``. Pages are hostile in shape (items that are not objects, missing or
mistyped ids, snippets, details, authors, amounts as text or negative) and in text (any
Unicode). Whatever arrives, no exception may escape, the resume point only ever moves to a
token YouTube sent, and everything delivered keeps the bot's promises: YouTube identities,
text within the cap, paid labels only on Super Chats and Stickers.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.messages import ChannelEvent, ChatMessage, MessageDeleted, Platform, UserPurged
from bot.sources.youtube.auth import YouTubeTokenStore
from bot.sources.youtube.settings import YouTubeConfig
from bot.sources.youtube.source import MAX_TEXT, YouTubeSource, _Chat
from tests.bot.sources.youtube.harness import EventSink

pytestmark = pytest.mark.slow

KINDS = [
    "textMessageEvent",
    "superChatEvent",
    "superStickerEvent",
    "newSponsorEvent",
    "memberMilestoneChatEvent",
    "membershipGiftingEvent",
    "giftMembershipReceivedEvent",
    "messageDeletedEvent",
    "messageRetractedEvent",
    "userBannedEvent",
    "chatEndedEvent",
    "pollEvent",
]
DETAILS = {
    "textMessageEvent": "textMessageDetails",
    "superChatEvent": "superChatDetails",
    "superStickerEvent": "superStickerDetails",
    "newSponsorEvent": "newSponsorDetails",
    "memberMilestoneChatEvent": "memberMilestoneChatDetails",
    "membershipGiftingEvent": "membershipGiftingDetails",
    "messageDeletedEvent": "messageDeletedDetails",
    "messageRetractedEvent": "messageRetractedDetails",
    "userBannedEvent": "userBannedDetails",
}

scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=30), st.floats()
)
anything = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
words = st.text(max_size=300)


def mostly(good: Any, bad: Any = scalar) -> Any:
    """``good`` four times in five, ``bad`` otherwise (so most items get far enough)."""
    return st.integers(0, 4).flatmap(lambda n: bad if n == 0 else good)


@st.composite
def details(draw: Any, kind: str) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(anything)
    fields = {
        "messageText": mostly(words),
        "userComment": mostly(words),
        "amountMicros": mostly(st.integers(-10, 10**12).map(str)),
        "currency": mostly(st.sampled_from(["USD", "JPY", "EUR"])),
        "amountDisplayString": mostly(words),
        "memberLevelName": mostly(words),
        "memberMonth": mostly(st.integers(-5, 10**7)),
        "giftMembershipsCount": mostly(st.integers(-5, 10**7)),
        "isUpgrade": mostly(st.booleans()),
        "deletedMessageId": mostly(st.text(min_size=1, max_size=20)),
        "retractedMessageId": mostly(st.text(min_size=1, max_size=20)),
        "superStickerMetadata": mostly(st.fixed_dictionaries({"altText": words}), anything),
        "bannedUserDetails": mostly(
            st.fixed_dictionaries(
                {"channelId": mostly(st.text(min_size=1, max_size=24)), "displayName": words}
            ),
            anything,
        ),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=3, max_size=8, unique=True))
    return {name: draw(fields[name]) for name in chosen}


@st.composite
def items(draw: Any) -> Any:
    if draw(st.integers(0, 14)) == 0:
        return draw(anything)
    kind = draw(mostly(st.sampled_from(KINDS)))
    snippet: dict[str, Any] = {"type": kind}
    if isinstance(kind, str) and kind in DETAILS:
        snippet[DETAILS[kind]] = draw(details(kind))
    snippet["displayMessage"] = draw(mostly(words))
    if draw(st.booleans()):
        snippet["publishedAt"] = draw(
            st.one_of(
                st.datetimes(timezones=st.just(datetime.UTC)).map(lambda d: d.isoformat()),
                scalar,
            )
        )
    author = draw(
        mostly(
            st.fixed_dictionaries(
                {
                    "channelId": mostly(st.text(min_size=1, max_size=24)),
                    "displayName": mostly(words),
                    "isChatOwner": mostly(st.booleans()),
                    "isChatModerator": mostly(st.booleans()),
                    "isChatSponsor": mostly(st.booleans()),
                    "isVerified": mostly(st.booleans()),
                }
            ),
            anything,
        )
    )
    item: dict[str, Any] = {"snippet": snippet, "authorDetails": author}
    item["id"] = draw(mostly(st.text(min_size=1, max_size=20)))
    if draw(st.integers(0, 9)) == 0:
        item["snippet"] = draw(anything)
    return item


pages = mostly(
    st.fixed_dictionaries(
        {
            "items": mostly(st.lists(items(), max_size=6), anything),
            "nextPageToken": mostly(st.text(max_size=10)),
        }
    ),
    anything,
)


@pytest.fixture(scope="module")
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(page=pages)
def test_any_page_is_delivered_within_the_promises_or_skipped(
    page: Any, loop: Any, tmp_path: Path
) -> None:
    source = YouTubeSource(YouTubeConfig(), YouTubeTokenStore(tmp_path / "t.json"))

    async def run() -> tuple[EventSink, _Chat]:
        sink = EventSink()
        source._sink = sink
        source._wanted = sink.wanted_events()
        chat = _Chat("chat", "title", datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        await source._page(chat, page)
        return sink, chat

    sink, chat = loop.run_until_complete(run())
    token = page.get("nextPageToken") if isinstance(page, dict) else None
    assert chat.page_token == (token if isinstance(token, str) and token else None)
    for event in sink.events:
        if isinstance(event, ChatMessage):
            assert event.user.platform is Platform.YOUTUBE
            assert isinstance(event.user.id, str)
            assert event.user.id
            assert isinstance(event.text, str)
            assert 0 < len(event.text) <= MAX_TEXT + 100
            assert event.reward is None or event.reward.startswith("Super ")
        elif isinstance(event, ChannelEvent):
            assert event.platform is Platform.YOUTUBE
            assert event.user is not None
            assert event.count >= 0
            assert event.months >= 0
        else:
            assert isinstance(event, MessageDeleted | UserPurged)
            if isinstance(event, MessageDeleted):
                assert isinstance(event.message_id, str)
                assert event.message_id
            else:
                assert isinstance(event.user_id, str)
