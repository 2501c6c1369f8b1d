"""The doctor's Windows and macOS lines, run on Linux (issue 14).

``sys.platform`` is patched for the test (``bot.core.platform`` reads it on every call); the
device lists are those PortAudio gives on Windows (each device once per host API, MME first,
names cut at 31 characters), and the files are real files with real modes.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.setup.doctor import (
    GpuProbe,
    check_audio_host,
    check_driver,
    check_gpu,
    check_secrets,
    check_virtual_cable,
    render,
)
from bot.setup.installer import TORCH_INDEX, NvidiaGpu
from bot.speech.devices import OutputDevice
from bot.speech.settings import AudioConfig
from engine.config import EngineConfig

CPU_TORCH = GpuProbe("2.14.1+cpu", None, False)
RTX = NvidiaGpu("NVIDIA GeForce RTX 4070", "551.86", (12, 4))


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")


def test_cpu_torch_beside_an_nvidia_gpu_names_the_cuda_build_to_install(windows: None) -> None:
    result = check_gpu(EngineConfig(), CPU_TORCH, RTX)
    assert result.status == "warn"
    assert "CPU-only build" in result.summary
    assert "RTX 4070" in result.summary
    assert result.fix is not None
    assert r".venv\Scripts\python.exe -m pip install" in result.fix
    assert f"--index-url {TORCH_INDEX}/cu124" in result.fix
    # With engine.device: cuda the same finding blocks, with the same fix.
    strict = check_gpu(EngineConfig(device="cuda"), CPU_TORCH, RTX)
    assert (strict.status, strict.fix) == ("fail", result.fix)


def test_cpu_torch_with_a_driver_too_old_says_update_the_driver(windows: None) -> None:
    old = NvidiaGpu("NVIDIA GeForce GTX 780", "472.12", (11, 4))
    result = check_gpu(EngineConfig(), CPU_TORCH, old)
    assert result.fix is not None
    assert "update the NVIDIA driver" in result.fix
    assert r"scripts\install.ps1" in result.fix


def test_cpu_torch_without_an_nvidia_gpu_keeps_the_general_advice(windows: None) -> None:
    result = check_gpu(EngineConfig(), CPU_TORCH, None)
    assert result.fix is not None
    assert "pytorch.org" in result.fix


def test_on_a_mac_cpu_torch_is_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    result = check_gpu(EngineConfig(), CPU_TORCH, None)
    assert result.status == "warn"
    assert "mps" in result.summary
    assert "eSpeak NG" in result.summary
    assert check_driver(None).status == "skip"


def test_the_driver_line() -> None:
    assert check_driver(RTX).summary == "NVIDIA GeForce RTX 4070, driver 551.86 (CUDA 12.4)"
    assert check_driver(RTX).status == "ok"
    assert check_driver(NvidiaGpu("GTX 780", "472.12", (11, 4))).status == "warn"
    assert check_driver(None).status == "skip"


def _device(index: int, name: str, api: str, default: bool = False) -> OutputDevice:
    return OutputDevice(index, name, api, 48_000, 2, default)


SPEAKERS = "Speakers (Realtek(R) High Definition Audio)"
CABLE = "CABLE Input (VB-Audio Virtual Cable)"
WINDOWS_DEVICES = [
    _device(3, SPEAKERS[:31], "MME", default=True),
    _device(4, CABLE[:31], "MME"),
    _device(9, SPEAKERS, "Windows DirectSound"),
    _device(14, SPEAKERS, "Windows WASAPI"),
    _device(15, CABLE, "Windows WASAPI"),
]


def test_an_mme_device_is_pointed_at_its_wasapi_twin() -> None:
    result = check_audio_host(WINDOWS_DEVICES[0], WINDOWS_DEVICES)
    assert result.status == "warn"
    assert "MME" in result.summary
    assert result.fix is not None
    assert "audio.device: 14" in result.fix
    ok = check_audio_host(WINDOWS_DEVICES[3], WINDOWS_DEVICES)
    assert ok.status == "ok"
    assert "2 Windows WASAPI outputs" in ok.summary


def test_no_wasapi_at_all_warns() -> None:
    only_mme = WINDOWS_DEVICES[:2]
    assert check_audio_host(only_mme[0], only_mme).status == "warn"


def test_vb_cable_present_used_or_absent() -> None:
    absent = check_virtual_cable(AudioConfig(), [WINDOWS_DEVICES[3]])
    assert absent.status == "skip"
    assert "vb-audio.com" in absent.summary
    present = check_virtual_cable(AudioConfig(), WINDOWS_DEVICES)
    assert present.status == "ok"
    assert "not used" in present.summary
    used = check_virtual_cable(AudioConfig(device="CABLE Input"), WINDOWS_DEVICES)
    assert "speech goes to it" in used.summary


def test_secrets_with_posix_modes(tmp_path: Path) -> None:
    cfg = parse_config({"storage": {"dir": str(tmp_path / "state")}}, tmp_path)
    fresh = check_secrets(cfg)
    assert (fresh.status, "will be created private" in fresh.summary) == ("ok", True)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "web-token").write_text("x")
    os.chmod(state / "web-token", 0o600)
    (state / "twitch-tokens.json").write_text("{}")
    os.chmod(state / "twitch-tokens.json", 0o644)
    loose = check_secrets(cfg)
    assert loose.status == "warn"
    assert "twitch-tokens.json" in loose.summary
    assert loose.fix is not None
    assert "chmod 600" in loose.fix
    os.chmod(state / "twitch-tokens.json", 0o600)
    tight = check_secrets(cfg)
    assert tight.status == "ok"
    assert "POSIX modes" in tight.summary
    assert "3 checked" in tight.summary


def test_secrets_on_windows_follow_the_profile_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows: None
) -> None:
    state = tmp_path / "profile" / "AppData" / "Local" / "ishowtts"
    state.mkdir(parents=True)
    (state / "web-token").write_text("x")
    cfg = parse_config({"storage": {"dir": str(state)}}, tmp_path)
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "profile"))
    inside = check_secrets(cfg)
    assert inside.status == "ok"
    assert "profile folder" in inside.summary
    assert "access list" in inside.summary
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "someone-else"))
    outside = check_secrets(cfg)
    assert outside.status == "warn"
    assert outside.fix is not None
    assert "icacls" in outside.fix


def test_the_last_line_names_the_windows_script(windows: None) -> None:
    out = io.StringIO()
    render([], out, width=80)
    assert out.getvalue().rstrip().endswith(r"Ready to run: scripts\run.ps1.")
