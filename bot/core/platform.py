r"""Everything that differs between Linux, macOS and Windows, in one module.

The rest of the bot asks this module instead of testing ``sys.platform`` itself, so each
difference has one home, one docstring that says why, and one set of tests that runs the
Windows and macOS paths on Linux (``tests/bot/core/test_platform.py``). A CI test
(``tests/test_portability.py``) fails when a POSIX-only call appears anywhere else.

What differs, and what the bot does about it:

* **Private files.** POSIX has modes: secrets are created 0600 and folders 0700 from the first
  moment (``os.open``/``mkdir`` with that mode, which the umask can only narrow, then set
  exactly). Windows has no modes (``os.chmod`` only flips the read-only flag, ``os.fchmod``
  exists only from Python 3.13): files inherit the access list of their folder, and the
  user's profile folder (``C:\Users\NAME``, where the state folder lives by default) is
  readable only by the user, SYSTEM and Administrators. :func:`protection` says which
  applies to a path, reading the real access list on Windows.
* **Reading the terminal.** ``loop.add_reader`` watches pipes and terminals on POSIX; Windows'
  default (proactor) loop does not implement it, its selector loop can watch only sockets,
  and no loop can watch a regular file. :class:`InputReader` watches where the loop can and
  otherwise reads in one thread, which hands each chunk to the loop with
  ``call_soon_threadsafe`` and ends on close or end of input.
* **Stop requests.** ``loop.add_signal_handler`` exists on POSIX only. On Windows, Ctrl-C
  (SIGINT) and Ctrl-Break (SIGBREAK) arrive through ``signal.signal``, whose handler runs on
  the loop's thread and wakes the loop with ``call_soon_threadsafe``.
* **Folders.** platformdirs knows each OS's user state folder; :func:`user_state_dir` can be
  asked for another OS's answer, so the documentation and tests show all three.
* **Descriptors.** POSIX caps open file descriptors per process (``RLIMIT_NOFILE``, often
  1,024); on Windows sockets are handles with no such small cap.
* **Sound.** PortAudio lists each Windows device once per host API; WASAPI is the one that
  suits a long-lived stream (MME truncates names to 31 characters and adds latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import queue
import re
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

APP_NAME = "ishowtts"
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


class OS(enum.StrEnum):
    """The operating system families the bot knows (values are ``sys.platform`` names)."""

    LINUX = "linux"
    """Linux, and every other POSIX system (the BSDs take the same paths)."""
    MACOS = "darwin"
    WINDOWS = "win32"

    @property
    def posix(self) -> bool:
        """Whether files have modes and the loop has ``add_reader``/``add_signal_handler``."""
        return self is not OS.WINDOWS

    @property
    def label(self) -> str:
        """The name a person uses."""
        return {OS.LINUX: "Linux", OS.MACOS: "macOS", OS.WINDOWS: "Windows"}[self]


def os_of(platform: str) -> OS:
    """The family of a ``sys.platform`` value (``cygwin`` is POSIX, so it counts as Linux)."""
    if platform == "win32":
        return OS.WINDOWS
    if platform == "darwin":
        return OS.MACOS
    return OS.LINUX


def current_os() -> OS:
    """This machine's family, read from ``sys.platform`` on every call (tests simulate others)."""
    return os_of(sys.platform)


# -- folders ----------------------------------------------------------------------------------


def user_state_dir(system: OS | None = None) -> Path:
    r"""The user's folder for the bot's state (database, tokens), as platformdirs defines it.

    Linux ``~/.local/state/ishowtts`` (or ``$XDG_STATE_HOME``); macOS
    ``~/Library/Application Support/ishowtts``; Windows ``%LOCALAPPDATA%\ishowtts``, inside
    the user's profile, which is private by default.

    Args:
        system: Which OS's answer (default: this one's). Another OS's answer is only for
            documentation and tests: platformdirs computes it from this machine's
            environment.
    """
    system = system or current_os()
    import platformdirs

    kind: type[Any]
    if system is OS.WINDOWS:
        from platformdirs.windows import Windows

        kind = Windows
    elif system is OS.MACOS:
        from platformdirs.macos import MacOS

        kind = MacOS
    else:
        from platformdirs.unix import Unix

        kind = Unix
    if system is current_os():
        kind = platformdirs.PlatformDirs
    return Path(kind(APP_NAME, appauthor=False).user_state_dir)


