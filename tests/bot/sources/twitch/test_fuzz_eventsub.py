"""Fuzzing (10,000 cases) the way an EventSub ``channel.chat.message`` becomes a ChatMessage.

The seam is the one the live bot uses: twitchio's own ``create_event_instance`` builds its
ChatMessage model from the notification (exactly as its websocket reader does), and the Twitch
source's ``to_chat_message`` normalizes it; the result then goes through the synchronous part
of the chat pipeline (ignore rules, command parser, text filters, speakable name). Every field
of the payload is hostile: ids, logins and names of any text, fragments of every type with any
text, badges, cheers of any size or sign, rewards, replies and shared-chat sources.

What twitchio itself refuses (a KeyError in its model) never reaches the bot: its reader logs
and skips it (see tests/bot/sources/twitch/test_source.py's malformed-payload test).
Everything twitchio accepts must go through the bot without an exception and within its promises.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twitchio.models.eventsub_ import create_event_instance

from bot.chat.commands import parse_command
from bot.chat.filters import FilterChain, MessageIgnorer, speakable_name
from bot.config import parse_config
from bot.core.lru import LRU
from bot.core.messages import ChatMessage, Role
from bot.sources.twitch.auth import StoredToken, TokenStore
from bot.sources.twitch.settings import TwitchConfig
from bot.sources.twitch.source import MAX_TEXT, TwitchSource, _Session

pytestmark = pytest.mark.slow

BROADCASTER = "1001"
BOT = "1002"
REWARD_ID = "0f2c8e55-9a1d-4b5e-8c1e-2f9f6d3b7a10"
MIN_BITS = 100

SPECIAL_TEXT = [
    "",
    " ",
    "Kappa",
    "Cheer100",
    "@streamer",
    "../../etc/passwd",
    "\x00",
    "\ud800",
    "\u202e",
    "😂" * 5,
    "a" * 600,
    "!voice",
    "!mute @x",
    "{name}",
    "0",
    "-1",
    BROADCASTER,
    BOT,
    REWARD_ID,
    REWARD_ID.upper(),
]
SPECIAL_BITS = [0, 1, 99, 100, 101, 10**12, -100, -(2**63), 2**63]
FRAGMENT_TYPES = ["text", "text", "emote", "cheermote", "mention", "gif", "odd"]
BADGE_IDS = ["broadcaster", "moderator", "lead_moderator", "vip", "subscriber", "founder", "x"]

# Hypothesis spends most of its time per strategy combinator, so a payload is drawn as a few
# flat tuples (an index picks a hostile special value about half the time, else the drawn
# text) instead of nested one_of()s: five times faster, the same space of payloads.
TEXT = st.tuples(st.integers(0, 2 * len(SPECIAL_TEXT)), st.text(max_size=20))
FRAGMENTS = st.lists(
    st.tuples(st.integers(0, len(FRAGMENT_TYPES) - 1), TEXT, TEXT, st.integers(-(2**40), 2**40)),
    min_size=1,
    max_size=5,
)
BADGES = st.lists(st.tuples(st.integers(0, len(BADGE_IDS) - 1), TEXT), max_size=3)
FIELDS = st.tuples(
    TEXT,  # chatter id
    TEXT,  # login
    TEXT,  # display name
    TEXT,  # message id
    TEXT,  # message text
    st.integers(0, 3),  # which optional parts: reply, shared chat, reward, cheer
    st.integers(0, 15),
    st.integers(-(2**40), 2**40),  # bits
    st.integers(0, len(SPECIAL_BITS)),
)


def _text(drawn: tuple[int, str]) -> str:
    index, text = drawn
    return SPECIAL_TEXT[index] if index < len(SPECIAL_TEXT) else text


def _fragment(kind: int, first: tuple[int, str], second: tuple[int, str], bits: int) -> Any:
    name = FRAGMENT_TYPES[kind]
    fragment: dict[str, Any] = {
        "type": name,
        "text": _text(first),
        "cheermote": None,
        "emote": None,
        "mention": None,
    }
    other = _text(second)
    if name == "emote":
        fragment["emote"] = {"id": other, "emote_set_id": other, "owner_id": None, "format": []}
    elif name == "cheermote":
        fragment["cheermote"] = {"prefix": other, "bits": bits, "tier": 1}
    elif name == "mention":
        fragment["mention"] = {"user_id": other, "user_login": other, "user_name": other}
    elif name == "gif":
        fragment["gif"] = {"gif_id": other, "url": "https://example.invalid/x.gif"}
    return fragment


def _reply(parent: str, text: str) -> dict[str, Any]:
    return {
        "parent_message_id": parent,
        "parent_message_body": text,
        "parent_user_id": parent,
        "parent_user_name": text,
        "parent_user_login": text,
        "thread_message_id": parent,
        "thread_user_id": parent,
        "thread_user_name": text,
        "thread_user_login": text,
    }


def _event(fields: Any, fragments: Any, badges: Any) -> dict[str, Any]:
    chatter, login, name, message_id, text, nulls, parts, bits, bits_index = fields
    bits = SPECIAL_BITS[bits_index] if bits_index < len(SPECIAL_BITS) else bits
    shared = _text(name) if parts % 8 == 2 else None  # a shared chat: one in eight
    return {
        "broadcaster_user_id": BROADCASTER,
        "broadcaster_user_login": "streamer",
        "broadcaster_user_name": "Streamer",
        "chatter_user_id": _text(chatter),
        "chatter_user_login": None if nulls & 1 else _text(login),
        "chatter_user_name": None if nulls & 2 else _text(name),
        "message_id": _text(message_id),
        "message": {
            "text": _text(text),
            "fragments": [_fragment(*f) for f in fragments],
        },
        "color": "#1E90FF" if parts & 8 else "",
        "badges": [{"set_id": BADGE_IDS[i], "id": _text(t), "info": ""} for i, t in badges],
        "message_type": "text",
        "cheer": {"bits": bits} if parts & 4 else None,
        "reply": _reply(_text(message_id), _text(text)) if parts & 1 else None,
        "channel_points_custom_reward_id": _text(login) if nulls & 1 else None,
        "channel_points_animation_id": None,
        "source_broadcaster_user_id": shared,
        "source_broadcaster_user_login": None if shared is None else "other",
        "source_broadcaster_user_name": None if shared is None else "Other",
        "source_message_id": None,
        "source_badges": None,
        "is_source_only": None,
    }


CHAT_EVENTS = st.builds(_event, FIELDS, FRAGMENTS, BADGES)


class Seam:
    """One Twitch source (never connected) and the pipeline's synchronous parts."""

    def __init__(self, tmp_path: Path) -> None:
        cfg = parse_config({"tts": {"say_names": True}}, tmp_path)
        self.source = TwitchSource(
            TwitchConfig(
                channel="streamer",
                client_id="fuzz",
                rewards=("Say it", REWARD_ID),
                min_bits=MIN_BITS,
            ),
            TokenStore(tmp_path / "tokens.json"),
            dedupe_size=64,
        )
        token = StoredToken(
            client_id="fuzz",
            user_id=BOT,
            login="ishowbot",
            access_token="a",
            refresh_token="r",
            scopes=("user:read:chat",),
        )
        self.source._token = token  # what run() loads from the token file
        self.session = _Session(self.source, token)
        self.session.broadcaster_id = BROADCASTER  # what start() learns from Helix
        self.filters = FilterChain(cfg.filters, cfg.chat.max_length)
        self.ignorer = MessageIgnorer(cfg.filters.ignore)
        self.loop = asyncio.new_event_loop()

    def convert(self, event: dict[str, Any]) -> ChatMessage | None:
        notification = {
            "metadata": {
                "message_id": "n1",
                "message_type": "notification",
                "message_timestamp": "2024-01-01T00:00:00.000000Z",
                "subscription_type": "channel.chat.message",
                "subscription_version": "1",
            },
            "payload": {
                "subscription": {"id": "s1", "type": "channel.chat.message", "version": "1"},
                "event": event,
            },
        }
        try:
            model = create_event_instance("channel.chat.message", notification, http=None)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # twitchio refuses it in its reader; the bot never sees it
        return self.loop.run_until_complete(self.source.to_chat_message(self.session, model))


