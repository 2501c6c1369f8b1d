"""``ishowtts sounds add`` and ``ishowtts sounds`` (issue 18.4): real files written here,
decoded by soundfile, loudness measured with pyloudnorm (ITU-R BS.1770) before and after."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from bot.chat.sounds import SoundsConfig
from bot.cli import main
from bot.config import parse_config
from bot.setup.sounds_import import (
    MAX_SOUND_S,
    PEAK_CEILING_DBFS,
    SOUND_RATE,
    TARGET_LUFS,
    add_sound_command,
    list_sounds_command,
    loudness,
)
from tests.support.audio import dominant_frequency


def sounds_cfg(tmp_path: Path) -> SoundsConfig:
    return parse_config({"sounds": {"dir": "fx"}}, tmp_path).sounds


def sine(freq: float, seconds: float, rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def lufs_of(path: Path) -> float:
    audio, rate = sf.read(str(path), dtype="float64")
    return float(pyloudnorm.Meter(rate).integrated_loudness(audio))


def run(cfg: SoundsConfig, clip: Path, name: str | None = None, **kw: bool) -> tuple[int, str]:
    out = io.StringIO()
    status = add_sound_command(cfg, clip, name, out=out, **kw)
    return status, out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "rate", "channels", "amplitude"),
    [("WAV", 44_100, 2, 0.9), ("FLAC", 48_000, 1, 0.01), ("WAV", 16_000, 1, 0.05)],
)
def test_a_clip_is_converted_and_normalised_to_the_target_loudness(
    tmp_path: Path, fmt: str, rate: int, channels: int, amplitude: float
) -> None:
    cfg = sounds_cfg(tmp_path)
    mono = sine(880, 1.5, rate, amplitude)
    source = tmp_path / f"horn.{fmt.lower()}"
    sf.write(str(source), np.stack([mono] * channels, axis=1), rate, format=fmt)
    before = lufs_of(source)
    status, text = run(cfg, source, "Air-Horn")
    assert status == 0, text
    target = cfg.dir / "air-horn.wav"  # names are lower case
    info = sf.info(str(target))
    assert (info.samplerate, info.channels, info.subtype) == (SOUND_RATE, 1, "PCM_16")
    assert info.frames / info.samplerate == pytest.approx(1.5, abs=0.002)
    after = lufs_of(target)
    assert abs(before - TARGET_LUFS) > 5  # the test clips really were off the target
    assert after == pytest.approx(TARGET_LUFS, abs=0.3)
    samples, _ = sf.read(str(target), dtype="float32")
    assert dominant_frequency(samples, SOUND_RATE) == pytest.approx(880, abs=2)
    assert f"{before:.1f} LUFS -> {after:.1f} LUFS" in text


def test_the_peak_ceiling_wins_over_loudness(tmp_path: Path) -> None:
    """A quiet clip with one loud click is raised only until the click reaches -1 dBFS."""
    cfg = sounds_cfg(tmp_path)
    audio = sine(440, 1.0, 24_000, 0.01)
    audio[12_000] = 0.9
    source = tmp_path / "click.wav"
    sf.write(str(source), audio, 24_000, subtype="FLOAT")
    assert run(cfg, source)[0] == 0
    out, _ = sf.read(str(cfg.dir / "click.wav"), dtype="float32")
    peak_db = 20 * np.log10(np.max(np.abs(out)))
    assert peak_db == pytest.approx(PEAK_CEILING_DBFS, abs=0.05)
    assert lufs_of(cfg.dir / "click.wav") < TARGET_LUFS - 3


def test_a_clip_shorter_than_a_loudness_block_is_measured_too(tmp_path: Path) -> None:
    cfg = sounds_cfg(tmp_path)
    source = tmp_path / "blip.wav"
    sf.write(str(source), sine(1000, 0.12, 24_000, 0.5), 24_000)
    assert run(cfg, source)[0] == 0
    out, _ = sf.read(str(cfg.dir / "blip.wav"), dtype="float32")
    assert len(out) == round(0.12 * SOUND_RATE)
    assert loudness(out, SOUND_RATE) == pytest.approx(TARGET_LUFS, abs=0.3)


def write_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "text":
        path.write_text("this is not audio\n")
    elif kind == "empty":
        sf.write(str(path), np.zeros((0, 1), dtype=np.float32), 24_000)
    elif kind == "long":
        sf.write(str(path), sine(440, MAX_SOUND_S + 1, 8_000, 0.5), 8_000)
    elif kind == "silent":
        sf.write(str(path), np.zeros(24_000, dtype=np.float32), 24_000)
    elif kind == "nan":
        audio = sine(440, 1.0, 24_000, 0.5)
        audio[100] = np.nan
        sf.write(str(path), audio, 24_000, subtype="FLOAT")
    elif kind == "truncated":
        sf.write(str(path), sine(440, 1.0, 24_000, 0.5), 24_000, format="FLAC")
        path.write_bytes(path.read_bytes()[:200])
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("text", "cannot read text.wav as audio"),
        ("empty", "holds no audio"),
        ("long", "a sound effect may be up to 10 s"),
        ("silent", "is silent"),
        ("nan", "invalid samples"),
        ("truncated", "truncated.wav"),
        ("missing", "does not exist"),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(tmp_path: Path, kind: str, words: str) -> None:
    cfg = sounds_cfg(tmp_path)
    source = write_bad(tmp_path, kind) if kind != "missing" else tmp_path / "gone.wav"
    status, text = run(cfg, source, "bad")
    assert status == 2
    assert words in text
    assert "Traceback" not in text
    assert not cfg.dir.exists() or list(cfg.dir.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "..", ".hidden", "beep.wav", "with space", "", "x" * 33, "ẞeep", "a\n"],
)
def test_hostile_names_are_refused_and_nothing_leaves_the_folder(tmp_path: Path, name: str) -> None:
    cfg = sounds_cfg(tmp_path)
    source = tmp_path / "ok.wav"
    sf.write(str(source), sine(440, 0.5, 24_000, 0.5), 24_000)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status, text = run(cfg, source, name)
    assert status == 2
    assert "is not a valid sound name" in text
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["con", "NUL", "com1", "Lpt9"])
def test_windows_device_names_are_refused(tmp_path: Path, name: str) -> None:
    cfg = sounds_cfg(tmp_path)
    source = tmp_path / "ok.wav"
    sf.write(str(source), sine(440, 0.5, 24_000, 0.5), 24_000)
    status, text = run(cfg, source, name)
    assert status == 2
    assert "Windows reserves it" in text
    assert not cfg.dir.exists()


def test_the_file_name_is_the_default_name_and_a_bad_one_asks_for_name(tmp_path: Path) -> None:
    cfg = sounds_cfg(tmp_path)
    source = tmp_path / "my horn.wav"
    sf.write(str(source), sine(440, 0.5, 24_000, 0.5), 24_000)
    status, text = run(cfg, source)
    assert status == 2
    assert "--name" in text
    assert run(cfg, source, "horn")[0] == 0


def test_a_taken_name_needs_force_which_replaces_any_file_of_it(tmp_path: Path) -> None:
    cfg = sounds_cfg(tmp_path)
    cfg.dir.mkdir()
    sf.write(str(cfg.dir / "Horn.flac"), sine(440, 0.5, 24_000, 0.5), 24_000)  # by hand
    source = tmp_path / "new.wav"
    sf.write(str(source), sine(660, 0.7, 24_000, 0.5), 24_000)
    status, text = run(cfg, source, "horn")
    assert status == 2
    assert "already exists" in text
    assert sorted(p.name for p in cfg.dir.iterdir()) == ["Horn.flac"]
    assert run(cfg, source, "horn", force=True)[0] == 0
    assert sorted(p.name for p in cfg.dir.iterdir()) == ["horn.wav"]
    assert sf.info(str(cfg.dir / "horn.wav")).duration == pytest.approx(0.7, abs=0.002)


def test_the_list_shows_each_tag_and_the_files_that_are_no_sound(tmp_path: Path) -> None:
    cfg = sounds_cfg(tmp_path)
    out = io.StringIO()
    assert list_sounds_command(cfg, out) == 0
    assert "none yet" in out.getvalue()
    source = tmp_path / "beep.wav"
    sf.write(str(source), sine(1000, 0.25, 24_000, 0.5), 24_000)
    assert run(cfg, source)[0] == 0
    (cfg.dir / "broken.ogg").write_bytes(b"OggS but not really")
    (cfg.dir / "README.md").write_text("notes\n")  # not a clip: not listed
    out = io.StringIO()
    assert list_sounds_command(cfg, out) == 1
    text = out.getvalue()
    assert "[beep]" in text
    assert "0.25 s" in text
    assert "broken.ogg" in text
    assert "PROBLEM" in text
    assert "README" not in text


def test_the_command_line_imports_and_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sounds:\n  enabled: true\n  syntax: braces\n")
    source = tmp_path / "Ding.wav"
    sf.write(str(source), sine(1000, 0.25, 24_000, 0.5), 24_000)
    assert main(["--config", str(config), "sounds", "add", str(source)]) == 0
    assert "Chat plays it with: {ding}" in capsys.readouterr().out
    assert (tmp_path / "sounds" / "ding.wav").is_file()  # beside the config file
    assert main(["--config", str(config), "sounds"]) == 0
    assert "{ding}" in capsys.readouterr().out
    assert main(["--config", str(config), "sounds", "add", str(source)]) == 2
