"""The eSpeak NG engine on the real libespeak-ng from the espeakng-loader wheel."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine import espeak
from engine.base import EngineError, EngineState
from engine.config import EspeakConfig, VoicesConfig
from engine.espeak import VARIANT_POOL, EspeakEngine, map_voice, split_sentences
from engine.worker import EngineWorker
from tests.support import REPO

NAMES = ["alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy", "victor", "walter"]


def _never() -> bool:
    return False


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("espeak_voices")
    for name in ["Alice", "bob", "bad name"]:
        (root / name).mkdir()
    return root


def _engine(voices_dir: Path, **espeak: object) -> EspeakEngine:
    engine = EspeakEngine(EspeakConfig(**espeak), VoicesConfig(dir=voices_dir))
    engine.load(lambda _state, _detail: None)
    return engine


@pytest.fixture(scope="module")
def engine(voices_dir: Path) -> EspeakEngine:
    return _engine(voices_dir)


def _speak(engine: EspeakEngine, text: str, voice: str = "default") -> np.ndarray:
    chunks = list(engine.synthesize(text, voice, _never))
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _voiced_seconds(audio: np.ndarray, rate: int) -> float:
    """Time between the first and last sample above the noise floor."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return 0.0 if loud.size == 0 else (loud[-1] - loud[0]) / rate


def _voice_print(audio: np.ndarray) -> np.ndarray:
    """Mean log spectrum over voiced frames: changes with variant and pitch, not with noise."""
    frame = 1024
    count = len(audio) // frame
    frames = audio[: count * frame].reshape(count, frame)
    frames = frames[np.sqrt(np.mean(frames**2, axis=1)) > 0.02]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)).mean(axis=0)
    bands = np.array_split(spectrum[1:400], 40)
    return np.log10(np.array([b.mean() for b in bands]) + 1e-6)