@pytest.fixture(scope="module")
def seam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seam]:
    s = Seam(tmp_path_factory.mktemp("eventsub"))
    yield s
    s.loop.close()


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(event=CHAT_EVENTS)
def test_any_eventsub_chat_payload_converts_without_raising_and_keeps_its_promises(
    seam: Seam, event: dict[str, Any]
) -> None:
    seam.source._seen = LRU(64)  # ids repeat across examples; each is a new message here
    message = seam.convert(event)
    hypothesis.event("delivered to the bot" if message is not None else "dropped by the source")
    if message is None:
        return
    hypothesis.event("paid" if message.paid else "free")
    assert message.id == str(event["message_id"])
    assert message.source == "twitch"
    assert 0 < len(message.text) <= MAX_TEXT
    assert message.text == " ".join(message.text.split())
    dropped = {"emote", "cheermote", "gif"}
    kept = "".join(
        f["text"] or "" for f in event["message"]["fragments"] if f["type"] not in dropped
    )
    assert set(message.text.replace(" ", "")) <= set(kept)  # only text fragments are spoken
    assert message.bits == 0 or message.bits >= MIN_BITS
    assert message.reward is None or message.reward.casefold() == REWARD_ID
    assert message.is_reply == (event["reply"] is not None)
    assert message.user.id == str(event["chatter_user_id"])
    assert message.user.id != BOT  # the bot's own messages are never spoken
    assert message.user.login == message.user.login.lower()
    assert message.user.roles <= set(Role)
    assert (Role.BROADCASTER in message.user.roles) == (
        message.user.id == BROADCASTER or "broadcaster" in [b["set_id"] for b in event["badges"]]
    )
    # The synchronous half of the chat pipeline takes it without raising.
    seam.ignorer.ignores_user(message.user)
    seam.ignorer.reason(message)
    parse_command(message.text, "!")
    result = seam.filters.apply(message.text)
    if not result.dropped:
        assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in result.text)
    name = speakable_name(message.user.display_name, message.user.login)
    assert name
    assert len(name) <= 40
