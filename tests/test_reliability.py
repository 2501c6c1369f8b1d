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
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bot.app import App
from bot.config import parse_config
from bot.core.messages import ChatMessage
from bot.speech.speaker import SpeechEventKind
from engine.base import Audio, Engine, EngineError, EngineState, StopCheck, VoiceInfo
from tests.bot.speech.test_speaker import RecordingPlayer, msg
from tests.support import REPO

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
    # The one fake player labels each clip with the text of the item that started it.
    app.speaker.add_listener(
        lambda ev: (
            setattr(player, "label", ev.item.text) if ev.kind is SpeechEventKind.STARTED else None
        )
    )
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
        if ev.kind is SpeechEventKind.FINISHED and ev.outcome is not None
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
    started = [ev.item.text for ev in events if ev.kind is SpeechEventKind.STARTED]
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
    from tests.support.audio import dominant_frequency, rms

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

    from tests.support.audio import SinkRecorder, launch_pulse_server, process_alive

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
    opens = [0]  # how often the bot opened the device (the real player's start, counted)
    first_open = app.player.start

    async def counted_open() -> None:
        opens[0] += 1
        await first_open()

    monkeypatch.setattr(app.player, "start", counted_open)
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
        assert not [ev for ev in events if ev.kind is SpeechEventKind.FINISHED]
        tries = opens[0]
        await until(lambda: opens[0] >= tries + 2)  # the bot keeps trying while it is away
        assert app.speaker.current is None
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
    finished = [
        (ev.item.message.id, ev.outcome.value)
        for ev in events
        if ev.kind is SpeechEventKind.FINISHED
    ]
    assert finished == [("first", "played"), ("second", "played"), ("third", "played")]
    # The cut message was synthesised again; the next one's prefetched audio was kept.
    assert engine.calls == ["first", "second", "first", "third"]
    assert "audio device is back after" in caplog.text
    runs = tone_runs(recording, restarted.rate)
    assert [freq for freq, _ in runs] == [440, 660, 990], runs
    # The cut message was spoken again from its start: more than the second that was left.
    assert runs[0][1] >= 2.0, runs


