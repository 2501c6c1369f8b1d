"""A set of background tasks that is kept referenced and closed together.

asyncio keeps only weak references to tasks, so a task created and forgotten can be garbage
collected mid-flight, and one that fails does so silently. Every component that starts work in
the background (a reply sent without waiting, a history flush, a feed to a browser) holds a
:class:`TaskSet`: the task stays referenced until it ends, an exception is logged once, and
``close()`` cancels and awaits whatever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """Background tasks of one component.

    Construction does no I/O and needs no running loop; ``spawn`` does.
    """

    def __init__(self, name: str) -> None:
        """Name the owner, for the log line of a task that fails."""
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` in the background; the task stays referenced until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "%s: background task %s failed: %s", self._name, task.get_name(), exc, exc_info=exc
            )

    async def wait(self) -> None:
        """Wait until every task started so far (and any they start meanwhile) has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
