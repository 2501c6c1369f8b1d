"""``ishowtts doctor``: one screen that says whether the bot can run here, and what to fix.

Why it exists: a streamer who installs the bot meets a dozen ways for it to fail (no CUDA
build of torch, a GPU too old for fp16, weights not downloaded and no internet, an audio
device name that matches nothing, a voice without its transcript, a Twitch sign-in missing
a scope, a port already taken). Each fails at a different moment, often mid-stream. The
doctor checks them all up front, in plain words, each with the thing to do about it, and
exits non-zero when something would stop the bot from running.

Every check is a plain function returning a :class:`CheckResult`, testable on its own with
real conditions. Nothing here may hang: network probes (the Hugging Face hub, Twitch's token
validation) use short timeouts, and ``HF_HUB_OFFLINE`` skips the hub entirely. Nothing is
downloaded, created or changed, except that reading the Twitch token file tightens its mode
to 0600 when others could read it (the token store does that on every read).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bot.config import Config, ConfigError, load_config, parse_config
from bot.core.platform import OS, allow_address_reuse, current_os, protection, scripts
from bot.setup.installer import MIN_CUDA, NvidiaGpu, detect_nvidia, torch_fix
from bot.speech.settings import AudioConfig
from bot.state.settings import state_dir
from bot.web.settings import BrowserAudio
from engine.config import EngineConfig, VoicesConfig

if TYPE_CHECKING:
    from bot.speech.devices import OutputDevice

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail", "skip"]

TWITCH_VALIDATE_URL = "https://id.twitch.tv/oauth2/validate"
NETWORK_TIMEOUT_S = 3.0
"""Longest wait for any one network probe: the doctor must answer even when offline."""
MIN_GPU_MEMORY = 4 * 1024**3
"""F5TTS_v1_Base in fp16 with its vocoder and working memory needs about 3 GB."""
KEY_PACKAGES = ("f5-tts", "torch", "twitchio", "sounddevice", "soundfile", "pydantic")
"""Shown by name in the packages line; every declared dependency is checked."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: What was checked (``GPU``, ``voice alice`` ...).
        status: ``ok``; ``warn`` (works, but worth fixing); ``fail`` (the bot cannot run, or
            cannot do its main job); ``skip`` (not applicable here).
        summary: One line of what was found.
        fix: What to do about it (None when nothing needs doing).
    """

    name: str
    status: Status
    summary: str
    fix: str | None = None

    @property
    def blocking(self) -> bool:
        """Whether this result stops the bot from running."""
        return self.status == "fail"


# -- Python and packages -------------------------------------------------------------------


def declared_python() -> tuple[int, int]:
    """The oldest Python the project declares (``requires-python``), e.g. (3, 11).

    Read from the installed package's metadata, else from the checkout's pyproject.toml, so
    the doctor, the README and pip always agree (one home: ``pyproject.toml``).
    """
    from importlib import metadata

    try:
        spec = metadata.metadata("ishowtts")["Requires-Python"] or ""
    except metadata.PackageNotFoundError:
        spec = ""
    if not spec:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
            spec = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
                "requires-python"
            ]
    found = re.search(r">=\s*(\d+)\.(\d+)", spec)
    return (int(found[1]), int(found[2])) if found else (3, 11)


def check_python(
    version: Sequence[int] | None = None, executable: str | None = None
) -> CheckResult:
    """The interpreter's version (the declared minimum or newer) and where it lives."""
    version = tuple(version if version is not None else sys.version_info[:3])
    executable = executable or sys.executable
    text = ".".join(str(v) for v in version[:3])
    where = f"{text} ({executable})"
    minimum = declared_python()
    if tuple(version[:2]) < minimum:
        need = ".".join(map(str, minimum))
        return CheckResult(
            "Python",
            "fail",
            f"{where} is too old",
            f"install Python {need} or newer and run {scripts().install} again",
        )
    return CheckResult("Python", "ok", where)


def _declared_requirements() -> list[str]:
    """The installed distribution's requirements, else those in the checkout's pyproject.toml.

    Running from a checkout without ``pip install`` is how people first try things; the
    pyproject beside the ``bot`` package still says what is needed.
    """
    from importlib import metadata

    try:
        declared = metadata.requires("ishowtts") or []
    except metadata.PackageNotFoundError:
        declared = []
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            import tomllib

            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            declared = [str(r) for r in data.get("project", {}).get("dependencies", [])]
        except (ImportError, OSError, ValueError):
            return []
    return [r for r in declared if "extra ==" not in r]


def check_packages(requirements: Sequence[str] | None = None) -> CheckResult:
    """Every declared dependency is installed at an allowed version.

    Args:
        requirements: PEP 508 requirement strings (default: those of the installed
            ``ishowtts`` distribution, without extras).
    """
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    reqs = list(requirements) if requirements is not None else _declared_requirements()
    if not reqs:
        return CheckResult(
            "packages",
            "warn",
            "ishowtts is not installed as a package, so its dependencies cannot be listed",
            f"run {scripts().install} (it installs the bot into .venv)",
        )
    found: dict[str, str] = {}
    problems: list[str] = []
    for line in reqs:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"unreadable requirement {line!r}")
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} is missing")
            continue
        found[req.name.lower()] = version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} is installed, {req.specifier} is needed")
    shown = ", ".join(f"{n} {found[n]}" for n in KEY_PACKAGES if n in found)
    if problems:
        return CheckResult(
            "packages",
            "fail",
            "; ".join(problems),
            f"run {scripts().install} (or `{scripts().python} -m pip install -e .`) to install"
            " them",
        )
    return CheckResult("packages", "ok", shown or f"{len(found)} packages as required")


