"""The platform layer, and the Windows and macOS paths through it, run here on Linux.

Windows is simulated the way it differs: ``sys.platform`` reads ``win32``, ``os.fchmod`` and
``os.chmod`` are gone (or refuse), the loop has no ``add_reader``/``add_signal_handler``.
What cannot be simulated (Windows' access lists and ``CancelSynchronousIo``, through ctypes)
is said in the README's portability section.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest

from bot.core import platform
from bot.core.platform import OS, InputReader


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process believes it runs on Windows, and the POSIX-only mode calls are gone."""
    monkeypatch.setattr(sys, "platform", "win32")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("chmod called on Windows")

    monkeypatch.delattr(os, "fchmod")
    monkeypatch.setattr(os, "chmod", refuse)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- OS families and folders -----------------------------------------------------------------


def test_sys_platform_values_map_to_the_three_families() -> None:
    assert platform.os_of("win32") is OS.WINDOWS
    assert platform.os_of("darwin") is OS.MACOS
    assert platform.os_of("linux") is OS.LINUX
    assert platform.os_of("freebsd14") is OS.LINUX
    assert platform.os_of("cygwin").posix
    assert not OS.WINDOWS.posix
    assert platform.current_os() is OS.LINUX  # these tests run on Linux


def test_state_folder_per_os_from_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # platformdirs' own override stands in for the Windows shell's folder lookup.
    monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", r"C:\Users\Zoë\AppData\Local")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    win = PureWindowsPath(str(platform.user_state_dir(OS.WINDOWS)))
    assert win == PureWindowsPath(r"C:\Users\Zoë\AppData\Local\ishowtts")
    assert platform.inside(win, PureWindowsPath(r"c:\users\ZOË"))  # case-insensitive
    mac = platform.user_state_dir(OS.MACOS)
    assert mac == tmp_path / "home" / "Library" / "Application Support" / "ishowtts"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    assert platform.user_state_dir(OS.LINUX) == tmp_path / "xdg-state" / "ishowtts"
    assert platform.user_state_dir() == tmp_path / "xdg-state" / "ishowtts"


def test_the_default_state_folder_comes_from_the_platform_layer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.state.settings import StorageConfig, state_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir(StorageConfig()) == platform.user_state_dir() == tmp_path / "ishowtts"


def test_windows_profile_folder_from_the_environment() -> None:
    env = {"USERPROFILE": r"C:\Users\sam"}
    assert platform.windows_profile_dir(env) == PureWindowsPath(r"C:\Users\sam")
    env = {"HOMEDRIVE": "D:", "HOMEPATH": r"\Users\sam"}
    assert platform.windows_profile_dir(env) == PureWindowsPath(r"D:\Users\sam")
    assert platform.windows_profile_dir({}) is None
    profile = PureWindowsPath(r"C:\Users\sam")
    assert platform.inside(PureWindowsPath(r"C:\Users\sam\AppData\Local\ishowtts"), profile)
    assert not platform.inside(PureWindowsPath(r"C:\Users\samantha\x"), profile)
    assert not platform.inside(PureWindowsPath(r"D:\stream\state"), profile)


# -- private files ------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_private_files_and_folders_have_exact_modes_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    folder = tmp_path / "state" / "deeper"
    with umask(mask):
        platform.make_private_dir(folder)
        platform.write_private_file(folder / "secret", b"one\n")
        assert platform.create_private_file(folder / "db")
        assert not platform.create_private_file(folder / "db")
    assert mode(folder) == 0o700
    assert mode(folder / "secret") == 0o600
    assert mode(folder / "db") == 0o600
    assert (folder / "secret").read_bytes() == b"one\n"
    assert sorted(p.name for p in folder.iterdir()) == ["db", "secret"]  # no temp file left


def test_private_file_is_never_readable_by_others_while_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data: Any) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    target = tmp_path / "token"
    target.write_text("old")
    target.chmod(0o644)
    with umask(0):
        platform.write_private_file(target, b"new")
    assert seen
    assert all(m == 0o600 for m in seen)
    assert mode(target) == 0o600
    assert target.read_bytes() == b"new"


def test_writing_without_fchmod_still_gives_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "fchmod")  # Windows before Python 3.13 has none
    with umask(0o277):
        platform.write_private_file(tmp_path / "token", b"abc")
        assert platform.create_private_file(tmp_path / "db")
    assert mode(tmp_path / "token") == 0o600
    assert mode(tmp_path / "db") == 0o600


def test_on_windows_private_files_are_written_without_any_mode_call(
    tmp_path: Path, windows: None
) -> None:
    folder = tmp_path / "state"
    platform.make_private_dir(folder)
    data = b'{"a": 1}\n\nline\n'
    platform.write_private_file(folder / "tokens.json", data)
    platform.write_private_file(folder / "tokens.json", data + b"2")
    assert (folder / "tokens.json").read_bytes() == data + b"2"  # binary: no \r\n
    assert platform.create_private_file(folder / "db")
    assert platform.tighten(folder / "db") is False  # nothing to tighten on Windows


