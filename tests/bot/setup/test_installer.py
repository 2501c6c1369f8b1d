"""Which torch the installer picks (issue 14), and the scripts that only run its steps.

``nvidia-smi`` is a real executable here: a small script on PATH that prints what a real one
prints on Windows and Linux (header with "CUDA Version", the CSV query), so detection runs
the same subprocess code as on a streamer's PC. PowerShell itself is not installed on these
machines (Microsoft's package source is unreachable), so the ``.ps1`` scripts are checked for
doing what their bash twins do, with every decision left to the installer tested here.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.core.platform import OS
from bot.setup import installer
from bot.setup.installer import CPU_INDEX, TORCH_INDEX, NvidiaGpu, parse_nvidia_smi, plan_torch
from tests.support import REPO

WINDOWS_TABLE = """\
Tue Dec  8 03:10:11 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 551.86                 Driver Version: 551.86         CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                     TCC/WDDM  | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA GeForce RTX 4070      WDDM  |   00000000:01:00.0  On |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""
WINDOWS_QUERY = "NVIDIA GeForce RTX 4070, 551.86\n"
RTX = NvidiaGpu("NVIDIA GeForce RTX 4070", "551.86", (12, 4))


def test_nvidia_smi_output_is_read() -> None:
    assert parse_nvidia_smi(WINDOWS_TABLE, WINDOWS_QUERY, OS.WINDOWS) == RTX
    two = "NVIDIA GeForce RTX 3060, 570.86.10\nNVIDIA GeForce GTX 1080, 570.86.10\n"
    gpu = parse_nvidia_smi("CUDA Version: 12.8", two, OS.LINUX)
    assert gpu == NvidiaGpu("NVIDIA GeForce RTX 3060", "570.86.10", (12, 8))
    # A name with a comma in it still splits at the last comma.
    odd = parse_nvidia_smi("", "Quadro RTX 4000, Mobile, 552.22\n", OS.WINDOWS)
    assert odd is not None
    assert odd.name == "Quadro RTX 4000, Mobile"


@pytest.mark.parametrize(
    ("driver", "system", "cuda"),
    [
        ("551.61", OS.WINDOWS, (12, 4)),
        ("551.60", OS.WINDOWS, (12, 1)),  # Windows needs a newer driver than Linux for 12.4
        ("550.54.14", OS.LINUX, (12, 4)),
        ("580.95.05", OS.LINUX, (13, 0)),
        ("470.256.02", OS.LINUX, None),
    ],
)
def test_without_a_cuda_version_in_the_header_the_driver_table_decides(
    driver: str, system: OS, cuda: tuple[int, int] | None
) -> None:
    gpu = parse_nvidia_smi("", f"Some GPU, {driver}\n", system)
    assert gpu is not None
    assert gpu.cuda == cuda


@pytest.mark.parametrize("query", ["", "No devices were found\n", "garbage"])
def test_no_gpu_in_the_output_is_no_gpu(query: str) -> None:
    assert parse_nvidia_smi("", query, OS.WINDOWS) is None


def test_windows_with_an_nvidia_gpu_gets_the_cuda_build_for_its_driver() -> None:
    plan = plan_torch(OS.WINDOWS, "AMD64", RTX)
    assert plan.cuda
    assert plan.indexes == (f"{TORCH_INDEX}/cu124", f"{TORCH_INDEX}/cu121", f"{TORCH_INDEX}/cu118")
    assert "CPU-only" in plan.reason  # says why not PyPI's
    assert plan.banner is None
    newest = plan_torch(OS.WINDOWS, "AMD64", NvidiaGpu("RTX 5090", "581.29", (13, 0)))
    assert newest.indexes[0] == f"{TORCH_INDEX}/cu130"
    between = plan_torch(OS.LINUX, "x86_64", NvidiaGpu("RTX 3060", "565.57", (12, 7)))
    assert between.indexes[0] == f"{TORCH_INDEX}/cu126"  # never newer than the driver allows


@pytest.mark.parametrize(
    ("system", "gpu", "words"),
    [
        (OS.WINDOWS, None, "no NVIDIA GPU"),
        (OS.LINUX, None, "no NVIDIA GPU"),
        (OS.WINDOWS, NvidiaGpu("GTX 780", "472.12", (11, 4)), "too old"),
    ],
)
def test_without_a_usable_gpu_the_cpu_build_and_the_espeak_banner(
    system: OS, gpu: NvidiaGpu | None, words: str
) -> None:
    plan = plan_torch(system, "AMD64", gpu)
    assert not plan.cuda
    assert plan.indexes == (CPU_INDEX,)
    assert plan.banner is not None
    assert words in plan.banner
    assert "eSpeak NG" in plan.banner


def test_macos_takes_pypis_build_and_says_f5_is_not_on_mps_here() -> None:
    plan = plan_torch(OS.MACOS, "arm64", None)
    assert plan.indexes == (None,)
    assert not plan.cuda
    assert plan.banner is not None
    assert "mps" in plan.banner
    assert "eSpeak NG" in plan.banner


