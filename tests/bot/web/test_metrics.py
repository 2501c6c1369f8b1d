"""The bot's Prometheus metrics: ``GET /metrics`` on the panel's server (issue 17).

The real App on eSpeak NG (tests/support/web_harness.py), real messages through the ingest
API and the panel's controls, a real HTTP client, and prometheus_client's own text parser:
the numbers scraped must be what happened. GPU metrics are checked with NVML absent (no
library, no driver) and with an NVML double standing for a machine with two GPUs.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App
from bot.speech.speaker import Outcome, PartsJob, SpeechEvent, SpeechEventKind
from bot.web.metrics import BotMetrics
from engine.base import EngineState
from tests.support.audio import PulseServer
from tests.support.web_harness import EventLog, espeak_bot

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _auth(app: App) -> dict[str, str]:
    assert app.web is not None
    assert app.web.token is not None
    return {"Authorization": f"Bearer {app.web.token}"}


def _url(app: App, path: str) -> str:
    assert app.web is not None
    return app.web.base_url + path


def _parse(text: str) -> Samples:
    """Every sample of a scrape by (name, sorted labels), through prometheus_client's parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _one(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def _scrape(app: App) -> Samples:
    async with (
        aiohttp.ClientSession(headers=_auth(app)) as http,
        http.get(_url(app, "/metrics")) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return _parse(await response.text())


def _heard_timings(events: list[SpeechEvent]) -> tuple[list[float], list[float], list[float]]:
    """(first chunk, whole synthesis, real-time factor) of the heard messages, from their jobs."""
    first: list[float] = []
    whole: list[float] = []
    rtf: list[float] = []
    for event in events:
        if event.kind is not SpeechEventKind.FINISHED or event.audio_s <= 0:
            continue
        job = event.item.job
        assert job is not None
        assert not isinstance(job, PartsJob)
        assert job.started_at is not None
        assert job.first_chunk_at is not None
        first.append(job.first_chunk_at - job.started_at)
        if job.done and not job.cancelled:
            assert job.finished_at is not None
            whole.append(job.finished_at - job.started_at)
            if event.outcome is Outcome.PLAYED:
                rtf.append(whole[-1] / event.audio_s)
    return first, whole, rtf


async def test_a_scrape_counts_and_times_what_the_bot_did(
    tmp_path: Path, pulse_server: PulseServer
) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app:
        assert await asyncio.wait_for(app.worker.wait_ready(), 60) is EngineState.READY
        log = EventLog(app)
        before = await _scrape(app)
        assert _one(before, "ishowtts_bot_engine_state", ishowtts_bot_engine_state="ready") == 1
        assert _one(before, "ishowtts_bot_messages_total", outcome="played") == 0

        def finished(outcome: Outcome) -> int:
            return sum(1 for _, e in log.events if e.outcome is outcome)

        async with aiohttp.ClientSession(headers=_auth(app)) as http:

            async def ingest(user: str, text: str) -> dict[str, Any]:
                async with http.post(
                    _url(app, "/api/ingest"), json={"user": user, "text": text}
                ) as response:
                    body: dict[str, Any] = await response.json()
                    return body

            # three lines played whole
            for n, text in enumerate(("first line", "the second line", "and a third")):
                assert (await ingest(f"viewer {n}", text))["status"] == "queued"
            await log.wait_for(lambda _e: finished(Outcome.PLAYED) == 3)
            # one skipped once it is heard
            long = "this one goes on and on " * 12
            assert (await ingest("talker", long))["status"] == "queued"
            await log.wait_for(
                lambda e: (
                    e.kind is SpeechEventKind.STARTED and e.item.message.user.login == "talker"
                )
            )
            async with http.post(_url(app, "/api/skip")) as response:
                assert response.status == 200
            await log.wait_for(lambda _e: finished(Outcome.SKIPPED) == 1)
            # paused: four from one person, the fourth over the per-user limit; then cleared
            async with http.post(_url(app, "/api/pause")) as response:
                assert response.status == 200
            statuses = [(await ingest("same person", f"line {n}"))["status"] for n in range(4)]
            assert statuses == ["queued", "queued", "queued", "dropped"]
            async with http.post(_url(app, "/api/clear")) as response:
                assert response.status == 200
            async with http.post(_url(app, "/api/resume")) as response:
                assert response.status == 200

        samples = await _scrape(app)
        events = [e for _, e in log.events]
        counts = {o: _one(samples, "ishowtts_bot_messages_total", outcome=o.value) for o in Outcome}
        assert counts == {
            Outcome.PLAYED: 3,
            Outcome.SKIPPED: 1,
            Outcome.REMOVED: 3,
            Outcome.DROPPED: 1,
            Outcome.FAILED: 0,
        }
        assert _one(samples, "ishowtts_bot_messages_queued_total") == 7
        assert _one(samples, "ishowtts_bot_queue_depth") == 0
        # four were heard (3 played, 1 skipped): each reached the speakers once
        assert _one(samples, "ishowtts_bot_chat_to_speech_seconds_count") == 4
        heard_s = sum(e.audio_s for e in events if e.kind is SpeechEventKind.FINISHED)
        assert heard_s > 1.0
        assert math.isclose(_one(samples, "ishowtts_bot_audio_seconds_total"), heard_s)
        # eSpeak NG does not batch: all four alone
        assert _one(samples, "ishowtts_bot_batch_size_count") == 4
        assert _one(samples, "ishowtts_bot_batch_size_bucket", le="1.0") == 4
        # the histograms hold exactly the heard messages' own job timings
        first, whole, rtf = _heard_timings(events)
        assert len(first) == 4
        assert len(whole) == 3
        assert len(rtf) == 3
        for name, values in (
            ("ishowtts_bot_synthesis_first_chunk_seconds", first),
            ("ishowtts_bot_synthesis_seconds", whole),
            ("ishowtts_bot_realtime_factor", rtf),
        ):
            assert _one(samples, f"{name}_count") == len(values)
            assert math.isclose(_one(samples, f"{name}_sum"), sum(values), rel_tol=1e-9)
        assert 0 < max(rtf) < 20  # eSpeak NG is faster than real time even here
        states = {
            s.value: _one(samples, "ishowtts_bot_engine_state", ishowtts_bot_engine_state=s.value)
            for s in EngineState
        }
        assert states == {s.value: (1.0 if s is EngineState.READY else 0.0) for s in EngineState}
        # the panel shows the last heard message's figures (the skipped one: no whole time)
        latest = app.metrics.latest
        assert latest.first_chunk_s == pytest.approx(first[-1])
        assert latest.synthesis_s is None
        assert latest.rtf is None
        async with (
            aiohttp.ClientSession(headers=_auth(app)) as http,
            http.get(_url(app, "/api/state")) as response,
        ):
            panel = (await response.json())["synthesis"]
        assert panel == {
            "first_chunk_s": pytest.approx(first[-1]),
            "synthesis_s": None,
            "rtf": None,
            "batch_size": 1,
        }


async def test_metrics_need_the_panel_token(tmp_path: Path, pulse_server: PulseServer) -> None:
    async with espeak_bot(tmp_path, pulse_server) as app:
        async with aiohttp.ClientSession() as http:
            async with http.get(_url(app, "/metrics")) as response:
                assert response.status == 401
                assert "ishowtts_bot" not in await response.text()
            wrong = {"Authorization": "Bearer not-the-token"}
            async with http.get(_url(app, "/metrics"), headers=wrong) as response:
                assert response.status == 403
        assert _one(await _scrape(app), "ishowtts_bot_queue_depth") == 0


def _gpu_families(samples: Samples) -> set[str]:
    return {name for name, _ in samples if name.startswith("ishowtts_bot_gpu_")}


class _NvmlMissing(Exception):
    """Stands for pynvml's NVMLError_LibraryNotFound (no driver library)."""


def _no_library() -> Any:
    raise ImportError("No module named 'pynvml'")


def _no_driver() -> Any:
    def init() -> None:
        raise _NvmlMissing("NVML Shared Library Not Found")

    return SimpleNamespace(nvmlInit=init)


@pytest.mark.parametrize("load", [_no_library, _no_driver], ids=["no-pynvml", "no-driver"])
async def test_without_a_gpu_no_gpu_metrics_are_exported(load: Any) -> None:
    metrics = BotMetrics(lambda: 2, nvml=load)
    await metrics.start()
    try:
        assert not metrics.gpu.present
        body, _ = await metrics.render()
        samples = _parse(body.decode())
        assert _gpu_families(samples) == set()
        assert _one(samples, "ishowtts_bot_queue_depth") == 2  # the rest is there
    finally:
        await metrics.close()


class _TwoGpus:
    """An NVML double: two GPUs with fixed memory and utilisation, counting its users."""

    def __init__(self) -> None:
        self.users = 0

    def nvmlInit(self) -> None:
        self.users += 1

    def nvmlShutdown(self) -> None:
        self.users -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=80 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=[37, 90][handle], memory=5)


