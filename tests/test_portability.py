"""CI check (issue 14): no POSIX-only call outside the platform modules.

Windows and macOS differ from Linux in a handful of places (file modes, ``add_reader``,
``add_signal_handler``, descriptor limits, POSIX-only modules, hard-coded POSIX paths, shell
scripts). Each difference has one home: ``bot/core/platform.py`` for the bot, and the few
lines of the engine that load a native library (``engine/espeak.py``, which may not import the
bot). This test parses every module of ``bot`` and ``engine`` with ``ast`` and fails on any
such use anywhere else, naming the file, the line, and what to call instead.

Known offenders in files other engineers are changing right now are listed in ``ALLOWED``
with a TODO: the check passes today, and fails once such an entry is stale (the call is gone),
so the list only ever shrinks. ``bench/`` is Linux-only tooling (PulseAudio, ``malloc_trim``)
and ``tests/`` runs on Linux by design (inotify, PulseAudio), so neither is scanned.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

SCANNED = ("bot", "engine")
HOMES = {"bot/core/platform.py"}
"""Where platform differences live; everything there is allowed."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One POSIX-only use: where, which rule, and what to use instead."""

    path: str
    line: int
    rule: str
    advice: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.advice}"


POSIX_MODULES = {
    "fcntl": "file locks and descriptor flags: POSIX only",
    "termios": "terminal modes: POSIX only",
    "tty": "terminal modes: POSIX only",
    "pty": "pseudo-terminals: POSIX only",
    "resource": "use bot.core.platform.descriptor_limit()",
    "pwd": "user database: POSIX only; use getpass.getuser() or Path.home()",
    "grp": "group database: POSIX only",
    "posix": "POSIX only",
    "crypt": "POSIX only",
    "syslog": "POSIX only; log through logging",
}
OS_FUNCTIONS = {
    "fchmod": "use bot.core.platform.write_private_file / create_private_file (Windows has no"
    " os.fchmod before Python 3.13)",
    "chmod": "use bot.core.platform.tighten / make_private_dir (on Windows chmod only flips"
    " the read-only flag)",
    "lchmod": "use bot.core.platform (POSIX modes)",
    "fchown": "POSIX only",
    "chown": "POSIX only",
    "lchown": "POSIX only",
    "getuid": "POSIX only; ask bot.core.platform",
    "geteuid": "POSIX only; ask bot.core.platform",
    "getgid": "POSIX only",
    "getegid": "POSIX only",
    "getpgid": "POSIX only",
    "setpgid": "POSIX only",
    "setsid": "POSIX only",
    "killpg": "POSIX only",
    "fork": "POSIX only; use subprocess or threads",
    "forkpty": "POSIX only",
    "mkfifo": "POSIX only",
    "statvfs": "POSIX only; use shutil.disk_usage",
    "sync": "POSIX only; os.fsync the file",
    "uname": "POSIX only; use platform.uname()",
    "getloadavg": "POSIX only",
    "wait": "POSIX only",
    "wait3": "POSIX only",
    "wait4": "POSIX only",
    "sched_getaffinity": "Linux only; use os.cpu_count()",
    "set_blocking": "pipes cannot be non-blocking on Windows; use bot.core.platform.InputReader",
    "get_blocking": "pipes cannot be non-blocking on Windows; use bot.core.platform.InputReader",
}
OS_CONSTANTS = {
    "O_NONBLOCK": "POSIX only; use bot.core.platform.InputReader",
    "O_NOFOLLOW": "POSIX only",
    "O_DIRECTORY": "POSIX only",
    "O_CLOEXEC": "POSIX only",
    "WNOHANG": "POSIX only",
}
LOOP_METHODS = {
    "add_reader": "Windows' proactor loop has none: use bot.core.platform.InputReader",
    "remove_reader": "Windows' proactor loop has none: use bot.core.platform.InputReader",
    "add_writer": "Windows' proactor loop has none",
    "remove_writer": "Windows' proactor loop has none",
    "add_signal_handler": "POSIX only: use bot.core.platform.install_stop_handler",
    "remove_signal_handler": "POSIX only: use bot.core.platform.install_stop_handler",
}
SIGNALS = {
    "SIGHUP",
    "SIGKILL",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGCHLD",
    "SIGPIPE",
    "SIGSTOP",
    "SIGCONT",
    "SIGTSTP",
    "SIGWINCH",
    "alarm",
    "setitimer",
    "pause",
    "siginterrupt",
    "pthread_kill",
    "pthread_sigmask",
}
SELECT_CALLS = {
    "select": "on Windows select() takes sockets only (no pipes, no console)",
    "poll": "POSIX only",
    "epoll": "Linux only",
    "kqueue": "BSD/macOS only",
}
SOCKET_NAMES = {
    "AF_UNIX": "Unix sockets are partial on Windows; listen on TCP",
    "SO_REUSEPORT": "POSIX only",
    "SO_REUSEADDR": "on Windows it lets a second server take a live port: use"
    " bot.core.platform.allow_address_reuse",
}
PLATFORM_TESTS = {
    ("sys", "platform"): "use bot.core.platform.current_os()",
    ("os", "name"): "use bot.core.platform.current_os()",
}
POSIX_PATH_PREFIXES = ("/bin/", "/usr/", "/dev/", "/proc/", "/sys/", "/tmp/", "/etc/", "/var/")