def windows_profile_dir(environ: dict[str, str] | None = None) -> PureWindowsPath | None:
    """The user's profile folder on Windows (``%USERPROFILE%``), None when unknown."""
    env = os.environ if environ is None else environ
    profile = env.get("USERPROFILE") or ""
    if not profile and env.get("HOMEDRIVE") and env.get("HOMEPATH"):
        profile = env["HOMEDRIVE"] + env["HOMEPATH"]
    return PureWindowsPath(profile) if profile else None


def inside(path: PurePath, folder: PurePath) -> bool:
    """Whether ``path`` is ``folder`` or below it (case-insensitive for Windows paths)."""
    if isinstance(path, PureWindowsPath) or isinstance(folder, PureWindowsPath):
        path, folder = PureWindowsPath(str(path)), PureWindowsPath(str(folder))
    return path == folder or folder in path.parents


_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{port}{n}" for port in ("com", "lpt") for n in "123456789¹²³"]
)


def windows_reserved_name(name: str) -> bool:
    """Whether Windows refuses ``name`` as a file or folder name (in every folder).

    ``CON``, ``NUL``, ``COM1`` ... name devices on Windows, whatever the case and even with
    an extension (``nul.txt``); a name ending in a dot or a space is silently changed. Names
    the bot turns into folders (voices) are refused on every OS, so that a voice library
    copied from Linux or macOS works on Windows too.
    """
    stem = name.split(".", 1)[0].rstrip(" ").casefold()
    return stem in _WINDOWS_DEVICES or name.endswith((".", " "))


@dataclass(frozen=True, slots=True)
class Scripts:
    """What a person types to install, run and test on this OS (messages name these).

    Attributes:
        install: The installer script.
        run: The script that installs on first use and starts the bot.
        test: The script that runs the checks and tests.
        python: The virtual environment's interpreter.
    """

    install: str
    run: str
    test: str
    python: str


def scripts(system: OS | None = None) -> Scripts:
    """Bash scripts on Linux and macOS; their PowerShell twins on Windows (``scripts/*.ps1``)."""
    if (system or current_os()) is OS.WINDOWS:
        return Scripts(
            r"scripts\install.ps1",
            r"scripts\run.ps1",
            r"scripts\test.ps1",
            r".venv\Scripts\python.exe",
        )
    return Scripts("scripts/install.sh", "./scripts/run.sh", "scripts/test.sh", ".venv/bin/python")


# -- the console --------------------------------------------------------------------------------


def tolerate_unencodable(stream: Any) -> bool:
    r"""Let ``stream`` take any text: characters its encoding lacks become ``\U0001f602``.

    On Windows a redirected stream (a file, a pipe, a service's log) uses the ANSI code page
    (cp1252), which has no emoji: a chat line with one would make ``logging`` print its own
    traceback and lose the line. (A real Windows console takes UTF-16, and UTF-8 streams
    take everything; those are left alone.) The same holds on POSIX under ``LANG=C``.

    Returns:
        Whether the stream was changed.
    """
    encoding = str(getattr(stream, "encoding", "") or "").lower().replace("-", "").replace("_", "")
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None or encoding.startswith(("utf8", "utf16", "utf32")):
        return False
    reconfigure(errors="backslashreplace")
    return True


# -- private files ------------------------------------------------------------------------------


_O_BINARY: int = getattr(os, "O_BINARY", 0)
"""Windows opens descriptors in text mode unless told otherwise ("\\n" would become "\\r\\n")."""


