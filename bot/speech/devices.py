"""Audio output devices as PortAudio (through sounddevice) sees them.

``ishowtts devices`` prints :func:`list_output_devices`, and ``audio.device`` in the config is
resolved with :func:`resolve_output_device`, so what the streamer reads in that listing is
exactly what the config accepts (an index, or any part of a name).

PortAudio builds its device list once, when it is initialised. A device plugged in later is
only seen after a rescan (``rescan=True``), which re-initialises PortAudio and therefore must
not happen while any stream of this process is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bot.core.platform import OS, preferred_hostapis

log = logging.getLogger(__name__)

_HINT = "run `ishowtts devices` to see the output devices and set `audio.device` in config.yaml"


class AudioDeviceError(RuntimeError):
    """No usable output device, or the device failed; ``str()`` tells the user what to do."""


@dataclass(frozen=True, slots=True)
class OutputDevice:
    """One output device.

    Attributes:
        index: PortAudio's device index (valid until the next rescan).
        name: The device's name as the host API reports it.
        hostapi: Name of the host API (ALSA, PulseAudio, WASAPI, Core Audio...).
        default_rate: The rate PortAudio suggests for the device, in Hz.
        channels: Most output channels the device accepts.
        is_default: Whether this is the system's default output.
    """

    index: int
    name: str
    hostapi: str
    default_rate: int
    channels: int
    is_default: bool

    def describe(self) -> str:
        """One human-readable line, as ``ishowtts devices`` prints it."""
        mark = "*" if self.is_default else " "
        return (
            f"{mark} {self.index:>3}  {self.name}  ({self.hostapi}, {self.default_rate} Hz, "
            f"{self.channels} ch)"
        )


def portaudio() -> ModuleType:
    """Import sounddevice, turning a missing PortAudio library into a clear error.

    Importing lazily keeps ``import bot.devices`` (and the CLI's ``--help``) working on a
    machine without PortAudio; only audio output needs it.

    Raises:
        AudioDeviceError: When the PortAudio shared library cannot be loaded.
    """
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            f"the PortAudio library could not be loaded ({exc}); install it "
            "(Debian/Ubuntu: `sudo apt-get install libportaudio2`), then "
            f"{_HINT.removeprefix('run ')}"
        ) from None
    module: ModuleType = sounddevice
    return module


def rescan_devices() -> None:
    """Re-initialise PortAudio so devices added or removed since start-up are seen.

    Every open PortAudio stream of this process becomes invalid: call it only with none open.

    Raises:
        AudioDeviceError: When PortAudio cannot be re-initialised.
    """
    sd = portaudio()
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"could not re-initialise the audio system: {exc}") from None
    log.debug("PortAudio re-initialised; device list refreshed")


def _default_output_index(sd: Any, hostapis: list[dict[str, Any]]) -> int:
    try:
        index = int(sd.default.device[1])
    except (TypeError, ValueError, IndexError):
        index = -1
    if index < 0:
        # sounddevice asks PortAudio for the default host API's default output.
        try:
            index = int(sd.query_hostapis(sd.default.hostapi)["default_output_device"])
        except (sd.PortAudioError, KeyError, TypeError, ValueError):
            index = -1
    if index < 0:
        index = next(
            (
                int(api["default_output_device"])
                for api in hostapis
                if api["default_output_device"] >= 0
            ),
            -1,
        )
    return index


def list_output_devices(*, rescan: bool = False) -> list[OutputDevice]:
    """Every device that can play sound, in PortAudio's order.

    Args:
        rescan: Re-initialise PortAudio first (see :func:`rescan_devices`).

    Raises:
        AudioDeviceError: When PortAudio is missing or cannot list devices.
    """
    sd = portaudio()
    if rescan:
        rescan_devices()
    try:
        devices = list(sd.query_devices())
        hostapis = list(sd.query_hostapis())
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"could not list audio devices ({exc}); {_HINT}") from None
    default = _default_output_index(sd, hostapis)
    found = []
    for position, info in enumerate(devices):
        if int(info["max_output_channels"]) <= 0:
            continue
        index = int(info.get("index", position))
        api = int(info["hostapi"])
        found.append(
            OutputDevice(
                index=index,
                name=str(info["name"]),
                hostapi=str(hostapis[api]["name"]) if 0 <= api < len(hostapis) else "?",
                default_rate=round(float(info["default_samplerate"])),
                channels=int(info["max_output_channels"]),
                is_default=index == default,
            )
        )
    return found


def _by_hostapi_preference(devices: list[OutputDevice], system: OS | None) -> list[OutputDevice]:
    """``devices`` with the preferred host APIs' entries first, else in PortAudio's order."""
    preferred = preferred_hostapis(system)
    if not preferred:
        return devices

    def rank(device: OutputDevice) -> int:
        return preferred.index(device.hostapi) if device.hostapi in preferred else len(preferred)

    return sorted(devices, key=rank)


def _listing(devices: list[OutputDevice]) -> str:
    if not devices:
        return "no output devices were found"
    names = ", ".join(f"{d.index}: {d.name!r}" for d in devices)
    return f"the output devices are {names}"


def resolve_output_device(
    spec: str | int | None, *, rescan: bool = False, system: OS | None = None
) -> OutputDevice:
    """Find the device that ``audio.device`` names.

    Args:
        spec: None for the system default output; an int (or a string of digits) for a device
            index; any other string for a case-insensitive part of a device name. When several
            names contain it, an exact (case-insensitive) name wins, then the first in order.
        rescan: Re-initialise PortAudio first (see :func:`rescan_devices`).
        system: The OS whose host-API preference applies (default: this one's).

    Raises:
        AudioDeviceError: When nothing matches or no output exists; the message lists what
            exists and names ``ishowtts devices``.
    """
    return pick_output_device(list_output_devices(rescan=rescan), spec, system=system)


def pick_output_device(
    devices: list[OutputDevice], spec: str | int | None, *, system: OS | None = None
) -> OutputDevice:
    """The device of ``devices`` that ``spec`` names (see :func:`resolve_output_device`).

    Where one device is listed under several host APIs (Windows lists each under MME,
    DirectSound, WASAPI and WDM-KS), a name matches the entry of the preferred API first
    (``bot.core.platform.preferred_hostapis``: WASAPI on Windows, the API OBS uses, whose names
    MME cuts at 31 characters), so ``audio.device: CABLE Input`` means the WASAPI entry.

    Raises:
        AudioDeviceError: When nothing matches or ``devices`` is empty.
    """
    if not devices:
        raise AudioDeviceError(
            "no audio output device was found (is a sound server or sound card available?); "
            + _HINT
        )
    if spec is None:
        chosen = next((d for d in devices if d.is_default), None)
        if chosen is None:
            chosen = devices[0]
            log.info("no default output device reported; using %r", chosen.name)
        return chosen
    if isinstance(spec, bool):
        raise AudioDeviceError(f"audio.device must be a name or an index, not {spec!r}; {_HINT}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        chosen = next((d for d in devices if d.index == index), None)
        if chosen is None:
            raise AudioDeviceError(
                f"audio.device {index} is not an output device; {_listing(devices)}; {_HINT}"
            )
        return chosen
    needle = spec.strip().casefold()
    if not needle:
        raise AudioDeviceError(f"audio.device is an empty name; {_HINT}")
    ranked = _by_hostapi_preference(devices, system)
    exact = [d for d in ranked if d.name.casefold() == needle]
    if exact:
        return exact[0]
    partial = [d for d in ranked if needle in d.name.casefold()]
    if not partial:
        raise AudioDeviceError(
            f"no output device name contains {spec!r}; {_listing(devices)}; {_HINT}"
        )
    if len(partial) > 1:
        log.info(
            "audio.device %r matches %s; using %r",
            spec,
            ", ".join(repr(d.name) for d in partial),
            partial[0].name,
        )
    return partial[0]
