"""Sound effects in a message (``sounds``, issue 18.4), from the tag to the speakers.

Tag splitting is tested alone; the rest runs through the real App (pipeline, speaker, engine
thread, store): with the one fake player, which keeps every clip's samples, and with the real
player into the PulseAudio test sink, where the effect's tone is found between the speech and
a ``!skip`` during the effect silences the sink.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from bot.app import App
from bot.chat.pipeline import Action
from bot.chat.sounds import Chunk, SoundsConfig, split_sounds
from bot.config import ConfigError, parse_config
from bot.core.messages import MessageDeleted, Role, UserPurged
from bot.setup.sounds_import import add_sound_command
from bot.speech.speaker import SpeechEvent, SpeechEventKind
from engine.base import Audio, EngineState, StopCheck
from tests.support.audio import PulseServer, SinkRecorder, active_span, dominant_frequency, tone
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

KNOWN = {"beep": "beep", "airhorn": "airhorn", "boom": "boom"}


def known(word: str) -> str | None:
    return KNOWN.get(word.casefold())


# -- splitting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "chunks", "used"),
    [
        ("[beep] hello", [Chunk("[beep]", "beep"), Chunk("hello")], 1),
        ("hello [BEEP] world", [Chunk("hello"), Chunk("[BEEP]", "beep"), Chunk("world")], 1),
        ("hello [beep]", [Chunk("hello"), Chunk("[beep]", "beep")], 1),
        ("[beep][boom]", [Chunk("[beep]", "beep"), Chunk("[boom]", "boom")], 2),
        # Unknown names, malformed tags and other brackets are text, as written.
        ("a [nope] b [be ep] [] [beep", [Chunk("a [nope] b [be ep] [] [beep")], 0),
        ("no tags at all", [Chunk("no tags at all")], 0),
        # Past the limit (2 here) tags are read as written: nothing typed is lost.
        (
            "[beep] [boom] [airhorn] end",
            [Chunk("[beep]", "beep"), Chunk("[boom]", "boom"), Chunk("[airhorn] end")],
            2,
        ),
    ],
)
def test_tags_that_name_a_sound_become_sound_chunks(
    text: str, chunks: list[Chunk], used: int
) -> None:
    assert split_sounds(text, "brackets", known, 2, "read") == (chunks, used)


def test_with_drop_unknown_tags_and_tags_past_the_limit_are_left_out() -> None:
    chunks, used = split_sounds("hi [nope] [beep] [boom] bye", "brackets", known, 1, "drop")
    # A sound chunk's text is what is said when its file cannot be played: nothing here.
    assert chunks == [Chunk("hi"), Chunk("", "beep"), Chunk("bye")]
    assert used == 1


def test_the_syntax_setting_chooses_the_tag() -> None:
    assert split_sounds("x {beep} [boom]", "braces", known, 5, "read") == (
        [Chunk("x"), Chunk("{beep}", "beep"), Chunk("[boom]")],
        1,
    )
    # A limit of 0 (a viewer below sounds.min_role) makes every tag unknown.
    assert split_sounds("x [beep]", "brackets", known, 0, "read") == ([Chunk("x [beep]")], 0)


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sounds", "expected"),
    [
        ({"max_per_message": 0}, ["sounds.max_per_message", "greater than or equal to 1"]),
        ({"max_per_message": 99}, ["sounds.max_per_message", "less than or equal to 20"]),
        ({"syntax": "angle"}, ["sounds.syntax", "'brackets' or 'braces'"]),
        ({"unknown": "shout"}, ["sounds.unknown", "'read' or 'drop'"]),
        ({"min_role": "king"}, ["sounds.min_role", "'king'"]),
        ({"enabled": "maybe"}, ["sounds.enabled"]),
        ({"volume": 2}, ["sounds.volume", "unknown key"]),
    ],
)
def test_bad_settings_name_their_key(
    tmp_path: Path, sounds: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sounds": sounds}, tmp_path)
    for text in expected:
        assert text in str(info.value)


ROOT = Path(__file__).parents[3]


@pytest.mark.parametrize("key", sorted(SoundsConfig.model_fields))
def test_every_key_has_a_row_in_the_readme(key: str) -> None:
    assert f"| `sounds.{key}` |" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_shipped_example_is_valid(tmp_path: Path) -> None:
    lines = (ROOT / "config.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# sounds:")
    block = [lines[start]]
    block += [
        line for line in itertools.takewhile(lambda x: x.startswith("#   "), lines[start + 1 :])
    ]
    cfg = parse_config(yaml.safe_load("\n".join(line[2:] for line in block)), tmp_path)
    assert cfg.sounds.enabled
    assert cfg.sounds.unknown == "read"


def test_off_by_default_with_a_folder_beside_the_config(tmp_path: Path) -> None:
    cfg = parse_config({}, tmp_path)
    assert cfg.sounds.enabled is False
    assert cfg.sounds.dir == (tmp_path / "sounds").resolve()


# -- through the real App ------------------------------------------------------------------------
BEEP_HZ = 1000.0


def import_beep(tmp_path: Path, name: str = "beep", seconds: float = 0.3) -> Path:
    """Write a 1 kHz test tone and import it with ``sounds add`` (normalised, 24 kHz)."""
    source = tmp_path / f"{name}-source.wav"
    sf.write(str(source), tone(BEEP_HZ, seconds, 44_100, lead_silence_s=0.0), 44_100)
    cfg = parse_config({}, tmp_path)
    assert add_sound_command(cfg.sounds, source, name) == 0
    return cfg.sounds.dir / f"{name}.wav"


async def start_with_sounds(
    tmp_path: Path, engine: ToneEngine | None = None, **sounds: object
) -> Bot:
    cfg = make_config(tmp_path, tts={"say_names": False}, sounds={"enabled": True, **sounds})
    bot = await start_bot(cfg, engine)
    await bot.app.chat.settled()  # the sounds folder was scanned
    return bot


def beep_runs(audio: Audio, rate: int = RATE) -> list[tuple[int, int]]:
    """Spans of 10 ms windows whose strongest frequency is the beep's (the tone engine's
    speech is a constant level, so any window holding the beep is told apart)."""
    window = rate // 100
    runs: list[tuple[int, int]] = []
    for start in range(0, len(audio) - window + 1, window):
        piece = audio[start : start + window]
        if np.ptp(piece) < 0.05:
            continue
        if abs(dominant_frequency(piece, rate) - BEEP_HZ) < 150:
            if runs and runs[-1][1] == start:
                runs[-1] = (runs[-1][0], start + window)
            else:
                runs.append((start, start + window))
    return runs


async def test_a_tag_plays_its_clip_between_the_speech_around_it(tmp_path: Path) -> None:
    import_beep(tmp_path)
    bot = await start_with_sounds(tmp_path)
    try:
        decision, _ = await bot.send("hello there [beep] world out there")
        assert decision.action is Action.QUEUED
        assert decision.item is not None
        assert decision.item.text == "hello there [beep] world out there"  # shown as written
        assert [(p.text, p.sound is not None) for p in decision.item.parts] == [
            ("hello there", False),
            ("[beep]", True),
            ("world out there", False),
        ]
        assert [p.pause_before_s for p in decision.item.parts] == [0.0, 0.0, 0.0]
        await bot.idle()
        assert bot.engine.calls == [("hello there", "default"), ("world out there", "default")]
        assert bot.finished() == [("viewer", "hello there [beep] world out there", "played")]
        (audio,) = bot.player.audio
        chunk = RATE // 100
        before, after = (len("hello there") // 4) * chunk, (len("world out there") // 4) * chunk
        # One clip: the speech, then the 0.3 s beep (resampled to the engine's 8 kHz), then
        # the speech, with nothing in between.
        assert len(audio) == before + round(0.3 * RATE) + after
        assert np.all(audio[:before] == np.float32(0.1))
        assert np.all(audio[-after:] == np.float32(0.1))
        ((first, last),) = beep_runs(audio)
        assert first == before
        assert last - first == pytest.approx(0.3 * RATE, abs=chunk)
    finally:
        await bot.close()


async def test_a_message_of_only_a_sound_plays_it_at_its_own_rate(tmp_path: Path) -> None:
    import_beep(tmp_path)
    bot = await start_with_sounds(tmp_path)
    try:
        decision, _ = await bot.send("[BEEP]")
        assert decision.item is not None
        await bot.idle()
        assert bot.engine.calls == []  # nothing synthesised
        (audio,) = bot.player.audio
        assert len(audio) == round(0.3 * 24_000)  # the stored 24 kHz clip, untouched
        assert dominant_frequency(audio, 24_000) == pytest.approx(BEEP_HZ, abs=2)
        assert bot.finished() == [("viewer", "[BEEP]", "played")]
    finally:
        await bot.close()


async def test_the_name_is_said_first_and_only_the_text_is_split(tmp_path: Path) -> None:
    import_beep(tmp_path)
    cfg = make_config(tmp_path, sounds={"enabled": True})
    bot = await start_bot(cfg)
    await bot.app.chat.settled()
    try:
        decision, _ = await bot.send("[beep] hi", person("viewer", display="[boom]"))
        assert decision.item is not None
        head, sound, rest = decision.item.parts
        assert head.text.endswith("says")
        assert head.sound is None  # a name is never a tag
        assert sound.sound is not None
        assert sound.pause_before_s == 0.0
        assert (rest.text, rest.sound) == ("hi", None)
    finally:
        await bot.close()


async def test_off_by_default_the_tag_is_read_as_written(tmp_path: Path) -> None:
    import_beep(tmp_path)
    bot = await start_bot(make_config(tmp_path, tts={"say_names": False}))
    try:
        decision, _ = await bot.send("hello [beep] world")
        assert decision.item is not None
        assert decision.item.parts == ()
        await bot.idle()
        assert bot.engine.calls == [("hello [beep] world", "default")]
    finally:
        await bot.close()


async def test_the_role_setting_says_who_may_play_sounds(tmp_path: Path) -> None:
    import_beep(tmp_path)
    bot = await start_with_sounds(tmp_path, min_role="moderator")
    try:
        viewer, _ = await bot.send("hey [beep] you")
        mod, _ = await bot.send("hey [beep] you", MOD)
        assert viewer.item is not None
        assert mod.item is not None
        assert viewer.item.parts == ()  # read as written, one synthesis
        assert [p.sound is not None for p in mod.item.parts] == [False, True, False]
        await bot.idle()
        assert bot.engine.calls[0] == ("hey [beep] you", "default")
        assert Role.MODERATOR in MOD.roles
    finally:
        await bot.close()


async def test_the_limit_holds_and_unknown_tags_are_read_or_dropped(tmp_path: Path) -> None:
    import_beep(tmp_path)
    import_beep(tmp_path, "boom")
    bot = await start_with_sounds(tmp_path, max_per_message=2)
    try:
        decision, _ = await bot.send("[beep] [boom] [beep] [nope] end")
        assert decision.item is not None
        assert [(p.text, p.sound.name if p.sound else None) for p in decision.item.parts] == [
            ("[beep]", "beep"),
            ("[boom]", "boom"),
            ("[beep] [nope] end", None),
        ]
        await bot.idle()
        assert bot.engine.calls == [("[beep] [nope] end", "default")]
        assert len(beep_runs(bot.player.audio[0])) == 1  # the two clips, back to back
    finally:
        await bot.close()
    bot = await start_with_sounds(tmp_path / "drop", unknown="drop")
    try:
        decision, _ = await bot.send("one [nope] two")
        assert decision.item is not None
        await bot.idle()
        assert bot.engine.calls == [("one two", "default")]
    finally:
        await bot.close()


async def test_a_sound_that_disappears_is_read_instead_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = import_beep(tmp_path)
    bot = await start_with_sounds(tmp_path)
    try:
        path.unlink()  # after the scan: the bot still believes in it
        with caplog.at_level(logging.WARNING, "bot.chat.sounds"):
            decision, _ = await bot.send("before [beep] after")
            assert decision.item is not None
            assert decision.item.parts[1].sound is not None
            await bot.idle()
        assert bot.finished() == [("viewer", "before [beep] after", "played")]
        # Nothing lost: the tag was spoken where the clip would have been.
        assert bot.engine.calls == [
            ("before", "default"),
            ("after", "default"),
            ("[beep]", "default"),
        ]
        (audio,) = bot.player.audio
        assert beep_runs(audio) == []
        assert len(audio) == sum(max(1, len(t) // 4) for t, _ in bot.engine.calls) * (RATE // 100)
        assert "sound 'beep' cannot be played" in caplog.text
    finally:
        await bot.close()


async def test_with_drop_a_sound_that_disappears_leaves_only_the_speech(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = import_beep(tmp_path)
    bot = await start_with_sounds(tmp_path, unknown="drop")
    try:
        path.unlink()
        with caplog.at_level(logging.WARNING, "bot.chat.sounds"):
            decision, _ = await bot.send("before [beep] after")
            await bot.idle()
        assert decision.item is not None
        assert bot.finished() == [("viewer", "before [beep] after", "played")]
        assert bot.engine.calls == [("before", "default"), ("after", "default")]
        assert len(bot.player.audio[0]) == 2 * (RATE // 100)
        assert "dropped" in caplog.text
    finally:
        await bot.close()


async def test_a_damaged_file_is_no_sound_and_a_new_one_is_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sounds"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    with caplog.at_level(logging.WARNING, "bot.chat.sounds"):
        bot = await start_with_sounds(tmp_path)
    try:
        assert "broken.wav" in caplog.text
        decision, _ = await bot.send("a [broken] b")
        assert decision.item is not None
        assert decision.item.parts == ()  # read as written
        # A clip added while the bot runs is found: an unknown tag asks for a new scan (at
        # most every RESCAN_S; none here), which the next message uses.
        import_beep(tmp_path, "fresh")
        monkeypatch.setattr("bot.chat.sounds.RESCAN_S", 0.0)
        decision, _ = await bot.send("a [fresh] b")
        assert decision.item is not None
        assert decision.item.parts == ()
        await bot.app.chat.settled()
        decision, _ = await bot.send("a [fresh] b")
        assert decision.item is not None
        assert [p.sound is not None for p in decision.item.parts] == [False, True, False]
        await bot.idle()
    finally:
        await bot.close()


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


def frequencies(recording: np.ndarray, rate: int, window_s: float = 0.02) -> list[float]:
    """The strongest frequency of each 20 ms window holding sound, in order."""
    start, end = active_span(recording)
    window = round(window_s * rate)
    out = []
    for i in range(start, end - window + 1, window):
        piece = recording[i : i + window]
        if np.max(np.abs(piece)) > 0.02:
            out.append(dominant_frequency(piece, rate))
    return out


def runs_of(freqs: list[float]) -> list[tuple[int, int]]:
    """(nominal Hz, windows) runs: 300 (speech) or 1000 (the beep); others are edges."""
    runs: list[tuple[int, int]] = []
    for f in freqs:
        label = 300 if abs(f - 300) < 60 else 1000 if abs(f - BEEP_HZ) < 100 else 0
        if label == 0:
            continue
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        else:
            runs.append((label, 1))
    return runs


async def real_bot(tmp_path: Path, device: str) -> tuple[App, Bot]:
    cfg = make_config(
        tmp_path,
        audio={"device": device},
        tts={"say_names": False},
        sounds={"enabled": True},
    )
    engine = SineEngine()
    app = App(cfg, engine=engine)
    await app.start()
    assert await asyncio.wait_for(app.worker.wait_ready(), 10) is EngineState.READY
    await app.chat.settled()
    return app, Bot(app, engine, None)  # type: ignore[arg-type]


@pytest.mark.audio
async def test_on_the_real_player_speech_then_the_effect_then_speech(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder
) -> None:
    import_beep(tmp_path, seconds=0.4)
    app, bot = await real_bot(tmp_path, pulse_server.device_name)
    try:
        sink_recorder.start()
        first, second = "one two three four five", "six seven eight nine"
        decision, _ = await bot.send(f"{first} [beep] {second}")
        assert decision.item is not None
        await asyncio.wait_for(app.speaker.wait_idle(), 10)
        recording = sink_recorder.stop()
    finally:
        await app.close()
    rate = pulse_server.rate
    runs = runs_of(frequencies(recording, rate))
    assert [label for label, _ in runs] == [300, 1000, 300]
    (_, speech1), (_, beep), (_, speech2) = runs
    assert speech1 * 0.02 == pytest.approx(len(first) // 4 * 0.02, abs=0.045)
    assert beep * 0.02 == pytest.approx(0.4, abs=0.045)
    assert speech2 * 0.02 == pytest.approx(len(second) // 4 * 0.02, abs=0.045)
    start, end = active_span(recording)
    total = (len(first) // 4 + len(second) // 4) * 0.02 + 0.4
    assert (end - start) / rate == pytest.approx(total, abs=0.02)  # no gap around the clip


@pytest.mark.audio
@pytest.mark.parametrize("control", ["skip", "delete", "ban"])
async def test_on_the_real_player_control_during_the_effect_silences_the_sink(
    tmp_path: Path, pulse_server: PulseServer, sink_recorder: SinkRecorder, control: str
) -> None:
    """``!skip``, a deleted message and a ban of its author stop a playing effect at once."""
    import_beep(tmp_path, seconds=4.0)
    app, bot = await real_bot(tmp_path, pulse_server.device_name)
    rate = pulse_server.rate
    try:
        sink_recorder.start()
        begun = asyncio.Event()

        def on_event(event: SpeechEvent) -> None:
            if event.kind is SpeechEventKind.STARTED:
                begun.set()

        app.speaker.add_listener(on_event)
        await bot.send("hi there friend [beep] this is never heard", mid="fx1")
        await asyncio.wait_for(begun.wait(), 10)
        # Wait on the sink until a second of the effect was heard there.
        mark = sink_recorder.frames
        await asyncio.to_thread(sink_recorder.wait_frames, mark + rate)
        skipped_at = sink_recorder.frames
        if control == "skip":
            await bot.send("!skip", MOD)
        elif control == "delete":
            await app.on_moderation(MessageDeleted("fx1"))
        else:
            await app.on_moderation(UserPurged(VIEWER.id, VIEWER.login))
        await asyncio.wait_for(app.speaker.wait_idle(), 10)
        await asyncio.to_thread(sink_recorder.wait_frames, skipped_at + rate // 2)
        recording = sink_recorder.stop()
    finally:
        await app.close()
    runs = runs_of(frequencies(recording[:skipped_at], rate))
    assert [label for label, _ in runs] == [300, 1000]
    # The effect (3 s more of it were left) ends at the sink within the output's latency of
    # the skip (80 ms here, plus the monitor's), the sink stays silent after it, and the
    # rest of the message never played.
    _, end = active_span(recording)
    heard_after = (end - skipped_at) / rate
    assert heard_after < 0.25, f"the effect went on {heard_after * 1000:.0f} ms after the {control}"
    assert (len(recording) - end) / rate > 0.3
    assert runs_of(frequencies(recording, rate))[-1][0] == 1000