def test_windows_retries_a_replace_that_another_program_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows: None
) -> None:
    real_replace = os.replace
    refusals = iter([True, True, False])

    def busy(src: Any, dst: Any) -> None:
        if next(refusals):
            raise PermissionError(13, "The process cannot access the file")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr(platform, "_REPLACE_WAIT_S", 0.0)
    platform.write_private_file(tmp_path / "token", b"x")
    assert (tmp_path / "token").read_bytes() == b"x"


def test_a_failed_replace_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise PermissionError(13, "denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        platform.write_private_file(tmp_path / "token", b"x")
    assert list(tmp_path.iterdir()) == []


def test_loose_files_and_folders_are_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    loose = folder / "token"
    loose.write_text("x")
    loose.chmod(0o644)
    assert platform.tighten(loose)
    assert mode(loose) == 0o600
    assert not platform.tighten(loose)
    assert not platform.tighten(folder / "missing")
    assert not platform.create_private_file(loose)
    platform.make_private_dir(folder)
    assert mode(folder) == 0o700


def test_what_the_user_made_read_only_stays_read_only(tmp_path: Path) -> None:
    """Only others' rights are taken away: a 0444 database or a 0500 folder is not widened."""
    folder = tmp_path / "state"
    folder.mkdir()
    frozen = folder / "db"
    frozen.write_text("x")
    frozen.chmod(0o444)
    assert platform.tighten(frozen)
    assert mode(frozen) == 0o400
    assert not platform.create_private_file(frozen)
    assert mode(frozen) == 0o400
    folder.chmod(0o555)
    platform.make_private_dir(folder)
    assert mode(folder) == 0o500
    folder.chmod(0o500)
    platform.make_private_dir(folder)
    assert mode(folder) == 0o500
    folder.chmod(0o700)


# -- what protects a path (the doctor's line) ----------------------------------------------------


def test_posix_protection_reads_the_mode(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0o600)
    assert platform.protection(secret).private is True
    secret.chmod(0o640)
    found = platform.protection(secret)
    assert found.private is False
    assert found.fix == f"chmod 600 {secret}"
    tmp_path.chmod(0o755)
    assert platform.protection(tmp_path).private is False
    assert platform.protection(tmp_path / "missing").private is None


OWNER = "S-1-5-21-1004336348-1177238915-682003330-1001"
PROFILE_SDDL = (
    f"O:{OWNER}G:{OWNER[:-5]}-513D:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIID;FA;;;{OWNER})"
)
"""A folder under %LOCALAPPDATA%: inherits SYSTEM, Administrators and the user."""
DATA_DRIVE_SDDL = (
    "O:BAD:AI(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)(A;OICIID;0x1200a9;;;BU)"
    "(A;ID;0x1301bf;;;AU)(A;OICIIOID;SDGXGWGR;;;AU)"
)
"""A folder at the top of a second drive (D:\\stream): Users and Authenticated Users read it."""


@pytest.mark.parametrize(
    ("sddl", "others"),
    [
        (PROFILE_SDDL, []),
        (DATA_DRIVE_SDDL, ["Users", "Authenticated Users"]),
        # ProgramData: CREATOR OWNER is inherit-only, Users may read and create.
        (
            "O:SYD:P(A;OICIIO;GA;;;CO)(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
            "(A;CI;DCLCRPCR;;;BU)",
            ["Users"],
        ),
        (f"O:{OWNER}D:(D;;FA;;;WD)(A;;FA;;;{OWNER})", []),  # a deny entry grants nothing
        (f"O:{OWNER}D:(A;;FR;;;WD)(A;;FA;;;{OWNER})", ["Everyone"]),
        (f"O:{OWNER}D:(A;;FW;;;BU)", []),  # write-only: cannot read it
        (f"O:{OWNER}D:(A;;FA;;;S-1-5-21-1-2-3-1002)", ["S-1-5-21-1-2-3-1002"]),
        (f"O:{OWNER}D:NO_ACCESS_CONTROL", ["Everyone (no access list)"]),
        (f"O:{OWNER}D:P", []),  # an empty list: nobody but the owner's rights
    ],
)
def test_windows_access_lists_are_judged(sddl: str, others: list[str]) -> None:
    assert platform.sddl_other_readers(sddl) == others


def test_windows_protection_from_the_access_list(tmp_path: Path, windows: None) -> None:
    private = platform._windows_protection(tmp_path, PROFILE_SDDL)
    assert private.private is True
    shared = platform._windows_protection(tmp_path, DATA_DRIVE_SDDL)
    assert shared.private is False
    assert "Users" in shared.summary
    assert shared.fix is not None
    assert "icacls" in shared.fix


def test_windows_protection_without_an_access_list_uses_the_profile_rule(
    tmp_path: Path, windows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ctypes has no WinDLL here, so the access list cannot be read: the profile rule applies.
    assert platform.windows_security_descriptor(tmp_path) is None
    monkeypatch.setenv("USERPROFILE", r"C:\Users\sam")
    inside = platform.protection(Path(r"C:\Users\sam\AppData\Local\ishowtts"))
    assert inside.private is True
    assert "profile" in inside.summary
    outside = platform.protection(Path(r"D:\stream\state"))
    assert outside.private is None
    assert outside.fix is not None


# -- descriptors, sockets, sound --------------------------------------------------------------


def test_descriptor_limit_and_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert platform.descriptor_limit() == (None if soft == resource.RLIM_INFINITY else soft)
    count = platform.open_descriptor_count()
    assert count is not None
    assert count > 2
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows has no resource module
    assert platform.descriptor_limit() is None
    monkeypatch.setattr(sys, "platform", "win32")
    assert platform.open_descriptor_count() is None
    assert platform.may_reuse_address() is False
    with socket.socket() as sock:
        assert platform.allow_address_reuse(sock) is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    monkeypatch.setattr(sys, "platform", "linux")
    with socket.socket() as sock:
        assert platform.allow_address_reuse(sock) is True
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0


def test_wasapi_is_preferred_on_windows_only() -> None:
    assert platform.preferred_hostapis(OS.WINDOWS)[0] == "Windows WASAPI"
    assert platform.preferred_hostapis(OS.LINUX) == ()
    assert platform.preferred_hostapis(OS.MACOS) == ()


# -- stop requests --------------------------------------------------------------------------


class NoSignalsLoop(asyncio.SelectorEventLoop):
    """A loop like Windows' proactor: no add_signal_handler."""

    def add_signal_handler(  # type: ignore[override]
        self, sig: int, callback: Callable[..., object], *args: Any
    ) -> None:
        raise NotImplementedError


def run_on(loop: asyncio.AbstractEventLoop, main: Callable[[], Any]) -> Any:
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_sigterm_asks_to_stop_through_the_loop() -> None:
    async def main() -> None:
        stopped = asyncio.Event()
        remove = platform.install_stop_handler(asyncio.get_running_loop(), stopped.set)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 5)
        finally:
            remove()

    before = signal.getsignal(signal.SIGTERM)
    run_on(asyncio.new_event_loop(), main)
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("simulate_windows", [False, True])
def test_ctrl_c_asks_to_stop_on_a_loop_without_signal_handlers(
    monkeypatch: pytest.MonkeyPatch, simulate_windows: bool
) -> None:
    if simulate_windows:
        monkeypatch.setattr(sys, "platform", "win32")
    calls: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def on_stop() -> None:
            calls.append(threading.current_thread().name)
            stopped.set()

        remove = platform.install_stop_handler(loop, on_stop)
        try:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            signal.raise_signal(signal.SIGINT)
            await asyncio.wait_for(stopped.wait(), 5)
        finally:
            remove()

    before = signal.getsignal(signal.SIGINT)
    run_on(NoSignalsLoop(), main)
    assert calls == [threading.main_thread().name]
    assert signal.getsignal(signal.SIGINT) == before


def test_windows_stop_signals_are_ctrl_c_and_ctrl_break() -> None:
    assert platform.stop_signals(OS.LINUX) == (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    assert platform.stop_signals(OS.WINDOWS) == (signal.SIGINT,)  # SIGBREAK exists on Windows


# -- reading input ------------------------------------------------------------------------------


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop like Windows' proactor: add_reader is not implemented."""

    def add_reader(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., object], *args: Any
    ) -> None:
        raise NotImplementedError


class KqueueTtyLoop(asyncio.SelectorEventLoop):
    """macOS: kqueue refuses some descriptors (ttys on older releases) with EINVAL."""

    def add_reader(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., object], *args: Any
    ) -> None:
        raise OSError(22, "Invalid argument")


