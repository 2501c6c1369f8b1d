"""Issue 7: the bot keeps speaking, keeps listening to its moderators and keeps its state
under floods, faults and hostile input.

Each section proves one row of RELIABILITY.md on real components: the production App, chat
pipeline, speech queue, engine thread and SQLite store; the real player on a PulseAudio null
sink where audio matters; the real twitchio client against the local Twitch double; the real
``python -m bot`` process where a crash or a bad config is the point. The engines are small
deterministic ``Engine`` subclasses (their faults are the subject) or the real eSpeak NG engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import App
from bot.config import parse_config
from engine.base import Audio, Engine, EngineError, EngineState, StopCheck, VoiceInfo
from tests.bot.test_speech import RecordingPlayer, msg

REPO = Path(__file__).resolve().parents[1]
HANG_S = 30.0  # a wait longer than this is a hang, not slowness (never a speed requirement)


async def until(check: Callable[[], bool], timeout: float = HANG_S) -> None:
    """Yield to the loop until ``check()`` holds; a timeout is a failure."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


# -- engine faults ----------------------------------------------------------------------------
FAULT_RATE = 8000


class FaultEngine(Engine):
    """Speaks 10 ms chunks of a constant level; the text picks a fault.

    ``raise`` raises EngineError, ``crash`` a plain RuntimeError (a bug in an engine), ``nan``
    yields NaN after a good chunk, ``silence`` yields only zeros, ``quiet start`` yields zeros
    and then sound, ``hang`` blocks until the job is cancelled (``silent hang`` after one
    silent chunk). Anything else is a short tone.
    """

    name = "faults"
    sample_rate = FAULT_RATE

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        progress(EngineState.WARMING, "warming")

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("default", "faults")]

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        self.calls.append(text)
        block = FAULT_RATE // 100
        if text == "raise":
            raise EngineError("this text cannot be spoken")
        if text == "crash":
            raise RuntimeError("index out of range in the vocoder")
        if text == "nan":
            yield np.full(block, 0.2, np.float32)
            yield np.full(block, np.nan, np.float32)
            return
        if text == "silence":
            for _ in range(5):
                yield np.zeros(block, np.float32)
            return
        if text in ("hang", "silent hang"):
            if text == "silent hang":
                yield np.zeros(block, np.float32)
            while not should_stop() and not self.release.wait(0.01):
                pass
            return
        if text == "quiet start":
            for _ in range(3):
                yield np.zeros(block, np.float32)
        for _ in range(3):
            yield np.full(block, 0.3, np.float32)


@pytest.fixture
async def fault_app(tmp_path: Path) -> AsyncIterator[tuple[App, RecordingPlayer, FaultEngine]]:
    cfg = parse_config(
        {
            "audio": {"gap_ms": 0},
            "engine": {"timeout_s": 1.0},
            "storage": {"dir": str(tmp_path / "state")},
            "web": {"enabled": False},
            "tts": {"say_names": False},
            "queue": {"per_user_limit": 20},
        },
        tmp_path,
    )
    engine = FaultEngine()
    player = RecordingPlayer()
    app = App(cfg, engine=engine, player=player)  # type: ignore[arg-type]
    app.speaker.add_listener(lambda ev: setattr(player, "current", ev.item.text))
    await app.start()
    try:
        assert await app.worker.wait_ready() is EngineState.READY
        yield app, player, engine
    finally:
        engine.release.set()
        await app.close()


def _finished(events: list[Any]) -> list[tuple[str, str, str]]:
    return [
        (ev.item.text, ev.outcome.value, ev.detail)
        for ev in events
        if ev.kind == "finished" and ev.outcome is not None
    ]