def _set_mode(path: Path, mode: int, fd: int | None = None) -> None:
    """Set ``mode`` exactly (POSIX only), through the descriptor where the OS offers it."""
    fchmod = getattr(os, "fchmod", None)
    if fd is not None and fchmod is not None:
        fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) so that only the user can open it.

    POSIX: mode 0700 from creation (the umask can only narrow ``mkdir``'s mode) and then set
    exactly; an existing folder that others can enter loses those rights, with a warning.
    An existing folder is never widened: one the user made read-only (0500) stays so, and the
    store then serves its database read-only. Windows: the folder inherits its parent's access
    list (private inside the user's profile; see :func:`protection`).

    Raises:
        OSError: When the folder cannot be created.
    """
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if current_os().posix:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not existed and mode != PRIVATE_DIR_MODE:
            _set_mode(path, PRIVATE_DIR_MODE)  # the umask narrowed it: exact 0700
        elif existed and mode & _LOOSE_BITS:
            log.warning("%s was open to other users; restricting it to you", path)
            _set_mode(path, mode & ~_LOOSE_BITS)
    return path


def tighten(path: Path) -> bool:
    """Take away other users' rights to an existing file or folder (POSIX).

    Only the group's and others' bits are cleared (0644 becomes 0600, 0755 0700); the user's
    own are kept, so a file the user made read-only (0444) stays read-only (0400).

    Returns:
        True when the mode was changed; False when it was private already, on Windows
        (nothing to change: see :func:`protection`) or when the path does not exist.
    """
    if not current_os().posix:
        return False
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    if not mode & _LOOSE_BITS:
        return False
    os.chmod(path, mode & ~_LOOSE_BITS)
    return True


def _open_new_private(path: Path) -> int:
    """A new file opened for writing, 0600 from the first moment; FileExistsError if present."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, PRIVATE_FILE_MODE)
    if current_os().posix:
        try:
            _set_mode(path, PRIVATE_FILE_MODE, fd)  # exact, whatever the umask was
        except BaseException:
            os.close(fd)
            raise
    return fd


def create_private_file(path: Path) -> bool:
    """Create an empty file readable by the user alone, before anything else opens it.

    For files another library writes (SQLite's database, a log file): created here first,
    they keep this protection, and SQLite gives its ``-wal`` and ``-shm`` files the
    database's mode. An existing file is tightened instead (see :func:`tighten`).

    Returns:
        True when the file was created, False when it existed.

    Raises:
        OSError: When it can be neither created nor inspected.
    """
    try:
        fd = _open_new_private(path)
    except FileExistsError:
        tighten(path)
        return False
    os.close(fd)
    return True


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX; Windows cannot open folders as files, nor needs to)."""
    if not current_os().posix:
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_REPLACE_TRIES = 20
_REPLACE_WAIT_S = 0.05


def _replace(src: Path, dst: Path) -> None:
    """``os.replace``, retried briefly on Windows while another program holds ``dst`` open.

    Virus scanners and indexers open new files for a moment; Windows refuses to replace a file
    that is open without delete sharing (PermissionError) where POSIX would just rename.
    """
    tries = _REPLACE_TRIES if current_os() is OS.WINDOWS else 1
    for attempt in range(tries):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == tries - 1:
                raise
            time.sleep(_REPLACE_WAIT_S)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, never readable by others, even for a moment.

    The bytes go to a new temporary file in the same folder (created private, see
    :func:`create_private_file`), are flushed to disk, then renamed over ``path``: a crash
    leaves the old content or the new, never half of either. Blocking: call it from a worker
    thread (``asyncio.to_thread``).

    Raises:
        OSError: When the folder cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = _open_new_private(tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class Protection:
    """Who besides the user can read a path, as far as this OS can tell.

    Attributes:
        path: What was looked at.
        private: True: only the user (and, on Windows, SYSTEM and Administrators); False:
            others can read it; None: it cannot be told (the path is missing, or Windows
            would not hand out its access list).
        summary: One line for the doctor: the rule that applies and what was found.
        fix: What to do when it is not private.
    """

    path: Path
    private: bool | None
    summary: str
    fix: str | None = None


def protection(path: Path) -> Protection:
    """What protects ``path`` from other users of this computer (for ``ishowtts doctor``).

    POSIX: the mode bits (0600 files, 0700 folders are private). Windows: the access list;
    when it cannot be read, whether the path lies inside the user's profile folder, which is
    private by default.
    """
    if current_os().posix:
        return _posix_protection(path)
    return _windows_protection(path)


def _posix_protection(path: Path) -> Protection:
    try:
        info = path.stat()
    except OSError as exc:
        return Protection(path, None, f"cannot be inspected ({exc.strerror or exc})")
    mode = stat.S_IMODE(info.st_mode)
    folder = stat.S_ISDIR(info.st_mode)
    want = PRIVATE_DIR_MODE if folder else PRIVATE_FILE_MODE
    if mode & _LOOSE_BITS:
        return Protection(
            path,
            False,
            f"mode {mode:04o}: other users can {'enter' if folder else 'read'} it",
            f"chmod {want:o} {path}" + (f" && chmod 600 {path}/*" if folder else ""),
        )
    return Protection(path, True, f"mode {mode:04o}: only you can read it")


_WINDOWS_FIX = (
    "keep the state folder inside your user profile (the default, %LOCALAPPDATA%\\ishowtts), "
    'or restrict it: icacls "{path}" /inheritance:r /grant:r "%USERNAME%:(OI)(CI)F" '
    '/grant:r "SYSTEM:(OI)(CI)F" /grant:r "Administrators:(OI)(CI)F"'
)


def _windows_protection(path: Path, sddl: str | None = None) -> Protection:
    if sddl is None:
        sddl = windows_security_descriptor(path)
    if sddl is not None:
        others = sddl_other_readers(sddl)
        if others:
            return Protection(
                path,
                False,
                "access list lets others read it: " + ", ".join(others),
                _WINDOWS_FIX.format(path=path),
            )
        return Protection(
            path, True, "access list: only you, SYSTEM and Administrators can read it"
        )
    profile = windows_profile_dir()
    if profile is not None and inside(PureWindowsPath(str(path)), profile):
        return Protection(
            path,
            True,
            f"inside your profile folder {profile}, which only you, SYSTEM and "
            "Administrators can read by default (access list not readable here)",
        )
    return Protection(
        path,
        None,
        "outside your profile folder, and its access list could not be read: other "
        "accounts of this PC may be able to read it",
        _WINDOWS_FIX.format(path=path),
    )


# SDDL rights (two-letter codes) and the bits that allow reading a file or listing a folder.
_SDDL_RIGHTS = {
    "GA": 0x10000000,
    "GR": 0x80000000,
    "GW": 0x40000000,
    "GX": 0x20000000,
    "RC": 0x20000,
    "SD": 0x10000,
    "WD": 0x40000,
    "WO": 0x80000,
    "RP": 0x10,
    "WP": 0x20,
    "CC": 0x1,
    "DC": 0x2,
    "LC": 0x4,
    "SW": 0x8,
    "LO": 0x80,
    "DT": 0x40,
    "CR": 0x100,
    "FA": 0x1F01FF,
    "FR": 0x120089,
    "FW": 0x120116,
    "FX": 0x1200A0,
}
_READ_BITS = 0x1 | 0x10000000 | 0x80000000  # FILE_READ_DATA/LIST_DIRECTORY, GENERIC_ALL/READ
_TRUSTED = {"SY", "BA", "OW", "CO", "S-1-5-18", "S-1-5-32-544", "S-1-3-4", "S-1-3-0"}
"""LocalSystem, Administrators, OWNER RIGHTS, CREATOR OWNER: there on every private folder."""
_TRUSTEE_NAMES = {
    "WD": "Everyone",
    "AU": "Authenticated Users",
    "BU": "Users",
    "BG": "Guests",
    "AN": "Anonymous",
    "IU": "Interactive users",
    "NU": "Network users",
    "DU": "Domain Users",
    "DG": "Domain Guests",
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-32-545": "Users",
}
_ACE = re.compile(r"\(([^()]*)\)")


def _rights(text: str) -> int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    if text.isdigit():
        return int(text)
    mask = 0
    for i in range(0, len(text), 2):
        mask |= _SDDL_RIGHTS.get(text[i : i + 2], 0)
    return mask


def sddl_other_readers(sddl: str) -> list[str]:
    """Who, other than the owner, SYSTEM and Administrators, may read per an SDDL string.

    Only allow entries that apply to the object itself count (inherit-only ones do not).

    Args:
        sddl: ``O:owner...D:flags(ace)(ace)...``, as ``ConvertSecurityDescriptorToString``
            writes it (or ``(Get-Acl PATH).Sddl`` in PowerShell).

    Returns:
        The names (or SIDs) of the others, in order; empty when the entry list is private.
    """
    owner_match = re.search(r"O:([A-Z]{2}|S-[0-9-]+)", sddl)
    owner = owner_match.group(1) if owner_match else None
    if "D:" not in sddl:
        return ["Everyone (no access list)"]
    dacl = sddl.split("D:", 1)[1].split("S:", 1)[0]  # the SACL, if any, follows "S:"
    if dacl.startswith("NO_ACCESS_CONTROL"):
        return ["Everyone (no access list)"]
    found: list[str] = []
    for ace in _ACE.findall(dacl):
        parts = ace.split(";")
        if len(parts) < 6:
            continue
        kind, flags, rights, trustee = parts[0], parts[1], parts[2], parts[5]
        if kind not in ("A", "OA") or "IO" in re.findall("..", flags):
            continue
        if not _rights(rights) & _READ_BITS:
            continue
        if trustee in _TRUSTED or trustee == owner:
            continue
        name = _TRUSTEE_NAMES.get(trustee, trustee)
        if name not in found:
            found.append(name)
    return found


def windows_security_descriptor(path: Path) -> str | None:
    """The owner and access list of ``path`` as SDDL (Windows); None elsewhere or on failure."""
    if current_os() is not OS.WINDOWS:
        return None
    try:
        import ctypes
        from ctypes import wintypes

        windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 (exists on Windows only)
        advapi = windll("advapi32", use_last_error=True)
        kernel = windll("kernel32")
        info = 0x1 | 0x4  # OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
        get = advapi.GetFileSecurityW
        get.argtypes = [
            wintypes.LPCWSTR,
            wintypes.DWORD,
            ctypes.c_void_p,
            wintypes.DWORD,
            ctypes.POINTER(wintypes.DWORD),
        ]
        get.restype = wintypes.BOOL
        needed = wintypes.DWORD(0)
        get(str(path), info, None, 0, ctypes.byref(needed))
        if not needed.value:
            return None
        buf = ctypes.create_string_buffer(needed.value)
        if not get(str(path), info, buf, needed, ctypes.byref(needed)):
            return None
        convert = advapi.ConvertSecurityDescriptorToStringSecurityDescriptorW
        convert.argtypes = [
            ctypes.c_void_p,
            wintypes.DWORD,
            wintypes.DWORD,
            ctypes.POINTER(wintypes.LPWSTR),
            ctypes.POINTER(wintypes.ULONG),
        ]
        convert.restype = wintypes.BOOL
        text = wintypes.LPWSTR()
        if not convert(buf, 1, info, ctypes.byref(text), None):
            return None
        try:
            return str(text.value)
        finally:
            kernel.LocalFree(ctypes.cast(text, ctypes.c_void_p))
    except (AttributeError, OSError, ValueError) as exc:
        log.debug("cannot read the access list of %s: %s", path, exc)
        return None


# -- descriptors ------------------------------------------------------------------------------


def descriptor_limit() -> int | None:
    """The soft cap on open file descriptors (POSIX ``RLIMIT_NOFILE``), None when uncapped.

    Windows has no ``resource`` module and no such small cap on sockets (they are handles,
    not C runtime descriptors), so there is nothing to keep a reserve under.
    """
    try:
        import resource
    except ImportError:
        return None
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    return int(soft)


def open_descriptor_count() -> int | None:
    """How many descriptors this process has open (Linux ``/proc``, macOS ``/dev/fd``)."""
    if not current_os().posix:
        return None
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return None


def may_reuse_address() -> bool:
    """Whether SO_REUSEADDR is safe for a listening socket.

    On POSIX it only lets a new server bind past old connections in TIME_WAIT (asyncio and
    aiohttp set it). On Windows it lets a second program bind the same port as a live
    server, so it must stay off there.
    """
    return current_os().posix


def allow_address_reuse(sock: socket.socket) -> bool:
    """Set SO_REUSEADDR on a socket about to listen, where that is safe (see above).

    Returns:
        Whether it was set (POSIX); on Windows the socket is left exclusive.
    """
    if not may_reuse_address():
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return True


# -- sound --------------------------------------------------------------------------------------


def preferred_hostapis(system: OS | None = None) -> tuple[str, ...]:
    """PortAudio host APIs to prefer when one device is listed under several (best first).

    Windows lists each device under MME, DirectSound, WASAPI and WDM-KS; WASAPI (shared mode)
    is what OBS uses, keeps full device names (MME cuts them at 31 characters) and has the
    lowest latency of the shared ones. macOS and Linux list a device once per API that
    matters (Core Audio; ALSA or PulseAudio), so their order stands.
    """
    system = system or current_os()
    if system is OS.WINDOWS:
        return ("Windows WASAPI", "Windows DirectSound", "MME")
    return ()


# -- stop requests --------------------------------------------------------------------------


def stop_signals(system: OS | None = None) -> tuple[signal.Signals, ...]:
    """The signals that mean "stop cleanly" here.

    POSIX: Ctrl-C (SIGINT), ``kill``/service managers (SIGTERM), the terminal closing
    (SIGHUP). Windows: Ctrl-C (SIGINT) and Ctrl-Break (SIGBREAK); nothing sends SIGTERM there
    (``os.kill`` ends a process outright).
    """
    system = system or current_os()
    names = ("SIGINT", "SIGTERM", "SIGHUP") if system.posix else ("SIGINT", "SIGBREAK")
    return tuple(getattr(signal, n) for n in names if hasattr(signal, n))


def install_stop_handler(
    loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]
) -> Callable[[], None]:
    """Call ``on_stop`` on ``loop`` when the user or the system asks the process to stop.

    Uses ``loop.add_signal_handler`` where the loop has it (POSIX); otherwise (Windows, or a
    loop without it) a ``signal.signal`` handler, which Python runs on the main thread between
    bytecodes and which wakes the loop through ``call_soon_threadsafe``. Handlers can only be
    set from the main thread; elsewhere nothing is installed (Ctrl-C then raises
    KeyboardInterrupt as usual).

    Returns:
        A function that puts the previous handlers back.
    """
    undo: list[Callable[[], object]] = []

    def remove() -> None:
        while undo:
            with contextlib.suppress(Exception):
                undo.pop()()

    def from_signal(_signum: int, _frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(on_stop)

    for sig in stop_signals():
        if current_os().posix:
            try:
                loop.add_signal_handler(sig, on_stop)
            except (NotImplementedError, RuntimeError):
                pass  # not implemented by this loop, or not the main thread
            else:
                undo.append(functools.partial(loop.remove_signal_handler, sig))
                continue
        if threading.current_thread() is not threading.main_thread():
            continue
        try:
            previous = signal.signal(sig, from_signal)
        except (OSError, ValueError, RuntimeError):
            continue
        undo.append(functools.partial(signal.signal, sig, previous))
    return remove


# -- reading the terminal ---------------------------------------------------------------------


READ_SIZE = 65536
_JOIN_TIMEOUT_S = 2.0


class InputReader:
    """Chunks of bytes from a file descriptor (stdin, a pipe, a redirected file), on the loop.

    ``read()`` returns the next chunk, ``b""`` at the end of input and None once closed.
    Each chunk is read only when asked for, so a huge redirected file does not pile up in
    memory. Where the loop can watch the descriptor (POSIX pipes and terminals) it does;
    otherwise one thread reads it and hands each chunk to the loop with
    ``call_soon_threadsafe``: Windows (the proactor loop has no ``add_reader``, the selector
    loop watches only sockets), loops without ``add_reader``, and regular files (which no
    loop can watch, and whose reads must stay off the loop).

    The thread ends at end of input, or on ``close()``: on POSIX it waits in ``select`` on the
    descriptor and a wake-up pipe, on Windows ``close()`` cancels its pending read
    (``CancelSynchronousIo``). On Windows a console is read through Python's console reader,
    so typed text arrives as UTF-8 whatever the console's code page.

    Construction does no I/O; ``start()`` decides how to read, ``close()`` releases it all.
    """

    def __init__(self, fd: int) -> None:
        """Remember the descriptor (it stays open: it belongs to the caller)."""
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mode: str | None = None
        self._closed = False
        self._waiting: asyncio.Future[bytes | None] | None = None
        self._held: list[bytes] = []
        self._requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None
        self._raw: BinaryIO | None = None
        self._ended = False

    @property
    def mode(self) -> str | None:
        """``watched`` (the loop watches the descriptor), ``thread``, or None before start."""
        return self._mode

    def start(self) -> None:
        """Choose how to read (call it on the running loop)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if current_os().posix and not _is_regular_file(self._fd):
            try:
                loop.add_reader(self._fd, _ignore)
            except (NotImplementedError, OSError, ValueError):
                pass  # this loop cannot watch it: read in a thread
            else:
                loop.remove_reader(self._fd)
                self._mode = "watched"
                return
        self._mode = "thread"
        self._raw = open(self._fd, "rb", buffering=0, closefd=False)  # noqa: SIM115
        if current_os().posix:
            self._wake = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, name="stdin-reader", daemon=True)
        self._thread.start()

    async def read(self) -> bytes | None:
        """The next chunk: bytes, ``b""`` at the end of input, None after ``close()``.

        Cancelling a read loses nothing: a chunk that arrives for it is kept for the next.
        """
        if self._held:
            return self._held.pop(0)
        if self._closed:
            return None
        if self._ended:
            return b""
        loop = self._loop
        if loop is None:
            raise RuntimeError("InputReader.read() before start()")
        fut: asyncio.Future[bytes | None] = loop.create_future()
        self._waiting = fut
        if self._mode == "watched":
            loop.add_reader(self._fd, self._readable)
            fut.add_done_callback(lambda _f: self._unwatch())
        else:
            self._requests.put(True)
        try:
            return await fut
        finally:
            if self._waiting is fut:
                self._waiting = None

    def _unwatch(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        """The loop says the descriptor is readable (watched mode)."""
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("terminal input failed: %s", exc)
            data = b""
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        """Hand a chunk to the waiting read (always on the loop's thread)."""
        if not data:
            self._ended = True
        if self._closed:
            return
        fut = self._waiting
        if fut is not None and not fut.done():
            fut.set_result(data)
        elif data:
            self._held.append(data)

    def _read_loop(self) -> None:
        """The reader thread: one chunk per request, until end of input or close."""
        loop = self._loop
        raw = self._raw
        assert loop is not None
        assert raw is not None
        while True:
            self._requests.get()
            if self._closed:
                return
            data = self._read_chunk(raw)
            if data is None:  # closed while waiting
                return
            try:
                loop.call_soon_threadsafe(self._deliver, data)
            except RuntimeError:  # the loop has closed
                return
            if not data:
                return

    def _read_chunk(self, raw: BinaryIO) -> bytes | None:
        """One blocking read in the thread: bytes, b"" at the end, None when closed."""
        while not self._closed:
            if self._wake is not None:
                import select

                try:
                    ready, _, _ = select.select([self._fd, self._wake[0]], [], [])
                except OSError as exc:
                    log.warning("terminal input failed: %s", exc)
                    return b""
                if self._wake[0] in ready:
                    return None
            try:
                data = raw.read(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # on Windows, also a read cancelled by close()
                if self._closed:
                    return None
                log.warning("terminal input failed: %s", exc)
                return b""
            if data is None:  # a non-blocking descriptor with nothing yet
                time.sleep(0.05)
                continue
            return bytes(data)
        return None

    async def close(self) -> None:
        """Stop reading: a pending ``read()`` returns None and the reader thread ends."""
        if self._closed:
            return
        self._closed = True
        fut = self._waiting
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self._mode == "watched":
            self._unwatch()
        thread = self._thread
        if thread is not None:
            self._requests.put(False)
            if self._wake is not None:
                with contextlib.suppress(OSError):
                    os.write(self._wake[1], b"x")
            elif thread.is_alive() and thread.native_id is not None:
                _cancel_blocking_read(thread.native_id)
            await asyncio.to_thread(thread.join, _JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.debug("the terminal reader is still blocked in a read; it ends with the bot")
            else:
                self._release()

    def _release(self) -> None:
        if self._wake is not None:
            for fd in self._wake:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake = None
        if self._raw is not None:
            with contextlib.suppress(OSError):
                self._raw.close()  # closefd=False: the descriptor itself stays open
            self._raw = None


def _ignore() -> None:
    """A reader callback that is registered only to learn whether the loop accepts it."""


def _is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _cancel_blocking_read(native_id: int) -> None:
    """Windows: make a thread's blocking ReadFile/ReadConsole return (CancelSynchronousIo)."""
    if current_os() is not OS.WINDOWS:
        return
    try:
        import ctypes

        windll: Any = getattr(ctypes, "WinDLL")  # noqa: B009 (exists on Windows only)
        kernel = windll("kernel32", use_last_error=True)
        kernel.OpenThread.restype = ctypes.c_void_p
        kernel.OpenThread.argtypes = [ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
        kernel.CancelSynchronousIo.argtypes = [ctypes.c_void_p]
        kernel.CloseHandle.argtypes = [ctypes.c_void_p]
        handle = kernel.OpenThread(0x0001, 0, native_id)  # THREAD_TERMINATE, as documented
        if handle:
            try:
                kernel.CancelSynchronousIo(handle)
            finally:
                kernel.CloseHandle(handle)
    except (AttributeError, OSError) as exc:
        log.debug("could not cancel the terminal read: %s", exc)
