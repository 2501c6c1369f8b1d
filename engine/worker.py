"""The one thread boundary between asyncio and the TTS engine.

A single background thread owns the engine (and so torch, CUDA and any non-thread-safe C
library). It takes jobs from a ``queue.Queue`` in order and answers the event loop only through
``loop.call_soon_threadsafe``, so the loop never blocks on inference and the engine never
touches asyncio objects from the wrong thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from engine.base import Audio, Engine, EngineError, EngineState

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

    def __init__(self, job_id: int, text: str, voice: str, sample_rate: int) -> None:
        self.id = job_id
        self.text = text
        self.voice = voice
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
    ) -> None:
        """Create a worker for ``engine``.

        Args:
            engine: The engine to drive; only the worker thread calls it after ``start()``.
            on_state: Called on the event loop whenever the engine state changes.
            chunk_validator: Checks/cleans each chunk on the engine thread (e.g. drops NaNs);
                raising EngineError fails the job.
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
        self._running: SynthesisJob | None = None

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

    def submit(self, text: str, voice: str) -> SynthesisJob:
        """Queue ``text`` for synthesis in ``voice``; returns at once with a handle."""
        if self._thread is None or self._closed:
            raise RuntimeError("engine worker is not running")
        job = SynthesisJob(next(self._ids), text, voice, self.engine.sample_rate)
        self._queue.put(_Work(job=job))
        return job

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
                if work.job is not None:
                    work.job.cancel()
                if work.future is not None and not work.future.done():
                    work.future.set_exception(RuntimeError("engine worker closed"))
        running = self._running
        if running is not None:
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
        try:
            while True:
                work = self._queue.get()
                if work is _STOP:
                    break
                assert isinstance(work, _Work)
                if work.call is not None:
                    self._run_call(work, load_error)
                elif work.job is not None:
                    self._run_job(work.job, load_error)
        finally:
            try:
                self.engine.close()
            except Exception:
                log.exception("closing the TTS engine failed")
            self._set_state(EngineState.STOPPED, "engine stopped")
            self._post(self._stopped.set)

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
        self._running = job
        job.started_at = time.monotonic()
        # The rate is read when the job starts: an auto engine only knows it after loading.
        # Chunks reach the loop through call_soon_threadsafe, so the loop sees this write first.
        job.sample_rate = self.engine.sample_rate
        try:
            for chunk in self.engine.synthesize(job.text, job.voice, job._stop.is_set):
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
            self._running = None
        self._post(job._end, None)


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
