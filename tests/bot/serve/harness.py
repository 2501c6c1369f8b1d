"""A real ``ishowtts serve`` process for tests: started from a config, stopped by PID.

The server is the production command (``python -m bot --config ... serve``) in its own
process, so tests see what a client on another PC sees: HTTP over a socket, its own engine
thread, its own token file. ``ServeProcess.kill()`` and ``start()`` simulate the gaming PC
going away and coming back on the same port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.audio import process_alive

READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """One ``ishowtts serve`` (restartable on the same port)."""

    config: Path
    port: int
    state_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ca: Path | None = None
    """The certificate to trust when the server speaks TLS (serve.cert)."""

    @property
    def url(self) -> str:
        scheme = "https" if self.ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca is not None else None

    @property
    def token(self) -> str:
        return (self.state_dir / "serve-token").read_text(encoding="ascii").strip()

    def start(self, *, wait_ready: bool = True) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(self.config), "serve"],
            cwd=self.config.parent,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.wait_listening()
        if wait_ready:
            self.wait_ready()

    def health(self) -> str | None:
        try:
            with urllib.request.urlopen(
                f"{self.url}/health", timeout=2, context=self._context()
            ) as resp:
                return str(json.loads(resp.read())["status"])
        except (OSError, ValueError):
            return None

    def wait_listening(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.health() is None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve not listening after {timeout_s} s:\n{self.log()}")
            time.sleep(0.05)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while (state := self.health()) != "ready":
            if state == "error" or time.monotonic() > deadline:
                raise AssertionError(f"serve not ready ({state}):\n{self.log()}")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/v1/status", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5, context=self._context()) as resp:
            return dict(json.loads(resp.read()))

    def wait_status(self, key: str, at_least: int, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if status[key] >= at_least:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"status {key} stayed below {at_least}: {status}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the serving PC vanishes mid-message (no clean close)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        assert not process_alive(proc.pid) or proc.returncode is not None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        except OSError:
            return ""


def write_serve_config(
    folder: Path, engine: dict[str, Any], serve: dict[str, Any] | None = None, **sections: Any
) -> tuple[Path, int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data: dict[str, Any] = {
        "engine": engine,
        "storage": {"dir": str(folder / "state")},
        "serve": {"port": port, **(serve or {})},
        **sections,
    }
    data.setdefault("voices", {"dir": str(folder / "voices")})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, port


def launch_serve(
    folder: Path,
    engine: dict[str, Any],
    serve: dict[str, Any] | None = None,
    *,
    wait_ready: bool = True,
    **sections: Any,
) -> ServeProcess:
    config, port = write_serve_config(folder, engine, serve, **sections)
    env = {k: v for k, v in os.environ.items() if k != "ISHOWTTS_SERVE_TOKEN"}
    env["OMP_NUM_THREADS"] = "1"  # the tiny model is fastest on one thread of a shared CPU
    env["PYTHONUNBUFFERED"] = "1"
    cert = (serve or {}).get("cert")
    server = ServeProcess(
        config,
        port,
        folder / "state",
        folder / "serve.log",
        env=env,
        ca=Path(cert) if cert is not None else None,
    )
    server.start(wait_ready=wait_ready)
    return server
