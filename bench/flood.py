"""Chat flood benchmark (issue 7): 10,000 Twitch chat messages at 1,000 per second.

What runs, and where:

* **Twitch** is the project's local Twitch double (``tests/support/twitch_double.py``: OAuth, Helix,
  EventSub websocket) in a *separate process* on 127.0.0.1, so the flood it sends does not
  share an interpreter (or a GIL) with the bot it floods.
* **The bot** is the real thing in this process: twitchio 3 (only its base URLs point at the
  double), the Twitch source, the App (chat pipeline, commands, SQLite on disk, speech queue,
  engine thread) with the real **eSpeak NG engine** (fast and deterministic; F5 on a CPU
  cannot keep up with anything) and the real **sounddevice player** on a PulseAudio null sink
  that the benchmark starts itself (``--player recording`` swaps in the test suite's
  recording player where PulseAudio is missing).

The double sends the flood from 500 viewers, paced by the monotonic clock; every
``--control-every`` messages a moderator's ``!skip`` or ``!clear`` (alternating) is mixed in.
Reported: whether every message reached the bot; the speech queue's largest length against its
bound; the bot's RSS before, during and after (growth); the event loop's lag; and for
``!skip`` and ``!clear`` the latency from the moment the double sent the command to the moment
the bot had applied it (skip/clear run synchronously inside the command) and to the moment
the bot's acknowledgement reached Twitch, as p50/p99/max. Both processes use
``time.monotonic()`` (CLOCK_MONOTONIC, one clock per machine), so the latencies are direct
differences. Loopback only; bounded in time (``--timeout-s``).

Usage:  python bench/flood.py [--messages 10000] [--rate 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.speech.speaker import SpeechEventKind

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.flood")

VIEWERS = 500
WORDS = (  # noqa: SIM905 - a sentence reads better than 45 quoted words
    "lol that was insane do it again gg wp chat is wild today who else is here from the raid "
    "first time watching love the stream pog that boss though no way he hit that clip it "
    "what game is next hype hype let's go"
).split()
SCRIPT = Path(__file__).resolve()
EXTRAS = ("Kappa", "PogChamp", "https://example.com/clip", "😂", "LUL", "!so @someone", "")


# -- the double's process -------------------------------------------------------------------
async def serve_double() -> None:
    """Run the Twitch double and flood on command (JSON lines on stdin/stdout)."""
    from tests.support.twitch_double import TwitchDouble

    acks: dict[str, float] = {}
    last_sent: list[float] = []

    class TimedDouble(TwitchDouble):
        async def _send_chat(self, request: Any) -> Any:
            body = await request.json()
            parent = body.get("reply_parent_message_id")
            if parent:
                acks.setdefault(str(parent), time.monotonic())
            return await super()._send_chat(request)

    double = TimedDouble(keepalive_s=5.0)
    await double.start()
    viewers = [double.add_user(f"viewer{i:03d}") for i in range(VIEWERS)]
    mod = double.add_user("moddy", "Moddy")
    token = double.issue_token(double.bot)

    def say(**event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    say(
        event="listening",
        port=double.port,
        client_id=double.client_id,
        channel=double.broadcaster.login,
        bot_id=double.bot.id,
        bot_login=double.bot.login,
        access=token.access,
        refresh=token.refresh,
        scopes=list(token.scopes),
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    waiting = asyncio.ensure_future(double.wait_subscribed(timeout=120))
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            cmd = json.loads(raw)
            if cmd["cmd"] == "wait_subscribed":
                await waiting
                say(event="subscribed")
            elif cmd["cmd"] == "flood":
                sent, controls = await _flood(double, viewers, mod, cmd)
                last_sent[:] = sent
                say(
                    event="flooded",
                    count=len(sent),
                    first=sent[0],
                    last=sent[-1],
                    controls=controls,
                )
            elif cmd["cmd"] == "times":
                say(event="times", sent=last_sent)
            elif cmd["cmd"] == "chat":
                user = mod if cmd.get("mod") else viewers[0]
                badges = ["moderator"] if cmd.get("mod") else []
                at = time.monotonic()
                await double.chat(user, cmd["text"], message_id=cmd["id"], badges=badges)
                say(event="sent", id=cmd["id"], at=at)
            elif cmd["cmd"] == "acks":
                say(event="acks", acks=acks)
            elif cmd["cmd"] == "quit":
                return
    finally:
        waiting.cancel()
        await double.close()


async def _flood(double: Any, viewers: list[Any], mod: Any, cmd: dict[str, Any]) -> Any:
    """Send ``messages`` chat lines at ``rate`` per second; controls mixed in."""
    rng = random.Random(cmd["seed"])
    n, rate, every, prefix = cmd["messages"], cmd["rate"], cmd["control_every"], cmd["prefix"]
    sent: list[float] = []
    controls: list[dict[str, Any]] = []
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if every and i % every == every // 2:
            kind = "skip" if len(controls) % 2 == 0 else "clear"
            mid = f"{prefix}ctl-{kind}-{len(controls)}"
            controls.append({"id": mid, "kind": kind, "at": time.monotonic()})
            await double.chat(mod, f"!{kind}", message_id=mid, badges=["moderator"])
        words = rng.choices(WORDS, k=rng.randint(2, 14))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(EXTRAS))
        sent.append(time.monotonic())
        await double.chat(
            viewers[rng.randrange(len(viewers))], " ".join(words), message_id=f"{prefix}{i}"
        )
    return sent, controls


# -- the bot's process ----------------------------------------------------------------------
@dataclass
class Percentiles:
    """p50 / p99 / max of a list of seconds (shown in ms)."""

    n: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")

    @classmethod
    def of(cls, seconds: list[float]) -> Percentiles:
        if not seconds:
            return cls()
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
        return cls(
            n=len(ordered),
            p50_ms=statistics.median(ordered) * 1000,
            p99_ms=p99 * 1000,
            max_ms=ordered[-1] * 1000,
        )


@dataclass
class FloodReport:
    """What one flood run measured."""

    messages: int
    rate_asked: float
    rate_sent: float = 0.0
    delivered: int = 0
    handled_s: float = 0.0
    decisions: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    queue_max: int = 0
    queue_bound: int = 0
    rss_before_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_after_mib: float = 0.0
    rss_by_quarter_mib: list[float] = field(default_factory=list)
    rss_before_trim_mib: float = 0.0
    rss_after_trim_mib: float = 0.0
    loop_lag: Percentiles = field(default_factory=Percentiles)
    handling: Percentiles = field(default_factory=Percentiles)
    skip_applied: Percentiles = field(default_factory=Percentiles)
    skip_acked: Percentiles = field(default_factory=Percentiles)
    clear_applied: Percentiles = field(default_factory=Percentiles)
    clear_acked: Percentiles = field(default_factory=Percentiles)
    skips_that_stopped_speech: int = 0
    clears_that_emptied_a_queue: int = 0
    controls_sent: int = 0
    final_message: str = ""
    errors_logged: int = 0
    memory_growth_sites: list[str] = field(default_factory=list)
    engine: str = "espeak"
    player: str = "real"
    machine: str = ""

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_after_mib - self.rss_before_mib


def _trimmed_rss(proc: Any) -> int:
    """RSS after glibc hands free heap pages back (what is left is memory still in use)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)
    return int(proc.memory_info().rss)