# -- bad configuration: every key, a wrong type and an out-of-range value ---------------------
# Keys whose rules live in validators rather than in field constraints, with a value each rule
# refuses (the walk below finds the others from the models themselves).
VALIDATED_BAD: dict[str, list[Any]] = {
    "engine.f5.model": ["F5 TTS!"],
    "engine.f5.checkpoint": ["hf://only-owner"],
    "engine.f5.vocab": ["hf://a/b"],
    "voices.default": ["../etc", "a" * 33],
    "tts.template": ["{name} says", "{name} {text!r}", "{text} {user}", "{"],
    "web.host": ["0.0.0.0", "192.168.1.10"],
    "filters.emotes.pattern": ["(unclosed", "*x"],
}
VALIDATED_BAD.update(
    {f"commands.{key}.name": ["two words", "x" * 26] for key in ("voice", "skip", "setvoice")}
)
VALIDATED_BAD.update(
    {f"commands.{key}.aliases": [["fine", "not fine"]] for key in ("voice", "mute", "clear")}
)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional/Annotated, whether None is allowed)."""
    import types
    import typing

    nullable = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(members) < len(typing.get_args(annotation))
            if len(members) != 1:
                return annotation, nullable
            annotation = members[0]
        else:
            return annotation, nullable


def config_keys() -> Iterator[tuple[str, Any]]:
    """Every leaf key of the config models as (dotted path, pydantic FieldInfo)."""
    import typing

    from pydantic import BaseModel

    from bot.config import Config

    def walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
        for name, info in model.model_fields.items():
            if info.exclude:
                continue  # set by the program (source_path), not by the file
            path = f"{prefix}{name}"
            ann, _ = _unwrap(info.annotation)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield path, info
                yield from walk(ann, path + ".")
            elif typing.get_origin(ann) is dict:
                yield path, info
                value = typing.get_args(ann)[1]
                if isinstance(value, type) and issubclass(value, BaseModel):
                    yield from walk(value, path + ".alice.")  # one sample entry
            else:
                yield path, info

    yield from walk(Config, "")


def bad_values(path: str, info: Any) -> list[tuple[str, Any]]:
    """(kind, value) pairs that must be refused at ``path``: wrong types and out-of-range."""
    import typing

    import annotated_types
    from pydantic import BaseModel

    ann, _nullable = _unwrap(info.annotation)
    origin = typing.get_origin(ann)
    out: list[tuple[str, Any]] = []
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [("wrong type", "some text"), ("wrong type", [1, 2])]
    if origin is dict:
        return [("wrong type", [1, 2]), ("wrong type", "text"), ("bad key", {"bad name!": {}})]
    if origin is tuple:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("one_item_as_itself"):  # a lone item is a list of one: not a wrong type
            return [("wrong type", {"a": 1}), ("wrong item", [[1]]), ("wrong item", [1])]
        return [("wrong type", "text"), ("wrong type", {"a": 1}), ("wrong item", [[1]])]
    if origin is typing.Literal:
        return [("wrong type", [1]), ("not allowed", "bogus")]
    if ann is bool:
        out = [("wrong type", "maybe"), ("wrong type", [1])]
    elif ann in (int, float):
        out = [("wrong type", "lots"), ("wrong type", [1])]
        if ann is int:
            out.append(("not whole", 2.5))
    else:  # str, Path, unions of scalars (and engine.f5.model: a name or a mapping)
        members = typing.get_args(ann) or (ann,)
        out = [("wrong type", [1, 2])]
        if not any(typing.get_origin(m) is dict for m in members):
            out.append(("wrong type", {"a": 1}))
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            out.append(("below range", meta.ge - (1 if ann is int else 0.5)))
        elif isinstance(meta, annotated_types.Gt):
            out.append(("below range", meta.gt))
        elif isinstance(meta, annotated_types.Le):
            out.append(("above range", meta.le + 1))
        elif isinstance(meta, annotated_types.MinLen):
            out.append(("too short", ""))
        elif isinstance(meta, annotated_types.MaxLen):
            out.append(("too long", "x" * (meta.max_length + 1)))
        elif getattr(meta, "pattern", None):
            out.append(("bad text", "has spaces and ../slashes!"))
    out += [("refused by its rule", v) for v in VALIDATED_BAD.get(path, [])]
    return out


def nested(path: str, value: Any) -> dict[str, Any]:
    data: Any = value
    for part in reversed(path.split(".")):
        data = {part: data}
    return data


CONFIG_CASES = [
    pytest.param(path, kind, value, id=f"{path}-{kind}-{i}")
    for path, info in config_keys()
    for i, (kind, value) in enumerate(bad_values(path, info))
]


def test_the_walk_covers_every_key_of_the_shipped_config() -> None:

    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    walked = {path for path, _ in config_keys()}

    def leaves(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in data.items():
            yield f"{prefix}{key}"
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")

    assert set(leaves(shipped)) <= walked
    assert len(CONFIG_CASES) > 300  # every key of every section, not a sample


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """``main()`` quiets third-party loggers for the session; give them their levels back."""
    names = ("", "httpx", "urllib3", "numba", "matplotlib", "twitchio")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_loggers")
@pytest.mark.parametrize(("path", "kind", "value"), CONFIG_CASES)
def test_every_bad_config_value_is_reported_with_its_key_path_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    kind: str,
    value: Any,
) -> None:
    """``python -m bot --config X`` (its entry point, in this process: 350+ cases)."""

    from bot.cli import main
    from bot.config import ConfigError, load_config

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # if it ran, not in $HOME
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(nested(path, value)), encoding="utf-8")
    with pytest.raises(ConfigError):  # refused before the bot would start
        load_config(config)
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(lines) == 1, err  # one clear line per bad key
    assert lines[0].startswith((f"  {path}: got ", f"  {path}[0]: got ")), err
    assert len(lines[0]) < 300, err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wrong type", "out of range"])
def test_a_config_full_of_bad_values_names_them_all_from_the_real_command(
    tmp_path: Path, kind: str
) -> None:
    import os
    import sys

    import yaml
    from pydantic import BaseModel

    chosen: dict[str, Any] = {}
    for path, info in config_keys():
        ann, _ = _unwrap(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            continue  # a section: its keys get the bad values
        candidates = [
            v
            for k, v in bad_values(path, info)
            if (k == "wrong type") == (kind == "wrong type") and k != "refused by its rule"
        ]
        if candidates:
            chosen[path] = candidates[0]
    for path in [p for p in chosen if any(q.startswith(p + ".") for q in chosen)]:
        del chosen[path]  # engine.espeak.voices: its sample entry's keys are checked instead
    data: dict[str, Any] = {}
    for path, value in chosen.items():
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path / "state")},
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    reported = {line.split(":")[0].strip().split("[")[0] for line in done.stderr.splitlines()[1:]}
    assert set(chosen) <= reported, sorted(set(chosen) - reported)
    assert len(chosen) > 60


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a: " + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
                for p, n in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "tts: {template: *i}\n",
            "tts.template: got [[[[",
        ),
        (b"\xff\xfe\x00 not text", "cannot read the config file"),
        ("engine: {name: f5\n", "not valid YAML at line"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("42", "top level must be a mapping"),
        ("engine: null", "engine: got None"),
        ("web: {port: 0x10000}", "web.port: got 65536"),
        ("chat: {max_length: .nan}", "chat.max_length: got nan"),
        ("engine: {timeout_s: .inf}", "engine.timeout_s: got inf"),
    ],
    ids=[
        "deep-nesting",
        "billion-laughs",
        "not-utf8",
        "broken-yaml",
        "list",
        "scalar",
        "null-section",
        "hex-port",
        "nan",
        "inf",
    ],
)
@pytest.mark.usefixtures("restored_loggers")
def test_broken_config_files_are_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, expected: str
) -> None:
    from bot.cli import main

    config = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content, encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err
    assert len(err) < 2000


@pytest.mark.usefixtures("restored_loggers")
def test_a_folder_or_a_missing_file_as_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    assert main(["--config", str(tmp_path)]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


# -- security: nothing from chat reaches the filesystem ---------------------------------------
MARK = "zq9mark"
"""In every hostile name, so any file-system event carrying one is recognised."""
HOSTILE_VOICES = [
    f"../../{MARK}/etc/passwd",
    f"/tmp/{MARK}",
    f"{MARK}/../../..",
    f"..\\..\\{MARK}",
    f"{MARK}\x00.wav",
    f"~/{MARK}",
    f"%2e%2e%2f{MARK}",
    f"C:\\{MARK}\\x",
    f"{MARK}" + "a" * 10_000,
    f"{MARK}\n../x",
    f"{MARK}:stream",
    f"file:///{MARK}",
]


class FileEvents:
    """Audit events (open, listdir, scandir, mkdir, remove, rename, sqlite3.connect...) whose
    arguments mention MARK, while watching. Audit hooks cannot be removed: one is installed
    for the session and does nothing unless a watch is on."""

    _installed = False
    _watching: list[list[tuple[str, str]]] = []  # noqa: RUF012 - one hook per process

    @classmethod
    @contextlib.contextmanager
    def watch(cls) -> Iterator[list[tuple[str, str]]]:
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True
        seen: list[tuple[str, str]] = []
        cls._watching.append(seen)
        try:
            yield seen
        finally:
            cls._watching.remove(seen)

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls._watching or event.startswith(("object.", "sys._getframe", "code.")):
            return
        for arg in args:
            if isinstance(arg, bytes):
                text = arg.decode("utf-8", "replace")
            elif isinstance(arg, str | os.PathLike):
                text = os.fsdecode(arg) if not isinstance(arg, str) else arg
            else:
                continue
            if MARK in text:
                for seen in cls._watching:
                    seen.append((event, text[:80]))


def test_the_audit_watch_sees_file_access_with_the_mark(tmp_path: Path) -> None:
    """The detector itself: a real open, listdir and mkdir of a marked path are all seen."""
    with FileEvents.watch() as seen:
        target = tmp_path / MARK
        target.mkdir()
        os.listdir(target)
        (target / "x").write_text("x")
    assert [event for event, _ in seen] == ["os.mkdir", "os.listdir", "open"]


def test_voice_lookup_never_touches_the_filesystem_with_a_hostile_name(tmp_path: Path) -> None:
    from engine.base import VoiceError
    from engine.voices import VoiceLibrary
    from tests.support.f5 import write_alice

    write_alice(tmp_path / "voices")
    cfg = parse_config({"voices": {"dir": str(tmp_path / "voices")}}, tmp_path)
    library = VoiceLibrary(cfg.voices)
    library.scan()
    with FileEvents.watch() as seen:
        for name in HOSTILE_VOICES:
            assert library.lookup(name) is None
            with pytest.raises(VoiceError, match="not a voice name"):
                library.get(name)
    assert seen == []
    assert library.lookup("ALICE") is not None


@pytest.mark.slow
async def test_hostile_voice_and_user_names_from_chat_and_http_never_reach_the_filesystem(
    tmp_path: Path,
) -> None:
    import aiohttp

    from bot.core.messages import Role
    from engine.factory import create_engine
    from tests.support.chat_harness import RecordingPlayer, person
    from tests.support.f5 import write_alice

    write_alice(tmp_path / "voices")
    cfg = parse_config(
        {
            "engine": {"name": "espeak"},
            "voices": {"dir": str(tmp_path / "voices")},
            "audio": {"gap_ms": 0},
            "storage": {"dir": str(tmp_path / "state")},
            "web": {"port": 0},
            "tts": {"say_names": False},
            "queue": {"max_size": 100, "per_user_limit": 100},
        },
        tmp_path,
    )
    app = App(cfg, engine=create_engine(cfg.engine, cfg.voices), player=RecordingPlayer())  # type: ignore[arg-type]
    voices_spoken: list[str] = []
    app.speaker.add_listener(lambda ev: voices_spoken.append(ev.item.voice))
    await app.start()
    replies: list[str] = []

    async def reply(line: str) -> None:
        replies.append(line)

    ids = iter(range(1_000_000))

    def chat(text: str, user: Any) -> ChatMessage:
        return ChatMessage(id=f"m{next(ids)}", user=user, text=text, source="test", reply=reply)

    viewer = person("viewer")
    mod = person("moddy", Role.MODERATOR)
    try:
        assert await app.worker.wait_ready() is EngineState.READY
        assert app.web is not None
        headers = {"Authorization": f"Bearer {app.web.token}"}
        known = await app.voices.names()
        assert "alice" in known
        statuses: list[tuple[str, int, str]] = []
        with FileEvents.watch() as seen:
            for name in HOSTILE_VOICES:
                replies.clear()
                await app.submit(chat(f"!voice {name}", viewer))
                await app.submit(chat(f"!setvoice @viewer {name}", mod))
                await app.submit(chat(f"!mute @{name}", mod))
                await app.submit(chat(f"!tts {name}", viewer))  # as text: spoken, never opened
                said = [r for r in replies if "voice" in r or "user name" in r]
                assert len(said) >= 2, replies
                assert not any(
                    r.startswith(("your voice is now", "viewer's voice")) for r in replies
                )
                async with aiohttp.ClientSession(headers=headers) as http:
                    for path, body in (
                        ("/api/ingest", {"user": "bob", "text": "hello", "voice": name}),
                        ("/api/say", {"text": "hello", "voice": name}),
                        ("/api/ingest", {"user": name[:200], "text": f"read {name[:300]}"}),
                        ("/api/mute", {"user": name[:64]}),
                    ):
                        async with http.post(app.web.base_url + path, json=body) as res:
                            answer = await res.json()
                            statuses.append((path, res.status, answer.get("error", "")))
            await asyncio.wait_for(app.speaker.wait_idle(), HANG_S)
            await app.store.flush()
        assert seen == [], seen[:5]
        by_path: dict[str, list[int]] = {}
        for path, status, _error in statuses:
            by_path.setdefault(path, []).append(status)
        # Hostile voices are refused with a 400 that says why; hostile user names are only
        # names (an ingested message is spoken with it as text), never paths.
        assert set(by_path["/api/say"]) == {400}
        assert by_path["/api/ingest"][0::2] == [400] * len(HOSTILE_VOICES)
        assert set(by_path["/api/mute"]) == {400}
        assert all("voice" in e or "user" in e for p, s, e in statuses if s == 400)
        assert set(voices_spoken) <= {v.lower() for v in known}
        assert app.store.voice_of(viewer) is None
        # The bot is fine: a real choice still works afterwards.
        replies.clear()
        await app.submit(chat("!voice alice", viewer))
        assert replies == ["your voice is now alice"]
    finally:
        await app.close()


# -- Twitch faults: every EventSub close code ---------------------------------------------------
# 4001 and 4003 (twitchio gives up; the source rebuilds), session_reconnect, abrupt drops,
# keepalive silence and refused reconnects are proven in
# tests/bot/sources/twitch/test_source.py. Here: the close codes after which twitchio
# reconnects by itself, through the whole App, speaking once.
@pytest.mark.parametrize("code", [4000, 4002, 4004, 4005, 4006, 4007])
async def test_each_eventsub_close_code_reconnects_and_nothing_is_spoken_twice(
    tmp_path: Path, code: int
) -> None:
    from tests.bot.sources.twitch.test_source import eventually, running_app
    from tests.support.twitch_double import running_double

    async with running_double() as double:
        alice = double.add_user("alice", "Alice")
        async with running_app(double, tmp_path) as (_app, player, speech):
            player.release.set()
            first = double.current()
            mid = await double.chat(alice, "before the close")
            await eventually(lambda: ("finished", "played") in speech.of(mid))
            await double.close_session(code)
            await double.wait_subscribed(exclude=[first])
            await double.chat(alice, "before the close", message_id=mid)  # sent again
            after = await double.chat(alice, "after the close")
            await eventually(lambda: ("finished", "played") in speech.of(after))
            assert [kind for kind, _ in speech.of(mid)] == ["queued", "started", "finished"]
            assert double.current() is not first


# -- state faults: a locked or damaged database ------------------------------------------------
def _damaged_in_the_middle(path: Path) -> None:
    """A real database whose user pages were overwritten (a disk or copy error)."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT)")
    conn.executemany(
        "INSERT INTO users (login) VALUES (?)", [(f"user{i}" * 20,) for i in range(400)]
    )
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 3] = np.random.default_rng(7).bytes(8192)
    path.write_bytes(bytes(data))