def _f0(audio: np.ndarray, rate: int) -> float:
    """Median fundamental frequency of voiced frames by autocorrelation (60-400 Hz)."""
    frame = 2048
    lo, hi = rate // 400, rate // 60
    estimates = []
    for start in range(0, len(audio) - frame, frame):
        x = audio[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < 0.03:
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, mode="full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            estimates.append(rate / lag)
    assert estimates, "no voiced frames"
    return float(np.median(estimates))


def test_construction_does_no_io(tmp_path: Path) -> None:
    engine = EspeakEngine(EspeakConfig(), VoicesConfig(dir=tmp_path / "absent"))
    assert engine.name == "espeak"
    with pytest.raises(EngineError, match="not loaded"):
        list(engine.synthesize("hello", "default", _never))


def test_load_reports_progress_and_rate(voices_dir: Path) -> None:
    events: list[tuple[EngineState, str]] = []
    engine = EspeakEngine(EspeakConfig(), VoicesConfig(dir=voices_dir))
    engine.load(lambda state, detail: events.append((state, detail)))
    assert engine.sample_rate == 22_050
    assert [state for state, _ in events] == [EngineState.LOADING, EngineState.WARMING]


@pytest.mark.parametrize(
    ("voice", "unknown"),
    [
        ("xx-nowhere", "unknown voice 'xx-nowhere'"),
        ("en-us+nope", "unknown variant 'nope'"),
        ("en-gb", "did you mean en-gb-"),
    ],
)
def test_uninstalled_configured_voice_is_a_clear_error(
    voices_dir: Path, voice: str, unknown: str
) -> None:
    engine = EspeakEngine(EspeakConfig(voice=voice), VoicesConfig(dir=voices_dir))
    with pytest.raises(EngineError, match=r"engine\.espeak\.voice") as info:
        engine.load(lambda _s, _d: None)
    assert unknown in str(info.value)


def test_speech_is_finite_and_grows_with_text(engine: EspeakEngine) -> None:
    short = _speak(engine, "hello")
    long = _speak(engine, "hello there, welcome to the stream, everyone is here today")
    for audio in (short, long):
        assert audio.size > 0
        assert np.all(np.isfinite(audio))
        assert 0.05 < float(np.max(np.abs(audio))) <= 1.0
    assert _voiced_seconds(long, 22_050) > 3 * _voiced_seconds(short, 22_050)


def test_sentences_come_as_separate_chunks(engine: EspeakEngine) -> None:
    chunks = list(engine.synthesize("First one. Second one! Third one?", "default", _never))
    assert len(chunks) == 3
    assert split_sentences("a. b\nc!!  d") == ["a.", "b", "c!!", "d"]


def test_rate_changes_duration(voices_dir: Path) -> None:
    text = "the quick brown fox jumps over the lazy dog"
    slow = _voiced_seconds(_speak(_engine(voices_dir, rate=100), text), 22_050)
    fast = _voiced_seconds(_speak(_engine(voices_dir, rate=300), text), 22_050)
    assert fast < 0.6 * slow


def test_pitch_setting_changes_pitch(voices_dir: Path) -> None:
    text = "hello world this is a test of my voice"
    low = _f0(_speak(_engine(voices_dir, pitch=10), text), 22_050)
    high = _f0(_speak(_engine(voices_dir, pitch=90), text), 22_050)
    assert high > 1.3 * low


def test_mapping_is_stable_across_processes() -> None:
    """The mapping must not depend on Python's per-process string hash salt."""
    here = {n: list(dataclasses.astuple(map_voice(n, EspeakConfig()))) for n in NAMES}
    script = (
        "import dataclasses, json; from engine.config import EspeakConfig; "
        "from engine.espeak import map_voice; "
        f"print(json.dumps({{n: list(dataclasses.astuple(map_voice(n, EspeakConfig()))) "
        f"for n in {NAMES!r}}}))"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_same_voice_sounds_the_same_across_processes(engine: EspeakEngine) -> None:
    script = (
        "import sys, numpy as np; from pathlib import Path;"
        "from engine.config import EspeakConfig, VoicesConfig;"
        "from engine.espeak import EspeakEngine;"
        "e = EspeakEngine(EspeakConfig(), VoicesConfig(dir=Path(sys.argv[1])));"
        "e.load(lambda s, d: None);"
        "a = np.concatenate(list(e.synthesize('hello world', 'alice', lambda: False)));"
        "sys.stdout.buffer.write(a.tobytes())"
    )
    voices = engine.library.lookup("alice")
    assert voices is not None
    out = subprocess.run(
        [sys.executable, "-c", script, str(voices.clip.parent.parent)],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    theirs = np.frombuffer(out.stdout, dtype=np.float32)
    ours = _speak(engine, "hello world", "alice")
    assert abs(len(theirs) - len(ours)) <= 0.01 * len(ours)
    assert np.max(np.abs(_voice_print(theirs) - _voice_print(ours))) < 0.1


def test_different_names_get_different_voices(engine: EspeakEngine) -> None:
    cfg = EspeakConfig()
    settings = [map_voice(n, cfg) for n in NAMES]
    assert len(set(settings)) == len(NAMES)
    assert len({s.spec for s in settings}) >= 4
    assert all(s.spec.partition("+")[2] in VARIANT_POOL for s in settings)
    assert all(s.spec.startswith("en-us+") for s in settings)
    assert map_voice("default", cfg) == type(settings[0])(cfg.voice, cfg.rate, cfg.pitch)

    text = "good morning everyone welcome to the stream"
    alice = _speak(engine, text, "alice")
    again = _speak(engine, text, "ALICE")  # names are case-insensitive
    bob = _speak(engine, text, "bob")
    default = _speak(engine, text, "default")
    same = np.max(np.abs(_voice_print(alice) - _voice_print(again)))
    for other in (bob, default):
        assert np.max(np.abs(_voice_print(alice) - _voice_print(other))) > 5 * same + 0.05


def test_per_voice_settings_override_the_mapping(voices_dir: Path) -> None:
    cfg = EspeakConfig(
        voices={
            "Alice": {"rate": 300},
            "default": {"pitch": 10},
            "robot": {"voice": "en+robosoft", "rate": 120, "pitch": 20},
        }
    )
    engine = EspeakEngine(cfg, VoicesConfig(dir=voices_dir))
    engine.load(lambda _s, _d: None)
    plain = map_voice("alice", EspeakConfig())
    assert engine.voice_settings("alice") == type(plain)(plain.spec, 300, plain.pitch)
    assert engine.voice_settings("default").pitch == 10
    assert engine.voice_settings("ROBOT") == type(plain)("en+robosoft", 120, 20)
    assert [v.name for v in engine.voices()] == ["default", "alice", "bob", "robot"]
    text = "the quick brown fox jumps over the lazy dog"
    fast = _voiced_seconds(_speak(engine, text, "alice"), 22_050)
    usual = _voiced_seconds(_speak(_engine(voices_dir), text, "alice"), 22_050)
    assert fast < 0.75 * usual
    assert _speak(engine, text, "robot").size > 0


def test_uninstalled_per_voice_setting_names_its_key(voices_dir: Path) -> None:
    cfg = EspeakConfig(voices={"bob": {"voice": "en-us+nope"}})
    engine = EspeakEngine(cfg, VoicesConfig(dir=voices_dir))
    with pytest.raises(EngineError, match=r"engine\.espeak\.voices\.bob\.voice"):
        engine.load(lambda _s, _d: None)


def test_unknown_voice_falls_back_with_a_log_line(
    engine: EspeakEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.espeak")
    assert engine.voice_settings("nobody") == map_voice("default", engine.cfg)
    assert engine.voice_settings("../../etc/passwd") == map_voice("default", engine.cfg)
    assert engine.voice_settings("en-us+whisper") == map_voice("default", engine.cfg)
    assert "unknown voice 'nobody'" in caplog.text
    assert _speak(engine, "hello", "nobody").size > 0


def test_voices_lists_default_and_valid_folders(engine: EspeakEngine, voices_dir: Path) -> None:
    infos = engine.voices()
    assert [v.name for v in infos] == ["default", "alice", "bob"]
    assert all(v.problem is None and "eSpeak NG en-us+" in v.description for v in infos)
    assert "for F5-TTS" in infos[1].description  # the folder has no clip yet: say so
    (voices_dir / "carol").mkdir()
    try:
        # A folder added while running is picked up by name.
        assert engine.voice_settings("carol") == map_voice("carol", engine.cfg)
    finally:
        (voices_dir / "carol").rmdir()


def test_stop_between_chunks(engine: EspeakEngine) -> None:
    stop = threading.Event()
    chunks = []
    for chunk in engine.synthesize("One sentence. Two sentences. Three.", "default", stop.is_set):
        chunks.append(chunk)
        stop.set()
    assert len(chunks) == 1


def test_stop_inside_a_sentence_aborts_it(engine: EspeakEngine) -> None:
    text = "this is one long sentence without any break that goes on and on " * 3
    full = _speak(engine, text)
    polls = 0

    def stop_after_a_few_polls() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    chunks = list(engine.synthesize(text, "default", stop_after_a_few_polls))
    assert sum(c.size for c in chunks) < 0.5 * full.size
    # The library is left in a good state: the next message is whole.
    assert abs(_speak(engine, text).size - full.size) < 0.01 * full.size


def test_many_sequential_calls(engine: EspeakEngine) -> None:
    sizes = [_speak(engine, f"message number {i}", NAMES[i % len(NAMES)]).size for i in range(200)]
    assert min(sizes) > 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "😀🔥💯",
        "\x00\x07\x1b\x7f",
        "\u202e\u200b\ufeff",
        "...!!!???",
    ],
)
def test_nothing_speakable_gives_no_audio(engine: EspeakEngine, text: str) -> None:
    assert list(engine.synthesize(text, "default", _never)) == []


@pytest.mark.parametrize(
    "text",
    [
        "hello\x00world",  # a NUL would end the C string early
        "bell\x07 and escape\x1b[31m red",
        "broken \ud800 surrogate",
        "<speak>not markup</speak> & [[h@'loU]] %s %n",
        "hello 😀 world",
        "Привет мир, 你好",
        "x" * 5000,
    ],
)
def test_odd_text_is_spoken_without_trouble(engine: EspeakEngine, text: str) -> None:
    audio = _speak(engine, text)
    assert audio.size > 0
    assert np.all(np.isfinite(audio))


def test_nul_does_not_cut_the_text(engine: EspeakEngine) -> None:
    whole = _speak(engine, "hello world")
    assert abs(_speak(engine, "hello\x00 world").size - whole.size) < 0.05 * whole.size


_THREADS_SCRIPT = """
import sys, threading
from pathlib import Path
import numpy as np
from engine.config import EspeakConfig, VoicesConfig
from engine.espeak import EspeakEngine

engines = [EspeakEngine(EspeakConfig(rate=150 + 20 * i), VoicesConfig(dir=Path(sys.argv[1])))
           for i in range(4)]
for e in engines:
    e.load(lambda s, d: None)
sizes = []

def work(engine):
    for i in range(25):
        chunks = engine.synthesize(f"thread message {i}. second part", "default", lambda: False)
        sizes.append(sum(c.size for c in chunks))

threads = [threading.Thread(target=work, args=(e,)) for e in engines]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(sizes), min(sizes))
"""


def test_calls_from_several_threads_are_serialised(voices_dir: Path) -> None:
    """Unguarded, concurrent synthesis crashes the library (double free); the lock prevents it.

    Runs in a subprocess so that a regression fails this test instead of killing pytest.
    """
    out = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, str(voices_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    count, smallest = map(int, out.stdout.split())
    assert count == 100
    assert smallest > 0


async def test_through_the_engine_worker(voices_dir: Path) -> None:
    worker = EngineWorker(EspeakEngine(EspeakConfig(), VoicesConfig(dir=voices_dir)))
    await worker.start()
    try:
        assert await worker.wait_ready() is EngineState.READY
        job = worker.submit("Hello there. How are you?", "bob")
        audio = await job.collect()
        assert job.sample_rate == 22_050
        assert audio.size > 22_050 // 2
        names = [v.name for v in await worker.call(lambda e: e.voices())]
        assert names == ["default", "alice", "bob"]
    finally:
        await worker.close()


def test_the_data_path_is_handed_to_c_in_the_file_system_encoding() -> None:
    # No "mbcs" codec off Windows: fopen takes what Python's file system encoding makes.
    assert espeak.c_path("/opt/données/espeak-ng-data", ansi_codec="no-such-codec") == (
        os.fsencode("/opt/données/espeak-ng-data")
    )


def test_on_windows_the_code_page_spells_the_path_or_its_short_name_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A code page is simulated by a codec that exists here: cp1252 spells "José", ASCII not.
    long_name = "C:\\Users\\José\\ishowtts\\.venv\\espeak-ng-data"
    assert espeak.c_path(long_name, ansi_codec="cp1252") == long_name.encode("cp1252")
    monkeypatch.setattr(espeak, "_short_path", lambda _p: "C:\\Users\\JOS~1\\ISHOWT~1")
    assert espeak.c_path(long_name, ansi_codec="ascii") == b"C:\\Users\\JOS~1\\ISHOWT~1"
    monkeypatch.setattr(espeak, "_short_path", lambda _p: None)
    with pytest.raises(EngineError, match="plain name"):
        espeak.c_path(long_name, ansi_codec="ascii")


SPEED_LINE = "Thanks for the follow, and welcome in. Grab a seat, the next round starts soon."


def test_speed_scales_the_rate_for_one_request_only(engine: EspeakEngine) -> None:
    normal = _speak(engine, SPEED_LINE)
    fast = np.concatenate(list(engine.synthesize(SPEED_LINE, "default", _never, speed=2.0)))
    slow = np.concatenate(list(engine.synthesize(SPEED_LINE, "bob", _never, speed=0.5)))
    after = _speak(engine, SPEED_LINE)  # the library is stateful: the rate must come back
    bob = _speak(engine, SPEED_LINE, "bob")
    assert len(fast) < 0.7 * len(normal)
    assert len(slow) > 1.4 * len(bob)
    assert len(after) == len(normal)  # same length (klatt's noise source differs per run)


async def test_the_worker_carries_each_jobs_speed_alone_and_in_a_batch(voices_dir: Path) -> None:
    worker = EngineWorker(EspeakEngine(EspeakConfig(), VoicesConfig(dir=voices_dir)))
    await worker.start()
    try:
        assert await worker.wait_ready() is EngineState.READY
        normal = await worker.submit(SPEED_LINE, "default").collect()
        fast = await worker.submit(SPEED_LINE, "default", speed=2.0).collect()
        assert len(fast) < 0.7 * len(normal)
        jobs = worker.submit_batch(
            [(SPEED_LINE, "default", 2.0), (SPEED_LINE, "default"), (SPEED_LINE, "default", 1.0)]
        )
        assert [job.speed for job in jobs] == [2.0, 1.0, 1.0]
        batch = [await job.collect() for job in jobs]
        assert [len(a) for a in batch] == [len(fast), len(normal), len(normal)]
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="speed"):
                worker.submit(SPEED_LINE, "default", speed=bad)
            with pytest.raises(ValueError, match="speed"):
                worker.submit_batch([("ok", "default"), ("no", "default", bad)])
        assert len(await worker.submit(SPEED_LINE, "default").collect()) == len(normal)
    finally:
        await worker.close()
