"""A local stand-in for the Hugging Face hub's file endpoints, for the real hub client.

The hub is not reachable from the test machines, and the real weights are 1.4 GB. The client
(``huggingface_hub``) takes an ``endpoint`` argument, so tests point it at this server on
127.0.0.1 and exercise its real code: the metadata ``HEAD`` (commit, ETag, size headers), the
streamed ``GET`` with progress updates, and its cache layout.

Only what ``hf_hub_download`` and ``get_hf_file_metadata`` use is served:
``/{owner}/{repo}/resolve/{revision}/{path}``. Unknown files get 404 with the hub's
``X-Error-Code: EntryNotFound``. ``hang`` makes every request wait without answering until the
server stops, which is how an unreachable-but-routable hub looks to a client.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubDouble:
    """Serves files by ``owner/repo/path``; records every request as (method, path)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.hang = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: str, path: str, data: bytes) -> None:
        self.files[f"{repo}/{path}"] = data

    def start(self) -> None:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _answer(self, body: bool) -> None:
                with double._lock:
                    double.requests.append((self.command, self.path))
                if double.hang:
                    double._stop.wait()
                    return
                parts = self.path.split("?", 1)[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                key = "/".join(parts[:2] + parts[4:])
                data = double.files.get(key)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    step = 1 << 20
                    for start in range(0, len(data), step):
                        self.wfile.write(data[start : start + step])

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hub-double", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@contextmanager
def hub_double() -> Iterator[HubDouble]:
    """A running :class:`HubDouble`, stopped afterwards."""
    double = HubDouble()
    double.start()
    try:
        yield double
    finally:
        double.stop()