def test_tests_always_take_the_cpu_build() -> None:
    plan = plan_torch(OS.WINDOWS, "AMD64", RTX, profile="test")
    assert plan.indexes == (CPU_INDEX,)
    assert plan.banner is None


def test_windows_on_arm_has_no_cuda_build() -> None:
    plan = plan_torch(OS.WINDOWS, "ARM64", RTX)
    assert plan.indexes == (CPU_INDEX,)


class Pip:
    """Records pip command lines; fails for the indexes it is told have no torch."""

    def __init__(self, *failing: str | None) -> None:
        self.failing = set(failing)
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> int:
        self.calls.append(list(cmd))
        index = cmd[cmd.index("--index-url") + 1] if "--index-url" in cmd else None
        return 1 if index in self.failing else 0

    def indexes(self) -> list[str | None]:
        return [c[c.index("--index-url") + 1] if "--index-url" in c else None for c in self.calls]


def test_install_tries_older_cuda_builds_then_the_cpu_build() -> None:
    plan = plan_torch(OS.WINDOWS, "AMD64", RTX)
    said: list[str] = []
    pip = Pip(f"{TORCH_INDEX}/cu124")
    assert installer.install_torch(plan, "py", pip, said.append) == 0
    assert pip.indexes() == [f"{TORCH_INDEX}/cu124", f"{TORCH_INDEX}/cu121"]
    assert pip.calls[0][:5] == ["py", "-m", "pip", "install", "--upgrade"]
    assert not any("eSpeak" in line for line in said)

    said.clear()
    pip = Pip(*plan.indexes)
    assert installer.install_torch(plan, "py", pip, said.append) == 0
    assert pip.indexes() == [*plan.indexes, CPU_INDEX]
    assert any("eSpeak NG" in line for line in said)  # the banner, even though a GPU exists

    pip = Pip(*plan.indexes, CPU_INDEX)  # only a PyPI mirror is reachable
    assert installer.install_torch(plan, "py", pip, said.append) == 0
    assert pip.indexes() == [*plan.indexes, CPU_INDEX, None]

    pip = Pip(*plan.indexes, CPU_INDEX, None)
    assert installer.install_torch(plan, "py", pip, said.append) == 1

    cpu = plan_torch(OS.LINUX, "x86_64", None)  # the CPU index is not tried twice
    pip = Pip(CPU_INDEX)
    assert installer.install_torch(cpu, "py", pip, said.append) == 0
    assert pip.indexes() == [CPU_INDEX, None]


def test_the_doctor_fix_names_the_exact_command() -> None:
    fix = installer.torch_fix(RTX, OS.WINDOWS)
    assert fix is not None
    assert r".venv\Scripts\python.exe -m pip install --upgrade --force-reinstall --no-deps" in fix
    assert f"--index-url {TORCH_INDEX}/cu124" in fix
    assert r"scripts\run.ps1" in fix
    assert installer.torch_fix(NvidiaGpu("GTX 780", "472.12", (11, 4)), OS.WINDOWS) is None


def _fake_nvidia_smi(folder: Path, table: str, query: str) -> None:
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "" ]; then cat <<\'EOF\'\n{table}EOF\n'
        f"else cat <<'EOF'\n{query}EOF\nfi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a shell script as nvidia-smi")
def test_detection_runs_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, WINDOWS_TABLE, WINDOWS_QUERY)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert installer.detect_nvidia(system=OS.WINDOWS) == RTX
    # The command line a person runs: from the repository, before anything is installed.
    out = subprocess.run(
        [sys.executable, "-m", "bot.setup.installer", "plan"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
    )
    assert "NVIDIA GeForce RTX 4070, driver 551.86 (CUDA 12.4)" in out.stdout
    assert f"index: {TORCH_INDEX}/cu124" in out.stdout
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert installer.detect_nvidia() is None


def test_the_installer_imports_nothing_but_the_standard_library() -> None:
    """It runs in a fresh venv, before pip has installed anything."""
    code = (
        "import sys; before = set(sys.modules); import bot.setup.installer; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'bot'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _script(name: str) -> str:
    return (REPO / "scripts" / name).read_text(encoding="utf-8")


def test_the_powershell_scripts_do_what_their_bash_twins_do() -> None:
    install_ps, install_sh = _script("install.ps1"), _script("install.sh")
    for text in (install_ps, install_sh):
        assert "-m bot.setup.installer torch --python" in text  # the decision is the installer's
        assert "pip install -q -e ." in text
        assert "pip install -q -e '.[test]'" in text or 'pip install -q -e ".[test]"' in text
    assert "--profile $kind" in install_ps  # tests take the CPU build there too
    assert "sys.version_info < (3, 11)" in install_ps  # requires-python, as pyproject says
    run_ps = _script("run.ps1")
    assert "install.ps1" in run_ps
    assert r".venv\Scripts\ishowtts.exe @args" in run_ps
    test_ps, test_sh = _script("test.ps1"), _script("test.sh")
    assert 'install.ps1" -Test' in test_ps
    for tool in (
        "format --check bot engine tests bench",
        "check bot engine tests bench",
        "mypy",
        "lint-imports",
        "--no-cache",
        "pytest",
    ):
        assert tool in test_sh, tool
        assert tool in test_ps, tool
