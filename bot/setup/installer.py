r"""Which PyTorch to install here, decided in Python so that it is tested (issue 14).

Why it exists: ``pip install`` takes PyPI's torch, which on Windows is a CPU-only build, so a
streamer with an RTX card would silently get eSpeak NG; and PyPI's Linux build needs a driver
new enough for the CUDA it bundles. PyTorch's own package index has one build per CUDA
version (``https://download.pytorch.org/whl/cu128`` ...): the right one is the newest the
GPU's driver supports, which ``nvidia-smi`` reports ("CUDA Version: 12.8"). The shell and
PowerShell scripts stay minimal (make the venv, call this, install the rest); every decision
is here, with its reason, and ``tests/bot/setup/test_installer.py`` checks each.

Run from the repository before anything else is installed (standard library only)::

    python -m bot.setup.installer plan                   # what it would do, and why
    python -m bot.setup.installer torch --python PYTHON  # install torch + torchaudio so
    python -m bot.setup.installer torch --python PYTHON --profile test  # CPU build, for tests
"""

from __future__ import annotations

import argparse
import platform as host
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.core.platform import OS, current_os, scripts

TORCH_INDEX = "https://download.pytorch.org/whl"
CPU_INDEX = f"{TORCH_INDEX}/cpu"
CUDA_BUILDS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("cu130", (13, 0)),
    ("cu129", (12, 9)),
    ("cu128", (12, 8)),
    ("cu126", (12, 6)),
    ("cu124", (12, 4)),
    ("cu121", (12, 1)),
    ("cu118", (11, 8)),
)
"""PyTorch's CUDA builds (index folder, the CUDA version its driver must support), newest first.

Each index also keeps older torch releases, so pip finds the newest torch built for that CUDA.
"""
CANDIDATES = 3
"""How many CUDA builds to try, newest first, before giving up on CUDA (pip may find no torch
for this Python on the newest index)."""
MIN_CUDA = CUDA_BUILDS[-1][1]

DRIVER_CUDA: tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]], ...] = (
    # (Linux driver, Windows driver, CUDA it supports), newest first: NVIDIA's CUDA release
    # notes, table 3 ("minimum required driver version"). Used only when nvidia-smi's header
    # has no "CUDA Version" (very old nvidia-smi).
    ((580, 65), (580, 88), (13, 0)),
    ((575, 51), (576, 2), (12, 9)),
    ((570, 26), (570, 65), (12, 8)),
    ((560, 28), (560, 76), (12, 6)),
    ((550, 54), (551, 61), (12, 4)),
    ((530, 30), (531, 14), (12, 1)),
    ((520, 61), (520, 6), (11, 8)),
)

PACKAGES = ("torch", "torchaudio")


@dataclass(frozen=True, slots=True)
class NvidiaGpu:
    """What ``nvidia-smi`` says about the first NVIDIA GPU.

    Attributes:
        name: ``NVIDIA GeForce RTX 4070``.
        driver: The driver version, ``551.86``.
        cuda: The newest CUDA the driver supports, (12, 4); None when it cannot be told.
    """

    name: str
    driver: str
    cuda: tuple[int, int] | None

    def describe(self) -> str:
        """``NVIDIA GeForce RTX 4070, driver 551.86 (CUDA 12.4)``."""
        cuda = f" (CUDA {self.cuda[0]}.{self.cuda[1]})" if self.cuda else ""
        return f"{self.name}, driver {self.driver}{cuda}"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def driver_cuda(driver: str, system: OS) -> tuple[int, int] | None:
    """The newest CUDA a driver version supports (NVIDIA's table), None when too old or unknown."""
    found = _version(driver)
    for linux, windows, cuda in DRIVER_CUDA:
        if found >= (windows if system is OS.WINDOWS else linux):
            return cuda
    return None


def parse_nvidia_smi(table: str, query: str, system: OS) -> NvidiaGpu | None:
    """Read ``nvidia-smi``'s table header and ``--query-gpu=name,driver_version`` CSV output.

    Args:
        table: Plain ``nvidia-smi`` output (its header says "CUDA Version: 12.4").
        query: ``nvidia-smi --query-gpu=name,driver_version --format=csv,noheader``.
        system: Whose driver numbering applies when the header has no CUDA version.

    Returns:
        The first GPU, or None when the output names none.
    """
    first = next((line for line in query.splitlines() if line.strip()), "")
    parts = [p.strip() for p in first.rsplit(",", 1)]
    if len(parts) != 2 or not parts[0] or not _version(parts[1]):
        return None
    name, driver = parts
    header = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", table)
    cuda = (int(header[1]), int(header[2])) if header else driver_cuda(driver, system)
    return NvidiaGpu(name, driver, cuda)


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=20, check=False)


