"""Announcements (issue 18.3): templates with variables and weighted variants, minimum
sizes, a voice per event, viewer text filtered like chat, and config errors with their key
path. The real App: pipeline, speaker, engine thread; only the engine and player are doubles.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bot.app import App
from bot.chat.announcements import AnnouncementsConfig, Announcer, template_fields
from bot.config import ConfigError, parse_config
from bot.core.messages import ChannelEvent, ChannelEventKind, Platform
from tests.support.chat_harness import (
    STREAMER,
    RecordingPlayer,
    ToneEngine,
    make_config,
    person,
    start_bot,
)

K = ChannelEventKind


def event(kind: ChannelEventKind, **fields: Any) -> ChannelEvent:
    values: dict[str, Any] = {"user": person("xX_Fan_99", display="xX_Fan_99")}
    values.update(fields)
    return ChannelEvent(
        f"e-{kind.value}-{random.random()}", kind, source="test", platform=Platform.TWITCH, **values
    )


def announcer(tmp_path: Path, rng: random.Random | None = None, **announcements: Any) -> Announcer:
    """The App's announcer parts (constructing the App does no I/O), with a chosen ``rng``."""
    cfg = make_config(tmp_path, announcements={"enabled": True, **announcements})
    app = App(cfg, engine=ToneEngine(), player=RecordingPlayer())  # type: ignore[arg-type]
    return Announcer(
        cfg.announcements,
        app.speaker,
        default_voice=cfg.voices.default,
        filters=app.chat.filters,
        rng=rng,
    )


def test_every_kind_has_a_default_line(tmp_path: Path) -> None:
    a = announcer(tmp_path)
    lines = {
        K.SUBSCRIPTION: a.render(event(K.SUBSCRIPTION, tier="1")),
        K.RESUBSCRIPTION: a.render(event(K.RESUBSCRIPTION, months=7, message="hi all")),
        K.GIFT: a.render(event(K.GIFT, count=1, recipient="Pal")),
        K.RAID: a.render(event(K.RAID, viewers=40)),
        K.CHEER: a.render(event(K.CHEER, amount=100, unit="bits")),
        K.REDEMPTION: a.render(event(K.REDEMPTION, reward="Hydrate", amount=500)),
    }
    assert lines == {
        K.SUBSCRIPTION: "xX Fan 99 just subscribed!",
        K.RESUBSCRIPTION: "xX Fan 99 resubscribed for 7 months! hi all",
        K.GIFT: "xX Fan 99 gifted a sub!",
        K.RAID: "xX Fan 99 is raiding with 40 viewers!",
        K.CHEER: "xX Fan 99 cheered 100 bits!",
        K.REDEMPTION: "xX Fan 99 redeemed Hydrate!",
    }
    assert a.render(event(K.FOLLOW)) is None  # follows are off unless asked for
    assert a.render(event(K.GIFT, count=5, user=None)) == "someone gifted 5 subs!"


def test_off_by_default_changes_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert cfg.announcements.wanted == frozenset()
    assert not cfg.announcements.wants_follows


def test_minimum_sizes(tmp_path: Path) -> None:
    a = announcer(
        tmp_path,
        raid={"min_viewers": 10},
        cheer={"min_bits": 500},
        gift={"min_count": 5},
        resub={"min_months": 12},
        redemption={"rewards": ["Hydrate"]},
    )
    assert a.render(event(K.RAID, viewers=9)) is None
    assert a.render(event(K.RAID, viewers=10)) is not None
    assert a.render(event(K.CHEER, amount=499, unit="bits")) is None
    assert a.render(event(K.CHEER, amount=500, unit="bits")) is not None
    assert a.render(event(K.GIFT, count=4)) is None
    assert a.render(event(K.GIFT, count=5)) is not None
    assert a.render(event(K.RESUBSCRIPTION, months=11)) is None
    assert a.render(event(K.RESUBSCRIPTION, months=12)) is not None
    assert a.render(event(K.REDEMPTION, reward="hydrate")) is not None  # any case
    assert a.render(event(K.REDEMPTION, reward="Stretch")) is None


def test_weighted_variants_are_chosen_by_weight(tmp_path: Path) -> None:
    a = announcer(
        tmp_path,
        rng=random.Random(7),
        sub={"templates": ["rare {name}", {"text": "common {name}", "weight": 9}]},
    )
    picks = collections.Counter(
        (a.render(event(K.SUBSCRIPTION)) or "").split()[0] for _ in range(2000)
    )
    assert set(picks) == {"rare", "common"}
    assert 0.85 < picks["common"] / 2000 < 0.95  # 9 to 1


def test_viewer_text_passes_the_chat_filters(tmp_path: Path) -> None:
    a = announcer(tmp_path, resub={"templates": ["{name}: {message}"]})
    line = a.render(event(K.RESUBSCRIPTION, message="visit https://spam.example now"))
    assert line is not None
    assert "spam.example" not in line
    assert a.render(event(K.RESUBSCRIPTION, message="")) == "xX Fan 99:"