# -- GPU ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """What torch reports about CUDA.

    Attributes:
        torch_version: ``torch.__version__``.
        cuda_build: CUDA version torch was built with (None for a CPU-only build).
        available: ``torch.cuda.is_available()``.
        name: The first GPU's name.
        total_memory: Its memory in bytes.
        free_memory: Memory free right now (other programs, OBS included, use some).
        capability: Compute capability (major, minor).
        error: Why probing failed, if it did.
    """

    torch_version: str
    cuda_build: str | None
    available: bool
    name: str | None = None
    total_memory: int | None = None
    free_memory: int | None = None
    capability: tuple[int, int] | None = None
    error: str | None = None


def probe_gpu() -> GpuProbe:
    """Ask torch about the first CUDA GPU (imports torch: a few seconds)."""
    try:
        import torch
    except Exception as exc:  # a broken torch install raises many types
        return GpuProbe("not importable", None, False, error=f"{type(exc).__name__}: {exc}")
    version = str(torch.__version__)
    cuda = torch.version.cuda
    try:
        if not torch.cuda.is_available():
            return GpuProbe(version, cuda, False)
        props = torch.cuda.get_device_properties(0)
        free: int | None = None
        with contextlib.suppress(Exception):
            free = int(torch.cuda.mem_get_info(0)[0])
        return GpuProbe(
            version,
            cuda,
            True,
            name=str(props.name),
            total_memory=int(props.total_memory),
            free_memory=free,
            capability=(int(props.major), int(props.minor)),
        )
    except Exception as exc:  # driver mismatches surface as RuntimeError or others
        return GpuProbe(version, cuda, False, error=f"{type(exc).__name__}: {exc}")


def _gb(size: int) -> str:
    return f"{size / 1024**3:.1f} GB"


def check_gpu(
    engine: EngineConfig, probe: GpuProbe, nvidia: NvidiaGpu | None = None
) -> CheckResult:
    """CUDA, the GPU's name and memory, and whether fp16 suits it, judged for ``engine``.

    F5-TTS keeps up with chat only on an NVIDIA GPU. Without one the bot still runs (the
    ``auto`` engine speaks with eSpeak NG), so that is a warning; it is a failure only when
    the config insists on CUDA. A CPU-only torch on a PC whose NVIDIA GPU ``nvidia-smi``
    lists (what PyPI's Windows torch gives) gets the exact command that installs the CUDA
    build for its driver (``bot.setup.installer``).
    """
    name = "GPU"
    if engine.name == "espeak":
        return CheckResult(name, "skip", "not needed: engine.name is espeak")
    if engine.name == "remote":
        return CheckResult(
            name, "skip", "not needed here: engine.name is remote (the voice server speaks)"
        )
    if not probe.available:
        if probe.cuda_build is None:
            why = f"torch {probe.torch_version} is a CPU-only build"
            fix = (
                "install the NVIDIA driver and a CUDA build of PyTorch "
                "(https://pytorch.org/get-started/locally/), then run the doctor again"
            )
            if current_os() is OS.MACOS:
                why += " (macOS has no CUDA; this bot's F5 engine does not use mps)"
                fix = "nothing to fix on a Mac: eSpeak NG speaks (see the README, macOS)"
            elif nvidia is not None:
                why += f", yet {nvidia.describe()} is here"
                fix = torch_fix(nvidia, current_os()) or (
                    f"update the NVIDIA driver (PyTorch's CUDA builds need CUDA "
                    f"{MIN_CUDA[0]}.{MIN_CUDA[1]} or newer), then delete .venv and run "
                    f"{scripts().install} again"
                )
        else:
            why = f"torch {probe.torch_version} (CUDA {probe.cuda_build}) finds no usable GPU"
            if probe.error:
                why += f": {probe.error}"
            fix = "check the NVIDIA driver (`nvidia-smi` must list the GPU)"
        if engine.device == "cuda":
            return CheckResult(name, "fail", f"engine.device is cuda, but {why}", fix)
        if engine.name == "f5":
            consequence = "F5-TTS will run on the CPU, about 15x slower than real time"
        else:
            consequence = "the bot will speak with eSpeak NG instead of cloned voices"
        return CheckResult(name, "warn", f"no CUDA GPU ({why}): {consequence}", fix)
    assert probe.name is not None
    assert probe.total_memory is not None
    summary = f"{probe.name}, {_gb(probe.total_memory)}"
    if probe.free_memory is not None:
        summary += f" ({_gb(probe.free_memory)} free)"
    if engine.device == "cpu":
        return CheckResult(
            name,
            "warn",
            f"{summary}, but engine.device is cpu (about 15x slower than real time)",
            "set engine.device to auto to use the GPU",
        )
    precision = engine.f5.precision
    major, minor = probe.capability or (0, 0)
    summary += f", compute {major}.{minor}"
    if probe.total_memory < MIN_GPU_MEMORY:
        return CheckResult(
            name,
            "warn",
            f"{summary}: under {_gb(MIN_GPU_MEMORY)} of memory, F5-TTS may not fit",
            "close other programs that use the GPU, or use engine.name: espeak",
        )
    if precision == "fp32":
        return CheckResult(name, "ok", f"{summary}, fp32 (engine.f5.precision)")
    if major < 7:
        return CheckResult(
            name,
            "warn",
            f"{summary}: fp16 is slow or unsupported on GPUs before compute 7.0",
            "set engine.f5.precision: fp32",
        )
    if "GTX 16" in probe.name:
        return CheckResult(
            name,
            "warn",
            f"{summary}, fp16: some GTX 16xx cards give silence or noise in fp16",
            "if speech comes out silent or garbled, set engine.f5.precision: fp32",
        )
    return CheckResult(name, "ok", f"{summary}, fp16")


def check_driver(nvidia: NvidiaGpu | None, system: OS | None = None) -> CheckResult:
    """The NVIDIA GPU and driver ``nvidia-smi`` reports, and the newest CUDA it supports."""
    name = "NVIDIA driver"
    system = system or current_os()
    if system is OS.MACOS:
        return CheckResult(name, "skip", "macOS: no NVIDIA drivers")
    if nvidia is None:
        return CheckResult(
            name,
            "skip",
            "nvidia-smi not found or lists no GPU: no NVIDIA GPU here, or its driver is not"
            " installed (https://www.nvidia.com/drivers)",
        )
    if nvidia.cuda is None or nvidia.cuda < MIN_CUDA:
        return CheckResult(
            name,
            "warn",
            f"{nvidia.describe()}: too old for PyTorch's CUDA builds",
            f"update the driver (https://www.nvidia.com/drivers) to one with CUDA"
            f" {MIN_CUDA[0]}.{MIN_CUDA[1]} or newer",
        )
    return CheckResult(name, "ok", nvidia.describe())


# -- F5 weights -----------------------------------------------------------------------------


def check_weights(
    engine: EngineConfig,
    *,
    endpoint: str | None = None,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> CheckResult:
    """Whether the F5 checkpoint, vocab and vocoder are here or can be downloaded.

    The engine says where each file would come from (``engine.weights.locate_weights``, the
    same table it loads from); this check only words the answer.
    """
    from bot.setup.progress import format_bytes
    from engine.weights import locate_weights

    name = "F5 weights"
    if engine.name == "espeak":
        return CheckResult(name, "skip", "not needed: engine.name is espeak")
    if engine.name == "remote":
        return CheckResult(
            name, "skip", "not needed here: engine.name is remote (the voice server speaks)"
        )
    files = locate_weights(engine.f5, endpoint=endpoint, timeout_s=timeout_s)
    missing = [f for f in files if f.state == "missing"]
    if missing:
        groups: dict[str, list[str]] = {}
        for f in missing:
            what = f"{f.key.removeprefix('engine.f5.')} ({f.location.rsplit('/', 1)[-1]})"
            groups.setdefault(f.detail, []).append(what)
        lines = "; ".join(f"{', '.join(whats)}: {detail}" for detail, whats in groups.items())
        fix = (
            "connect to the internet once and start the bot (it downloads them), or download "
            "them elsewhere and point engine.f5.checkpoint, engine.f5.vocab and "
            "engine.f5.vocoder at the local copies"
        )
        if engine.name == "auto":
            return CheckResult(name, "warn", f"{lines} (the bot will use eSpeak NG)", fix)
        return CheckResult(name, "fail", lines, fix)
    pending = [f for f in files if f.state == "downloadable"]
    if pending:
        total = sum(f.size or 0 for f in pending)
        size = format_bytes(total) if total else "an unknown size"
        names = ", ".join(f.location.rsplit("/", 1)[-1] for f in pending)
        return CheckResult(
            name,
            "ok",
            f"{names} not downloaded yet: {size} is fetched from the hub on first start "
            "(with progress in the log)",
        )
    kinds = sorted({f.state for f in files})
    where = " and ".join(
        "the Hugging Face cache" if k == "cached" else "local files" for k in kinds
    )
    return CheckResult(name, "ok", f"all {len(files)} files present ({where})")


# -- voices ---------------------------------------------------------------------------------


def check_voices(voices: VoicesConfig) -> list[CheckResult]:
    """Each voice: usable or why not, and whether its clip and transcript look right.

    A broken default voice fails (every message would fail); a broken other voice only
    warns (viewers who pick it hear the default).
    """
    from bot.setup.voice_import import (
        VoiceImportError,
        check_clip,
        measure_levels,
        read_clip,
        transcript_fits,
    )
    from engine.voices import VoiceLibrary

    specs = VoiceLibrary(voices).scan()
    default = voices.default.lower()
    results: list[CheckResult] = []
    if default not in specs:
        results.append(
            CheckResult(
                f"voice {default}",
                "fail",
                f"voices.default is {voices.default!r}, but {voices.dir} has no such voice",
                f"add it with `ishowtts voices add {voices.default} CLIP --text ...`, or set "
                "voices.default to one of: " + ", ".join(sorted(specs)),
            )
        )
    for key in sorted(specs):
        spec = specs[key]
        label = f"voice {key}"
        if spec.problem is not None:
            fix = f"fix it, or import the clip again: ishowtts voices add {key} CLIP --force"
            status: Status = "fail" if key == default else "warn"
            results.append(CheckResult(label, status, spec.problem, fix))
            continue
        role = " (the default voice)" if key == default else ""
        if spec.builtin:
            results.append(CheckResult(label, "ok", f"f5-tts's packaged English sample{role}"))
            continue
        where = f"{spec.clip.parent.name}/{spec.clip.name}{role}"
        warnings: list[str] = []
        try:
            clip, audio = read_clip(spec.clip)
            findings = check_clip(clip, measure_levels(audio, clip.rate))
            if spec.transcript:
                fit = transcript_fits(spec.transcript, clip.seconds)
                if fit is not None:
                    findings.append(fit)
        except VoiceImportError as exc:
            findings = []
            warnings.append(str(exc))
        warnings += [f.message for f in findings if f.severity in ("error", "warning")]
        summary = where + (f"; {spec.note}" if spec.note else "")
        if warnings:
            results.append(
                CheckResult(
                    label,
                    "warn",
                    f"{summary}: " + "; ".join(warnings),
                    f"re-record or re-import it: ishowtts voices add {key} CLIP --force",
                )
            )
        else:
            results.append(CheckResult(label, "ok", summary))
    return results


# -- audio output ---------------------------------------------------------------------------


def check_audio(audio: AudioConfig) -> CheckResult:
    """The device ``audio.device`` names exists and accepts float32 output, and its rate."""
    from bot.speech.devices import AudioDeviceError, portaudio, resolve_output_device

    name = "audio output"
    fix = "run `ishowtts devices` and set audio.device in config.yaml to a name or an index"
    try:
        sd = portaudio()
        device = resolve_output_device(audio.device)
    except AudioDeviceError as exc:
        message = str(exc)
        return CheckResult(name, "fail", message, None if "ishowtts devices" in message else fix)
    problem = ""
    for channels in dict.fromkeys([max(1, min(device.channels, 2)), 1]):
        try:
            sd.check_output_settings(
                device=device.index,
                channels=channels,
                dtype="float32",
                samplerate=device.default_rate,
            )
            break
        except (sd.PortAudioError, ValueError) as exc:
            problem = str(exc)
    else:
        return CheckResult(
            name,
            "fail",
            f"{device.name!r} refuses float32 output at {device.default_rate} Hz ({problem})",
            fix,
        )
    which = "system default" if audio.device is None else f"audio.device {audio.device!r}"
    summary = f"{device.name} [{device.hostapi}] ({which}), {device.default_rate} Hz"
    if device.default_rate != 24_000:
        summary += "; speech (24 kHz) is resampled to it"
    return CheckResult(name, "ok", summary)


VB_CABLE = "cable input"
"""How VB-Audio's virtual cable names its playback end ("CABLE Input (VB-Audio Virtual Cable)")."""


def check_audio_host(chosen: OutputDevice, devices: Sequence[OutputDevice]) -> CheckResult:
    """Windows: the output goes through WASAPI, not MME or DirectSound.

    PortAudio lists each Windows device once per host API, MME first; MME cuts names at 31
    characters and adds latency. A name in ``audio.device`` picks the WASAPI entry first, but
    an index or the system default may be another API's, so the doctor says which index is
    the WASAPI one.

    Args:
        chosen: The device ``audio.device`` resolves to.
        devices: Every output device PortAudio lists.
    """
    from bot.core.platform import preferred_hostapis

    name = "audio devices"
    wasapi = preferred_hostapis(OS.WINDOWS)[0]
    mine = [d for d in devices if d.hostapi == wasapi]
    if not mine:
        return CheckResult(
            name,
            "warn",
            f"no {wasapi} output among {len(devices)} devices: PortAudio was built without it",
            "reinstall sounddevice (`pip install --force-reinstall sounddevice`)",
        )
    if chosen.hostapi == wasapi:
        return CheckResult(name, "ok", f"{len(mine)} {wasapi} outputs; speech uses {wasapi}")
    twin = next((d for d in mine if d.name.startswith(chosen.name[:31])), None)
    fix = (
        f"set audio.device: {twin.index} (the {wasapi} entry of {twin.name!r})"
        if twin
        else f"pick a {wasapi} device from `ishowtts devices` for audio.device"
    )
    return CheckResult(
        name,
        "warn",
        f"speech goes through {chosen.hostapi} ({chosen.name!r}), not {wasapi}",
        fix,
    )


def check_virtual_cable(audio: AudioConfig, devices: Sequence[OutputDevice]) -> CheckResult:
    """Windows: whether VB-CABLE is installed, so speech can be its own source in OBS."""
    name = "VB-CABLE"
    cables = [d for d in devices if VB_CABLE in d.name.casefold()]
    if not cables:
        return CheckResult(
            name,
            "skip",
            "not installed (optional): speech plays on the output OBS captures as Desktop"
            " Audio; for its own OBS source and volume install VB-CABLE"
            " (https://vb-audio.com/Cable/) and set audio.device: CABLE Input",
        )
    used = isinstance(audio.device, str) and VB_CABLE in audio.device.casefold()
    where = "speech goes to it" if used else "not used: set audio.device: CABLE Input to use it"
    return CheckResult(name, "ok", f"{cables[0].name} is installed; {where}")


def windows_audio(audio: AudioConfig) -> list[CheckResult]:
    """The Windows audio lines (host API, VB-CABLE), from PortAudio's real device list."""
    from bot.speech.devices import AudioDeviceError, list_output_devices, resolve_output_device

    try:
        devices = list_output_devices()
        chosen = resolve_output_device(audio.device)
    except AudioDeviceError:
        return [CheckResult("audio devices", "skip", "see audio output")]
    return [check_audio_host(chosen, devices), check_virtual_cable(audio, devices)]


# -- config ---------------------------------------------------------------------------------


def check_config(path: Path | None, error: ConfigError | None, used_defaults: bool) -> CheckResult:
    """Whether the config file was found and is valid."""
    name = "config"
    if error is not None:
        return CheckResult(
            name,
            "fail",
            str(error).replace("\n", " "),
            "fix the keys named above (the README lists every key and its allowed values)",
        )
    if used_defaults:
        return CheckResult(
            name,
            "warn",
            "no config.yaml in this folder: using the built-in defaults",
            "run the bot from its folder, or pass --config PATH",
        )
    return CheckResult(name, "ok", f"{path} is valid")


# -- Twitch ---------------------------------------------------------------------------------


def _validate_token(url: str, token: str, timeout_s: float) -> tuple[int, dict[str, Any] | str]:
    """Ask Twitch whether the token is still valid; (HTTP status, body) or (0, reason)."""
    request = urllib.request.Request(url, headers={"Authorization": f"OAuth {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason)


def check_twitch(
    cfg: Config,
    *,
    validate_url: str | None = TWITCH_VALIDATE_URL,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> CheckResult:
    """Twitch settings, the stored sign-in and its scopes (and, online, that it still works).

    The Twitch source judges readiness (``bot.sources.twitch.readiness``), so the doctor and
    the bot's start-up never disagree; the doctor only adds the online token check.

    Args:
        cfg: The configuration.
        validate_url: Twitch's token validation endpoint, or None to stay offline.
        timeout_s: Longest wait for Twitch to answer.
    """
    from bot.core.messages import ChannelEventKind
    from bot.sources.twitch.readiness import (
        Problem,
        describe_missing,
        features_off,
        read_readiness,
        wanted_scopes,
    )

    name = "Twitch"
    tw = cfg.twitch
    source = cfg.chat.source
    if source == "terminal":
        return CheckResult(name, "skip", "chat.source is terminal: chat is typed in the terminal")
    needed = source == "twitch"
    if tw.channel is None and not needed:
        return CheckResult(
            name,
            "skip",
            "not configured: chat is read from the terminal",
            "to read Twitch chat set twitch.channel and twitch.client_id, then `ishowtts login`",
        )
    wanted = wanted_scopes(tw, follows=cfg.announcements.wants_follows)
    ready = read_readiness(tw, state_dir(cfg.storage), wanted=wanted)
    if not ready.ready:
        forced = needed and ready.problem is Problem.NO_CHANNEL
        prefix = "chat.source is twitch, but " if forced else ""
        fallback = "" if needed else " (until then the bot reads chat from the terminal)"
        return CheckResult(
            name, "fail" if needed else "warn", f"{prefix}{ready.reason}{fallback}", ready.fix
        )
    token = ready.token
    assert token is not None  # ready says so
    assert tw.channel is not None
    who = f"signed in as {token.login} for #{tw.channel.lower()}"
    online = ""
    if validate_url is not None:
        status, body = _validate_token(validate_url, token.access_token, timeout_s)
        if status == 200 and isinstance(body, dict):
            lost = ready.lost(body.get("scopes") or [])
            if lost:
                return CheckResult(
                    name,
                    "fail" if needed else "warn",
                    f"{who}, but Twitch no longer grants {', '.join(lost)}",
                    "run `ishowtts login` again",
                )
            online = "; Twitch accepts the token"
        elif status == 401:
            online = "; the access token has expired (the bot refreshes it when it starts)"
        elif status == 0:
            online = f"; Twitch could not be reached to check it ({body})"
        else:
            online = f"; Twitch answered {status} when checking it"
    announced = cfg.announcements.wanted
    # Features the account itself cannot serve (a scope would not help): said besides.
    account = [
        o.message
        for o in features_off(
            tw,
            token,
            follows=ChannelEventKind.FOLLOW in announced,
            redemptions=ChannelEventKind.REDEMPTION in announced,
        )
        if o.scope is None
    ]
    notes = "".join(f"; {line}" for line in account)
    if ready.missing:
        return CheckResult(
            name,
            "warn",
            f"{who}{online}; scopes missing: {', '.join(ready.missing)}{notes}",
            f"run `ishowtts login` again to grant them ({describe_missing(ready.missing)})",
        )
    if account:
        return CheckResult(
            name,
            "warn",
            f"{who}{online}{notes}",
            "sign in as the broadcaster (`ishowtts login`), or turn that announcement off",
        )
    return CheckResult(name, "ok", f"{who}, scopes {', '.join(token.scopes)}{online}")


# -- YouTube --------------------------------------------------------------------------------


def check_youtube(
    cfg: Config, *, online: bool = True, timeout_s: float = NETWORK_TIMEOUT_S
) -> CheckResult:
    """The YouTube sign-in and its scopes; online, whether Google accepts it and what is live.

    The YouTube source judges the saved files (``bot.sources.youtube.readiness``), so the doctor
    and the bot agree; the online part is one ``liveBroadcasts.list`` call (1 quota unit).

    Args:
        cfg: The configuration.
        online: Whether to ask YouTube (False: the files only).
        timeout_s: Longest wait for Google to answer.
    """
    from bot.sources.youtube.readiness import probe, read_readiness

    name = "YouTube"
    yt = cfg.youtube
    ready = read_readiness(yt, state_dir(cfg.storage))
    if not yt.enabled:
        signed = ready.token
        if signed is not None:
            return CheckResult(
                name,
                "skip",
                f"signed in as {signed.channel_title or signed.channel_id}, but youtube.enabled "
                "is off: YouTube Live chat is not read",
                "set youtube.enabled: true to read it",
            )
        return CheckResult(name, "skip", "youtube.enabled is off: YouTube Live chat is not read")
    token = ready.token
    if token is None or not ready.ready:
        return CheckResult(name, "fail", ready.reason, ready.fix)
    who = f"signed in as {token.channel_title or token.channel_id}"
    scopes = f"scopes {', '.join(token.scopes)}"
    live = ""
    if online:
        seen = probe(yt, token, timeout_s)
        if seen.fatal:
            return CheckResult(name, "fail", f"{who}, but {seen.problem}", "see docs/youtube.md")
        if not seen.reached:
            live = f"; YouTube could not be reached to check it ({seen.problem})"
        elif seen.live_title is not None:
            live = f"; Google accepts it; live now: {seen.live_title!r}"
        else:
            what = f"video {yt.video_id}" if yt.video_id else "the channel"
            live = f"; Google accepts it; nothing is live on {what} (the bot waits for it)"
    if not token.can_post:
        return CheckResult(
            name,
            "warn",
            f"{who}, {scopes}{live}; this sign-in cannot post replies",
            "run `ishowtts login youtube` again to allow posting (the youtube scope)",
        )
    return CheckResult(name, "ok", f"{who}, {scopes}{live}")


# -- database -------------------------------------------------------------------------------


def check_database(cfg: Config) -> CheckResult:
    """The SQLite file (or the folder it will be created in) is usable and writable.

    The store judges the file (``bot.state.store.database_health``), so the doctor and the
    bot's start-up never disagree; a read-only file is a warning (saved state applies).
    """
    from bot.state.settings import database_path
    from bot.state.store import DatabaseState, database_health

    health = database_health(database_path(cfg.storage))
    statuses: dict[DatabaseState, Status] = {
        DatabaseState.OK: "ok",
        DatabaseState.NEW: "ok",
        DatabaseState.READ_ONLY: "warn",
    }
    status = statuses.get(health.state, "fail")
    return CheckResult("database", status, health.summary, health.fix)


def _secret_files() -> tuple[str, ...]:
    """The token files the bot keeps in the state folder (each named by its owner)."""
    from bot.sources.twitch.auth import TOKEN_FILE_NAME as TWITCH
    from bot.sources.youtube.auth import TOKEN_FILE_NAME as YOUTUBE
    from bot.web.token import TOKEN_FILE_NAME as WEB
    from engine.config import SERVE_TOKEN_FILE

    return (WEB, TWITCH, YOUTUBE, SERVE_TOKEN_FILE)


def check_secrets(cfg: Config) -> CheckResult:
    """Who else can read the tokens and the database: what protection applies on this OS.

    POSIX: modes (the folder 0700, files 0600). Windows: the access list, which inside the
    user's profile folder (the default, ``%LOCALAPPDATA%``) admits only the user, SYSTEM and
    Administrators (``bot.core.platform.protection``).
    """
    from bot.state.settings import database_path

    name = "secrets"
    folder = state_dir(cfg.storage)
    rule = (
        "Windows: files inherit the folder's access list"
        if current_os() is OS.WINDOWS
        else "POSIX modes: folder 0700, files 0600"
    )
    if not folder.exists():
        return CheckResult(name, "ok", f"{folder} will be created private ({rule})")
    paths = [folder, database_path(cfg.storage)]
    paths += [folder / f for f in _secret_files()]
    found = [protection(p) for p in paths if p.exists()]
    open_ = [p for p in found if p.private is False]
    if open_:
        first = open_[0]
        return CheckResult(
            name,
            "warn",
            f"{first.path}: {first.summary}"
            + (f" (and {len(open_) - 1} more)" if len(open_) > 1 else ""),
            first.fix,
        )
    unknown = [p for p in found if p.private is None]
    if unknown:
        return CheckResult(name, "warn", f"{unknown[0].path}: {unknown[0].summary}", unknown[0].fix)
    return CheckResult(name, "ok", f"{folder}: {found[0].summary} ({rule}; {len(found)} checked)")


# -- web panel ------------------------------------------------------------------------------


def check_port(host: str, port: int, label: str = "web panel") -> CheckResult:
    """Whether the bot could listen on ``host:port`` now (by binding and releasing it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return CheckResult(label, "fail", f"{host!r} is not an address here ({exc})")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # The server sets SO_REUSEADDR too (aiohttp does on Unix), so TIME_WAIT from a bot
        # that just stopped does not count as taken, while a listening socket does.
        allow_address_reuse(sock)
        sock.bind(address)
    except OSError as exc:
        return CheckResult(
            label,
            "fail",
            f"port {port} on {host} is taken ({exc.strerror or exc}): another program, or an "
            "ishowtts already running, listens there",
            "stop the other program, or set web.port to a free port",
        )
    finally:
        sock.close()
    return CheckResult(label, "ok", f"http://{host}:{port}/ is free")


def check_web(cfg: Config) -> CheckResult:
    """The web panel's port is free (``web.port``; 0 means any free port, so nothing to check)."""
    web = cfg.web
    if not web.enabled:
        return CheckResult("web panel", "skip", "switched off (web.enabled: false)")
    if web.port == 0:
        return CheckResult("web panel", "ok", "web.port is 0: a free port is picked at start")
    return check_port(web.host, web.port)


# -- the voice server (engine.name: remote) ---------------------------------------------------


def check_remote(cfg: Config, timeout_s: float = NETWORK_TIMEOUT_S) -> list[CheckResult]:
    """The ``ishowtts serve`` that ``engine.remote.url`` names: reachable, token, voices, ready.

    Each answer has its own fix: nothing listening (start ``serve`` there, or the firewall),
    a refused token (where to get the right one), no usable voice, an engine still loading
    or failed on the serving PC.
    """
    import ssl

    from engine.remote import read_token

    remote = cfg.engine.remote
    url = remote.url
    context = (
        ssl.create_default_context(cafile=str(remote.ca_file))
        if remote.ca_file is not None
        else None
    )
    name = "voice server"

    def get(path: str, token: str | None) -> tuple[int, Any]:
        request = urllib.request.Request(f"{url}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
                return resp.status, json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read(1 << 16))
                return exc.code, str(body["error"]["message"])
            except (ValueError, KeyError, TypeError):
                return exc.code, f"HTTP {exc.code}"

    start_fix = (
        f"start `ishowtts serve` on the serving PC, check engine.remote.url ({url}), and that "
        "its firewall lets this PC reach the port (serve.host and serve.allow_remote there)"
    )
    try:
        _status, health = get("/health", None)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return [CheckResult(name, "fail", f"{url} does not answer ({reason})", start_fix)]
    if not isinstance(health, dict) or "status" not in health:
        return [CheckResult(name, "fail", f"{url} answers, but not like ishowtts serve", start_fix)]
    token, where = read_token(remote, state_dir(cfg.storage))
    if token is None:
        return [
            CheckResult(
                f"{name} token",
                "fail",
                f"no token found (looked in {where})",
                f"on the serving PC run `ishowtts serve --print-token`, then set "
                f"{remote.token_env} to it here (or copy its serve-token file into this "
                "state folder, mode 0600)",
            )
        ]
    code, status = get("/v1/status", token)
    if code == 401:
        return [
            CheckResult(
                f"{name} token",
                "fail",
                f"{url} refuses the token from {where}: {status}",
                f"set {remote.token_env} to what `ishowtts serve --print-token` shows there",
            )
        ]
    if code != 200 or not isinstance(status, dict):
        return [CheckResult(name, "fail", f"{url}/v1/status answered {code}: {status}")]
    results = [
        CheckResult(name, "ok", f"{url} answers ({status.get('engine', '?')} engine)"),
        CheckResult(f"{name} token", "ok", f"accepted (from {where})"),
    ]
    state = status.get("state")
    if state == "ready":
        code, voices = get("/v1/voices", token)
        usable = [
            v["name"]
            for v in (voices.get("data", []) if isinstance(voices, dict) else [])
            if not v.get("problem")
        ]
        if usable:
            shown = ", ".join(usable[:10]) + (" ..." if len(usable) > 10 else "")
            results.append(CheckResult(f"{name} voices", "ok", f"{len(usable)} usable: {shown}"))
        else:
            results.append(
                CheckResult(
                    f"{name} voices",
                    "fail",
                    "the server offers no usable voice",
                    "run `ishowtts voices` on the serving PC to see why",
                )
            )
        results.append(CheckResult(f"{name} engine", "ok", str(status.get("detail", "ready"))))
    elif state == "error":
        results.append(
            CheckResult(
                f"{name} engine",
                "fail",
                f"failed to load there: {status.get('detail')}",
                "run `ishowtts doctor` on the serving PC",
            )
        )
    else:
        results.append(
            CheckResult(
                f"{name} engine",
                "warn",
                f"still starting ({status.get('detail') or state}); messages wait or use "
                "eSpeak NG until it is ready",
            )
        )
    return results


# -- the report -----------------------------------------------------------------------------


_LABEL: dict[Status, str] = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "skip": "--"}


def render(results: Sequence[CheckResult], out: TextIO, width: int | None = None) -> None:
    """Write the one-screen report: a line per check, the fix under it, then the verdict.

    Args:
        results: The checks, in order.
        out: Where to write.
        width: Line width (default: the terminal's, within 72-140 columns).
    """
    if width is None:
        width = min(140, max(72, shutil.get_terminal_size((100, 24)).columns))
    label_width = max((len(r.name) for r in results), default=8)
    indent = " " * (2 + 4 + 2 + label_width + 2)
    for r in results:
        head = f"  {_LABEL[r.status]:<4}  {r.name:<{label_width}}  "
        out.write(textwrap.fill(r.summary, width, initial_indent=head, subsequent_indent=indent))
        out.write("\n")
        if r.fix and r.status in ("warn", "fail"):
            out.write(
                textwrap.fill(
                    r.fix, width, initial_indent=indent + "-> ", subsequent_indent=indent + "   "
                )
            )
            out.write("\n")
    failures = sum(r.blocking for r in results)
    warnings = sum(r.status == "warn" for r in results)
    out.write("\n")
    if failures:
        noun = "problem blocks" if failures == 1 else "problems block"
        out.write(f"{failures} {noun} running the bot: fix the FAIL lines above.\n")
    else:
        extra = f" ({warnings} warning{'s' if warnings != 1 else ''} above)" if warnings else ""
        out.write(f"Ready to run: {scripts().run}{extra}.\n")


def run_checks(
    config_path: Path | None,
    *,
    default_path: Path = Path("config.yaml"),
    gpu_probe: Callable[[], GpuProbe] = probe_gpu,
    nvidia_probe: Callable[[], NvidiaGpu | None] = detect_nvidia,
    hub_endpoint: str | None = None,
    twitch_validate_url: str | None = TWITCH_VALIDATE_URL,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> list[CheckResult]:
    """Run every check, in the order a streamer fixes things.

    Args:
        config_path: ``--config``, or None for ``./config.yaml`` (defaults when absent).
        default_path: The file looked for when ``config_path`` is None.
        gpu_probe: How to ask about the GPU (tests inject a probe result).
        nvidia_probe: How to ask ``nvidia-smi`` about the GPU and its driver.
        hub_endpoint: Hugging Face hub address (default: huggingface_hub's).
        twitch_validate_url: Twitch token validation URL (None: no network).
        timeout_s: Longest wait for each network probe.
    """
    results: list[CheckResult] = []

    def run(label: str, check: Callable[[], CheckResult | list[CheckResult]]) -> None:
        # A check that crashes (a package missing, a library that fails to load) becomes a
        # failed line naming the problem; the rest of the report still runs.
        try:
            outcome = check()
        except Exception as exc:
            log.debug("doctor check %s crashed", label, exc_info=True)
            outcome = CheckResult(
                label,
                "fail",
                f"the check itself failed: {type(exc).__name__}: {exc}",
                f"run {scripts().install} to repair the installation",
            )
        results.extend(outcome if isinstance(outcome, list) else [outcome])

    run("Python", check_python)
    run("packages", check_packages)
    error: ConfigError | None = None
    cfg: Config | None = None
    used_defaults = False
    path = config_path
    try:
        if path is None and default_path.exists():
            path = default_path
        if path is None:
            used_defaults = True
            cfg = parse_config({}, Path.cwd())
        else:
            cfg = load_config(path)
    except ConfigError as exc:
        error = exc
    run("config", lambda: check_config(path, error, used_defaults))
    engine = cfg.engine if cfg is not None else parse_config({}, Path.cwd()).engine
    nvidia: list[NvidiaGpu | None] = [None]

    def driver() -> CheckResult:
        nvidia[0] = nvidia_probe()
        return check_driver(nvidia[0])

    run("NVIDIA driver", driver)
    run("GPU", lambda: check_gpu(engine, gpu_probe(), nvidia[0]))
    if cfg is None:
        for label in (
            "F5 weights",
            "voices",
            "audio output",
            "Twitch",
            "YouTube",
            "database",
            "secrets",
            "web panel",
        ):
            results.append(CheckResult(label, "skip", "fix the config first"))
        return results
    ready = cfg
    run(
        "F5 weights",
        lambda: check_weights(ready.engine, endpoint=hub_endpoint, timeout_s=timeout_s),
    )
    run("voices", lambda: check_voices(ready.voices))
    if ready.engine.name == "remote":
        run("voice server", lambda: check_remote(ready, timeout_s=timeout_s))
    if ready.web.browser_audio is BrowserAudio.ONLY:
        results.append(
            CheckResult(
                "audio output",
                "skip",
                "web.browser_audio: only: speech plays in the overlay page (add the overlay to"
                " OBS as a browser source); no local audio device is opened",
            )
        )
    else:
        run("audio output", lambda: check_audio(ready.audio))
        if current_os() is OS.WINDOWS:
            run("audio devices", lambda: windows_audio(ready.audio))
    run(
        "Twitch",
        lambda: check_twitch(ready, validate_url=twitch_validate_url, timeout_s=timeout_s),
    )
    run(  # no Twitch URL means no network at all (the tests), so YouTube stays offline too
        "YouTube",
        lambda: check_youtube(ready, online=twitch_validate_url is not None, timeout_s=timeout_s),
    )
    run("database", lambda: check_database(ready))
    run("secrets", lambda: check_secrets(ready))
    run("web panel", lambda: check_web(ready))
    return results


def doctor_command(config_path: Path | None, *, out: TextIO | None = None) -> int:
    """``ishowtts doctor``: print the report; exit status 1 when something blocks running."""
    stream = out if out is not None else sys.stdout
    stream.write("ishowtts doctor: checking what the bot needs (takes a few seconds)\n\n")
    results = run_checks(config_path)
    render(results, stream)
    return 1 if any(r.blocking for r in results) else 0