def _dotted(node: ast.AST) -> tuple[str, ...] | None:
    """``os.path.join`` -> ("os", "path", "join"); None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


def scan(source: str, path: str) -> list[Finding]:
    """Every POSIX-only use in one module's source."""
    tree = ast.parse(source, filename=path)
    found: list[Finding] = []

    def add(node: ast.AST, rule: str, advice: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), rule, advice))

    # Names the module binds to os/signal/select/socket/sys (``import os as _os`` too).
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                aliases[alias.asname or top] = top
                if top in POSIX_MODULES:
                    add(node, f"import {top}", POSIX_MODULES[top])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in POSIX_MODULES:
                add(node, f"from {top} import", POSIX_MODULES[top])
            for alias in node.names:
                name = alias.asname or alias.name
                if top == "os" and alias.name in OS_FUNCTIONS:
                    add(node, f"os.{alias.name}", OS_FUNCTIONS[alias.name])
                if top == "signal" and alias.name in SIGNALS:
                    add(node, f"signal.{alias.name}", "POSIX only")
                aliases.setdefault(name, f"{top}.{alias.name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            base = aliases.get(dotted[0], dotted[0]) if dotted else None
            attr = node.attr
            if attr in LOOP_METHODS:
                add(node, f".{attr}", LOOP_METHODS[attr])
            elif attr in ("chmod", "lchmod"):
                add(node, f".{attr}", OS_FUNCTIONS["chmod"])
            elif dotted is not None and len(dotted) == 2:
                if base == "os" and attr in OS_FUNCTIONS:
                    add(node, f"os.{attr}", OS_FUNCTIONS[attr])
                elif base == "os" and attr in OS_CONSTANTS:
                    add(node, f"os.{attr}", OS_CONSTANTS[attr])
                elif base == "signal" and attr in SIGNALS:
                    add(node, f"signal.{attr}", "POSIX only (Windows: SIGINT, SIGBREAK)")
                elif base == "select" and attr in SELECT_CALLS:
                    add(node, f"select.{attr}", SELECT_CALLS[attr])
                elif base == "socket" and attr in SOCKET_NAMES:
                    add(node, f"socket.{attr}", SOCKET_NAMES[attr])
                elif base is not None and (base, attr) in PLATFORM_TESTS:
                    add(node, f"{base}.{attr}", PLATFORM_TESTS[(base, attr)])
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if (
                    keyword.arg == "shell"
                    and isinstance(keyword.value, ast.Constant)
                    and keyword.value.value is True
                ):
                    add(node, "shell=True", "the shell differs per OS: pass an argument list")
                if keyword.arg == "preexec_fn":
                    add(node, "preexec_fn", "POSIX only")
            func = _dotted(node.func)
            if func and func[-1] in ("CDLL", "LoadLibrary") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and (
                    first.value is None or ".so" in str(first.value)
                ):
                    add(node, "ctypes.CDLL(libc)", "names a POSIX library; load by full path")
            if func and func[-1] == "find_library":
                add(node, "ctypes.util.find_library", "library names differ per OS")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith(POSIX_PATH_PREFIXES) and "\n" not in text and " " not in text:
                add(node, "POSIX path", f"{text!r} exists only on POSIX systems")
            elif text.endswith(".sh") and "/" in text and " " not in text:
                add(node, "shell script", f"{text!r}: a bash script does not run on Windows")
    return found


ALLOWED: dict[tuple[str, str], str] = {
    # engine/espeak.py loads espeakng-loader's library by the full path the wheel reports
    # (libespeak-ng.so / .dylib / espeak-ng.dll): that is the engine's one platform difference.
}
"""(file, rule) -> why it is still there. Only for files owned by work in progress elsewhere."""


def _modules() -> list[Path]:
    return sorted(p for top in SCANNED for p in (REPO / top).rglob("*.py"))


def findings() -> list[Finding]:
    """Every POSIX-only use in ``bot`` and ``engine`` outside the platform module."""
    out: list[Finding] = []
    for path in _modules():
        rel = path.relative_to(REPO).as_posix()
        if rel in HOMES:
            continue
        out.extend(scan(path.read_text(encoding="utf-8"), rel))
    return out


def test_no_posix_only_call_outside_the_platform_module() -> None:
    new = [f for f in findings() if (f.path, f.rule) not in ALLOWED]
    assert not new, "POSIX-only calls outside bot/core/platform.py:\n" + "\n".join(map(str, new))


def test_the_allow_list_has_no_stale_entries() -> None:
    """An entry whose call is gone must go, so the list only shrinks."""
    present = {(f.path, f.rule) for f in findings()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"remove these entries from ALLOWED in {__file__}: {stale}"


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("import os\nos.fchmod(fd, 0o600)\n", "os.fchmod"),
        ("from os import fchmod\n", "os.fchmod"),
        ("import os as o\no.getuid()\n", "os.getuid"),
        ("from pathlib import Path\nPath('x').chmod(0o600)\n", ".chmod"),
        ("loop.add_reader(0, cb)\n", ".add_reader"),
        ("loop.add_signal_handler(2, cb)\n", ".add_signal_handler"),
        ("import signal\nsignal.SIGHUP\n", "signal.SIGHUP"),
        ("import fcntl\n", "import fcntl"),
        ("import termios\n", "import termios"),
        ("import resource\n", "import resource"),
        ("import pwd\n", "import pwd"),
        ("import select\nselect.select([r], [], [])\n", "select.select"),
        ("import sys\nif sys.platform == 'win32': pass\n", "sys.platform"),
        ("import os\nos.name\n", "os.name"),
        ("import subprocess\nsubprocess.run('ls', shell=True)\n", "shell=True"),
        ("subprocess.run(['scripts/install.sh'])\n", "shell script"),
        ("open('/proc/self/fd')\n", "POSIX path"),
        ("import ctypes\nctypes.CDLL(None)\n", "ctypes.CDLL(libc)"),
        ("import os\nos.set_blocking(0, False)\n", "os.set_blocking"),
        ("import socket\nsocket.SO_REUSEADDR\n", "socket.SO_REUSEADDR"),
    ],
)
def test_the_check_catches_each_kind(source: str, rule: str) -> None:
    assert rule in {f.rule for f in scan(source, "x.py")}


