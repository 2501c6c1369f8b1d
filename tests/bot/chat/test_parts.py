"""Several voices in one message (``tts.parts``, issue 18.1), through the real App.

The engine thread, the speaker and the store are the production ones; the player is the one
fake player, which keeps every clip's samples, so the pause between parts is measured on
what would have reached the speakers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.app import App
from bot.chat.parts import Part, split_parts
from bot.chat.pipeline import Action
from bot.config import Config, ConfigError, parse_config
from bot.core.messages import Role
from bot.speech.speaker import CUT_FADE_S
from engine.base import Audio, EngineState, StopCheck
from tests.support.audio import PulseServer, SinkRecorder, active_span, rms
from tests.support.chat_harness import (
    MOD,
    RATE,
    VIEWER,
    Bot,
    ToneEngine,
    make_config,
    person,
    start_bot,
)

VOICES = {"narrator": "Narrator", "alice": "alice", "default": "default"}


def resolve(name: str) -> str | None:
    return VOICES.get(name.casefold())


# -- splitting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("syntax", "text", "parts"),
    [
        (
            "colon",
            "narrator: hello there alice: hi chat",
            [Part("hello there", "Narrator"), Part("hi chat", "alice")],
        ),
        ("colon", "before narrator: after", [Part("before", None), Part("after", "Narrator")]),
        ("parens", "(NARRATOR) hello (alice)hi", [Part("hello", "Narrator"), Part("hi", "alice")]),
        # Unknown names, times and links are text; a marker needs a space (or the end) after.
        (
            "colon",
            "bob: hi at 12:30 see https://x.io",
            [Part("bob: hi at 12:30 see https://x.io", None)],
        ),
        ("colon", "note:alice: hi", [Part("note:alice: hi", None)]),
        # The same voice twice in a row is one part; a marker with nothing after it adds none.
        ("colon", "alice: a alice: b narrator:", [Part("a b", "alice")]),
        ("parens", "narrator: stays text", [Part("narrator: stays text", None)]),
    ],
)
def test_markers_that_name_a_voice_start_a_part(syntax: str, text: str, parts: list[Part]) -> None:
    assert split_parts(text, syntax, resolve, 5) == parts  # type: ignore[arg-type]


def test_past_the_limit_markers_are_read_as_text() -> None:
    text = "alice: one narrator: two alice: three narrator: four"
    assert split_parts(text, "colon", resolve, 2) == [
        Part("one", "alice"),
        Part("two alice: three narrator: four", "Narrator"),
    ]
    # Text before the first marker is a part too (in the author's voice).
    assert split_parts("hi alice: one narrator: two", "colon", resolve, 2) == [
        Part("hi", None),
        Part("one narrator: two", "alice"),
    ]


# -- end to end ------------------------------------------------------------------------------------
async def start(cfg: Config) -> Bot:
    """A started bot that knows the engine's voices (asked for when the engine is ready).

    Until the list arrives, moments after start-up, markers are read as text.
    """
    bot = await start_bot(cfg)
    await bot.app.voices.names()
    return bot


def _runs_of_silence(audio: np.ndarray) -> list[int]:
    """Lengths of the runs of exact zeros inside ``audio``."""
    runs, count = [], 0
    for quiet in audio == 0.0:
        if quiet:
            count += 1
        elif count:
            runs.append(count)
            count = 0
    return runs + ([count] if count else [])


async def test_each_part_is_spoken_in_its_voice_with_only_the_short_pause(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tts={"parts": {"enabled": True, "pause_ms": 100}})
    bot = await start(cfg)
    try:
        decision, _ = await bot.send("narrator: hello there friends alice: hi chat")
        assert decision.action is Action.QUEUED
        assert decision.item is not None
        # What is shown and recorded is what was written; the parts are what is spoken.
        assert decision.item.text == "viewer says narrator: hello there friends alice: hi chat"
        await bot.idle()
        assert bot.engine.calls == [
            ("viewer says", "default"),
            ("hello there friends", "narrator"),
            ("hi chat", "alice"),
        ]
        assert bot.finished() == [
            ("viewer", "viewer says narrator: hello there friends alice: hi chat", "played")
        ]
        # One clip: every part's audio, with exactly the pause between two parts, no more.
        (audio,) = bot.player.audio
        pause = RATE // 10
        chunk = RATE // 100
        spoken = sum(max(1, len(text) // 4) for text, _ in bot.engine.calls) * chunk
        assert len(audio) == spoken + 2 * pause
        assert _runs_of_silence(audio) == [pause, pause]
        history = await bot.store.history()
        assert history[0].text == decision.item.text
    finally:
        await bot.close()


async def test_off_by_default_and_unknown_names_are_read_as_text(tmp_path: Path) -> None:
    bot = await start_bot(make_config(tmp_path))
    try:
        await bot.send("narrator: hello there")
        await bot.idle()
        assert bot.engine.calls == [("viewer says narrator: hello there", "default")]
    finally:
        await bot.close()
    bot = await start(make_config(tmp_path, tts={"parts": {"enabled": True}}))
    try:
        decision, _ = await bot.send("bob: hello there")
        assert decision.item is not None
        assert decision.item.parts == ()
        await bot.idle()
        assert bot.engine.calls == [("viewer says bob: hello there", "default")]
    finally:
        await bot.close()


async def test_the_template_is_said_around_the_parts_in_the_authors_voice(tmp_path: Path) -> None:
    template = "{name} wrote {text} and again {text}"
    cfg = make_config(tmp_path, tts={"template": template, "parts": {"enabled": True}})
    bot = await start(cfg)
    try:
        await bot.send("alice: hi there")
        await bot.idle()
        assert bot.engine.calls == [
            ("viewer wrote", "default"),
            ("hi there", "alice"),
            ("and again", "default"),  # the parts are said once
        ]
    finally:
        await bot.close()


async def test_the_role_setting_says_who_may_use_voices(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, tts={"say_names": False, "parts": {"enabled": True, "min_role": "vip"}}
    )
    bot = await start(cfg)
    try:
        await bot.send("alice: from a viewer", VIEWER)
        await bot.send("alice: from a vip", person("vippy", Role.VIP))
        await bot.send("alice: from a mod", MOD)
        await bot.idle()
        assert bot.engine.calls == [
            ("alice: from a viewer", "default"),
            ("from a vip", "alice"),
            ("from a mod", "alice"),
        ]
    finally:
        await bot.close()


async def test_the_part_limit_holds_and_the_rest_is_not_lost(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, tts={"say_names": False, "parts": {"enabled": True, "max_parts": 2}}
    )
    bot = await start(cfg)
    try:
        await bot.send("alice: one narrator: two alice: three")
        await bot.idle()
        assert bot.engine.calls == [("one", "alice"), ("two alice: three", "narrator")]
    finally:
        await bot.close()


async def test_skip_stops_every_part_and_the_next_message_plays(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tts={"say_names": False, "parts": {"enabled": True}})
    bot = await start(cfg)
    try:
        first = "a long first part " * 20
        decision, _ = await bot.send(f"alice: {first} narrator: second")
        assert decision.item is not None
        await bot.wait_for(lambda: bool(bot.started()))
        bot.app.speaker.skip()
        await bot.wait_for(lambda: len(bot.finished()) == 1)
        assert bot.finished()[0][2] == "skipped"
        assert decision.item.job is not None
        assert decision.item.job.cancelled
        whole = (len(first.strip()) // 4 + 1) * RATE // 100
        assert bot.player.clips[0] < whole  # cut inside the first part
        await bot.send("after the skip", person("other"))
        await bot.idle()
        assert [outcome for _l, _t, outcome in bot.finished()] == ["skipped", "played"]
    finally:
        await bot.close()


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ({"max_parts": 1}, ["tts.parts.max_parts", "greater than or equal to 2"]),
        ({"max_parts": 50}, ["tts.parts.max_parts", "less than or equal to 20"]),
        ({"syntax": "brackets"}, ["tts.parts.syntax", "'colon' or 'parens'"]),
        ({"min_role": "king"}, ["tts.parts.min_role", "'king'"]),
        ({"pause_ms": -5}, ["tts.parts.pause_ms"]),
        ({"voices": True}, ["tts.parts.voices", "unknown key"]),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, parts: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tts": {"parts": parts}}, tmp_path)
    for text in expected:
        assert text in str(info.value)


# -- through the real player into the PulseAudio test sink ---------------------------------------
class SineEngine(ToneEngine):
    """A 24 kHz engine that sings a 300 Hz tone, one 20 ms chunk per 4 characters."""

    sample_rate = 24_000

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        self.calls.append((text, voice))
        n = self.sample_rate // 50
        for i in range(max(1, len(text) // 4)):
            if should_stop():
                return
            t = (i * n + np.arange(n)) / self.sample_rate
            yield (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def quiet_runs_ms(samples: np.ndarray, rate: int) -> list[float]:
    """Runs of 1 ms windows whose peak stays under 1% (inside the played span), in ms."""
    start, end = active_span(samples)
    window = rate // 1000
    body = samples[start:end]
    peaks = np.abs(body[: body.size // window * window]).reshape(-1, window).max(axis=1)
    runs, count = [], 0
    for quiet in peaks < 0.01:
        if quiet:
            count += 1
        elif count:
            runs.append(float(count))
            count = 0
    return runs


@pytest.mark.audio
async def test_on_the_real_player_the_parts_follow_each_other_with_only_the_pause(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    cfg = make_config(
        tmp_path,
        audio={"device": pulse_server.device_name},
        tts={"say_names": False, "parts": {"enabled": True, "pause_ms": 200}},
    )
    engine = SineEngine()
    app = App(cfg, engine=engine)
    await app.start()
    try:
        assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
        await app.voices.names()
        bot = Bot(app, engine, None)  # type: ignore[arg-type]
        sink_recorder.start()
        first, second = "one two three four five six", "seven eight nine ten"
        decision, _ = await bot.send(f"alice: {first} narrator: {second}")
        assert decision.item is not None
        assert len(decision.item.parts) == 2
        await asyncio.wait_for(app.speaker.wait_idle(), 10)
        recording = sink_recorder.stop()
    finally:
        await app.close()
    rate = pulse_server.rate
    start, end = active_span(recording)
    tone_s = (len(first) // 4 + len(second) // 4) * 0.02
    assert (end - start) / rate == pytest.approx(tone_s + 0.2, abs=0.01)
    # One silence, the configured pause, and no other gap anywhere in the message.
    (pause,) = [run for run in quiet_runs_ms(recording, rate) if run > 2]
    assert pause == pytest.approx(200, abs=5)


@pytest.mark.audio
async def test_on_the_real_player_the_longest_speaking_time_fades_out(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    cfg = make_config(
        tmp_path,
        audio={"device": pulse_server.device_name},
        tts={"say_names": False, "max_speaking_s": 0.5},
    )
    engine = SineEngine()
    app = App(cfg, engine=engine)
    await app.start()
    try:
        assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
        bot = Bot(app, engine, None)  # type: ignore[arg-type]
        sink_recorder.start()
        await bot.send(" ".join(f"word{n:03d}" for n in range(40)))  # 1.6 s of tone
        await asyncio.wait_for(app.speaker.wait_idle(), 10)
        recording = sink_recorder.stop()
    finally:
        await app.close()
    rate = pulse_server.rate
    start, end = active_span(recording, threshold=0.001)
    assert (end - start) / rate == pytest.approx(0.5, abs=0.01)
    # Full level until the fade, then each 30 ms quieter than the one before, to nothing.
    level = [
        rms(recording[start + i : start + i + rate * 3 // 100])
        for i in range(0, end - start, rate * 3 // 100)
    ]
    fade = int(CUT_FADE_S / 0.03)
    assert min(level[: -fade - 1]) > 0.3
    assert all(a > b for a, b in itertools.pairwise(level[-fade - 1 :]))
    assert level[-1] < 0.05
