"""The one thread boundary between asyncio and the TTS engine.

A single background thread owns the engine (and so torch, CUDA and any non-thread-safe C
library). It takes jobs from a ``queue.Queue`` in order and answers the event loop only through
``loop.call_soon_threadsafe``, so the loop never blocks on inference and the engine never
touches asyncio objects from the wrong thread.

Batches: ``submit_batch`` queues several jobs as one piece of work that the engine runs
together (``Engine.synthesize_batch``); each job is still its own ``SynthesisJob`` with its
own chunk stream and its own ``cancel()``, which drops that job only. With ``max_batch`` above
1, jobs submitted one by one that are waiting in the queue together are also drained into one
batch (dynamic batching), up to the engine's own ``max_batch``; once a batch holds two jobs
(a burst is under way) the thread waits up to ``batch_wait_s`` for more to arrive. A lone job
never waits and runs through ``Engine.synthesize`` exactly as before; the default,
``max_batch=1``, keeps one job at a time. Between jobs, while the queue is empty, the thread
lets the engine do deferred preparation (``Engine.idle_work``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from engine.base import (
    Audio,
    BatchChunk,
    Engine,
    EngineError,
    EngineState,
    SynthesisRequest,
    check_speed,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class SynthesisFailed(RuntimeError):
    """A job could not be spoken; the message says why. The next job runs normally."""


class _End:
    """Marks the end of a job's chunk stream (an error, if any, rides along)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class SynthesisJob:
    """Event-loop side handle of one synthesis request.

    Iterate it with ``async for`` to receive audio chunks as the engine produces them;
    ``cancel()`` works while the job is queued or running (the engine stops at its next chunk).
    """

    def __init__(
        self, job_id: int, text: str, voice: str, sample_rate: int, speed: float = 1.0
    ) -> None:
        self.id = job_id
        self.text = text
        self.voice = voice
        self.speed = speed
        self.sample_rate = sample_rate
        self.started_at: float | None = None
        self.first_chunk_at: float | None = None
        self.finished_at: float | None = None
        self.submitted_at = time.monotonic()
        self._stop = threading.Event()
        self._chunks: asyncio.Queue[Audio | _End] = asyncio.Queue()
        self._done = False

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        """Whether the stream has ended (finished, failed or cancelled)."""
        return self._done

    def cancel(self) -> None:
        """Stop this job: skipped if still queued, stopped at the next chunk if running."""
        if not self._stop.is_set():
            self._stop.set()
            # Control beats data: audio already delivered but not yet consumed is dropped too.
            while not self._chunks.empty():
                self._chunks.get_nowait()
            self._done = False  # the drained queue may have held the end marker: add it back
            self._end(None)

    async def __aiter__(self) -> AsyncIterator[Audio]:
        """Yield chunks until the job ends.

        Raises:
            SynthesisFailed: When the engine failed on this job.
        """
        while True:
            item = await self._chunks.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise SynthesisFailed(str(item.error)) from item.error
                return
            yield item

    async def collect(self) -> Audio:
        """Wait for the whole job and return its audio as one array."""
        parts = [chunk async for chunk in self]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    # -- called on the event loop through call_soon_threadsafe --------------------------
    def _deliver(self, chunk: Audio) -> None:
        if not self._done:
            if self.first_chunk_at is None:
                self.first_chunk_at = time.monotonic()
            self._chunks.put_nowait(chunk)

    def _end(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self.finished_at = time.monotonic()
            self._chunks.put_nowait(_End(error))


@dataclass
class _Work:
    job: SynthesisJob | None = None
    batch: list[SynthesisJob] | None = None
    call: Callable[[Engine], Any] | None = None
    future: asyncio.Future[Any] | None = None


_STOP = object()


class EngineWorker:
    """Runs an engine on its own thread and serves synthesis jobs from the event loop.

    Construction does no I/O; ``start()`` starts the thread, which loads the engine before
    serving jobs (jobs submitted meanwhile wait, so chat stays usable while the model warms).
    """

    def __init__(
        self,
        engine: Engine,
        on_state: Callable[[EngineState, str], None] | None = None,
        chunk_validator: Callable[[Audio], Audio] | None = None,
        max_batch: int = 1,
        batch_wait_s: float = 0.0,
    ) -> None:
        """Create a worker for ``engine``.

        Args:
            engine: The engine to drive; only the worker thread calls it after ``start()``.
            on_state: Called on the event loop whenever the engine state changes.
            chunk_validator: Checks/cleans each chunk on the engine thread (e.g. drops NaNs);
                raising EngineError fails the job.
            max_batch: Jobs waiting together in the queue are run as one batch, up to this
                many (and up to the engine's own ``max_batch``); 1 runs one job at a time.
            batch_wait_s: How long a batch of at least two jobs waits for more (a few ms
                lets requests that arrive at the same moment meet); a lone job never waits.
        """
        self.engine = engine
        self._on_state = on_state
        self._validate = chunk_validator or _default_validator
        self._queue: queue.Queue[_Work | object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self.state = EngineState.STOPPED
        self.state_detail = ""
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closed = False
        self._running: list[SynthesisJob] = []
        self._max_batch = max(1, int(max_batch))
        self._batch_wait_s = max(0.0, float(batch_wait_s))

    @property
    def sample_rate(self) -> int:
        """The engine's output rate."""
        return self.engine.sample_rate

    async def start(self) -> None:
        """Start the engine thread (loading happens there; see ``wait_ready``)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="tts-engine", daemon=True)
        self._thread.start()

    async def wait_ready(self) -> EngineState:
        """Wait until the engine finished loading (READY) or failed (ERROR)."""
        await self._ready.wait()
        return self.state

    def submit(self, text: str, voice: str, *, speed: float = 1.0) -> SynthesisJob:
        """Queue ``text`` for synthesis in ``voice``; returns at once with a handle.

        Args:
            text: Already cleaned, non-empty text.
            voice: A voice name (unknown names speak in the default voice).
            speed: Speaking speed factor (1.0: the engine's configured pace; 2.0: about
                half as long); see ``engine.base``.

        Raises:
            RuntimeError: The worker is not running.
            ValueError: ``speed`` is not a positive finite number.
        """
        if self._thread is None or self._closed:
            raise RuntimeError("engine worker is not running")
        job = SynthesisJob(
            next(self._ids), text, voice, self.engine.sample_rate, check_speed(speed)
        )
        self._queue.put(_Work(job=job))
        return job

    def submit_batch(
        self, requests: Sequence[tuple[str, str] | tuple[str, str, float]]
    ) -> list[SynthesisJob]:
        """Queue several (text, voice[, speed]) requests to be synthesised together.

        Returns at once. Each handle streams its own chunks, at its own speed (1.0 when
        left out), and can be cancelled alone (the others go on). The engine decides how
        many run in one pass (``Engine.max_batch``); engines that cannot batch run them
        one after another.

        Raises:
            RuntimeError: The worker is not running.
            ValueError: A speed is not a positive finite number (nothing is queued).
        """
        if self._thread is None or self._closed:
            raise RuntimeError("engine worker is not running")
        speeds = [check_speed(request[2]) if len(request) > 2 else 1.0 for request in requests]
        jobs = [
            SynthesisJob(next(self._ids), request[0], request[1], self.engine.sample_rate, speed)
            for request, speed in zip(requests, speeds, strict=True)
        ]
        if jobs:
            self._queue.put(_Work(batch=jobs))
        return jobs

    async def call(self, fn: Callable[[Engine], T]) -> T:
        """Run ``fn(engine)`` on the engine thread (after queued jobs) and return its result."""
        if self._thread is None or self._closed or self._loop is None:
            raise RuntimeError("engine worker is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Work(call=fn, future=future))
        return await future

    async def close(self, timeout_s: float = 30.0) -> None:
        """Cancel every job (queued and running), stop the thread and close the engine.

        Args:
            timeout_s: How long to wait for the engine to finish its current step. A thread
                stuck inside a native call cannot be killed; after this it is abandoned (it is
                a daemon thread, so it does not keep the process alive) with a log line.
        """
        if self._thread is None or self._closed:
            return
        self._closed = True
        while True:  # jobs still waiting would otherwise be synthesised before the stop
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(work, _Work):
                for job in _jobs_of(work):
                    job.cancel()
                if work.future is not None and not work.future.done():
                    work.future.set_exception(RuntimeError("engine worker closed"))
        for running in list(self._running):
            running.cancel()
        self._queue.put(_STOP)
        # The thread announces its end through call_soon_threadsafe, so the loop never joins.
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout_s)
        except TimeoutError:
            log.warning("the TTS engine did not stop within %.0f s; leaving it behind", timeout_s)
        self._thread = None

    # -- engine thread ------------------------------------------------------------------
    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
            loop.call_soon_threadsafe(fn, *args)

    def _set_state(self, state: EngineState, detail: str) -> None:
        def apply() -> None:
            self.state = state
            self.state_detail = detail
            if state in (EngineState.READY, EngineState.ERROR):
                self._ready.set()
            if self._on_state is not None:
                self._on_state(state, detail)

        self._post(apply)

    def _run(self) -> None:
        load_error: BaseException | None = None
        try:
            self._set_state(EngineState.LOADING, f"loading the {self.engine.name} engine")
            self.engine.load(self._set_state)
            self._set_state(EngineState.READY, f"{self.engine.name} engine ready")
        except Exception as exc:  # any failure is reported, never raised into the thread
            load_error = exc
            if isinstance(exc, EngineError):
                log.error("TTS engine failed to load: %s", exc)
            else:
                log.exception("TTS engine failed to load")
            self._set_state(EngineState.ERROR, str(exc))
        idle = load_error is None
        try:
            while True:
                work = self._next_work(idle)
                if work is None:  # the queue stayed empty: a piece of deferred preparation
                    idle = self._idle_work()
                    continue
                if work is _STOP:
                    break
                assert isinstance(work, _Work)
                idle = load_error is None  # after any work, look for deferred work again
                if work.call is not None:
                    self._run_call(work, load_error)
                    continue
                jobs = _jobs_of(work)
                most = min(self._max_batch, max(1, self.engine.max_batch))
                if work.job is not None and most > 1 and load_error is None:
                    jobs += self._drain_jobs(most - 1)
                if work.batch is not None or len(jobs) > 1:
                    self._run_batch(jobs, load_error)
                elif jobs:
                    self._run_job(jobs[0], load_error)
        finally:
            try:
                self.engine.close()
            except Exception:
                log.exception("closing the TTS engine failed")
            self._set_state(EngineState.STOPPED, "engine stopped")
            self._post(self._stopped.set)

    def _next_work(self, idle: bool) -> _Work | object | None:
        """The next queued item; None when the queue is empty and idle work is wanted."""
        if not idle:
            return self._queue.get()
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _idle_work(self) -> bool:
        try:
            return bool(self.engine.idle_work())
        except Exception:
            log.exception("the engine's idle-time preparation failed; it is not retried")
            return False

    def _drain_jobs(self, most: int) -> list[SynthesisJob]:
        """Single jobs waiting right behind the current one (stops at anything else).

        Once one is found (a burst), waits up to ``batch_wait_s`` in all for more; a call
        or a stop at the head of the queue keeps its place and ends the batch.
        """
        jobs: list[SynthesisJob] = []
        deadline = time.monotonic() + self._batch_wait_s
        # the queue's own lock and its "item added" condition: peek, take, or wait for more
        with self._queue.not_empty:
            while len(jobs) < most:
                pending = self._queue.queue
                if pending:
                    head = pending[0]
                    if not isinstance(head, _Work) or head.job is None:
                        break
                    pending.popleft()
                    jobs.append(head.job)
                    continue
                remaining = deadline - time.monotonic()
                if not jobs or remaining <= 0:
                    break
                self._queue.not_empty.wait(remaining)
        return jobs

    def _run_call(self, work: _Work, load_error: BaseException | None) -> None:
        future = work.future
        assert future is not None
        assert work.call is not None

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        if load_error is not None:
            self._post(settle, None, EngineError(f"engine unavailable: {load_error}"))
            return
        try:
            result = work.call(self.engine)
        except Exception as exc:
            self._post(settle, None, exc)
        else:
            self._post(settle, result, None)

    def _run_job(self, job: SynthesisJob, load_error: BaseException | None) -> None:
        if job.cancelled:
            return
        if load_error is not None:
            self._post(job._end, EngineError(f"engine unavailable: {load_error}"))
            return
        self._running = [job]
        job.started_at = time.monotonic()
        # The rate is read when the job starts: an auto engine only knows it after loading.
        # Chunks reach the loop through call_soon_threadsafe, so the loop sees this write first.
        job.sample_rate = self.engine.sample_rate
        try:
            if job.speed == 1.0:  # engines written before speed existed still serve these
                chunks = self.engine.synthesize(job.text, job.voice, job._stop.is_set)
            else:
                chunks = self.engine.synthesize(
                    job.text, job.voice, job._stop.is_set, speed=job.speed
                )
            for chunk in chunks:
                if job.cancelled:
                    break
                clean = self._validate(chunk)
                if clean.size:
                    self._post(job._deliver, clean)
        except Exception as exc:
            if isinstance(exc, EngineError):
                log.warning("synthesis of job %d failed: %s", job.id, exc)
            else:
                log.exception("synthesis of job %d failed", job.id)
            self._post(job._end, exc)
            return
        finally:
            self._running = []
        self._post(job._end, None)

    def _run_batch(self, jobs: list[SynthesisJob], load_error: BaseException | None) -> None:
        """Run jobs through ``Engine.synthesize_batch``; each ends on its own."""
        jobs = [job for job in jobs if not job.cancelled]
        if not jobs:
            return
        if load_error is not None:
            for job in jobs:
                self._post(job._end, EngineError(f"engine unavailable: {load_error}"))
            return
        self._running = list(jobs)
        failed: set[int] = set()
        ended: set[int] = set()
        started = time.monotonic()
        for job in jobs:
            job.started_at = started
            job.sample_rate = self.engine.sample_rate

        def stop_check(index: int) -> Callable[[], bool]:
            job = jobs[index]
            return lambda: job.cancelled or index in failed

        requests = [
            SynthesisRequest(job.text, job.voice, stop_check(i), job.speed)
            for i, job in enumerate(jobs)
        ]
        try:
            for event in self.engine.synthesize_batch(requests):
                self._on_batch_chunk(jobs, event, failed, ended)
        except Exception as exc:
            log.exception("batch synthesis of jobs %s failed", [job.id for job in jobs])
            for index, job in enumerate(jobs):
                if index not in ended:
                    self._post(job._end, exc)
            return
        finally:
            self._running = []
        for index, job in enumerate(jobs):  # an engine that forgot a request: end it anyway
            if index not in ended:
                self._post(job._end, None)

    def _on_batch_chunk(
        self, jobs: list[SynthesisJob], event: BatchChunk, failed: set[int], ended: set[int]
    ) -> None:
        index = event.index
        if index in ended or not 0 <= index < len(jobs):
            return
        job = jobs[index]
        if event.error is not None:
            log.warning("synthesis of job %d failed: %s", job.id, event.error)
            ended.add(index)
            self._post(job._end, event.error)
            return
        if event.audio is not None and not job.cancelled:
            try:
                clean = self._validate(event.audio)
            except EngineError as exc:
                log.warning("synthesis of job %d failed: %s", job.id, exc)
                failed.add(index)
                ended.add(index)
                self._post(job._end, exc)
                return
            if clean.size:
                self._post(job._deliver, clean)
        if event.last:
            ended.add(index)
            self._post(job._end, None)


def _jobs_of(work: _Work) -> list[SynthesisJob]:
    if work.batch is not None:
        return list(work.batch)
    return [work.job] if work.job is not None else []


def _default_validator(chunk: Audio) -> Audio:
    """Reject audio that would hurt ears or speakers: wrong shape, NaN/inf, or clipping garbage."""
    arr = np.asarray(chunk, dtype=np.float32)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise EngineError(
            "the engine produced invalid audio (NaN or infinity); try engine.f5.precision: fp32"
        )
    return np.clip(arr, -1.0, 1.0)