@pytest.mark.parametrize(
    ("announcements", "path", "words"),
    [
        (
            {"raid": {"templates": ["{name} with {viewrs}"]}},
            "announcements.raid.templates",
            "{viewrs}",
        ),
        (
            {"sub": {"templates": ["{months} months"]}},
            "announcements.sub.templates",
            "allowed: {name}, {tier}",
        ),
        (
            {"resub": {"templates": ["hi {name"]}},
            "announcements.resub.templates",
            "not a valid template",
        ),
        ({"cheer": {"templates": ["}{"]}}, "announcements.cheer.templates", "not a valid template"),
        (
            {"gift": {"templates": ["{count:>5}"]}},
            "announcements.gift.templates",
            "plain variables",
        ),
        (
            {"follow": {"templates": [{"text": "x", "weight": -1}]}},
            "announcements.follow.templates[0].weight",
            "greater than 0",
        ),
        ({"raid": {"min_viewers": "many"}}, "announcements.raid.min_viewers", "integer"),
        ({"raid": {"voice": "bad voice"}}, "announcements.raid.voice", ""),
        ({"subs": {}}, "announcements.subs", ""),
    ],
)
def test_bad_announcement_config_is_one_error_with_its_key_path(
    tmp_path: Path, announcements: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"announcements": announcements}, tmp_path)
    problems = [line for line in str(raised.value).splitlines()[1:] if line.strip()]
    assert len(problems) == 1
    assert problems[0].strip().startswith(f"{path}:")
    assert words in problems[0]


def test_template_fields() -> None:
    assert template_fields("{name} brings {viewers} {{friends}}") == ["name", "viewers"]
    with pytest.raises(ValueError, match="valid template"):
        template_fields("{")


async def test_app_queues_announcements_ahead_of_free_chat_in_their_voice(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        announcements={"enabled": True, "voice": "narrator", "raid": {"voice": "default"}},
    )
    assert isinstance(cfg.announcements, AnnouncementsConfig)
    bot = await start_bot(cfg)
    try:
        bot.player.hold.clear()
        await bot.send("first free line")
        await bot.wait_for(lambda: len(bot.started()) == 1)  # playing, held
        await bot.send("second free line")
        await bot.app.on_channel_event(event(K.SUBSCRIPTION))
        await bot.app.on_channel_event(event(K.RAID, viewers=3))
        queued = [it.text for it in bot.app.queue.snapshot()]
        assert queued == [
            "xX Fan 99 just subscribed!",
            "xX Fan 99 is raiding with 3 viewers!",
            "second free line",
        ]
        voices = [it.voice for it in bot.app.queue.snapshot()]
        assert voices[:2] == ["narrator", "default"]
        bot.player.hold.set()
        await bot.idle()
    finally:
        await bot.close()


async def test_tts_off_announces_nothing(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path, announcements={"enabled": True}))
    try:
        await bot.send("!ttsoff", STREAMER)
        assert not bot.app.chat.enabled
        await bot.app.on_channel_event(event(K.SUBSCRIPTION))
        assert len(bot.app.queue) == 0
        assert bot.started() == []
    finally:
        await bot.close()


def _leaf_keys(prefix: str, model: type[BaseModel]) -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel) and name != "templates":
            out += _leaf_keys(f"{prefix}.{name}", kind)
        else:
            out.append(f"{prefix}.{name}")
    return out


@pytest.mark.parametrize("key", _leaf_keys("announcements", AnnouncementsConfig))
def test_every_announcement_key_has_a_readme_row(key: str) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert f"| `{key}` |" in readme, f"README's configuration reference lacks {key}"


def test_the_shipped_announcements_example_is_valid(tmp_path: Path) -> None:
    """Uncommenting config.yaml's twitch and announcements examples gives a valid config."""
    lines = (Path(__file__).parents[3] / "config.yaml").read_text(encoding="utf-8").splitlines()
    wanted, taking = [], False
    for line in lines:
        if line.startswith(("# twitch:", "# announcements:")):
            taking = True
        elif not line.startswith("#   "):
            taking = False
        if taking:
            wanted.append(line[2:])
    data = yaml.safe_load("\n".join(wanted))
    cfg = parse_config(data, tmp_path)
    assert cfg.announcements.wants_follows
    assert cfg.announcements.raid.templates[1].weight == 3
    assert cfg.twitch.shared_chat == "own"


async def test_a_voice_the_engine_lacks_falls_back_to_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(
        tmp_path, announcements={"enabled": True, "voice": "nobody", "raid": {"voice": "NARRATOR"}}
    )
    bot = await start_bot(cfg)
    try:
        await bot.app.voices.names()  # the engine has answered once
        assert bot.app.announcer.voice_for(K.SUBSCRIPTION) == cfg.voices.default
        assert bot.app.announcer.voice_for(K.GIFT) == cfg.voices.default
        assert bot.app.announcer.voice_for(K.RAID) == "Narrator"  # any case: the engine's name
        assert caplog.text.count("no voice 'nobody'") == 1
    finally:
        await bot.close()