def _site(stat: Any) -> str:
    """One tracemalloc difference as a line: size change, count, the innermost project frame."""
    frames = [f for f in stat.traceback if "site-packages" not in f.filename] or list(
        stat.traceback
    )
    where = frames[-1] if frames else None
    place = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks at {place}"


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _DoubleProcess:
    """The Twitch double in its own Python process, driven by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _DoubleProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--serve-double",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
            cwd=str(REPO),
        )
        return cls(proc)

    async def read(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the Twitch double process exited")
            data: dict[str, Any] = json.loads(line)
            if data.get("event") == event:
                return data

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send(cmd="quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def run_flood(
    *,
    messages: int = 10_000,
    rate: float = 1_000.0,
    control_every: int = 100,
    workdir: Path,
    audio_device: str | None = None,
    player: str = "real",
    timeout_s: float = 600.0,
    seed: int = 7,
    trace_memory: bool = False,
) -> FloodReport:
    """Flood a real bot through the Twitch double and measure it (see the module docstring).

    Args:
        messages: Chat lines in the flood.
        rate: Lines per second.
        control_every: A moderator command every this many lines (0: none).
        workdir: Empty folder for the bot's state (database, tokens).
        audio_device: ``audio.device`` for the real player (a PulseAudio server must run).
        player: ``real`` (sounddevice) or ``recording`` (the test suite's recording player).
        timeout_s: Hard bound on the whole run.
        seed: Chat text is random but repeatable.
        trace_memory: Also list where Python memory grew (tracemalloc; slows the bot).
    """
    async with asyncio.timeout(timeout_s):
        return await _run_flood(
            messages, rate, control_every, workdir, audio_device, player, seed, trace_memory
        )


async def _run_flood(
    messages: int,
    rate: float,
    control_every: int,
    workdir: Path,
    audio_device: str | None,
    player_kind: str,
    seed: int,
    trace_memory: bool,
) -> FloodReport:
    import platform

    import psutil
    from twitchio.eventsub import websockets
    from twitchio.http import Route

    from bot.app import App
    from bot.config import parse_config
    from bot.core.messages import ChatMessage
    from bot.sources.twitch.auth import StoredToken, TokenStore, token_path
    from bot.sources.twitch.source import ConnectionState, TwitchSource
    from bot.speech.speaker import SpeechEvent
    from bot.state.settings import state_dir

    report = FloodReport(messages=messages, rate_asked=rate, player=player_kind)
    report.machine = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}"
    )
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    double = await _DoubleProcess.start()
    saved_urls = (websockets.WSS, Route.BASE, Route.ID_BASE)
    app: App | None = None
    source: TwitchSource | None = None
    source_task: asyncio.Task[None] | None = None
    try:
        hello = await double.read("listening")
        base = f"http://127.0.0.1:{hello['port']}"
        websockets.WSS = f"ws://127.0.0.1:{hello['port']}/ws"
        Route.BASE = f"{base}/helix/"
        Route.ID_BASE = f"{base}/"
        cfg = parse_config(
            {
                "engine": {"name": "espeak"},
                "audio": {"device": audio_device, "gap_ms": 50},
                "chat": {"source": "twitch"},
                "storage": {"dir": str(workdir / "state")},
                "web": {"enabled": False},
                "twitch": {"channel": hello["channel"], "client_id": hello["client_id"]},
            },
            workdir,
        )
        report.queue_bound = cfg.queue.max_size
        TokenStore(token_path(state_dir(cfg.storage))).write(
            StoredToken(
                client_id=hello["client_id"],
                user_id=hello["bot_id"],
                login=hello["bot_login"],
                access_token=hello["access"],
                refresh_token=hello["refresh"],
                scopes=tuple(hello["scopes"]),
            )
        )
        player: Any = None
        if player_kind == "recording":
            from tests.support.chat_harness import RecordingPlayer

            player = RecordingPlayer()
        app = App(cfg, player=player)
        outcomes: Counter[str] = Counter()
        queue_max = 0

        def on_speech(ev: SpeechEvent) -> None:
            nonlocal queue_max
            queue_max = max(queue_max, len(app.queue) if app is not None else 0)
            if ev.kind is SpeechEventKind.FINISHED and ev.outcome is not None:
                outcomes[ev.outcome.value] += 1

        app.speaker.add_listener(on_speech)
        await app.start()
        await app.worker.wait_ready()

        # Bookkeeping is allocated before the baseline and stays fixed in size, so the RSS
        # growth measured is the bot's: flood lines only fill a preallocated array.
        flood_done = array.array("d", [math.nan]) * messages
        flood_left = [messages]
        handled: dict[str, tuple[float, float, bool, int, str]] = {}  # warm-up, controls, after
        handled_now: dict[str, asyncio.Event] = {}

        async def until_handled(message_id: str) -> None:
            if message_id not in handled:
                await handled_now.setdefault(message_id, asyncio.Event()).wait()

        decisions: Counter[str] = Counter()
        all_seen = asyncio.Event()
        counting = [False]
        halfway: list[tracemalloc.Snapshot] = []

        class TimedSink:
            """Hands every event to the App, noting when its handling began and ended."""

            async def on_message(self, message: ChatMessage) -> None:
                assert app is not None
                began = time.monotonic()
                playing = app.speaker.current is not None
                queued = len(app.queue)
                decision = await app.submit(message)
                done = time.monotonic()
                action = decision.action if decision is not None else "error"
                decisions[f"{action}: {decision.reason if decision else ''}"] += 1
                mid = message.id
                if mid[:1] == "f" and mid[1:].isdigit():
                    index = int(mid[1:])
                    if counting[0] and index < messages and math.isnan(flood_done[index]):
                        flood_done[index] = done
                        flood_left[0] -= 1
                        if flood_left[0] == 0:
                            all_seen.set()
                        if trace_memory and not halfway and flood_left[0] <= messages // 2:
                            # Caches that fill up (dedupe ids, recent users) are full by now:
                            # what still grows from here on is what grows with the flood.
                            halfway.append(tracemalloc.take_snapshot())
                elif mid[:1] != "w":  # the warm-up's lines are not kept
                    handled[mid] = (began, done, playing, queued, action)
                    if mid in handled_now:
                        handled_now[mid].set()

            async def on_moderation(self, event: Any) -> None:
                assert app is not None
                await app.on_moderation(event)

        connected = asyncio.Event()

        def on_state(state: ConnectionState, _detail: str) -> None:
            if state is ConnectionState.CONNECTED:
                connected.set()

        source = TwitchSource(
            cfg.twitch,
            TokenStore(token_path(state_dir(cfg.storage))),
            health_interval_s=1.0,
            on_state=on_state,
        )
        source_task = asyncio.create_task(source.run(TimedSink()), name="flood-source")
        await double.send(cmd="wait_subscribed")
        await double.read("subscribed")
        await connected.wait()

        proc = psutil.Process()
        # Warm up (first messages, first speech, first commands), then settle and measure.
        await double.send(
            cmd="flood", messages=300, rate=rate, control_every=0, seed=seed + 1, prefix="w"
        )
        await double.read("flooded")
        for name in ("skip", "clear"):
            await double.send(cmd="chat", text=f"!{name}", id=f"pre-{name}", mod=True)
            await double.read("sent")
        await until_handled("pre-clear")
        await asyncio.sleep(1.0)
        gc.collect()
        report.rss_before_mib = proc.memory_info().rss / 2**20
        report.rss_before_trim_mib = _trimmed_rss(proc) / 2**20
        queue_max = 0
        decisions.clear()
        outcomes.clear()

        lags = array.array("d")
        rss = array.array("d")
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            tick = 0.005
            last_rss = 0.0
            while not stop_sampling.is_set():
                before = time.monotonic()
                await asyncio.sleep(tick)
                now = time.monotonic()
                lags.append(max(0.0, now - before - tick))
                if now - last_rss >= 0.25:
                    rss.append(proc.memory_info().rss)
                    last_rss = now

        if trace_memory:
            tracemalloc.start(12)
        sampler = asyncio.create_task(sample(), name="flood-sampler")
        counting[0] = True
        t0 = time.monotonic()
        await double.send(
            cmd="flood",
            messages=messages,
            rate=rate,
            control_every=control_every,
            seed=seed,
            prefix="f",
        )
        flooded = await double.read("flooded")
        controls: list[dict[str, Any]] = flooded["controls"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 60)
        for control in controls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until_handled(control["id"]), 10)
        report.handled_s = time.monotonic() - t0
        stop_sampling.set()
        await sampler
        gc.collect()
        report.rss_after_mib = proc.memory_info().rss / 2**20
        report.rss_peak_mib = max([*rss, proc.memory_info().rss]) / 2**20
        quarters = (
            [rss[min(len(rss) - 1, (len(rss) * q) // 4 - 1)] for q in (1, 2, 3, 4)] if rss else []
        )
        report.rss_by_quarter_mib = [round(v / 2**20, 1) for v in quarters]
        report.rss_after_trim_mib = _trimmed_rss(proc) / 2**20
        if trace_memory and halfway:
            growth = tracemalloc.take_snapshot().compare_to(halfway[0], "traceback")
            tracemalloc.stop()
            report.memory_growth_sites = [_site(stat) for stat in growth[:12]]
        report.queue_max = queue_max
        count = flooded["count"]
        span = flooded["last"] - flooded["first"]
        report.rate_sent = (count - 1) / span if count > 1 and span > 0 else 0.0
        report.delivered = messages - flood_left[0]
        await double.send(cmd="times")
        sent_times: list[float] = (await double.read("times"))["sent"]
        report.handling = Percentiles.of(
            [flood_done[i] - at for i, at in enumerate(sent_times) if not math.isnan(flood_done[i])]
        )
        report.loop_lag = Percentiles.of(lags)
        report.decisions = dict(decisions.most_common())
        report.outcomes = dict(outcomes.most_common())
        report.controls_sent = len(controls)

        # After the flood: a moderator clears what is left, and a new message is spoken.
        for name in ("clear", "skip"):
            await double.send(cmd="chat", text=f"!{name}", id=f"after-{name}", mod=True)
            await double.read("sent")
        await until_handled("after-skip")
        final_done = asyncio.Event()
        app.speaker.add_listener(
            lambda ev: (
                final_done.set()
                if ev.kind is SpeechEventKind.FINISHED and ev.item.message.id == "final"
                else None
            )
        )
        final_outcome: list[str] = []
        app.speaker.add_listener(
            lambda ev: (
                final_outcome.append(ev.outcome.value)
                if ev.kind is SpeechEventKind.FINISHED
                and ev.item.message.id == "final"
                and ev.outcome
                else None
            )
        )
        await double.send(cmd="chat", text="the flood is over and I am still speaking", id="final")
        await double.read("sent")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(final_done.wait(), 60)
        report.final_message = final_outcome[0] if final_outcome else "not spoken"

        await asyncio.sleep(1.0)  # the last acknowledgements reach the double
        await double.send(cmd="acks")
        acks: dict[str, float] = (await double.read("acks"))["acks"]
        for kind in ("skip", "clear"):
            mine = [c for c in controls if c["kind"] == kind and c["id"] in handled]
            applied = [handled[c["id"]][1] - c["at"] for c in mine]
            acked = [acks[c["id"]] - c["at"] for c in mine if c["id"] in acks]
            setattr(report, f"{kind}_applied", Percentiles.of(applied))
            setattr(report, f"{kind}_acked", Percentiles.of(acked))
        report.skips_that_stopped_speech = sum(
            1
            for c in controls
            if c["kind"] == "skip" and c["id"] in handled and handled[c["id"]][2]
        )
        report.clears_that_emptied_a_queue = sum(
            1
            for c in controls
            if c["kind"] == "clear" and c["id"] in handled and handled[c["id"]][3] > 0
        )
        report.errors_logged = len(errors.records)
        return report
    finally:
        if source is not None:
            await source.close()
        if source_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(source_task, 10)
        if app is not None:
            await app.close()
        await double.stop()
        websockets.WSS, Route.BASE, Route.ID_BASE = saved_urls
        logging.getLogger().removeHandler(errors)


# -- the command line -------------------------------------------------------------------------
def _table(r: FloodReport) -> str:
    def row(name: str, p: Percentiles, extra: str = "") -> str:
        return f"| {name} | {p.n} | {p.p50_ms:.1f} | {p.p99_ms:.1f} | {p.max_ms:.1f} | {extra} |"

    lines = [
        f"Flood: {r.messages} messages asked at {r.rate_asked:.0f}/s, sent at {r.rate_sent:.0f}/s; "
        f"engine {r.engine}, player {r.player}; {r.machine}",
        "",
        "| measure | value |",
        "|---|---|",
        f"| messages that reached the bot | {r.delivered} of {r.messages} |",
        f"| all handled after | {r.handled_s:.2f} s |",
        f"| speech queue, largest length | {r.queue_max} (bound {r.queue_bound}) |",
        f"| RSS before / peak / after | {r.rss_before_mib:.1f} / {r.rss_peak_mib:.1f} / "
        f"{r.rss_after_mib:.1f} MiB |",
        f"| RSS growth over the flood | {r.rss_growth_mib:+.1f} MiB |",
        "| RSS at 1/4, 2/4, 3/4, 4/4 of the flood | "
        + " / ".join(f"{v:.1f}" for v in r.rss_by_quarter_mib)
        + " MiB |",
        f"| same, once free heap pages are returned (malloc_trim): before / after | "
        f"{r.rss_before_trim_mib:.1f} / {r.rss_after_trim_mib:.1f} MiB "
        f"({r.rss_after_trim_mib - r.rss_before_trim_mib:+.1f}) |",
        f"| message after the flood | {r.final_message} |",
        f"| errors logged | {r.errors_logged} |",
        "",
        "| latency | n | p50 ms | p99 ms | max ms | note |",
        "|---|---|---|---|---|---|",
        row(
            "`!skip` sent -> applied",
            r.skip_applied,
            f"{r.skips_that_stopped_speech} stopped speech",
        ),
        row("`!skip` sent -> ack at Twitch", r.skip_acked),
        row(
            "`!clear` sent -> applied",
            r.clear_applied,
            f"{r.clears_that_emptied_a_queue} emptied a queue",
        ),
        row("`!clear` sent -> ack at Twitch", r.clear_acked),
        row("any chat line sent -> handled", r.handling),
        row("event loop lag (5 ms ticks)", r.loop_lag),
        "",
        "decisions: " + ", ".join(f"{k} {v}" for k, v in r.decisions.items()),
        *(
            ["memory growth:", *(f"  {line}" for line in r.memory_growth_sites)]
            if r.memory_growth_sites
            else []
        ),
        "speech outcomes: " + ", ".join(f"{k} {v}" for k, v in r.outcomes.items()),
    ]
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    from tests.support.audio import launch_pulse_server

    with tempfile.TemporaryDirectory(prefix="ishowtts-flood-") as tmp:
        work = Path(tmp)
        server = None
        device = None
        if args.player == "real":
            server = launch_pulse_server(work / "pulse")
            os.environ.update(server.env)  # before PortAudio starts (it lists devices once)
            device = server.device_name
        try:
            report = await run_flood(
                messages=args.messages,
                rate=args.rate,
                control_every=args.control_every,
                workdir=work,
                audio_device=device,
                player=args.player,
                timeout_s=args.timeout_s,
                trace_memory=args.trace_memory,
            )
        finally:
            if server is not None:
                server.stop()
    print(_table(report))
    if args.json:
        data = {**asdict(report), "rss_growth_mib": report.rss_growth_mib}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(data, indent=2))
    ok = (
        report.delivered == report.messages
        and report.queue_max <= report.queue_bound
        and report.final_message == "played"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--control-every", type=int, default=100)
    parser.add_argument("--player", choices=["real", "recording"], default="real")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="list where Python memory grew from the flood's middle to its end (slower)",
    )
    parser.add_argument("--serve-double", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_double:
        asyncio.run(serve_double())
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
