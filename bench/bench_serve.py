"""What ``ishowtts serve`` adds: in-process engine vs the same engine through serve on loopback.

For the three benchmark messages of ``bench_engine.py`` (short, typical, long) it measures,
in one run and on one machine:

* **in process**: the engine on its own thread (``EngineWorker``), as the bot runs it: time
  from ``submit`` to the first chunk, and to the last;
* **HTTP**: a plain client (httpx, streamed ``pcm``) against an ``ishowtts serve`` process
  on 127.0.0.1: time from sending the request to the first body bytes, and to the end;
* **remote engine**: the bot's own path, ``engine.name: remote`` on its engine thread against
  that server: ``submit`` to first chunk and to the last.

The in-process engine is closed before the server starts, so the two never share the GPU.
Prints one table (medians of ``--runs`` after ``--warmup``, milliseconds) and the added
first-audio latency; ``--out`` writes the raw numbers as JSON. Issue 16's target: serve adds
at most 5 ms to first audio over loopback.

Usage (GPU):  python bench/bench_serve.py --random-f5 --runs 9 --out serve.json
              python bench/bench_serve.py --config gpu-config.yaml --runs 9   (your weights)
Usage (CPU):  python bench/bench_serve.py --espeak --runs 5       (eSpeak NG: CPU numbers)
              python bench/bench_serve.py --tiny-f5 --runs 2      (tiny random F5 on the CPU)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def bench_engine() -> Any:
    """``bench/bench_engine.py`` as a module: the messages' one home, and its weight writer."""
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "bench/bench_engine.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_messages() -> dict[str, str]:
    """The three messages (``bench_engine.MESSAGES``)."""
    return dict(bench_engine().MESSAGES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


# -- in process ------------------------------------------------------------------------------
async def time_worker(engine: Any, messages: dict[str, str], voice: str, runs: int, warmup: int):
    from engine.base import EngineState
    from engine.worker import EngineWorker

    worker = EngineWorker(engine)
    await worker.start()
    if await worker.wait_ready() is not EngineState.READY:
        raise SystemExit(f"engine did not load: {worker.state_detail}")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for name, text in messages.items():
            first: list[float] = []
            whole: list[float] = []
            for i in range(warmup + runs):
                job = worker.submit(text, voice)
                start = time.perf_counter()
                got_first: float | None = None
                async for _chunk in job:
                    if got_first is None:
                        got_first = time.perf_counter()
                end = time.perf_counter()
                if i >= warmup and got_first is not None:
                    first.append(got_first - start)
                    whole.append(end - start)
            results[name] = {"first": first, "whole": whole}
    finally:
        await worker.close()
    return results


# -- through serve ---------------------------------------------------------------------------
class Server:
    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        config = {**config, "serve": {**config.get("serve", {}), "port": self.port}}
        config.setdefault("storage", {"dir": str(folder / "state")})
        self.state = Path(config["storage"]["dir"])
        self.path = folder / "serve-config.yaml"
        self.path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = folder / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import httpx

        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "--config", str(self.path), "serve"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.path.parent,
            )
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json()["status"] == "ready":
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise SystemExit("serve did not get ready")

    @property
    def token(self) -> str:
        return (self.state / "serve-token").read_text().strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def time_http(server: Server, messages: dict[str, str], voice: str, runs: int, warmup: int):
    import httpx

    results: dict[str, dict[str, list[float]]] = {}
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        for name, text in messages.items():
            first: list[float] = []
            whole: list[float] = []
            for i in range(warmup + runs):
                body = {
                    "model": "ishowtts",
                    "input": text,
                    "voice": voice,
                    "response_format": "pcm",
                }
                start = time.perf_counter()
                got_first: float | None = None
                with client.stream("POST", "/v1/audio/speech", json=body) as response:
                    response.raise_for_status()
                    for data in response.iter_raw():
                        if got_first is None and data:
                            got_first = time.perf_counter()
                end = time.perf_counter()
                if i >= warmup and got_first is not None:
                    first.append(got_first - start)
                    whole.append(end - start)
            results[name] = {"first": first, "whole": whole}
    return results


