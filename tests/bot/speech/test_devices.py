"""Output device listing and ``audio.device`` resolution against the real PortAudio/PulseAudio."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from bot.core.platform import OS
from bot.speech.devices import (
    AudioDeviceError,
    OutputDevice,
    list_output_devices,
    pick_output_device,
    resolve_output_device,
)
from tests.support import REPO
from tests.support.audio import PulseServer

pytestmark = pytest.mark.audio


def _sink_inputs(server: PulseServer) -> list[list[str]]:
    out = server.pactl("list", "short", "sink-inputs")
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_listing_sees_the_test_sink(pulse_server: PulseServer) -> None:
    devices = list_output_devices()
    assert all(isinstance(d, OutputDevice) for d in devices)
    names = [d.name for d in devices]
    assert pulse_server.device_name in names
    assert sum(d.is_default for d in devices) == 1
    assert len({d.index for d in devices}) == len(devices)
    for d in devices:
        assert d.channels >= 1
        assert d.default_rate > 0
        assert d.hostapi
    # The listed device really is the test sink: a stream opened on it shows up there.
    import sounddevice as sd

    device = next(d for d in devices if d.name == pulse_server.device_name)
    sink_index = pulse_server.pactl("list", "short", "sinks").split("\t")[0]
    before = len(_sink_inputs(pulse_server))
    with sd.OutputStream(device=device.index, samplerate=48_000, channels=1, dtype="float32"):
        inputs = _sink_inputs(pulse_server)
    assert len(inputs) == before + 1
    assert inputs[-1][1] == sink_index


def test_listing_after_a_rescan_is_the_same(pulse_server: PulseServer) -> None:
    assert list_output_devices(rescan=True) == list_output_devices()


def test_describe_is_one_readable_line(pulse_server: PulseServer) -> None:
    device = resolve_output_device(pulse_server.device_name)
    line = device.describe()
    assert device.name in line
    assert f"{device.default_rate} Hz" in line
    assert "\n" not in line
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.name = "x"  # type: ignore[misc]


def test_none_means_the_system_default(pulse_server: PulseServer) -> None:
    device = resolve_output_device(None)
    assert device.is_default
    assert device == next(d for d in list_output_devices() if d.is_default)


def test_name_is_a_case_insensitive_substring(pulse_server: PulseServer) -> None:
    exact = resolve_output_device(pulse_server.device_name)
    assert exact.name == pulse_server.device_name
    assert resolve_output_device(pulse_server.device_name.upper()) == exact
    assert resolve_output_device(f"  {pulse_server.device_name[1:4]} ") == exact


def test_an_exact_name_wins_over_an_earlier_substring_match(pulse_server: PulseServer) -> None:
    devices = list_output_devices()
    for device in devices:
        chosen = resolve_output_device(device.name.upper())
        assert chosen.name.casefold() == device.name.casefold()


def test_index_as_int_or_digits(pulse_server: PulseServer) -> None:
    for device in list_output_devices():
        assert resolve_output_device(device.index) == device
        assert resolve_output_device(str(device.index)) == device


@pytest.mark.parametrize("spec", ["no-such-speaker", 9999, "   ", True])
def test_unknown_devices_name_ishowtts_devices(pulse_server: PulseServer, spec: object) -> None:
    with pytest.raises(AudioDeviceError, match="ishowtts devices") as err:
        resolve_output_device(spec)  # type: ignore[arg-type]
    if spec in ("no-such-speaker", 9999):
        assert repr(pulse_server.device_name) in str(err.value)  # lists what exists


def test_devices_command_lists_the_sink_in_a_fresh_process(pulse_server: PulseServer) -> None:
    # A subprocess started after the server (as `ishowtts devices` is) sees it too.
    code = (
        "from bot.speech.devices import list_output_devices\n"
        "for d in list_output_devices(): print(d.describe())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **pulse_server.env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f" {pulse_server.device_name}  (" in done.stdout


def _windows_listing() -> list[OutputDevice]:
    """How Windows lists one virtual cable and the speakers: once per host API, MME first."""
    rows = [
        (0, "Microsoft Sound Mapper - Output", "MME", True),
        (1, "CABLE Input (VB-Audio Virtual C", "MME", False),
        (2, "Speakers (Realtek(R) Audio)", "MME", False),
        (5, "CABLE Input (VB-Audio Virtual Cable)", "Windows DirectSound", False),
        (6, "Speakers (Realtek(R) Audio)", "Windows DirectSound", False),
        (9, "CABLE Input (VB-Audio Virtual Cable)", "Windows WASAPI", False),
        (10, "Speakers (Realtek(R) Audio)", "Windows WASAPI", False),
        (12, "CABLE Input (VB-Audio Virtual Cable)", "Windows WDM-KS", False),
    ]
    return [
        OutputDevice(index=i, name=n, hostapi=api, default_rate=48_000, channels=2, is_default=d)
        for i, n, api, d in rows
    ]


@pytest.mark.parametrize(
    ("spec", "index"),
    [
        ("CABLE Input", 9),
        ("cable input (vb-audio virtual cable)", 9),
        ("Speakers", 10),
        ("realtek", 10),
        ("Sound Mapper", 0),  # only MME has it
        (12, 12),  # an index is an index
    ],
)
def test_on_windows_a_name_means_its_wasapi_entry(spec: str | int, index: int) -> None:
    chosen = pick_output_device(_windows_listing(), spec, system=OS.WINDOWS)
    assert chosen.index == index


def test_elsewhere_portaudios_order_stands() -> None:
    # The same listing on Linux or macOS (where each device is listed once per API that
    # matters) keeps the first match in order, as before.
    for system in (OS.LINUX, OS.MACOS):
        assert pick_output_device(_windows_listing(), "CABLE Input", system=system).index == 1