@pytest.mark.parametrize(
    ("fault", "detail", "logged"),
    [
        ("raise", "this text cannot be spoken", "could not speak alice's message"),
        ("crash", "index out of range in the vocoder", "synthesis of job"),
        ("nan", "invalid audio (NaN or infinity)", "synthesis failed mid-message"),
        ("silence", "silence", "only silence"),
        ("hang", "synthesis timed out", "synthesis took longer than"),
    ],
)
async def test_an_engine_fault_drops_that_message_with_a_log_line_and_the_next_one_plays(
    fault_app: tuple[App, RecordingPlayer, FaultEngine],
    caplog: pytest.LogCaptureFixture,
    fault: str,
    detail: str,
    logged: str,
) -> None:
    app, player, engine = fault_app
    events: list[Any] = []
    app.speaker.add_listener(events.append)
    caplog.set_level(logging.INFO)
    await app.on_message(msg(fault, mid="bad"))
    await app.on_message(msg("after the fault", mid="good"))
    await asyncio.wait_for(app.speaker.wait_idle(), HANG_S)
    finished = _finished(events)
    assert [(text, outcome) for text, outcome, _ in finished] == [
        (fault, "failed"),
        ("after the fault", "played"),
    ]
    assert detail in finished[0][2]
    assert logged in caplog.text
    # The broken message never played to its end (a NaN mid-message cuts it after the good
    # chunk before it had started); the next message played whole.
    started = [ev.item.text for ev in events if ev.kind == "started"]
    assert started == (["nan", "after the fault"] if fault == "nan" else ["after the fault"])
    assert [name for name, _samples in player.played] == ["after the fault"]
    assert dict(player.played)["after the fault"] == 3 * FAULT_RATE // 100
    assert engine.calls == [fault, "after the fault"]
    history = await app.store.history()
    assert [(h.text, h.outcome) for h in reversed(history)] == [
        (fault, "failed"),
        ("after the fault", "played"),
    ]