class ForbiddenReaderLoop(asyncio.SelectorEventLoop):
    """Windows' selector loop would accept a pipe and then fail in select(): never ask it."""

    def add_reader(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., object], *args: Any
    ) -> None:
        raise AssertionError("add_reader must not be used on Windows")


async def read_all(reader: InputReader) -> bytes:
    out = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(), 10)
        assert chunk is not None
        if not chunk:
            return out
        out += chunk


def test_a_pipe_is_watched_by_the_default_loop() -> None:
    async def main() -> None:
        r, w = os.pipe()
        reader = InputReader(r)
        reader.start()
        assert reader.mode == "watched"
        os.write(w, b"hello\n")
        assert await asyncio.wait_for(reader.read(), 5) == b"hello\n"
        os.close(w)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await reader.close()
        assert await reader.read() is None
        os.close(r)

    run_on(asyncio.new_event_loop(), main)


@pytest.mark.parametrize("loop_kind", [NoReaderLoop, KqueueTtyLoop, asyncio.SelectorEventLoop])
def test_a_pipe_is_read_by_a_thread_where_the_loop_cannot_watch_it(
    loop_kind: type[asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    if loop_kind is asyncio.SelectorEventLoop:
        # Simulated Windows, whose loops must not be asked to watch a pipe.
        monkeypatch.setattr(sys, "platform", "win32")
        loop_kind = ForbiddenReaderLoop
    payload = b"".join(b"line %d\n" % i for i in range(20000))  # bigger than a pipe buffer

    async def main() -> None:
        r, w = os.pipe()
        reader = InputReader(r)
        reader.start()
        assert reader.mode == "thread"

        def write_and_close() -> None:
            os.write(w, payload)
            os.close(w)

        writer = threading.Thread(target=write_and_close)
        writer.start()
        assert await read_all(reader) == payload
        writer.join()
        thread = reader._thread
        assert thread is not None
        await reader.close()
        assert not thread.is_alive()
        os.close(r)

    run_on(loop_kind(), main)


def test_a_regular_file_is_read_by_a_thread_not_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lines.txt"
    payload = b"".join(b"line %d\n" % i for i in range(50000))
    path.write_bytes(payload)
    reading_threads: set[int] = set()
    real_chunk = InputReader._read_chunk

    def spy(self: InputReader, raw: Any) -> bytes | None:
        reading_threads.add(threading.get_ident())
        return real_chunk(self, raw)

    monkeypatch.setattr(InputReader, "_read_chunk", spy)

    async def main() -> None:
        with path.open("rb") as fh:
            reader = InputReader(fh.fileno())
            reader.start()
            assert reader.mode == "thread"
            assert await read_all(reader) == payload
            await reader.close()

    run_on(asyncio.new_event_loop(), main)
    assert reading_threads
    assert threading.get_ident() not in reading_threads  # the loop's thread never read the file


def test_close_ends_a_reader_thread_that_waits_for_input() -> None:
    async def main() -> None:
        r, w = os.pipe()
        reader = InputReader(r)
        reader.start()
        assert reader.mode == "thread"
        pending = asyncio.ensure_future(reader.read())
        await asyncio.sleep(0)
        thread = reader._thread
        assert thread is not None
        assert thread.is_alive()
        await reader.close()
        assert await asyncio.wait_for(pending, 5) is None
        assert not thread.is_alive()
        os.write(w, b"after close\n")  # the descriptor is still the caller's, and open
        assert os.read(r, 100) == b"after close\n"
        os.close(r)
        os.close(w)

    run_on(NoReaderLoop(), main)


@pytest.mark.parametrize("loop_kind", [NoReaderLoop, asyncio.SelectorEventLoop])
def test_a_cancelled_read_loses_nothing(loop_kind: type[asyncio.AbstractEventLoop]) -> None:
    async def main() -> None:
        r, w = os.pipe()
        reader = InputReader(r)
        reader.start()
        first = asyncio.ensure_future(reader.read())
        await asyncio.sleep(0.05)
        os.write(w, b"kept\n")
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        os.close(w)
        assert await read_all(reader) == b"kept\n"
        await reader.close()
        os.close(r)

    run_on(loop_kind(), main)


# -- names and the console -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["con", "CON", "Nul", "aux", "prn", "com1", "LPT9", "nul.txt"])
def test_windows_device_names_are_reserved(name: str) -> None:
    assert platform.windows_reserved_name(name)


@pytest.mark.parametrize("name", ["console", "nully", "com", "com10", "alice", "lpt", "x"])
def test_ordinary_names_are_not_reserved(name: str) -> None:
    assert not platform.windows_reserved_name(name)


def test_a_voice_cannot_be_named_after_a_windows_device(tmp_path: Path) -> None:
    from bot.setup.voice_import import VoiceImportError, check_new_voice
    from engine.config import VoicesConfig

    voices = VoicesConfig(dir=tmp_path)
    with pytest.raises(VoiceImportError, match="Windows reserves it"):
        check_new_voice(voices, "nul")
    check_new_voice(voices, "nully")  # no error


def test_a_cp1252_stream_takes_emoji_instead_of_failing() -> None:
    """What a redirected stderr is on Windows; a chat line with an emoji must still log."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252")
    assert platform.tolerate_unencodable(stream)
    stream.write("speaking alice: gg \U0001f602 héllo\n")
    stream.flush()
    assert raw.getvalue() == "speaking alice: gg \\U0001f602 héllo\n".encode("cp1252")
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert not platform.tolerate_unencodable(utf8)
    assert utf8.errors == "strict"