# -- main ------------------------------------------------------------------------------------
def engine_config(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    if args.config is not None:
        return dict(yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {})
    if args.tiny_f5:
        from tests.support.f5 import build_tiny_f5

        f5 = build_tiny_f5(folder / "tiny_f5")
        return {"engine": {"name": "f5", "device": "cpu", "f5": f5}}
    if args.random_f5:
        # F5TTS_v1_Base's architecture with random weights (or --ckpt), written in f5's formats
        # by bench_engine.py, so a GPU machine without the hub runs the real engine path.
        import torch

        bench = bench_engine()
        ns = argparse.Namespace(tiny=False, ckpt=args.ckpt, vocab=None, vocoder_dir=None, nfe=16)
        cfm, _info = bench.build_cfm(ns, "cuda", torch.float16)
        vocoder = bench.build_vocoder(ns, "cuda")
        settings, voices = bench.write_engine_files(
            cfm, vocoder, bench.load_reference("cuda"), ns, folder / "f5"
        )
        del cfm, vocoder
        torch.cuda.empty_cache()
        args.voice = "bench"
        return {
            "engine": {"name": "f5", "device": "cuda", "f5": settings},
            "voices": {"dir": str(voices), "default": "bench"},
        }
    return {"engine": {"name": "espeak"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--config", help="config.yaml whose engine and voices to serve")
    what.add_argument("--espeak", action="store_true", help="eSpeak NG (the default)")
    what.add_argument("--tiny-f5", action="store_true", help="tiny random F5 on the CPU")
    what.add_argument(
        "--random-f5",
        action="store_true",
        help="F5TTS_v1_Base on CUDA with random weights (timing does not depend on them)",
    )
    ap.add_argument("--ckpt", default=None, help="with --random-f5: a real checkpoint instead")
    ap.add_argument("--voice", default="default")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", help="write the raw numbers as JSON here")
    args = ap.parse_args()
    os.environ.pop("ISHOWTTS_SERVE_TOKEN", None)
    messages = benchmark_messages()

    from bot.config import parse_config
    from engine.factory import create_engine

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        data = engine_config(args, folder)
        data.setdefault("storage", {"dir": str(folder / "state")})
        base = Path(args.config).resolve().parent if args.config else folder
        cfg = parse_config(data, base)
        engine = create_engine(cfg.engine, cfg.voices, cache_dir=folder / "state")
        inproc = asyncio.run(time_worker(engine, messages, args.voice, args.runs, args.warmup))
        served = Server(folder, {**data, "voices": cfg.voices.model_dump(mode="json")})
        served.start()
        try:
            http = time_http(served, messages, args.voice, args.runs, args.warmup)
            remote_cfg = parse_config(
                {
                    "engine": {"name": "remote", "remote": {"url": served.url}},
                    "storage": {"dir": str(served.state)},
                },
                folder,
            )
            remote = create_engine(remote_cfg.engine, remote_cfg.voices, cache_dir=served.state)
            via_remote = asyncio.run(
                time_worker(remote, messages, args.voice, args.runs, args.warmup)
            )
        finally:
            served.stop()

    device = "CPU"
    try:
        import torch

        if torch.cuda.is_available() and cfg.engine.device != "cpu":
            device = torch.cuda.get_device_name()
    except ImportError:
        pass
    engine_name = cfg.engine.name
    cpu = platform.processor() or platform.machine()
    print(
        f"\nbench_serve: engine {engine_name} on {device} ({cpu}, {os.cpu_count()} cores),"
        f" medians of {args.runs} runs after {args.warmup} warm-up, milliseconds\n"
    )
    head = (
        f"{'message':<9} {'in-process':>21} {'HTTP (serve)':>21} {'remote engine':>21}"
        f" {'added first':>12}"
    )
    print(head)
    print(
        f"{'':<9} {'first':>10} {'whole':>10} {'first':>10} {'whole':>10} {'first':>10} "
        f"{'whole':>10} {'(remote)':>12}"
    )
    table: dict[str, Any] = {}
    for name in messages:
        row = {
            "in_process": {k: median_ms(v) for k, v in inproc[name].items()},
            "http": {k: median_ms(v) for k, v in http[name].items()},
            "remote": {k: median_ms(v) for k, v in via_remote[name].items()},
        }
        added = row["remote"]["first"] - row["in_process"]["first"]
        row["added_first_ms"] = added
        table[name] = row
        print(
            f"{name:<9} {row['in_process']['first']:>10.1f} {row['in_process']['whole']:>10.1f}"
            f" {row['http']['first']:>10.1f} {row['http']['whole']:>10.1f}"
            f" {row['remote']['first']:>10.1f} {row['remote']['whole']:>10.1f} {added:>+12.1f}"
        )
    if args.out:
        raw = {"in_process": inproc, "http": http, "remote": via_remote}
        Path(args.out).write_text(
            json.dumps(
                {"device": device, "engine": engine_name, "table": table, "raw": raw}, indent=2
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