async def test_leading_silence_is_not_a_fault_and_is_played_whole(
    fault_app: tuple[App, RecordingPlayer, FaultEngine],
) -> None:
    app, player, _engine = fault_app
    events: list[Any] = []
    app.speaker.add_listener(events.append)
    await app.on_message(msg("quiet start"))
    await asyncio.wait_for(app.speaker.wait_idle(), HANG_S)
    assert [(t, o) for t, o, _ in _finished(events)] == [("quiet start", "played")]
    assert player.played == [("quiet start", 6 * FAULT_RATE // 100)]


@pytest.mark.parametrize("text", ["hang", "silent hang"])
async def test_skip_before_any_sound_is_a_skip_not_a_fault(
    fault_app: tuple[App, RecordingPlayer, FaultEngine], text: str
) -> None:
    app, player, engine = fault_app
    events: list[Any] = []
    app.speaker.add_listener(events.append)
    await app.on_message(msg(text))
    await until(lambda: app.speaker.current is not None and bool(engine.calls))
    await asyncio.sleep(0.1)  # the silent chunk (if any) reaches the speaker
    assert app.speaker.skip() is not None
    await asyncio.wait_for(app.speaker.wait_idle(), HANG_S)
    assert [(t, o) for t, o, _ in _finished(events)] == [(text, "skipped")]
    assert player.played == []


# -- audio faults: the sound server is killed mid-message and comes back ----------------------
TONE_RATE = 24_000
TONES = {"first": (440.0, 3.0), "second": (660.0, 0.6), "third": (990.0, 0.6)}


class ToneTextEngine(Engine):
    """Each known text is a sine tone of its own frequency and length, in 100 ms chunks."""

    name = "tones"
    sample_rate = TONE_RATE

    def __init__(self) -> None:
        self.calls: list[str] = []

    def load(self, progress: Callable[[EngineState, str], None]) -> None:
        progress(EngineState.WARMING, "warming")

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("default", "tones")]

    def synthesize(self, text: str, voice: str, should_stop: StopCheck) -> Iterator[Audio]:
        self.calls.append(text)
        freq, seconds = TONES[text]
        t = np.arange(round(seconds * TONE_RATE)) / TONE_RATE
        audio = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        step = TONE_RATE // 10
        for i in range(0, audio.size, step):
            if should_stop():
                return
            yield audio[i : i + step]


def tone_runs(recording: np.ndarray, rate: int, window_s: float = 0.05) -> list[tuple[int, float]]:
    """The recording as runs of (nearest known tone in Hz, seconds), silence left out."""
    from tests.fixtures_audio import dominant_frequency, rms

    n = round(window_s * rate)
    known = [freq for freq, _ in TONES.values()]
    runs: list[tuple[int, float]] = []
    for i in range(0, recording.size - n + 1, n):
        window = recording[i : i + n]
        if rms(window) < 0.05:
            continue
        found = dominant_frequency(window, rate)
        freq = min(known, key=lambda k: abs(k - found))
        if abs(freq - found) > 30:
            continue  # a window across a boundary or a fade
        if runs and runs[-1][0] == freq:
            runs[-1] = (int(freq), runs[-1][1] + window_s)
        else:
            runs.append((int(freq), window_s))
    return runs


@pytest.mark.audio
@pytest.mark.slow
async def test_sound_server_killed_mid_message_keeps_the_queue_and_resumes_when_back(
    pulse_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import os
    import signal

    from tests.fixtures_audio import SinkRecorder, launch_pulse_server, process_alive

    caplog.set_level(logging.INFO)
    root = tmp_path / "sound-server"
    server = launch_pulse_server(root)
    restarted = None
    monkeypatch.setenv("PULSE_SERVER", server.env["PULSE_SERVER"])
    cfg = parse_config(
        {
            "audio": {"device": pulse_server.device_name, "gap_ms": 0},
            "storage": {"dir": str(tmp_path / "state")},
            "web": {"enabled": False},
            "tts": {"say_names": False},
        },
        tmp_path,
    )
    engine = ToneTextEngine()
    app = App(cfg, engine=engine)
    events: list[Any] = []
    app.speaker.add_listener(events.append)
    await app.start()
    try:
        assert await app.worker.wait_ready() is EngineState.READY
        for i, text in enumerate(TONES):
            await app.on_message(msg(text, user=f"user{i}", mid=text))
        await until(lambda: app.player.frames_sent >= 2.0 * app.player.stream_rate)
        os.kill(server.pid, signal.SIGKILL)  # no goodbye to its clients: the server is gone
        await until(lambda: not process_alive(server.pid))
        server.stop()
        # The bot says what happened, and nothing is lost: the cut message waits first in line.
        await until(lambda: "audio output lost" in caplog.text)
        await until(lambda: app.speaker.current is None)
        assert [it.message.id for it in app.queue.snapshot()] == ["first", "second", "third"]
        assert not [ev for ev in events if ev.kind == "finished"]
        await asyncio.sleep(1.0)  # the bot keeps trying while the server is away
        assert "audio device is back" not in caplog.text
        # The server comes back at the same address; the bot finds it and speaks everything.
        restarted = await asyncio.to_thread(launch_pulse_server, root)
        recorder = SinkRecorder(restarted)
        await asyncio.to_thread(recorder.start)
        try:
            await asyncio.wait_for(app.speaker.wait_idle(), 60)
            recording = await asyncio.to_thread(recorder.stop)
        finally:
            recorder._shutdown()
    finally:
        await app.close()
        server.stop()
        if restarted is not None:
            restarted.stop()
    finished = [(ev.item.message.id, ev.outcome.value) for ev in events if ev.kind == "finished"]
    assert finished == [("first", "played"), ("second", "played"), ("third", "played")]
    # The cut message was synthesised again; the next one's prefetched audio was kept.
    assert engine.calls == ["first", "second", "first", "third"]
    assert "audio device is back after" in caplog.text
    runs = tone_runs(recording, restarted.rate)
    assert [freq for freq, _ in runs] == [440, 660, 990], runs
    # The cut message was spoken again from its start: more than the second that was left.
    assert runs[0][1] >= 2.0, runs