def _newer_schema(path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


DAMAGED_DATABASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "random-bytes": (
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(8192)),
        "not a database",
    ),
    "bad-header": (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(4000)), "not a database"),
    "damaged-pages": (_damaged_in_the_middle, "the file is damaged"),
    "a-folder": (lambda p: p.mkdir(), "cannot open the state database"),
    "newer-version": (_newer_schema, "written by a newer ishowtts"),
}


@pytest.mark.parametrize("kind", list(DAMAGED_DATABASES))
async def test_a_damaged_database_is_one_clear_error_and_the_bot_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    from tests.support.chat_harness import VIEWER, make_config, start_bot

    make, reason = DAMAGED_DATABASES[kind]
    db = tmp_path / "state" / "ishowtts.db"
    db.parent.mkdir(parents=True)
    make(db)
    before = db.read_bytes() if db.is_file() else None
    caplog.set_level(logging.INFO)
    bot = await start_bot(make_config(tmp_path, tts={"say_names": False}))
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert str(db) in errors[0]
        assert reason in errors[0]
        assert "will NOT be saved this session" in errors[0]
        # Commands and speech still work (in memory), and the damaged file is left alone
        # for the streamer to inspect or move: nothing was overwritten.
        _decision, replies = await bot.send("!voice alice", VIEWER)
        assert replies == ["your voice is now alice"]
        decision, _ = await bot.send("still speaking", VIEWER)
        assert decision.action == "queued"
        await bot.idle()
        assert bot.finished()[-1] == ("viewer", "still speaking", "played")
    finally:
        await bot.close()
    assert (db.read_bytes() if db.is_file() else None) == before
    assert "Traceback" not in caplog.text


