"""``ishowtts voices add``: real clips in, canonical voices out (or a clear refusal).

The clips are made here with numpy + soundfile from f5-tts's packaged reference (real human
speech, 24 kHz mono): stereo, 44.1 kHz, FLAC/OGG/MP3, too long, too quiet, clipped, silent,
too short, broken. What comes out is checked independently of the code under test: the file's
format, rate and length, its speech level, its correlation with the input, and that the
voice library and the F5 engine (tiny weights, real code) accept it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from bot.setup.voice_import import (
    TRANSCRIPT_REQUIRED,
    PreparedVoice,
    VoiceImportError,
    add_voice_command,
    prepare_voice,
    recognise_speech,
    voice_problem,
)
from engine.config import VoicesConfig
from engine.voices import MAX_REFERENCE_S, VoiceLibrary, builtin_clip
from tests.support import REPO
from tests.support.asr import wer

TRANSCRIPT = "Some call me nature, others call me mother nature."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(builtin_clip()), dtype="float32")
    assert audio.ndim == 1
    return audio, rate


def voices_cfg(tmp_path: Path) -> VoicesConfig:
    return VoicesConfig(dir=tmp_path / "voices")


def add(
    tmp_path: Path, name: str, clip: Path, text: str | None = TRANSCRIPT, **kwargs: Any
) -> tuple[int, str]:
    out = io.StringIO()
    kwargs.setdefault("interactive", False)
    rc = add_voice_command(voices_cfg(tmp_path), name, clip, text, out=out, **kwargs)
    return rc, out.getvalue()


def speech_level_dbfs(samples: np.ndarray, rate: int) -> float:
    """Power-average level of 20 ms frames within 30 dB of the loudest (independent check)."""
    frame = int(0.02 * rate)
    n = len(samples) // frame
    power = np.mean(np.square(samples[: n * frame].reshape(n, frame).astype(np.float64)), axis=1)
    levels = 10 * np.log10(np.maximum(power, 1e-18))
    loud = levels > np.percentile(levels, 95) - 30
    return float(10 * np.log10(np.mean(power[loud])))


def aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` at the lag where they line up best."""
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lag = int(np.argmax(xc))
    if lag > size // 2:
        lag -= size
    if lag >= 0:
        x, y = a[lag:], b
    else:
        x, y = a, b[-lag:]
    m = min(len(x), len(y))
    return float(np.corrcoef(x[:m], y[:m])[0, 1])


def read_voice(tmp_path: Path, name: str) -> tuple[np.ndarray, int, str, Any]:
    folder = tmp_path / "voices" / name
    info = sf.info(str(folder / "reference.wav"))
    audio, rate = sf.read(str(folder / "reference.wav"), dtype="float32")
    text = (folder / "reference.txt").read_text(encoding="utf-8")
    return audio, rate, text, info


def assert_canonical(tmp_path: Path, name: str) -> tuple[np.ndarray, str]:
    audio, rate, text, info = read_voice(tmp_path, name)
    assert (info.format, info.subtype, info.channels, rate) == ("WAV", "PCM_16", 1, 24_000)
    assert len(audio) / rate <= MAX_REFERENCE_S
    assert abs(speech_level_dbfs(audio, rate) - (-20.0)) < 1.5
    assert np.max(np.abs(audio)) <= 10 ** (-1.0 / 20) + 1e-3  # never above -1 dBFS
    spec = VoiceLibrary(voices_cfg(tmp_path)).lookup(name)
    assert spec is not None
    assert spec.problem is None
    assert spec.note is None  # nothing left for the engine to trim
    return audio, text


def nothing_saved(tmp_path: Path) -> bool:
    root = tmp_path / "voices"
    return not root.exists() or not any(root.iterdir())


# -- clips that work ----------------------------------------------------------------------


