"""Prometheus metrics of ``ishowtts serve`` (``GET /metrics``, issue 17's first part).

One registry per server (no process-wide state): latency of the first audio and of the whole
answer as histograms, the engine's real-time factor, requests by outcome, the requests
admitted now, and the engine state. Scraped with the serve token, like every other endpoint
that tells something about the stream (Prometheus: ``authorization: {credentials: TOKEN}``).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import Enum as StateMetric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine.base import EngineState

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)
OUTCOMES = ("served", "cancelled", "failed", "refused")


class ServeMetrics:
    """The server's metrics; ``render()`` is the ``/metrics`` body."""

    def __init__(self, active: Callable[[], int]) -> None:
        """Create the metrics in a registry of their own.

        Args:
            active: Reads the number of requests admitted now (running or waiting).
        """
        self.registry = CollectorRegistry(auto_describe=True)
        self.first_audio = Histogram(
            "ishowtts_serve_first_audio_seconds",
            "From the request's arrival to its first audio bytes sent",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.whole = Histogram(
            "ishowtts_serve_request_seconds",
            "From the request's arrival to the end of its answer (whole messages)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.engine_first = Histogram(
            "ishowtts_serve_engine_first_chunk_seconds",
            "From submitting to the engine to its first chunk (queue wait included)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.realtime_factor = Histogram(
            "ishowtts_serve_realtime_factor",
            "Synthesis time divided by the audio's duration (below 1: faster than real time)",
            buckets=_RTF_BUCKETS,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "ishowtts_serve_audio_seconds",
            "Seconds of audio sent",
            registry=self.registry,
        )
        self.requests = Counter(
            "ishowtts_serve_requests",
            "Speech requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.requests.labels(outcome)  # every series exists from the start, at 0
        self.active = Gauge(
            "ishowtts_serve_active_requests",
            "Requests admitted now (running or waiting for the engine)",
            registry=self.registry,
        )
        self.active.set_function(lambda: float(active()))
        self.state = StateMetric(
            "ishowtts_serve_engine_state",
            "The voice engine's life cycle",
            states=[s.value for s in EngineState],
            registry=self.registry,
        )
        self.state.state(EngineState.STOPPED.value)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