class LockHolder:
    """Another process holding a write transaction on the database (another ishowtts, a
    DB browser left open) until released."""

    def __init__(self, db: Path) -> None:
        script = (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute('CREATE TABLE IF NOT EXISTS lock_holder (x)')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('ROLLBACK')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


@pytest.mark.slow
async def test_a_database_locked_at_start_is_reported_and_the_bot_runs_without_saving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.state.store import Store
    from tests.support.chat_harness import VIEWER, make_config, start_bot

    db = tmp_path / "state" / "ishowtts.db"
    first = Store(db)
    await first.open()
    await first.close()
    holder = LockHolder(db)
    try:
        bot = await start_bot(make_config(tmp_path, tts={"say_names": False}))
        try:
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, errors
            assert "is in use by another program" in errors[0]
            assert "another ishowtts" in errors[0]
            decision, _ = await bot.send("spoken anyway", VIEWER)
            assert decision.action == "queued"
            await bot.idle()
        finally:
            await bot.close()
    finally:
        holder.release()


@pytest.mark.slow
async def test_a_database_locked_while_running_fails_commands_clearly_and_speech_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite waits 10 s for a lock; the event loop never does: chat is spoken meanwhile."""
    from tests.support.chat_harness import VIEWER, make_config, start_bot

    cfg = make_config(tmp_path, tts={"say_names": False})
    bot = await start_bot(cfg)
    db = tmp_path / "state" / "ishowtts.db"
    holder = LockHolder(db)
    try:
        command = asyncio.create_task(bot.send("!voice alice", VIEWER))
        await asyncio.sleep(0.2)
        assert not command.done()  # waiting for the lock, on the store's thread
        decision, _ = await bot.send("chat goes on", VIEWER)
        assert decision.action == "queued"
        await bot.idle()
        assert bot.finished()[-1] == ("viewer", "chat goes on", "played")
        assert not command.done()  # spoken while the command still waited
        _decision, replies = await asyncio.wait_for(command, HANG_S)
        assert replies == ["!voice failed: could not save the change"]
        assert "database is locked" in caplog.text
        holder.release()
        _decision, replies = await bot.send("!voice alice", VIEWER)
        assert replies == ["your voice is now alice"]
    finally:
        holder.release()
        await bot.close()
    again = await start_bot(cfg)  # the choice made after the lock was released is on disk
    try:
        assert again.store.voice_of(VIEWER) == "alice"
    finally:
        await again.close()


# -- flood: chat at 1,000 lines a second through the real twitchio client ----------------------
@pytest.mark.audio
@pytest.mark.slow
async def test_a_chat_flood_keeps_the_bound_the_bot_and_its_moderators(
    pulse_server: Any, tmp_path: Path
) -> None:
    """bench/flood.py at a fifth of its size: what it measures, asserted without any timing."""
    from bench.flood import run_flood

    report = await run_flood(
        messages=2_000,
        rate=1_000,
        control_every=100,
        workdir=tmp_path,
        audio_device=pulse_server.device_name,
        timeout_s=300,
    )
    assert report.delivered == 2_000  # every line reached the bot, none twice
    assert 0 < report.queue_max <= report.queue_bound
    assert report.controls_sent == 20
    assert report.skip_applied.n == 10  # every !skip and !clear ran during the flood
    assert report.clear_applied.n == 10
    assert report.skip_acked.n == 10  # and was acknowledged in chat
    assert report.clear_acked.n == 10
    assert report.clears_that_emptied_a_queue == 10  # the flood refills it every time
    assert report.outcomes.get("skipped", 0) >= 1
    assert report.outcomes.get("dropped", 0) > 1_000  # the bound held by dropping, not growing
    assert report.final_message == "played"  # still speaking after the flood
    assert report.errors_logged == 0


# -- state faults: SIGKILL mid-flood, then restart -------------------------------------------------
_LAUNCH = (
    "import sys\n"
    "from twitchio.eventsub import websockets\n"
    "from twitchio.http import Route\n"
    "websockets.WSS, Route.BASE, Route.ID_BASE = sys.argv[1:4]\n"
    "from bot.cli import main\n"
    "sys.exit(main(sys.argv[4:]))\n"
)
"""``python -m bot`` with twitchio's base URLs on the double (twitchio has no setting)."""


class TwitchBotProcess:
    """The real bot as its own process, reading Twitch chat from the double."""

    def __init__(self, double: Any, config: Path, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCH,
                double.wss,
                double.helix_base,
                double.id_base,
                "--config",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            cwd=config.parent,
            env=env,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def terminate(self) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._log.close()
        return code


async def _acked(double: Any, message_id: str, timeout: float = 60.0) -> str:
    """The bot's reply to one chat message, once it reached Twitch."""
    async with asyncio.timeout(timeout):
        while True:
            for sent in double.sent:
                if sent.get("reply_parent_message_id") == message_id:
                    return str(sent["message"])
            await asyncio.sleep(0.01)


@pytest.mark.audio
@pytest.mark.slow
async def test_sigkill_mid_flood_then_restart_loses_nothing_that_was_acknowledged(
    pulse_server: Any, tmp_path: Path
) -> None:
    import sqlite3

    from bot.sources.twitch.auth import TOKEN_FILE_NAME
    from tests.bot.sources.twitch.test_source import sign_in
    from tests.support.f5 import write_alice
    from tests.support.twitch_double import running_double

    write_alice(tmp_path / "voices")
    async with running_double() as double:
        sign_in(double, tmp_path / "state" / TOKEN_FILE_NAME)
        alice = double.add_user("alice")
        mod = double.add_user("moddy")
        crowd = [double.add_user(f"raider{i}") for i in range(200)]
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "engine": {"name": "espeak"},
                    "voices": {"dir": "voices"},
                    "audio": {"device": pulse_server.device_name, "gap_ms": 0},
                    "chat": {"source": "twitch"},
                    "storage": {"dir": "state"},
                    "web": {"enabled": False},
                    "twitch": {
                        "channel": double.broadcaster.login,
                        "client_id": double.client_id,
                        "reconnect_min_s": 0.2,
                        "reconnect_max_s": 1.0,
                    },
                }
            )
        )
        env = {**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)}
        log = tmp_path / "bot.log"
        flood_sent = [0]

        async def flood() -> None:
            """Raid chat at ~500 lines a second for as long as the test runs."""
            while True:
                for _ in range(5):
                    user = crowd[flood_sent[0] % len(crowd)]
                    with contextlib.suppress(AssertionError):  # between two sessions
                        await double.chat(user, f"raid message number {flood_sent[0]}")
                    flood_sent[0] += 1
                await asyncio.sleep(0.01)

        async def ask(user: Any, text: str, badges: tuple[str, ...] = ()) -> str:
            mid = await double.chat(user, text, badges=list(badges))
            return await _acked(double, mid)

        bot = TwitchBotProcess(double, config, env, log)
        flooding = asyncio.create_task(flood())
        try:
            first = await double.wait_subscribed(timeout=90)
            subscribed_at = flood_sent[0]
            await until(lambda: flood_sent[0] >= subscribed_at + 250)  # the bot is mid-flood
            flood_at_first_command = flood_sent[0]
            assert await ask(alice, "!voice ALICE") == "your voice is now alice"
            m = ("moderator",)
            assert await ask(mod, "!mute @pest 1h", m) == "muted pest for 1 hour"
            assert await ask(mod, "!setvoice @newbie alice", m) == "newbie's voice is now alice"
            assert await ask(mod, "!volume 40", m) == "volume 40%"
            assert await ask(mod, "!ttsoff", m) == "TTS is off; !ttson turns it back on"
            assert await ask(mod, "!pause", m) == "paused; !resume continues"
            bot.kill()  # at once, with chat still pouring in: no clean shutdown
            assert flood_at_first_command > 100  # the raid was on before the commands,
            assert flood_sent[0] > flood_at_first_command  # during them and up to the kill
            assert "speaking raider" in log.read_text(errors="replace")  # it was busy speaking
            # What a fresh process finds on disk: every acknowledged change.
            db = tmp_path / "state" / "ishowtts.db"
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                users = {
                    login: (voice, bool(muted))
                    for login, voice, muted in conn.execute("SELECT login, voice, muted FROM users")
                }
                settings = dict(conn.execute("SELECT key, value FROM settings").fetchall())
            finally:
                conn.close()
            assert users["alice"] == ("alice", False)
            assert users["pest"] == (None, True)
            assert users["newbie"] == ("alice", False)
            assert settings == {"volume": "0.4", "enabled": "false", "paused": "true"}

            bot = TwitchBotProcess(double, config, env, log)
            await double.wait_subscribed(exclude=[first], timeout=90)
            assert await ask(alice, "!voice") == "your voice is alice"
            assert await ask(mod, "!volume", m) == "volume is 40%"
            assert await ask(mod, "!ttson", m) == "TTS is on"
            assert await ask(mod, "!resume", m) == "resumed"
            assert await ask(mod, "!unmute @pest", m) == "unmuted pest"  # the mute was there
            assert await ask(mod, "!unmute @pest", m) == "pest was not muted"
            assert bot.terminate() == 0
        finally:
            flooding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooding
            if bot.proc.poll() is None:
                bot.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.audio
