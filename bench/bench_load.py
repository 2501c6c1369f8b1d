"""Load benchmark (issue 17): simulated channels against running speech endpoints.

Each simulated channel is a stream of chat lines (the three benchmark messages of
``bench_engine.py``, mixed: mostly short, some typical, a few long) spoken continuously: the
channel asks for its next line when the one it is playing ends (or at once, when the server
is behind), plays it from its first audio bytes for the audio's length, and so on. Halfway
through each level one channel gets a raid: 30 lines at once. For every endpoint given
(``--endpoint LABEL=URL``, e.g. an ``ishowtts serve`` with ``serve.max_batch: 1`` as
``single`` and one batching, or ``ishowtts serve --ray``, as ``batched``) and every number
of channels (``--channels 1,4,16,64,256``) it measures, in one run:

* throughput: seconds of audio received per second of wall time;
* first audio: from sending a request to its first body bytes, p50/p95/p99 (all lines and
  the raid's own);
* refused (429/503) and failed requests;
* GPU memory (NVML, the most seen while the level ran) when ``pynvml`` is installed and the
  endpoint's GPU is on this machine.

Prints one table; ``--out`` writes the raw numbers as JSON. "Sustained" in the table means
p95 first audio <= ``--target-ms`` (300 ms, issue 17's bar) with nothing refused.

Usage (GPU):  python bench/bench_load.py --endpoint single=http://127.0.0.1:8766 \\
                  --endpoint batched=http://127.0.0.1:8767 --channels 1,4,16,64,256 \\
                  --seconds 60 --out load.json
Usage (CPU smoke, eSpeak NG): the same with --channels 1,4 --seconds 10 --raid 8
``--closed``: channels ask again as soon as a line has arrived (capacity, not demand; the
batched-vs-one-at-a-time throughput comparison at 16 channels).
The token comes from --token, ISHOWTTS_SERVE_TOKEN, or --state-dir's serve-token file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
RATE = 24_000
"""``response_format: pcm`` is 24 kHz 16-bit mono."""
MIX = (("short", 0.6), ("typical", 0.3), ("long", 0.1))
"""How often each benchmark message is a channel's next line."""


def benchmark_messages() -> dict[str, str]:
    """The three messages, from their one home (``bench/bench_engine.py``)."""
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "bench/bench_engine.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.MESSAGES)


@dataclass
class Sample:
    """One request's outcome."""

    kind: str
    raid: bool
    status: int
    first_s: float | None = None
    whole_s: float | None = None
    audio_s: float = 0.0


@dataclass
class Level:
    """One (endpoint, channels) run."""

    endpoint: str
    channels: int
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    gpu_memory_mib: float | None = None

    def summary(self, target_ms: float) -> dict[str, Any]:
        ok = [s for s in self.samples if s.status == 200 and s.first_s is not None]
        firsts = sorted(s.first_s * 1000 for s in ok if s.first_s is not None)
        raid = sorted(s.first_s * 1000 for s in ok if s.raid and s.first_s is not None)
        refused = sum(1 for s in self.samples if s.status in (429, 503))
        failed = sum(1 for s in self.samples if s.status not in (200, 429, 503))
        audio = sum(s.audio_s for s in ok)
        p95 = percentile(firsts, 95)
        return {
            "endpoint": self.endpoint,
            "channels": self.channels,
            "requests": len(ok),
            "refused": refused,
            "failed": failed,
            "audio_s": round(audio, 2),
            "throughput": round(audio / self.wall_s, 2) if self.wall_s else 0.0,
            "first_p50_ms": percentile(firsts, 50),
            "first_p95_ms": p95,
            "first_p99_ms": percentile(firsts, 99),
            "raid_p95_ms": percentile(raid, 95),
            "sustained": bool(firsts) and p95 is not None and p95 <= target_ms and not refused,
            "gpu_memory_mib": self.gpu_memory_mib,
        }


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of sorted values, rounded to 0.1 ms."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


class GpuMemory:
    """The most GPU memory in use while sampled (NVML; absent without pynvml or a GPU)."""

    def __init__(self) -> None:
        self.most: float | None = None
        self._handles: list[Any] = []
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # no library, no driver, no GPU: memory is not reported
            self._nvml = None

    def sample(self) -> None:
        if self._nvml is None:
            return
        used = sum(self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles) / 2**20
        self.most = used if self.most is None else max(self.most, used)

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


async def speak(
    client: httpx.AsyncClient, url: str, text: str, voice: str, kind: str, raid: bool
) -> Sample:
    """One streamed ``pcm`` request: time to the first bytes and to the end, audio length."""
    sent = time.monotonic()
    body = {"model": "ishowtts", "input": text, "voice": voice, "response_format": "pcm"}
    try:
        async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Sample(kind, raid, response.status_code)
            first: float | None = None
            size = 0
            async for part in response.aiter_bytes():
                if first is None and part:
                    first = time.monotonic() - sent
                size += len(part)
            return Sample(kind, raid, 200, first, time.monotonic() - sent, size / 2 / RATE)
    except httpx.HTTPError:
        return Sample(kind, raid, 0)