def test_portable_code_passes() -> None:
    source = (
        "import os, signal, asyncio\n"
        "from pathlib import Path\n"
        "os.replace('a', 'b')\n"
        "signal.SIGINT\n"
        "Path.home() / 'x'\n"
        "asyncio.get_running_loop().call_soon_threadsafe(print)\n"
        "'a/b/c'\n"
    )
    assert scan(source, "x.py") == []


# -- every module imports where POSIX-only modules do not exist ---------------------------------

IMPORT_CHILD = r"""
import builtins, importlib, json, os, pkgutil, sys
BLOCK = set(sys.argv[1].split(","))
real = builtins.__import__
blocked = set()

def guarded(name, globals=None, locals=None, fromlist=(), level=0):
    # Only the bot's and the engine's own imports are refused: libraries have their own
    # per-OS code paths and legitimately import these on Linux.
    importer = (globals or {}).get("__name__", "")
    top = name.split(".")[0]
    if level == 0 and top in BLOCK and importer.split(".")[0] in ("bot", "engine"):
        blocked.add((importer, top))
        raise ModuleNotFoundError(f"No module named {top!r} (as on Windows)")
    return real(name, globals, locals, fromlist, level)

builtins.__import__ = guarded
del os.fchmod
failed = {}
for top in ("bot", "engine"):
    for info in pkgutil.walk_packages(importlib.import_module(top).__path__, prefix=top + "."):
        if info.name.endswith("__main__"):
            continue  # running it would start the bot
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "blocked": sorted(blocked)}))
"""