@pytest.mark.slow
def test_the_real_command_with_a_damaged_database_says_so_once_and_keeps_serving(
    pulse_server: Any, tmp_path: Path
) -> None:
    """Not a crash loop: every start reports it in one line, then serves chat and exits 0."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {"name": "espeak"},
                "audio": {"device": pulse_server.device_name, "gap_ms": 0},
                "chat": {"source": "terminal"},
                "storage": {"dir": "state"},
                "web": {"enabled": False},
            }
        )
    )
    db = tmp_path / "state" / "ishowtts.db"
    db.parent.mkdir()
    db.write_bytes(b"this was an ishowtts database before the disk died" * 100)
    before = db.read_bytes()
    for _start in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(config)],
            input=b"!voice\nhello after the damage\n",
            capture_output=True,
            cwd=tmp_path,
            env={**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)},
            timeout=180,
            check=False,
        )
        err = done.stderr.decode(errors="replace")
        assert done.returncode == 0, err
        assert "Traceback" not in err
        problems = [line for line in err.splitlines() if " ERROR " in line]
        assert len(problems) == 1, problems
        assert str(db) in problems[0]
        assert "not a usable ishowtts database" in problems[0]
        assert "will NOT be saved this session" in problems[0]
        assert "speaking " in err  # chat was served
        assert b"[ishowtts] your voice is default" in done.stdout
    assert db.read_bytes() == before  # the evidence is kept for the streamer


# -- memory: nothing grows with the number of messages -------------------------------------------
def test_speaking_many_different_lines_with_espeak_keeps_no_memory(tmp_path: Path) -> None:
    """bench/flood.py found RSS rising with every new eSpeak callback size (a ctypes type
    cached per size); after the first lines, more lines must not leave memory behind."""
    import tracemalloc

    from engine.config import EspeakConfig, VoicesConfig
    from engine.espeak import EspeakEngine

    engine = EspeakEngine(EspeakConfig(), VoicesConfig(dir=tmp_path / "voices"))
    engine.load(lambda _state, _detail: None)
    rng = np.random.default_rng(3)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "chat",
        "goes",
        "wild",
    ]

    def speak(count: int) -> int:
        samples = 0
        for _ in range(count):
            line = " ".join(rng.choice(words, size=int(rng.integers(1, 30))))
            samples += sum(len(c) for c in engine.synthesize(line, "default", lambda: False))
        return samples

    try:
        speak(40)  # warm-up: the library's own buffers, voice data
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        assert speak(150) > 0
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        engine.close()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"{grown / 1024:.0f} KiB kept after 150 lines"