def detect_nvidia(run: Runner = _run, system: OS | None = None) -> NvidiaGpu | None:
    """The NVIDIA GPU ``nvidia-smi`` reports, or None (no NVIDIA driver, or no GPU)."""
    system = system or current_os()
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        table = run([exe])
        query = run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"])
    except (OSError, subprocess.SubprocessError):
        return None
    if query.returncode != 0:
        return None
    return parse_nvidia_smi(table.stdout if table.returncode == 0 else "", query.stdout, system)


@dataclass(frozen=True, slots=True)
class TorchPlan:
    """How to install torch here, and what it means for the voices.

    Attributes:
        indexes: Package indexes to try in order (None: PyPI's default build).
        reason: One line: why these.
        cuda: Whether the plan installs a CUDA build (F5-TTS on the GPU).
        banner: What a person must know when it is not a CUDA build (eSpeak NG then).
        gpu: The NVIDIA GPU found, if any.
    """

    indexes: tuple[str | None, ...]
    reason: str
    cuda: bool
    banner: str | None = None
    gpu: NvidiaGpu | None = None
    fallback: tuple[str | None, ...] = field(default=(CPU_INDEX, None))
    """Where to go when every index above fails: the CPU build (and the eSpeak NG banner),
    then PyPI's build, for machines that reach only a PyPI mirror."""


def cuda_indexes(cuda: tuple[int, int], limit: int = CANDIDATES) -> tuple[str, ...]:
    """PyTorch's CUDA indexes a driver supporting ``cuda`` can use, newest first."""
    fits = [tag for tag, needs in CUDA_BUILDS if needs <= cuda]
    return tuple(f"{TORCH_INDEX}/{tag}" for tag in fits[:limit])


ESPEAK_BANNER = (
    "NO CUDA BUILD OF PYTORCH: {why}\n"
    "The bot will speak with eSpeak NG (robotic, but live) instead of cloned F5-TTS voices,\n"
    "because F5-TTS on a CPU runs about 15x slower than real time. {fix}"
)


def plan_torch(
    system: OS, machine: str, gpu: NvidiaGpu | None, *, profile: str = "run"
) -> TorchPlan:
    """Which torch build to install.

    Args:
        system: The OS.
        machine: ``platform.machine()`` (``AMD64``, ``x86_64``, ``arm64``...).
        gpu: What :func:`detect_nvidia` found.
        profile: ``run`` (the bot) or ``test`` (the test suite, which runs on the CPU).
    """
    if profile == "test":
        return TorchPlan((CPU_INDEX,), "tests run on the CPU: the small CPU build", False, gpu=gpu)
    if system is OS.MACOS:
        why = (
            "macOS has no CUDA; PyPI's build uses Apple's GPU (mps), which this bot's F5 engine"
            " does not use yet (engine.device: auto | cuda | cpu)"
        )
        return TorchPlan(
            (None,),
            "macOS: PyPI's build (the only one PyTorch makes for macOS)",
            False,
            ESPEAK_BANNER.format(why=why, fix="Nothing to fix here: this is expected on a Mac."),
            gpu,
            fallback=(),
        )
    if gpu is None:
        where = "no NVIDIA GPU was found (nvidia-smi is missing or lists none)"
        fix = (
            "With an NVIDIA card: install its driver (https://www.nvidia.com/drivers), then run"
            " this installer again."
        )
        return TorchPlan(
            (CPU_INDEX,), f"{where}: the CPU build", False, ESPEAK_BANNER.format(why=where, fix=fix)
        )
    if gpu.cuda is None or gpu.cuda < MIN_CUDA:
        where = (
            f"the driver of {gpu.describe()} is too old for any current PyTorch CUDA build"
            f" (needs CUDA {MIN_CUDA[0]}.{MIN_CUDA[1]} or newer)"
        )
        fix = "Update the NVIDIA driver (https://www.nvidia.com/drivers), then run this again."
        return TorchPlan(
            (CPU_INDEX,),
            f"{where}: the CPU build",
            False,
            ESPEAK_BANNER.format(why=where, fix=fix),
            gpu,
        )
    indexes = cuda_indexes(gpu.cuda)
    arm = machine.lower() in ("arm64", "aarch64") and system is OS.WINDOWS
    if arm:
        where = "PyTorch has no CUDA build for Windows on ARM"
        return TorchPlan((CPU_INDEX,), where, False, ESPEAK_BANNER.format(why=where, fix=""), gpu)
    return TorchPlan(
        indexes,
        f"{gpu.describe()}: PyTorch's CUDA build for the newest CUDA this driver supports"
        + (" (PyPI's Windows build is CPU-only)" if system is OS.WINDOWS else ""),
        True,
        gpu=gpu,
    )


