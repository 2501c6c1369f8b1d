"""The voice library on real files: scanning, name rules, problems, trimming long clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.base import VoiceError
from engine.config import VoicesConfig
from engine.voices import (
    BUILTIN_TRANSCRIPT,
    MAX_REFERENCE_S,
    VoiceLibrary,
    builtin_clip,
    load_reference,
)
from tests.support.f5 import write_alice, write_voice

RATE = 24_000


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a syllable-rate envelope that never falls silent."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * rng.standard_normal(t.size) * envelope).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def _library(voices: Path, default: str = "default") -> VoiceLibrary:
    return VoiceLibrary(VoicesConfig(dir=voices, default=default))


def test_builtin_default_works_without_a_voices_folder(tmp_path: Path) -> None:
    library = _library(tmp_path / "does-not-exist")
    specs = library.scan()
    assert list(specs) == ["default"]
    spec = specs["default"]
    assert spec.builtin
    assert spec.usable
    assert spec.clip == builtin_clip()
    assert spec.clip.is_file()
    assert spec.transcript == BUILTIN_TRANSCRIPT
    assert library.get("Default") is spec


def test_folder_voice_is_found_case_insensitively(tmp_path: Path) -> None:
    write_alice(tmp_path)
    write_voice(tmp_path, "Bob", _speech_like(3.0), RATE, "hello from bob")
    library = _library(tmp_path)
    specs = library.scan()
    assert sorted(specs) == ["alice", "bob", "default"]
    alice = library.get("ALICE")
    assert alice.name == "alice"
    assert alice.clip.name == "alice.flac"
    assert not alice.builtin
    assert alice.transcript == BUILTIN_TRANSCRIPT
    assert specs["bob"].transcript == "hello from bob"
    assert specs["bob"].clip == tmp_path / "Bob" / "reference.wav"


def test_a_default_folder_overrides_the_builtin(tmp_path: Path) -> None:
    write_voice(tmp_path, "default", _speech_like(3.0), RATE, "my own default")
    spec = _library(tmp_path).get("default")
    assert not spec.builtin
    assert spec.transcript == "my own default"
    assert spec.clip == tmp_path / "default" / "reference.wav"


def test_missing_transcript_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    write_voice(tmp_path, "mute", _speech_like(3.0), RATE, None)
    library = _library(tmp_path)
    spec = library.scan()["mute"]
    assert spec.problem is not None
    assert "reference.txt" in spec.problem
    assert spec.transcript is None
    with pytest.raises(VoiceError, match=r"'mute' cannot be used: missing .*reference\.txt"):
        library.get("mute")


def test_empty_transcript_is_a_problem(tmp_path: Path) -> None:
    write_voice(tmp_path, "blank", _speech_like(3.0), RATE, "  \n ")
    spec = _library(tmp_path).scan()["blank"]
    assert spec.problem is not None
    assert "empty" in spec.problem


def test_broken_clip_is_a_problem(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "reference.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (folder / "reference.txt").write_text("words", encoding="utf-8")
    spec = _library(tmp_path).scan()["broken"]
    assert spec.problem is not None
    assert "cannot read" in spec.problem
    assert "reference.wav" in spec.problem
    with pytest.raises(VoiceError, match="cannot read"):
        load_reference((folder / "reference.wav").read_bytes(), "words", "broken/reference.wav")


def test_no_clip_and_ambiguous_clips(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "reference.txt").write_text("words", encoding="utf-8")
    write_voice(tmp_path, "two", _speech_like(2.0), RATE, "words", "a.wav")
    sf.write(str(tmp_path / "two" / "b.flac"), _speech_like(2.0), RATE)
    write_voice(tmp_path, "picked", _speech_like(2.0), RATE, "words", "take1.wav")
    write_voice(tmp_path, "picked", _speech_like(2.0), RATE, "words", "reference.flac")
    specs = _library(tmp_path).scan()
    assert specs["empty"].problem is not None
    assert "no reference clip" in specs["empty"].problem
    assert specs["two"].problem is not None
    assert "several audio files" in specs["two"].problem
    assert specs["picked"].usable
    assert specs["picked"].clip.name == "reference.flac"


def test_too_short_clip_is_a_problem(tmp_path: Path) -> None:
    write_voice(tmp_path, "blip", _speech_like(0.4), RATE, "hi")
    spec = _library(tmp_path).scan()["blip"]
    assert spec.problem is not None
    assert "0.4 s" in spec.problem


def test_bad_names_never_reach_the_disk(tmp_path: Path) -> None:
    write_alice(tmp_path)
    write_voice(tmp_path, "my voice", _speech_like(2.0), RATE, "words")
    library = _library(tmp_path)
    specs = library.scan()
    assert specs["my voice"].problem is not None
    assert "not a valid voice name" in specs["my voice"].problem
    for bad in ("../alice", "alice/../alice", "/etc/passwd", "my voice", "", "a" * 33, "ålice"):
        assert library.lookup(bad) is None
        with pytest.raises(VoiceError, match="not a voice name"):
            library.get(bad)
    with pytest.raises(VoiceError, match=r"no voice named 'nobody' \(available: alice, default\)"):
        library.get("nobody")


def test_a_voice_added_later_is_found_by_get(tmp_path: Path) -> None:
    library = _library(tmp_path)
    assert "carol" not in library.scan()
    write_voice(tmp_path, "carol", _speech_like(2.0), RATE, "late arrival")
    assert library.get("carol").transcript == "late arrival"


def test_silent_edges_are_trimmed_and_a_short_pause_appended() -> None:
    clip = np.concatenate([_silence(1.0), _speech_like(2.0), _silence(1.5)])
    data = _wav_bytes(clip)
    ref = load_reference(data, "some words", "edges.wav")
    assert ref.sample_rate == RATE
    assert ref.trimmed_from is None
    # 2 s of speech, 20 ms kept at each edge (frame granularity), plus 50 ms of silence.
    assert 2.0 <= ref.seconds <= 2.0 + 0.04 + 0.05 + 0.04
    assert np.all(ref.samples[-round(0.05 * RATE) :] == 0)
    assert ref.transcript == "some words"


def test_silent_clip_is_rejected() -> None:
    with pytest.raises(VoiceError, match="silent"):
        load_reference(_wav_bytes(_silence(3.0)), "words", "quiet.wav")


def test_a_clip_below_speaking_level_is_rejected_not_a_crash() -> None:
    # -60 dBFS: above digital silence, below the -50 dBFS voiced threshold everywhere.
    t = np.arange(3 * RATE) / RATE
    hum = (0.001 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    with pytest.raises(VoiceError, match="too quiet"):
        load_reference(_wav_bytes(hum), "words", "hum.wav")


SENTENCES = [
    "The first sentence is here.",
    "Then a second one follows.",
    "A third comes right after.",
    "Here is the fourth of them.",
    "And the fifth ends it all.",
]


def _long_clip_with_pauses() -> np.ndarray:
    parts = []
    for i in range(len(SENTENCES)):
        parts.append(_speech_like(3.5, seed=i))
        parts.append(_silence(0.5))
    return np.concatenate(parts[:-1])  # 5 * 3.5 + 4 * 0.5 = 19.5 s


def test_long_clip_is_cut_at_a_pause_with_its_transcript(tmp_path: Path) -> None:
    clip = _long_clip_with_pauses()
    transcript = " ".join(SENTENCES)
    ref = load_reference(_wav_bytes(clip), transcript, "long.wav")
    assert ref.trimmed_from == pytest.approx(19.5, abs=0.01)
    assert ref.seconds <= MAX_REFERENCE_S + 0.1
    # Three sentences (11.5 s incl. two pauses) fit; the cut lands in the third pause.
    assert 11.5 <= ref.seconds <= 12.0
    assert ref.transcript == " ".join(SENTENCES[:3])

    write_voice(tmp_path, "talker", clip, RATE, transcript)
    spec = _library(tmp_path).get("talker")
    assert spec.usable
    assert spec.note is not None
    assert "19.5 s" in spec.note
    assert "A third comes right after." in spec.note


def test_long_clip_without_a_pause_is_rejected_with_a_clear_problem(tmp_path: Path) -> None:
    write_voice(tmp_path, "rambler", _speech_like(15.0), RATE, "words " * 40)
    library = _library(tmp_path)
    spec = library.scan()["rambler"]
    assert spec.problem is not None
    assert "15.0 s" in spec.problem
    assert "no pause" in spec.problem
    assert "12 s" in spec.problem
    with pytest.raises(VoiceError, match="no pause"):
        library.get("rambler")


def _wav_bytes(samples: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV")
    return buffer.getvalue()