ALLOWED_IMPORTS: dict[tuple[str, str], str] = {}
"""(module, POSIX-only module it imports) -> why it still does."""


def test_every_module_imports_without_posix_only_modules() -> None:
    """Windows has no fcntl, termios, resource, pwd, grp ... and no os.fchmod (before 3.13).

    The bot's and the engine's modules are imported with those refused to the bot's own code
    (the way Windows refuses them). A module on the allow-list takes down those that import it,
    so until it is fixed their own imports are checked only as far as they get.
    """
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_CHILD, ",".join(sorted(POSIX_MODULES))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    blocked = {(importer, module) for importer, module in result["blocked"]}
    assert blocked <= set(ALLOWED_IMPORTS), (
        f"new POSIX-only imports: {blocked - set(ALLOWED_IMPORTS)}"
    )
    stale = set(ALLOWED_IMPORTS) - blocked
    assert not stale, f"remove these entries from ALLOWED_IMPORTS in {__file__}: {stale}"
    allowed_modules = {module for _, module in ALLOWED_IMPORTS}
    other = {
        name: why
        for name, why in result["failed"].items()
        if not any(f"No module named {m!r} (as on Windows)" in why for m in allowed_modules)
    }
    assert not other, f"modules that do not import without POSIX: {other}"


# -- the whole bot with Windows' differences patched in ---------------------------------------

WINDOWS_FACTS = r"""
import asyncio, os, sys
# What Windows lacks, as the issue reproduced it: os.fchmod (Python < 3.13) and, on the
# default proactor loop, add_reader and add_signal_handler (NotImplementedError).
del os.fchmod
def _missing(self, *args, **kwargs):
    raise NotImplementedError
for name in ("add_reader", "add_signal_handler"):
    setattr(asyncio.BaseEventLoop, name, _missing)
    setattr(asyncio.SelectorEventLoop, name, _missing)
from bot.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.audio
@pytest.mark.slow
def test_the_bot_runs_without_fchmod_add_reader_or_add_signal_handler(
    tmp_path: Path, pulse_server: Any
) -> None:
    """Before issue 14 this exited at once (AttributeError: os.fchmod, creating the panel
    token) or, with only add_reader missing, logged "chat source terminal failed:" and hung."""
    import os
    import stat
    import subprocess
    import sys

    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {"name": "espeak"},
                "audio": {"device": pulse_server.device_name, "gap_ms": 0},
                "chat": {"source": "terminal"},
                "storage": {"dir": str(tmp_path / "state")},
                "web": {"port": 0},  # the panel token is written at start
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", WINDOWS_FACTS, "--config", str(config)],
        input=b"hello from a windows terminal\n",
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, **pulse_server.env, "PYTHONPATH": str(REPO)},
        timeout=180,
        check=False,
    )
    log = done.stderr.decode(errors="replace")
    assert done.returncode == 0, log
    assert "Traceback" not in log
    assert "failed" not in log, log
    spoken = [ln.split(": ", 2)[-1] for ln in log.splitlines() if "speaking " in ln]
    assert spoken == ["hello from a windows terminal"], log
    token = tmp_path / "state" / "web-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
