"""Prometheus metrics of the bot (``GET /metrics`` on the panel's server, issue 17).

One registry per App (no process-wide state), fed by what the bot already says in types:
the speaker's :class:`~bot.speech.speaker.SpeechEvent` (QUEUED, STARTED, FINISHED with its
:class:`~bot.speech.speaker.Outcome`) and the engine's state callback. Nothing else in the
bot counts anything for it. A FINISHED event carries the item, whose engine job has the
timings (started, first chunk, finished) and whose ``batch_size`` says how many messages
were synthesised together; the event's ``audio_s`` gives the real-time factor.

GPU memory and utilisation come from NVML (``nvidia-ml-py``) when a GPU and its driver are
there; otherwise those metrics are not exported at all (no zeros that look like an idle GPU).
NVML is asked off the event loop, at each scrape (:meth:`BotMetrics.render`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import Enum as StateMetric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.speech.speaker import Outcome, PartsJob, SpeechEvent, SpeechEventKind
from engine.base import EngineState
from engine.worker import SynthesisJob

log = logging.getLogger(__name__)

# the same buckets as ``ishowtts serve``'s (bot/serve/metrics.py), so dashboards compare them
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)
WAIT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
PREFIX = "ishowtts_bot"


@dataclass(frozen=True, slots=True)
class Latest:
    """The last message's synthesis figures, for the panel (None: not known yet).

    Attributes:
        first_chunk_s: From the engine starting on it to its first audio chunk.
        synthesis_s: From the engine starting on it to its last chunk.
        rtf: ``synthesis_s`` divided by the seconds of audio (below 1: faster than real time).
        batch_size: How many messages were synthesised together with it.
    """

    first_chunk_s: float | None = None
    synthesis_s: float | None = None
    rtf: float | None = None
    batch_size: int | None = None


def _timings(job: SynthesisJob | PartsJob | None) -> tuple[float | None, float | None]:
    """(first chunk latency, whole synthesis time) of a job; None where unknown or cut short.

    A message of several parts starts with its first part and ends with its last one. The
    whole time is only known for a job that ended on its own (not cancelled).
    """
    if job is None:
        return None, None
    jobs = job.jobs if isinstance(job, PartsJob) else [job]
    first, last = jobs[0], jobs[-1]
    if first.started_at is None or first.first_chunk_at is None:
        return None, None
    first_chunk = max(0.0, first.first_chunk_at - first.started_at)
    ended = all(j.done and not j.cancelled for j in jobs) and last.finished_at is not None
    whole = max(0.0, last.finished_at - first.started_at) if ended and last.finished_at else None
    return first_chunk, whole


class GpuMetrics:
    """GPU memory and utilisation by NVML, exported only where NVML finds a GPU.

    ``open()`` (blocking: run it in a thread) loads NVML; without the library, the driver
    or a GPU the gauges are never registered. ``sample()`` (blocking too) reads each GPU.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        prefix: str,
        load: Callable[[], Any] | None = None,
    ) -> None:
        """Prepare (no I/O).

        Args:
            registry: Where the gauges go once a GPU is found.
            prefix: Metric name prefix (``ishowtts_bot``).
            load: Returns the ``pynvml`` module (tests pass one that fails, to stand for a
                machine without a GPU); by default it is imported.
        """
        self._registry = registry
        self._prefix = prefix
        self._load = load or _import_nvml
        self._nvml: Any = None
        self._handles: list[Any] = []
        self.memory_used: Gauge | None = None
        self.memory_total: Gauge | None = None
        self.utilization: Gauge | None = None

    @property
    def present(self) -> bool:
        """Whether NVML found at least one GPU."""
        return self._nvml is not None

    def open(self) -> None:
        """Load NVML and find the GPUs; any failure means "no GPU here" (logged at debug)."""
        if self._nvml is not None:
            return
        try:
            nvml = self._load()
            nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver errors
            log.debug("no GPU metrics (NVML unavailable: %s)", exc)
            return
        try:
            count = int(nvml.nvmlDeviceGetCount())
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            log.debug("no GPU metrics (NVML lists no GPU: %s)", exc)
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            return
        if not handles:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
            return
        self._nvml, self._handles = nvml, handles
        if self.memory_used is None:
            p, r = self._prefix, self._registry
            self.memory_used = Gauge(
                f"{p}_gpu_memory_used_bytes", "GPU memory in use (NVML)", ["gpu"], registry=r
            )
            self.memory_total = Gauge(
                f"{p}_gpu_memory_total_bytes", "GPU memory in all (NVML)", ["gpu"], registry=r
            )
            self.utilization = Gauge(
                f"{p}_gpu_utilization_ratio",
                "Share of the last sample period the GPU was busy (NVML, 0 to 1)",
                ["gpu"],
                registry=r,
            )

    def sample(self) -> None:
        """Read each GPU into the gauges (a GPU that fails to answer keeps its last values)."""
        nvml = self._nvml
        if nvml is None:
            return
        assert self.memory_used is not None
        assert self.memory_total is not None
        assert self.utilization is not None
        for index, handle in enumerate(self._handles):
            label = str(index)
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            except Exception as exc:
                log.debug("NVML could not read GPU %d: %s", index, exc)
                continue
            self.memory_used.labels(label).set(float(memory.used))
            self.memory_total.labels(label).set(float(memory.total))
            self.utilization.labels(label).set(float(rates.gpu) / 100.0)

    def close(self) -> None:
        """Release NVML (its own count of users; other users in the process keep it)."""
        nvml, self._nvml, self._handles = self._nvml, None, []
        if nvml is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()