async def channel(
    client: httpx.AsyncClient,
    url: str,
    messages: dict[str, str],
    voice: str,
    until: float,
    rng: random.Random,
    out: list[Sample],
    closed: bool = False,
) -> None:
    """One channel speaking continuously until ``until`` (monotonic).

    ``closed``: ask for the next line as soon as the last one has arrived (no playing time),
    which measures what the server can do rather than what channels need.
    """
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    playhead = time.monotonic()
    while True:
        now = time.monotonic()
        start = max(now, playhead)
        if start >= until:
            return
        await asyncio.sleep(start - now)
        kind = rng.choices(kinds, weights)[0]
        asked = time.monotonic()
        sample = await speak(client, url, messages[kind], voice, kind, False)
        out.append(sample)
        if sample.status != 200 or sample.first_s is None:
            playhead = time.monotonic() + 0.5  # refused: try again shortly
            continue
        playhead = (
            time.monotonic() if closed else max(playhead, asked + sample.first_s) + sample.audio_s
        )


async def raid(
    client: httpx.AsyncClient,
    url: str,
    messages: dict[str, str],
    voice: str,
    lines: int,
    rng: random.Random,
    out: list[Sample],
) -> None:
    """A raid: ``lines`` chat lines at once on one channel."""
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    picks = [rng.choices(kinds, weights)[0] for _ in range(lines)]
    out.extend(
        await asyncio.gather(*(speak(client, url, messages[k], voice, k, True) for k in picks))
    )


async def run_level(
    label: str, url: str, token: str, channels: int, args: argparse.Namespace
) -> Level:
    messages = benchmark_messages()
    level = Level(label, channels)
    rng = random.Random(args.seed * 1000 + channels)
    limits = httpx.Limits(max_connections=channels + args.raid + 8)
    timeout = httpx.Timeout(args.timeout_s)
    headers = {"Authorization": f"Bearer {token}"}
    memory = GpuMemory()
    stop = asyncio.Event()
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        watcher = asyncio.create_task(memory.watch(stop))
        started = time.monotonic()
        until = started + args.seconds
        tasks = [
            asyncio.create_task(
                channel(
                    client,
                    url,
                    messages,
                    args.voice,
                    until,
                    random.Random(rng.random()),
                    level.samples,
                    args.closed,
                )
            )
            for _ in range(channels)
        ]
        if args.raid:
            await asyncio.sleep(args.seconds / 2)
            tasks.append(
                asyncio.create_task(
                    raid(client, url, messages, args.voice, args.raid, rng, level.samples)
                )
            )
        await asyncio.gather(*tasks)
        level.wall_s = time.monotonic() - started
        stop.set()
        await watcher
    level.gpu_memory_mib = memory.most
    return level


def read_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if os.environ.get("ISHOWTTS_SERVE_TOKEN"):
        return os.environ["ISHOWTTS_SERVE_TOKEN"]
    if args.state_dir is not None:
        return str((args.state_dir / "serve-token").read_text(encoding="utf-8").strip())
    sys.exit("give --token, ISHOWTTS_SERVE_TOKEN or --state-dir (the server's serve-token)")


def table(rows: list[dict[str, Any]]) -> str:
    cols = (
        ("endpoint", "endpoint"),
        ("channels", "ch"),
        ("requests", "req"),
        ("refused", "429/503"),
        ("failed", "fail"),
        ("throughput", "audio s/s"),
        ("first_p50_ms", "p50 ms"),
        ("first_p95_ms", "p95 ms"),
        ("first_p99_ms", "p99 ms"),
        ("raid_p95_ms", "raid p95"),
        ("sustained", "sustained"),
        ("gpu_memory_mib", "GPU MiB"),
    )
    lines = [" | ".join(title for _, title in cols)]
    lines.append(" | ".join("---" for _ in cols))
    for row in rows:
        lines.append(" | ".join("-" if row[k] is None else str(row[k]) for k, _ in cols))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    token = read_token(args)
    endpoints = [e.split("=", 1) if "=" in e else [e, e] for e in args.endpoint]
    rows = []
    for channels in [int(c) for c in args.channels.split(",")]:
        for label, url in endpoints:  # the endpoints take turns at each level, same run
            level = await run_level(label, url.rstrip("/"), token, channels, args)
            row = level.summary(args.target_ms)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--endpoint",
        action="append",
        required=True,
        help="LABEL=URL of a running ishowtts serve (or serve --ray); repeat to compare",
    )
    parser.add_argument("--channels", default="1,4,16,64,256")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each level")
    parser.add_argument("--raid", type=int, default=30, help="lines of the raid (0: none)")
    parser.add_argument("--voice", default="default")
    parser.add_argument("--token", default=None)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--target-ms", type=float, default=300.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--closed",
        action="store_true",
        help="no playing time: each channel asks again at once (server capacity)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(f"# bench_load on {platform.node()} ({platform.machine()}), {args.seconds:.0f} s a level")
    rows = asyncio.run(main_async(args))
    print()
    print(table(rows))
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"out": str(args.out), "state_dir": str(args.state_dir)},
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
