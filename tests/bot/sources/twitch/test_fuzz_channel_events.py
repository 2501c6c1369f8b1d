"""Fuzzing the way Twitch's channel events become ChannelEvents and spoken announcements.

The seam is the live bot's: twitchio's ``create_event_instance`` builds its model of a
``channel.chat.notification`` / ``channel.follow`` / redemption exactly as its reader does, the
source's converters (``bot.sources.twitch.events``) turn it into a ChannelEvent, and the
App's announcer renders it with every event on. Every field is hostile: numbers of any size
or sign, text of any kind, missing details, anonymous users, shared-chat notices.

What twitchio refuses never reaches the bot. A converter may refuse a payload with an
exception (the source logs one line and skips it, tested in test_events.py); otherwise the
event keeps its promises and the announcement is bounded, clean text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twitchio.models.eventsub_ import create_event_instance

from bot.app import App
from bot.chat.announcements import MAX_ANNOUNCEMENT, Announcer
from bot.core.messages import ChannelEvent, ChannelEventKind
from bot.sources.twitch import events
from bot.sources.twitch.normalize import MAX_TEXT
from tests.support.chat_harness import RecordingPlayer, ToneEngine, make_config

pytestmark = pytest.mark.slow

BROADCASTER = "1001"
TEXT = st.one_of(
    st.sampled_from(["", " ", "Kappa", "{name}", "}{", "\x00", "\u202e", "a" * 800, "😂" * 9]),
    st.text(max_size=60),
)
NUMBER = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 5]))
TIER = st.sampled_from(["1000", "2000", "3000", "0", ""])
NAMES = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=12), "login": TEXT, "name": TEXT})


def _user(prefix: str, who: dict[str, str]) -> dict[str, str]:
    return {
        f"{prefix}_id": who["id"],
        f"{prefix}_login": who["login"],
        f"{prefix}_name": who["name"],
    }


DETAILS = {
    "sub": st.fixed_dictionaries(
        {"sub_tier": TIER, "is_prime": st.booleans(), "duration_months": NUMBER}
    ),
    "resub": st.builds(
        lambda months, cumulative, tier, gifter: {
            "cumulative_months": cumulative,
            "duration_months": months,
            "streak_months": None,
            "sub_tier": tier,
            "is_prime": False,
            "is_gift": gifter is not None,
            "gifter_is_anonymous": None,
            **_user("gifter_user", gifter or {"id": None, "login": None, "name": None}),
        },
        NUMBER,
        NUMBER,
        TIER,
        st.none() | NAMES,
    ),
    "sub_gift": st.builds(
        lambda recipient, community, tier: {
            "cumulative_total": None,
            **_user("recipient_user", recipient),
            "sub_tier": tier,
            "duration_months": 1,
            "community_gift_id": community,
        },
        NAMES,
        st.none() | st.text(max_size=8),
        TIER,
    ),
    "community_sub_gift": st.fixed_dictionaries(
        {
            "id": st.text(max_size=8),
            "total": NUMBER,
            "sub_tier": TIER,
            "cumulative_total": st.none(),
        }
    ),
    "raid": st.builds(
        lambda raider, viewers: {
            **_user("user", raider),
            "viewer_count": viewers,
            "profile_image_url": "https://example.invalid/x.png",
        },
        NAMES,
        NUMBER,
    ),
}
NOTICE_TYPES = [*DETAILS, *(f"shared_chat_{t}" for t in DETAILS), "announcement"]


@st.composite
def notifications(draw: st.DrawFn) -> dict[str, Any]:
    notice = draw(st.sampled_from(NOTICE_TYPES))
    base = notice.removeprefix("shared_chat_")
    detail: dict[str, Any] | None = draw(DETAILS[base]) if base in DETAILS else {"color": "PRIMARY"}
    if draw(st.integers(0, 20)) == 0:
        detail = None  # a notice without its details
    chatter = draw(NAMES)
    text = draw(TEXT)
    keys = [*DETAILS, "gift_paid_upgrade", "prime_paid_upgrade", "unraid", "pay_it_forward"]
    keys += ["announcement", "bits_badge_tier", "charity_donation", "watch_streak"]
    keys.append("modiversary")
    keys += [f"shared_chat_{k}" for k in keys]
    event: dict[str, Any] = dict.fromkeys(keys)
    event.update(
        {
            "broadcaster_user_id": BROADCASTER,
            "broadcaster_user_login": "streamer",
            "broadcaster_user_name": "Streamer",
            **_user("chatter_user", chatter),
            "chatter_is_anonymous": draw(st.booleans()),
            "color": "",
            "badges": [],
            "system_message": draw(TEXT),
            "message_id": draw(st.text(min_size=1, max_size=12)),
            "message": {
                "text": text,
                "fragments": [
                    {
                        "type": "text",
                        "text": text,
                        "cheermote": None,
                        "emote": None,
                        "mention": None,
                    }
                ],
            },
            "notice_type": notice,
            notice: detail,
        }
    )
    return event


class Seam:
    def __init__(self, tmp_path: Path) -> None:
        cfg = make_config(
            tmp_path,
            announcements={
                "enabled": True,
                "follow": {"enabled": True},
                "raid": {"min_viewers": 0},
            },
        )
        app = App(cfg, engine=ToneEngine(), player=RecordingPlayer())  # type: ignore[arg-type]
        self.announcer = Announcer(
            cfg.announcements,
            app.speaker,
            default_voice=cfg.voices.default,
            filters=app.chat.filters,
        )

    def check(self, event: ChannelEvent) -> None:
        assert event.source == "twitch"
        assert event.months >= 0
        assert event.viewers >= 0
        assert event.amount >= 0
        assert len(event.message) <= MAX_TEXT
        if event.kind is ChannelEventKind.GIFT:
            assert event.count >= 1
        line = self.announcer.render(event)
        hypothesis.event("announced" if line else "not announced")
        if line is not None:
            assert 0 < len(line) <= MAX_ANNOUNCEMENT
            assert line == " ".join(line.split())
            assert "\x00" not in line


@pytest.fixture(scope="module")
def seam(tmp_path_factory: pytest.TempPathFactory) -> Seam:
    return Seam(tmp_path_factory.mktemp("channel-events"))


def _model(sub_type: str, event: dict[str, Any]) -> Any:
    notification = {
        "metadata": {
            "message_id": "n1",
            "message_type": "notification",
            "message_timestamp": "2024-01-01T00:00:00.000000Z",
            "subscription_type": sub_type,
            "subscription_version": "1",
        },
        "payload": {"subscription": {"id": "s1", "type": sub_type, "version": "1"}, "event": event},
    }
    return create_event_instance(sub_type, notification, http=None)


FUZZ = settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(event=notifications(), shared=st.booleans())
def test_any_notification_converts_or_is_refused_and_announces_cleanly(
    seam: Seam, event: dict[str, Any], shared: bool
) -> None:
    try:
        model = _model("channel.chat.notification", event)
    except (KeyError, TypeError, ValueError, AttributeError):
        hypothesis.event("refused by twitchio")
        return
    try:
        converted = events.from_notification(model, BROADCASTER, shared=shared)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        hypothesis.event(f"refused by the source: {type(exc).__name__}")
        return
    if converted is None:
        hypothesis.event("not an announced notice")
        assert (
            event["notice_type"] == "announcement"
            or (event["notice_type"].startswith("shared_chat_") and not shared)
            or bool(
                (event.get("sub_gift") or event.get("shared_chat_sub_gift") or {}).get(
                    "community_gift_id"
                )
            )
        )
        return
    assert (converted.user is None) == (
        bool(event["chatter_is_anonymous"]) and converted.kind is not ChannelEventKind.RAID
    )
    seam.check(converted)


@FUZZ
@given(who=NAMES, text=TEXT, title=TEXT, cost=NUMBER)
def test_any_redemption_and_follow_announce_cleanly(
    seam: Seam, who: dict[str, str], text: str, title: str, cost: int
) -> None:
    common = {
        "broadcaster_user_id": BROADCASTER,
        "broadcaster_user_login": "streamer",
        "broadcaster_user_name": "Streamer",
        **_user("user", who),
    }
    redemption = {
        **common,
        "id": "r1",
        "user_input": text,
        "status": "unfulfilled",
        "reward": {"id": "w1", "title": title, "cost": cost, "prompt": ""},
        "redeemed_at": "2024-01-01T00:00:00.000000Z",
    }
    follow = {**common, "followed_at": "2024-01-01T00:00:00.000000Z"}
    for sub_type, payload in (
        ("channel.channel_points_custom_reward_redemption.add", redemption),
        ("channel.follow", follow),
    ):
        try:
            model = _model(sub_type, payload)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if sub_type == "channel.follow":
            seam.check(events.from_follow(model, BROADCASTER, "follow:x"))
        else:
            try:
                converted = events.from_redemption(model, BROADCASTER)
            except (ValueError, TypeError, OverflowError):
                continue
            seam.check(converted)