async def test_with_gpus_their_memory_and_utilisation_are_exported() -> None:
    nvml = _TwoGpus()
    metrics = BotMetrics(lambda: 0, nvml=lambda: nvml)
    await metrics.start()
    assert metrics.gpu.present
    assert nvml.users == 1
    samples = _parse((await metrics.render())[0].decode())
    assert _one(samples, "ishowtts_bot_gpu_memory_used_bytes", gpu="1") == 2 * 2**30
    assert _one(samples, "ishowtts_bot_gpu_memory_total_bytes", gpu="0") == 80 * 2**30
    assert _one(samples, "ishowtts_bot_gpu_utilization_ratio", gpu="0") == pytest.approx(0.37)
    assert _one(samples, "ishowtts_bot_gpu_utilization_ratio", gpu="1") == pytest.approx(0.9)
    await metrics.close()
    assert nvml.users == 0


async def test_the_real_nvml_exports_gpus_only_where_there_are_some() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        count = 0
    metrics = BotMetrics(lambda: 0)
    await metrics.start()
    try:
        samples = _parse((await metrics.render())[0].decode())
        used = {k for k in samples if k[0] == "ishowtts_bot_gpu_memory_used_bytes"}
        assert len(used) == count
        assert metrics.gpu.present is (count > 0)
    finally:
        await metrics.close()
