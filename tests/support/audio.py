"""Fixtures that run a real PulseAudio null sink (owned by the player work).

The machines that run the tests have no sound card, so the audio tests play into an isolated
PulseAudio server with one 48 kHz float32 stereo null sink, ``testsink``, and record its monitor.
Everything here follows ``/work/shared/notes/audio-in-tests.md`` (measured pitfalls):

* The server is started before PortAudio is (re)initialised, otherwise the device list stays
  empty (pitfall 1).
* One low-latency ``parec`` reader stays attached for the whole session and the sink is kicked
  once (suspend/resume), so a new recorder gets data in ~0.1 s instead of ~2 s (pitfall 2).
* The first few ms of a new stream never reach the monitor: lead test signals with >= 50 ms of
  silence (pitfall 3, see :func:`tone`).
* Background processes are stopped by PID; zombies are recognised through ``/proc/PID/stat``
  (pitfall 7).

Use it as::

    @pytest.mark.audio
    async def test_x(pulse_server, sink_recorder):
        sink_recorder.start()
        ...play through AudioConfig(device=pulse_server.device_name)...
        mono = sink_recorder.stop()   # float32 at pulse_server.rate

The server's environment is set in ``os.environ`` for this process (subprocesses inherit it);
``pulse_server.env`` holds just those variables for tests that build a subprocess env by hand.
Audio tests share one sink: they must run serially (no xdist).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

log = logging.getLogger(__name__)

SINK = "testsink"
SINK_RATE = 48_000
SINK_CHANNELS = 2
# With the ALSA "pulse" plugin, PortAudio sees the server as this device; "default" is routed to
# the same server by Debian's alsa.conf.d/pulse.conf.
PULSE_DEVICE = "pulse"

_DAEMON_CONF = """\
daemonize = no
exit-idle-time = -1
realtime-scheduling = no
high-priority = no
flat-volumes = no
default-sample-format = float32le
default-sample-rate = 48000
alternate-sample-rate = 48000
default-sample-channels = 2
default-fragments = 4
default-fragment-size-msec = 5
"""

_STARTUP_SCRIPT = f"""\
.fail
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name={SINK} rate={SINK_RATE} channels={SINK_CHANNELS} \
format=float32le sink_properties=device.description=TestSink
set-default-sink {SINK}
set-default-source {SINK}.monitor
"""

# A client must never spawn a server of its own when ours is not up (it would not be isolated).
_CLIENT_CONF = "autospawn = no\n"

# Generous: a 2-core CI box that is busy compiling or running torch can be very slow.
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 5.0


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child waiting to be reaped (zombie) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def stop_process(proc: subprocess.Popen[bytes], name: str) -> None:
    """Stop one background process by its PID: SIGTERM, then SIGKILL, then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while process_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process_alive(proc.pid):
            log.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.error("%s (pid %d) could not be reaped", name, proc.pid)


@dataclass
class PulseServer:
    """A running isolated PulseAudio server with the null sink ``testsink``.

    Attributes:
        dir: Folder holding its config, socket, state, log and PID file.
        env: The PULSE_* (and XDG) variables clients need; already set in ``os.environ``.
        pid: PID of the ``pulseaudio`` process.
        sink: Name of the null sink.
        monitor: Name of the sink's monitor source.
        rate: The sink's true rate (PortAudio reports 44100 for the pulse device; see notes).
        channels: The sink's channel count.
        device_name: What to put in ``audio.device`` to play through this server.
    """

    dir: Path
    env: dict[str, str]
    pid: int
    sink: str = SINK
    monitor: str = f"{SINK}.monitor"
    rate: int = SINK_RATE
    channels: int = SINK_CHANNELS
    device_name: str = PULSE_DEVICE
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list, repr=False)

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server and return its output (raises on failure)."""
        done = subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stop the keep-alive reader and the server by PID (idempotent)."""
        while self._procs:
            name, child = self._procs.pop(0)
            stop_process(child, name)

    def log_text(self) -> str:
        """The server's log, for failure messages."""
        path = self.dir / "pulse.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