def pip_command(python: str, index: str | None, *, reinstall: bool = False) -> list[str]:
    """The pip command line that installs torch and torchaudio from ``index``."""
    args = [python, "-m", "pip", "install", "--upgrade"]
    if reinstall:
        args += ["--force-reinstall", "--no-deps"]
    args += list(PACKAGES)
    if index is not None:
        args += ["--index-url", index]
    return args


def torch_fix(gpu: NvidiaGpu, system: OS, python: str | None = None) -> str | None:
    """What to run when torch is a CPU build but this machine has an NVIDIA GPU (the doctor).

    None when no CUDA build fits the driver (the doctor then says to update the driver).
    """
    plan = plan_torch(system, host.machine(), gpu)
    if not plan.cuda:
        return None
    names = scripts(system)
    command = " ".join(pip_command(python or names.python, plan.indexes[0], reinstall=True))
    script = names.run if system is OS.WINDOWS else names.install
    return (
        f"torch is a CPU-only build, but {gpu.describe()} can run F5-TTS: {command}"
        f" (or delete .venv and run {script} again, which picks that build itself)"
    )


def install_torch(
    plan: TorchPlan, python: str, run: Callable[[Sequence[str]], int], say: Callable[[str], None]
) -> int:
    """Install torch by ``plan``: each index in turn, then the CPU build; pip's status.

    Args:
        plan: From :func:`plan_torch`.
        python: The venv's interpreter.
        run: Runs a command, returning its exit status (pip's output goes to the terminal).
        say: Prints a line for the person installing.
    """
    say(f"==> torch: {plan.reason}")
    for index in plan.indexes:
        say(f"==> installing torch and torchaudio from {index or 'PyPI'}")
        if run(pip_command(python, index)) == 0:
            if plan.banner:
                say(_framed(plan.banner))
            return 0
        say(f"==> no torch for this Python on {index or 'PyPI'}")
    for index in plan.fallback:
        if index in plan.indexes:
            continue  # tried above
        say(f"==> falling back to {index or 'PyPI'}")
        if run(pip_command(python, index)) == 0:
            why = "no CUDA build of torch could be installed (see pip's messages above)"
            say(_framed(plan.banner or ESPEAK_BANNER.format(why=why, fix="")))
            return 0
    return 1


def _framed(text: str) -> str:
    line = "=" * 72
    return f"{line}\n{text.strip()}\n{line}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bot.setup.installer plan|torch``."""
    parser = argparse.ArgumentParser(prog="python -m bot.setup.installer")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("plan", "torch"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--profile", choices=("run", "test"), default="run")
        cmd.add_argument("--python", default=sys.executable, help="the venv's interpreter")
    args = parser.parse_args(argv)
    system = current_os()
    gpu = detect_nvidia(system=system)
    plan = plan_torch(system, host.machine(), gpu, profile=args.profile)
    if args.command == "plan":
        print(f"GPU: {gpu.describe() if gpu else 'no NVIDIA GPU found'}")
        print(f"torch: {plan.reason}")
        for index in plan.indexes:
            print(f"  index: {index or 'PyPI'}")
        if plan.banner:
            print(_framed(plan.banner))
        return 0
    return install_torch(
        plan, args.python, lambda cmd: subprocess.call(list(cmd)), lambda line: print(line)
    )


if __name__ == "__main__":
    sys.exit(main())