def test_a_24k_mono_wav_is_stored_canonically(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    rc, report = add(tmp_path, "streamer", clip)
    assert rc == 0, report
    stored, text = assert_canonical(tmp_path, "streamer")
    assert text == TRANSCRIPT + "\n"
    assert aligned_correlation(stored, audio) > 0.99
    assert abs(len(stored) / 24_000 - len(audio) / rate) < 0.2
    assert "Saved voice 'streamer'" in report
    assert "!voice streamer" in report


def test_stereo_at_44k_is_mixed_down_and_resampled(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    at44 = soxr.resample(audio, rate, 44_100)
    stereo = np.stack([at44, 0.4 * at44], axis=1)
    clip = tmp_path / "stereo.wav"
    sf.write(str(clip), stereo, 44_100, subtype="FLOAT")
    prepared = prepare_voice(clip, TRANSCRIPT)
    codes = [f.code for f in prepared.findings]
    assert "mixed_to_mono" in codes
    assert "resampled" in codes
    rc, report = add(tmp_path, "stereo", clip)
    assert rc == 0, report
    stored, _ = assert_canonical(tmp_path, "stereo")
    # Same speech as the 24 kHz original: resampling kept the signal, not just the length.
    assert aligned_correlation(stored, audio) > 0.98
    assert "44100 Hz to 24000 Hz" in report


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype"),
    [("flac", "FLAC", "PCM_24"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")],
)
def test_other_formats_soundfile_reads_are_converted(
    tmp_path: Path, speech: Any, suffix: str, fmt: str, subtype: str
) -> None:
    audio, rate = speech
    at48 = soxr.resample(audio, rate, 48_000)
    clip = tmp_path / f"voice.{suffix}"
    sf.write(str(clip), at48, 48_000, format=fmt, subtype=subtype)
    rc, report = add(tmp_path, f"from_{suffix}", clip)
    assert rc == 0, report
    assert f"read voice.{suffix}: {fmt}" in report
    stored, _ = assert_canonical(tmp_path, f"from_{suffix}")
    assert abs(len(stored) / 24_000 - len(audio) / rate) < 0.25
    assert aligned_correlation(stored, audio) > 0.9  # lossy codecs change the waveform a little


def test_a_long_clip_is_cut_at_a_pause_with_its_transcript(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    pause = np.zeros(int(0.6 * rate), dtype=np.float32)
    long = np.concatenate([pause, audio, pause, audio, pause, audio, pause])
    assert len(long) / rate > 17
    clip = tmp_path / "long.wav"
    sf.write(str(clip), long, rate)
    rc, report = add(tmp_path, "long", clip, " ".join([TRANSCRIPT] * 3))
    assert rc == 0, report
    stored, text = assert_canonical(tmp_path, "long")
    # Two of the three sentences fit under 12 s; the cut lies in the pause after the second.
    assert 2 * len(audio) / rate < len(stored) / 24_000 < 2 * len(audio) / rate + 1.0
    assert text.strip() == " ".join([TRANSCRIPT] * 2)
    tail = stored[-int(0.05 * 24_000) :]
    assert np.sqrt(np.mean(np.square(tail))) < 10 ** (-50 / 20)  # ends in silence, not mid-word
    assert "kept the first" in report
    assert "check that these are exactly the words" in report


def test_a_long_clip_without_a_pause_is_refused(tmp_path: Path) -> None:
    rate = 24_000
    t = np.arange(15 * rate) / rate
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    # Syllable-like loudness changes, but never a pause.
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)
    clip = tmp_path / "drone.wav"
    sf.write(str(clip), (0.2 * envelope * voice).astype(np.float32), rate)
    rc, report = add(tmp_path, "drone", clip, "a " * 60)
    assert rc == 2
    assert "no pause to cut at" in report
    assert nothing_saved(tmp_path)


def test_a_recording_minutes_long_is_refused_before_decoding(tmp_path: Path) -> None:
    clip = tmp_path / "vod.wav"
    noise = np.random.default_rng(0).normal(0, 0.1, 130 * 8000).astype(np.float32)
    sf.write(str(clip), noise, 8000)
    rc, report = add(tmp_path, "vod", clip)
    assert rc == 2
    assert "130 s long" in report
    assert "5-10 s" in report
    assert nothing_saved(tmp_path)


def test_a_quiet_clip_is_amplified_with_a_warning(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "quiet.wav"
    sf.write(str(clip), audio * 0.05, rate)  # about 26 dB down
    rc, report = add(tmp_path, "quiet", clip)
    assert rc == 0, report
    assert "is quiet" in report
    assert_canonical(tmp_path, "quiet")


# -- clips that are refused ---------------------------------------------------------------


def refused(tmp_path: Path, name: str, clip: Path, code: str) -> str:
    with pytest.raises(VoiceImportError) as caught:
        prepare_voice(clip, TRANSCRIPT)
    assert code in [f.code for f in caught.value.findings if f.severity == "error"]
    rc, report = add(tmp_path, name, clip)
    assert rc == 2
    assert f"Cannot add voice {name!r}" in report
    assert nothing_saved(tmp_path)
    return report


def test_a_too_quiet_clip_is_refused(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "whisper.wav"
    sf.write(str(clip), audio * 0.003, rate, subtype="FLOAT")  # about 50 dB down
    report = refused(tmp_path, "whisper", clip, "too_quiet")
    assert "record closer to the microphone" in report


def test_a_clipped_clip_is_refused(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "loud.wav"
    sf.write(str(clip), np.clip(audio * 8, -1.0, 1.0), rate)
    report = refused(tmp_path, "loud", clip, "clipped")
    assert "input gain lower" in report


def test_a_few_clipped_samples_only_warn(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    touched = audio.copy()
    peak = int(np.argmax(np.abs(audio)))
    touched[peak : peak + 4] = 1.0  # one short flat top
    clip = tmp_path / "touch.wav"
    sf.write(str(clip), touched, rate)
    prepared = prepare_voice(clip, TRANSCRIPT)
    assert ("clipped", "warning") in [(f.code, f.severity) for f in prepared.findings]


def test_a_silent_clip_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "silence.wav"
    sf.write(str(clip), np.zeros(5 * 24_000, dtype=np.float32), 24_000)
    report = refused(tmp_path, "silence", clip, "silent")
    assert "silent" in report


def test_a_phase_inverted_stereo_clip_cancels_to_silence_and_is_refused(
    tmp_path: Path, speech: Any
) -> None:
    audio, rate = speech
    clip = tmp_path / "inverted.wav"
    sf.write(str(clip), np.stack([audio, -audio], axis=1), rate)
    refused(tmp_path, "inverted", clip, "silent")


def test_a_too_short_clip_is_refused(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "blip.wav"
    sf.write(str(clip), audio[: int(1.2 * rate)], rate)
    report = refused(tmp_path, "blip", clip, "too_short")
    assert "5-10 s" in report


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        (
            "noise.wav",
            bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
            "cannot read noise.wav as audio",
        ),
        ("notes.mp3", b"these are my notes, not audio\n" * 20, "cannot read notes.mp3 as audio"),
        ("empty.flac", b"", "cannot read empty.flac as audio"),
        ("header.wav", _wav_bytes(np.zeros(0, np.float32), 24_000), "holds no audio"),
    ],
)
def test_broken_files_are_refused_with_a_clear_message(
    tmp_path: Path, filename: str, content: bytes, expected: str
) -> None:
    clip = tmp_path / filename
    clip.write_bytes(content)
    rc, report = add(tmp_path, "broken", clip)
    assert rc == 2
    assert expected in report
    assert "Traceback" not in report
    assert nothing_saved(tmp_path)


def test_a_truncated_wav_keeps_what_arrived(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    data = _wav_bytes(audio, rate)
    clip = tmp_path / "cut.wav"
    clip.write_bytes(data[: 44 + 2 * int(3.5 * rate)])  # header promises 5.3 s, 3.5 s arrived
    rc, report = add(tmp_path, "cut", clip, "Some call me nature, others call me")
    assert rc == 0, report
    stored, _ = assert_canonical(tmp_path, "cut")
    assert abs(len(stored) / 24_000 - 3.5) < 0.2
    assert "s of speech; 5-10 s gives a closer likeness" in report  # short: a warning


def test_a_wav_cut_inside_its_header_is_refused(tmp_path: Path, speech: Any) -> None:
    clip = tmp_path / "stub.wav"
    clip.write_bytes(_wav_bytes(speech[0], speech[1])[:20])
    rc, report = add(tmp_path, "stub", clip)
    assert rc == 2
    assert "cannot read stub.wav as audio" in report
    assert nothing_saved(tmp_path)


def test_a_missing_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    for clip in (tmp_path / "nope.wav", tmp_path):
        rc, report = add(tmp_path, "nope", clip)
        assert rc == 2
        assert "does not exist" in report


# -- names and existing voices ------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a b", "x" * 33, "", "née", ".hidden"])
def test_bad_names_are_refused_before_reading_the_clip(tmp_path: Path, name: str) -> None:
    rc, report = add(tmp_path, name, tmp_path / "not-even-there.wav")
    assert rc == 2
    assert "is not a valid voice name" in report
    assert nothing_saved(tmp_path)


def test_an_existing_voice_is_kept_unless_forced(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    first = tmp_path / "first.wav"
    sf.write(str(first), audio, rate)
    assert add(tmp_path, "Alice", first)[0] == 0
    second = tmp_path / "second.flac"
    sf.write(str(second), audio[::-1].copy(), rate)  # different audio

    for name in ("Alice", "alice", "ALICE"):  # names ignore case
        rc, report = add(tmp_path, name, second, "Reversed words.")
        assert rc == 2
        assert "already exists" in report
        assert "--force" in report
    stored, text = assert_canonical(tmp_path, "Alice")
    assert text == TRANSCRIPT + "\n"

    rc, report = add(tmp_path, "alice", second, "Reversed words.", force=True)
    assert rc == 0, report
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["alice"]
    stored, text = assert_canonical(tmp_path, "alice")
    assert text == "Reversed words.\n"
    assert aligned_correlation(stored, audio[::-1].copy()) > 0.99


def test_replacing_the_builtin_default_needs_force(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "mine.wav"
    sf.write(str(clip), audio, rate)
    rc, report = add(tmp_path, "default", clip)
    assert rc == 2
    assert "built-in voice" in report
    assert add(tmp_path, "default", clip, force=True)[0] == 0
    spec = VoiceLibrary(voices_cfg(tmp_path)).lookup("default")
    assert spec is not None
    assert not spec.builtin


def test_a_transcript_that_cannot_match_the_clip_warns(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    prepared = prepare_voice(clip, "Hi.")
    assert "transcript_length" in [f.code for f in prepared.findings]
    with pytest.raises(VoiceImportError, match="empty"):
        prepare_voice(clip, "   \n ")


# -- transcripts: required, or recognised and confirmed -----------------------------------


def test_without_text_and_without_a_recogniser_a_transcript_is_required(
    tmp_path: Path, speech: Any
) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    with pytest.raises(VoiceImportError) as caught:
        prepare_voice(clip, None, None)
    assert str(caught.value) == TRANSCRIPT_REQUIRED
    # The CLI in a process where pocketsphinx cannot be imported.
    config = tmp_path / "config.yaml"
    config.write_text("voices:\n  dir: voices\n", encoding="utf-8")
    code = (
        "import sys; sys.modules['pocketsphinx'] = None\n"
        "from bot.cli import main\n"
        f"sys.exit(main(['--config', {str(config)!r}, 'voices', 'add', 'me', {str(clip)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "a transcript is required" in done.stdout
    assert '--text "the exact words"' in done.stdout
    assert "pip install pocketsphinx" in done.stdout
    assert nothing_saved(tmp_path)


@pytest.mark.slow
def test_recognised_transcript_is_offered_and_confirmed(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    prompts: list[str] = []

    def answer(*replies: str) -> Any:
        queue = list(replies)

        def ask(prompt: str) -> str:
            prompts.append(prompt)
            return queue.pop(0)

        return ask

    rc, report = add(tmp_path, "heard", clip, None, ask=answer("y"), interactive=True)
    assert rc == 0, report
    assert "Speech recognition heard" in report
    _, text = assert_canonical(tmp_path, "heard")
    assert wer(TRANSCRIPT, text) <= 0.5

    rc, report = add(
        tmp_path,
        "edited",
        clip,
        None,
        ask=answer("e", "  Some call me   nature. "),
        interactive=True,
    )
    assert rc == 0, report
    assert read_voice(tmp_path, "edited")[2] == "Some call me nature.\n"

    rc, report = add(tmp_path, "declined", clip, None, ask=answer("n"), interactive=True)
    assert rc == 1
    assert not (tmp_path / "voices" / "declined").exists()
    assert prompts[0].startswith("Use it?")


@pytest.mark.slow
def test_without_a_terminal_recognition_needs_yes(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    rc, report = add(tmp_path, "auto", clip, None, interactive=False)
    assert rc == 1
    assert "confirm it with --yes" in report
    assert nothing_saved(tmp_path)
    rc, report = add(tmp_path, "auto", clip, None, yes=True, interactive=False)
    assert rc == 0, report
    assert "(--yes)" in report
    assert wer(TRANSCRIPT, read_voice(tmp_path, "auto")[2]) <= 0.5


@pytest.mark.slow
def test_a_long_clip_is_trimmed_then_recognised(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    pause = np.zeros(int(0.6 * rate), dtype=np.float32)
    clip = tmp_path / "long.wav"
    sf.write(str(clip), np.concatenate([audio, pause, audio, pause, audio]), rate)
    rc, report = add(tmp_path, "long", clip, None, yes=True)
    assert rc == 0, report
    stored, text = assert_canonical(tmp_path, "long")
    # The words of what was kept (two sentences), not of the whole clip.
    assert wer(" ".join([TRANSCRIPT] * 2), text) <= 0.5
    assert len(stored) / 24_000 < 2 * len(audio) / rate + 1.0


@pytest.mark.slow
def test_the_recogniser_hears_nothing_in_noise(tmp_path: Path) -> None:
    noise = np.random.default_rng(3).normal(0, 0.001, 24_000 * 3).astype(np.float32)
    assert recognise_speech(noise, 24_000) == ""


# -- the stored voice works in the engine -------------------------------------------------


@pytest.mark.slow
def test_the_f5_engine_conditions_on_an_imported_voice(
    tmp_path: Path, speech: Any, tiny_f5: dict[str, Any]
) -> None:
    from engine.base import EngineState
    from engine.config import F5Config
    from engine.f5 import F5Engine

    audio, rate = speech
    at44 = soxr.resample(audio, rate, 44_100)
    clip = tmp_path / "me.flac"
    sf.write(str(clip), np.stack([at44, at44], axis=1), 44_100)
    assert add(tmp_path, "imported", clip)[0] == 0
    engine = F5Engine(F5Config(**tiny_f5), voices_cfg(tmp_path), device="cpu")
    states: list[EngineState] = []
    engine.load(lambda state, _detail: states.append(state))
    try:
        ref = engine.reference("imported")
        assert ref.transcript == TRANSCRIPT
        assert abs(ref.seconds - len(audio) / rate) < 0.3
        chunks = list(engine.synthesize("Hello chat.", "imported", lambda: False))
        assert sum(len(c) for c in chunks) > 0
    finally:
        engine.close()
    assert states[-1] is EngineState.WARMING


def test_voice_test_refuses_unknown_and_broken_voices(tmp_path: Path, speech: Any) -> None:
    cfg = voices_cfg(tmp_path)
    problem = voice_problem(cfg, "nobody")
    assert problem is not None
    assert "no voice named 'nobody'" in problem
    broken = tmp_path / "voices" / "broken"
    broken.mkdir(parents=True)
    sf.write(str(broken / "reference.wav"), speech[0], speech[1])
    problem = voice_problem(cfg, "broken")
    assert problem is not None
    assert "reference.txt" in problem
    assert voice_problem(cfg, "default") is None


def test_cli_adds_then_lists_the_voice(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.ogg"
    sf.write(str(clip), audio, rate, format="OGG")
    config = tmp_path / "config.yaml"
    config.write_text("voices:\n  dir: voices\n", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "bot", "--config", str(config), "voices"]
    done = subprocess.run(
        [*base, "add", "caster", str(clip), "--text", TRANSCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listing = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "caster" in listing.stdout
    assert str(tmp_path / "voices" / "caster" / "reference.wav") in listing.stdout


def test_prepared_voice_keeps_the_confirmed_transcript(tmp_path: Path, speech: Any) -> None:
    audio, rate = speech
    clip = tmp_path / "me.wav"
    sf.write(str(clip), audio, rate)
    prepared = prepare_voice(clip, None, lambda _samples, _rate: "some call me nature")
    assert prepared.transcript_source == "recognised"
    confirmed = prepared.with_transcript(TRANSCRIPT)
    assert isinstance(confirmed, PreparedVoice)
    assert confirmed.transcript_source == "given"
    assert confirmed.transcript == TRANSCRIPT
    assert confirmed.samples is prepared.samples


@pytest.mark.slow
def test_cli_voices_test_speaks_in_that_voice_with_visible_progress(
    tmp_path: Path, tiny_f5: dict[str, Any]
) -> None:
    import yaml

    from tests.support.f5 import write_tiny_f5_config

    config = write_tiny_f5_config(tmp_path, tiny_f5, seed=3)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["storage"] = {"dir": "state"}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    base = [sys.executable, "-m", "bot", "--config", str(config), "voices", "test"]
    out = tmp_path / "alice.wav"
    done = subprocess.run(
        [*base, "alice", "hello chat", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 24_000
    assert len(audio) > 0.2 * rate
    # Progress the streamer sees: each step, then how long getting ready took.
    assert "loading F5-TTS on cpu (fp32)" in done.stderr
    assert "the voice engine is ready after" in done.stderr
    history = json.loads((tmp_path / "state" / "load-times.json").read_text(encoding="utf-8"))
    assert len(history) == 1

    unknown = subprocess.run(
        [*base, "nobody"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2
    assert "no voice named 'nobody'" in unknown.stderr
    assert "alice" in unknown.stderr  # the voices that exist are listed
