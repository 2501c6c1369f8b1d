"""Progress the streamer can see while the engine gets ready: downloads, loading, warm-up.

Why: the first start downloads ~1.4 GB of weights and every start loads a model and warms it
up. Without feedback that looks like a hang, and people kill the bot just before it would
have worked. Two pieces cover it, both as ordinary log lines (which also reach log files,
where a terminal progress bar would be a mess of carriage returns):

* :class:`DownloadProgress` (in ``engine.download``, used by the F5 engine) is a ``tqdm``
  class for the Hugging Face hub client: every few seconds it logs how much of which file
  has arrived, the speed, and how long is left.
* :class:`LoadProgress` observes the engine's state reports (``Engine.load(progress)`` ->
  ``EngineWorker(on_state=...)``) on the event loop. While a step runs long it logs a
  heartbeat with the time so far and, when the previous start of the same set-up was
  recorded, an estimate of the time left; once ready it logs how long each step took, and
  records that for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.core.platform import make_private_dir, write_private_file
from engine.base import EngineState
from engine.download import DownloadProgress, format_bytes, format_duration

__all__ = ["DownloadProgress", "LoadProgress", "format_bytes", "format_duration", "load_progress"]

log = logging.getLogger(__name__)

HISTORY_FILE = "load-times.json"


def _step_name(state: EngineState, detail: str) -> str:
    """A step's identity across starts: the state and the first word of its detail.

    The engine's details name files and devices ("fetching hf://...", "loading F5-TTS on
    cuda (fp16)", "warming up F5-TTS"); their first word is stable from start to start.
    A name that comes again within one start gets ``#2``, ``#3`` ... appended by the caller.
    """
    word = detail.split(" ", 1)[0].lower() if detail else ""
    return f"{state.value}/{word}"


class LoadProgress:
    """Turns engine state reports into log lines with time so far and time left.

    Use it as the worker's state observer (``EngineWorker(engine, on_state=progress)`` or
    ``App(cfg, on_engine_state=progress)``); it runs on the event loop. Construction does no
    I/O; ``start()`` reads the timings of the last start, ``close()`` stops the heartbeat.

    Args:
        history: JSON file holding step timings of earlier starts (None: no estimates).
        setup: Identifies the set-up whose timings apply (engine, device, model ...): a
            different set-up has different timings.
        heartbeat_s: How often a long step is reported as still running.
        announce: Also log each step as it starts (where nothing else logs engine states).
        clock: Monotonic clock (seconds).
    """

    def __init__(
        self,
        history: Path | None,
        setup: str,
        *,
        heartbeat_s: float = 15.0,
        announce: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._announce = announce
        self._history_path = history
        self._setup = setup
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._previous: list[tuple[str, float]] = []
        self._steps: list[tuple[str, float]] = []
        self._step: str | None = None
        self._detail = ""
        self._state = EngineState.STOPPED
        self._began: float | None = None
        self._step_began = 0.0
        self._heartbeat: asyncio.Task[None] | None = None
        self._save: asyncio.Task[None] | None = None

    @property
    def previous(self) -> list[tuple[str, float]]:
        """Step timings of the last recorded start of this set-up."""
        return list(self._previous)

    async def start(self) -> None:
        """Read earlier timings (off the loop) and start the heartbeat."""
        if self._history_path is not None:
            self._previous = await asyncio.to_thread(self._read_history)
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="load-progress")

    async def close(self) -> None:
        """Stop the heartbeat and finish writing the timings."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._save is not None:
            with contextlib.suppress(Exception):
                await self._save
            self._save = None

    def __call__(self, state: EngineState, detail: str) -> None:
        """Record an engine state report (on the event loop)."""
        now = self._clock()
        if state in (EngineState.LOADING, EngineState.WARMING):
            if self._began is None:
                self._began = now
                self._steps = []
            self._end_step(now)
            name = _step_name(state, detail)
            repeats = sum(1 for done, _ in self._steps if done.split("#", 1)[0] == name)
            self._step = f"{name}#{repeats + 1}" if repeats else name
            self._step_began = now
            if self._announce:
                log.info("%s", detail or state.value)
        elif state is EngineState.READY and self._began is not None:
            self._end_step(now)
            total = now - self._began
            parts = ", ".join(f"{name} {format_duration(s)}" for name, s in self._summary())
            log.info("the voice engine is ready after %s (%s)", format_duration(total), parts)
            if self._history_path is not None:
                steps = list(self._steps)
                self._save = asyncio.create_task(
                    asyncio.to_thread(self._write_history, steps), name="load-progress-save"
                )
            self._began = None
        elif state in (EngineState.ERROR, EngineState.STOPPED):
            self._began = None
            self._step = None
        self._state = state
        self._detail = detail

    def _end_step(self, now: float) -> None:
        if self._step is not None:
            self._steps.append((self._step, now - self._step_began))
            self._step = None

    def _summary(self) -> list[tuple[str, float]]:
        """Time per state (loading, warming), for the ready line."""
        totals: dict[str, float] = {}
        for name, seconds in self._steps:
            state = name.split("/", 1)[0]
            totals[state] = totals.get(state, 0.0) + seconds
        return list(totals.items())

    def time_left(self, now: float | None = None) -> float | None:
        """Estimated seconds until ready, from the last start of this set-up; None if unknown.

        The current step's recorded duration minus the time already spent in it, plus the
        steps that followed it last time. Fetch steps after this one are left out: they are
        cache look-ups once the weights are downloaded (the first start's download would
        otherwise inflate every later estimate).
        """
        if self._step is None or not self._previous:
            return None
        now = self._clock() if now is None else now
        names = [name for name, _ in self._previous]
        if self._step not in names:
            return None
        index = names.index(self._step)
        current = self._previous[index][1] - (now - self._step_began)
        later = sum(
            s for name, s in self._previous[index + 1 :] if not name.startswith("loading/fetching")
        )
        return max(0.0, current) + later

    def still_line(self, now: float | None = None) -> str | None:
        """The heartbeat line for the step running now, or None when nothing is loading."""
        if self._step is None or self._began is None:
            return None
        now = self._clock() if now is None else now
        what = self._detail or self._state.value
        line = f"still {what}: {format_duration(now - self._began)} so far"
        left = self.time_left(now)
        if left is not None:
            line += (
                f", about {format_duration(left)} left"
                if left >= 1
                else ", should be ready any moment"
            )
        return line

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            line = self.still_line()
            if line is not None:
                log.info("%s", line)

    # -- history (runs on a worker thread) ---------------------------------------------------
    def _load_all(self) -> dict[str, Any]:
        assert self._history_path is not None
        try:
            data = json.loads(self._history_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _read_history(self) -> list[tuple[str, float]]:
        entry = self._load_all().get(self._setup)
        if not isinstance(entry, list):
            return []
        steps: list[tuple[str, float]] = []
        for item in entry:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], (int, float))
            ):
                steps.append((item[0], float(item[1])))
        return steps

    def _write_history(self, steps: list[tuple[str, float]]) -> None:
        assert self._history_path is not None
        data = self._load_all()
        data[self._setup] = [[name, round(seconds, 3)] for name, seconds in steps]
        try:
            # The state folder is private (0700) and so is every file in it (issue 12.7).
            make_private_dir(self._history_path.parent)
            write_private_file(self._history_path, json.dumps(data, indent=1).encode("utf-8"))
        except OSError as exc:
            log.debug("could not record load timings in %s: %s", self._history_path, exc)


def engine_setup(cfg: Config) -> str:
    """The set-up a load's timings belong to: engine, device and model settings."""
    engine = cfg.engine
    f5 = engine.f5
    model = f5.model if isinstance(f5.model, str) else json.dumps(f5.model, sort_keys=True)
    return "|".join(
        str(part)
        for part in (engine.name, engine.device, model, f5.checkpoint, f5.precision, f5.fast)
    )


def load_progress(
    cfg: Config, *, heartbeat_s: float = 15.0, announce: bool = False
) -> LoadProgress:
    """A :class:`LoadProgress` keeping its timings in the state folder (``storage.dir``)."""
    from bot.state.settings import state_dir

    return LoadProgress(
        state_dir(cfg.storage) / HISTORY_FILE,
        engine_setup(cfg),
        heartbeat_s=heartbeat_s,
        announce=announce,
    )