def _import_nvml() -> Any:
    import pynvml

    return pynvml


class BotMetrics:
    """The bot's metrics; ``on_speech`` and ``on_engine_state`` feed it, ``render`` shows it."""

    def __init__(
        self,
        queue_depth: Callable[[], int],
        *,
        nvml: Callable[[], Any] | None = None,
    ) -> None:
        """Create the metrics in a registry of their own (no I/O).

        Args:
            queue_depth: Reads how many messages wait in the speech queue now.
            nvml: Loads the ``pynvml`` module (see :class:`GpuMetrics`); tests replace it.
        """
        p = PREFIX
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.first_chunk = Histogram(
            f"{p}_synthesis_first_chunk_seconds",
            "From the engine starting on a message to its first audio chunk (messages heard)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.synthesis = Histogram(
            f"{p}_synthesis_seconds",
            "From the engine starting on a message to its last chunk (messages synthesised whole)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.realtime_factor = Histogram(
            f"{p}_realtime_factor",
            "Synthesis time divided by the audio's duration, messages played whole (below 1: "
            "faster than real time)",
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.chat_to_speech = Histogram(
            f"{p}_chat_to_speech_seconds",
            "From a message's arrival to its first sound on the speakers (queue wait included)",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{p}_batch_size",
            "Messages heard, by how many were synthesised together with them (1: alone)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(f"{p}_audio_seconds", "Seconds of speech played", registry=r)
        self.queued = Counter(
            f"{p}_messages_queued", "Messages accepted into the queue", registry=r
        )
        self.finished = Counter(
            f"{p}_messages",
            "Messages by how they ended: played, skipped (!skip), removed (deleted, purged, "
            "cleared), dropped (queue full, per-user limit), failed",
            ["outcome"],
            registry=r,
        )
        for outcome in Outcome:
            self.finished.labels(outcome.value)  # every series exists from the start, at 0
        self.queue_depth = Gauge(
            f"{p}_queue_depth", "Messages waiting in the speech queue now", registry=r
        )
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.engine_state = StateMetric(
            f"{p}_engine_state",
            "The voice engine's life cycle",
            states=[s.value for s in EngineState],
            registry=r,
        )
        self.engine_state.state(EngineState.STOPPED.value)
        self.gpu = GpuMetrics(r, p, nvml)
        self.latest = Latest()

    async def start(self) -> None:
        """Look for GPUs (NVML, in a thread: it loads a library and asks the driver)."""
        await asyncio.to_thread(self.gpu.open)

    async def close(self) -> None:
        """Release NVML."""
        await asyncio.to_thread(self.gpu.close)

    def on_engine_state(self, state: EngineState, detail: str) -> None:
        """The engine's state changed (on the event loop)."""
        del detail
        self.engine_state.state(state.value)

    def on_speech(self, event: SpeechEvent) -> None:
        """A speaker event (on the event loop): count it, time it."""
        if event.kind is SpeechEventKind.QUEUED:
            self.queued.inc()
            return
        item = event.item
        if event.kind is SpeechEventKind.STARTED:
            waited = time.monotonic() - item.message.received_at
            self.chat_to_speech.observe(max(0.0, waited))
            return
        if event.outcome is None:
            return
        self.finished.labels(event.outcome.value).inc()
        if event.audio_s <= 0:
            return  # never heard (dropped, removed from the queue, failed before a sound)
        self.audio_seconds.inc(event.audio_s)
        if item.batch_size > 0:
            self.batch_size.observe(item.batch_size)
        first_chunk, whole = _timings(item.job)
        if first_chunk is None:
            return
        self.first_chunk.observe(first_chunk)
        rtf = None
        if whole is not None:
            self.synthesis.observe(whole)
            if event.outcome is Outcome.PLAYED:
                rtf = whole / event.audio_s
                self.realtime_factor.observe(rtf)
        self.latest = Latest(first_chunk, whole, rtf, item.batch_size or None)

    async def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type (GPUs read in a thread first)."""
        if self.gpu.present:
            await asyncio.to_thread(self.gpu.sample)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