def _pulse_env(root: Path) -> dict[str, str]:
    pulse = root / "pulse"
    return {
        "XDG_CONFIG_HOME": str(root / "xdg"),
        "XDG_RUNTIME_DIR": str(pulse / "xdgrun"),
        "PULSE_RUNTIME_PATH": str(pulse / "run"),
        "PULSE_STATE_PATH": str(pulse / "state"),
        "PULSE_SERVER": f"unix:{pulse / 'run' / 'native'}",
        "PULSE_COOKIE": str(pulse / "cookie"),
        "PULSE_CONFIG": str(pulse / "daemon.conf"),
        "PULSE_CLIENTCONFIG": str(pulse / "client.conf"),
    }


def _wait_until_ready(server: PulseServer, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pulseaudio exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if server.sink in server.pactl("list", "short", "sinks"):
                return
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"pulseaudio not ready: {last_error}\n{server.log_text()}")


def _reinit_portaudio() -> None:
    """Make PortAudio rebuild its device list (it is frozen at initialisation; pitfall 1)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


def launch_pulse_server(root: Path, *, keepalive: bool = True) -> PulseServer:
    """Start an isolated PulseAudio server under ``root`` and wait until its sink is ready.

    It does not touch ``os.environ`` or PortAudio (the ``pulse_server`` fixture does); stop it
    with :meth:`PulseServer.stop`.

    Args:
        root: An empty folder for its config, socket, state, log and PID files.
        keepalive: Attach one persistent low-latency monitor reader and kick the sink, so
            recorders get data at once (pitfall 2).
    """
    binary = shutil.which("pulseaudio")
    if binary is None:
        raise FileNotFoundError("the `pulseaudio` binary is missing")
    env = _pulse_env(root)
    for key in ("XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_STATE_PATH"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    Path(env["XDG_RUNTIME_DIR"]).chmod(0o700)
    Path(env["PULSE_RUNTIME_PATH"]).chmod(0o700)
    Path(env["PULSE_CONFIG"]).write_text(_DAEMON_CONF)
    Path(env["PULSE_CLIENTCONFIG"]).write_text(_CLIENT_CONF)
    script = root / "pulse" / "test.pa"
    script.write_text(_STARTUP_SCRIPT)
    logfile = root / "pulse" / "pulse.log"
    child_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [
            binary,
            "-n",
            "-F",
            str(script),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            f"--log-target=file:{logfile}",
        ],
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (root / "pulse" / "pulseaudio.pid").write_text(f"{proc.pid}\n")
    server = PulseServer(dir=root, env=env, pid=proc.pid)
    server._procs.append(("pulseaudio", proc))
    try:
        _wait_until_ready(server, proc)
        if keepalive:
            reader = subprocess.Popen(
                ["parec", "-d", server.monitor, "--raw", "--latency-msec=20"],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            (root / "pulse" / "parec.pid").write_text(f"{reader.pid}\n")
            server._procs.insert(0, ("parec keep-alive", reader))
            server.pactl("suspend-sink", server.sink, "1")
            server.pactl("suspend-sink", server.sink, "0")
    except BaseException:
        server.stop()
        raise
    log.info("PulseAudio test server up (pid %d) in %s", proc.pid, root)
    return server


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """An isolated PulseAudio server for the whole session, stopped by PID at the end.

    Its variables are set in ``os.environ`` (restored at the end) and PortAudio is
    re-initialised, so in-process streams and subprocesses both play into ``testsink``.
    """
    if shutil.which("pulseaudio") is None:
        pytest.skip(
            "the `pulseaudio` binary is missing (apt-get install pulseaudio pulseaudio-utils)"
        )
    root = tmp_path_factory.mktemp("pulse")
    server = launch_pulse_server(root)
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    try:
        _reinit_portaudio()
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(Exception):
            _reinit_portaudio()


class SinkRecorder:
    """Records the test sink's monitor through a ``parec`` subprocess.

    ``start()`` returns once the monitor's samples are flowing, so whatever is played after it
    is captured. ``stop()`` keeps reading until a settle period of audio has arrived after the
    call (counted in samples, so a slow machine only waits longer), then returns the recording
    mixed to mono float32 at the sink's rate.
    """

    def __init__(self, server: PulseServer) -> None:
        self._server = server
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._data = bytearray()
        self._flowing = threading.Event()
        self._frame_bytes = 4 * server.channels

    @property
    def rate(self) -> int:
        """Sample rate of the recording."""
        return self._server.rate

    @property
    def frames(self) -> int:
        """Frames received so far (a position in the recording that ``stop`` will return)."""
        with self._lock:
            return len(self._data) // self._frame_bytes

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Attach to the monitor and wait until samples arrive."""
        if self._proc is not None:
            raise RuntimeError("recorder already started")
        self._data.clear()
        self._flowing.clear()
        self._proc = subprocess.Popen(
            [
                "parec",
                "-d",
                self._server.monitor,
                "--raw",
                "--format=float32le",
                f"--rate={self._server.rate}",
                f"--channels={self._server.channels}",
                "--latency-msec=10",
            ],
            env={**os.environ, **self._server.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        self._thread = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name="sink-recorder", daemon=True
        )
        self._thread.start()
        if not self._flowing.wait(timeout_s):
            self._shutdown()
            raise RuntimeError(f"no samples from {self._server.monitor} within {timeout_s} s")

    def _read(self, stream: io.BufferedReader) -> None:
        while True:
            block = stream.read1(65536)
            if not block:
                return
            with self._lock:
                self._data += block
            self._flowing.set()

    def wait_frames(self, frames: int, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Block until at least ``frames`` frames have been recorded in total."""
        deadline = time.monotonic() + timeout_s
        while self.frames < frames:
            if time.monotonic() > deadline:
                raise RuntimeError(f"recorder stalled at {self.frames} of {frames} frames")
            time.sleep(0.01)

    def stop(self, settle_s: float = 0.3, *, mono: bool = True) -> np.ndarray:
        """Stop recording and return float32 samples at :attr:`rate`.

        Args:
            settle_s: Seconds of audio to keep reading after the call, so the sound that was
                already rendered but still in flight through the monitor is captured.
            mono: Average the channels (default); else return ``(frames, channels)``.
        """
        if self._proc is None:
            raise RuntimeError("recorder not started")
        self.wait_frames(self.frames + int(settle_s * self.rate))
        self._shutdown()
        with self._lock:
            usable = len(self._data) - len(self._data) % self._frame_bytes
            raw = np.frombuffer(bytes(self._data[:usable]), dtype="<f4")
        frames = raw.reshape(-1, self._server.channels)
        if not mono:
            return frames.copy()
        return frames.mean(axis=1, dtype=np.float64).astype(np.float32)

    def _shutdown(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, "parec recorder")
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=_STOP_TIMEOUT_S)
            self._thread = None


@pytest.fixture
def sink_recorder(pulse_server: PulseServer) -> Iterator[SinkRecorder]:
    """A recorder of the test sink's monitor; always stopped at the end of the test."""
    recorder = SinkRecorder(pulse_server)
    try:
        yield recorder
    finally:
        recorder._shutdown()


def tone(
    freq: float,
    seconds: float,
    rate: int,
    *,
    amplitude: float = 0.5,
    lead_silence_s: float = 0.1,
) -> np.ndarray:
    """A sine tone as mono float32, led by silence (the first ms of a stream are lost)."""
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    body = amplitude * np.sin(2 * np.pi * freq * t)
    lead = np.zeros(round(lead_silence_s * rate))
    return np.concatenate([lead, body]).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in ``samples`` (Hz), refined by parabolic interpolation."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 16:
        raise ValueError("too few samples to measure a frequency")
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spectrum[1:])) + 1
    offset = 0.0
    if 1 <= k < spectrum.size - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-20)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return float((k + offset) * rate / x.size)


def active_span(samples: np.ndarray, threshold: float = 0.02) -> tuple[int, int]:
    """First and one-past-last index whose magnitude exceeds ``threshold`` ((0, 0) if none)."""
    idx = np.flatnonzero(np.abs(samples) > threshold)
    if idx.size == 0:
        return (0, 0)
    return int(idx[0]), int(idx[-1]) + 1


def rms(samples: np.ndarray) -> float:
    """Root mean square of ``samples``."""
    x = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def find_offset(recording: np.ndarray, reference: np.ndarray) -> int:
    """Where ``reference`` starts inside ``recording`` (FFT cross-correlation, in samples)."""
    rec = np.asarray(recording, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0 or rec.size < ref.size:
        raise ValueError("the recording is shorter than the reference")
    n = 1 << int(np.ceil(np.log2(rec.size + ref.size)))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    return int(np.argmax(corr[: rec.size - ref.size + 1]))
