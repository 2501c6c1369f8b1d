"""The engine's voice list as chat commands and the control panel see it.

Cached, refreshed on demand, and never waited on for long.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from bot.core.tasks import TaskSet

log = logging.getLogger(__name__)


class VoiceListUnavailable(RuntimeError):
    """The engine could not say which voices it has (still loading, or failed)."""


class VoiceCatalog:
    """The engine's usable voice names, cached, refreshed on demand.

    The engine is the authority (it knows which voices actually load); asking it goes through
    the engine thread, which may be busy, so the answer is cached and a slow answer is
    reported instead of hanging a chat command.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Sequence[str]]],
        *,
        fallback: Callable[[], Awaitable[Sequence[str]]] | None = None,
        max_age_s: float = 300.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap ``fetch`` (returns the usable voice names) with a cache.

        Args:
            fetch: Asks the engine for its usable voice names.
            fallback: A cheaper answer while the engine is busy (e.g. still loading): the
                voice folders on disk. Used, never cached, when ``fetch`` is slow.
            max_age_s: Age after which the list is fetched again.
            timeout_s: How long a command waits for the engine's answer.
            clock: Monotonic clock.
        """
        self._fetch = fetch
        self._fallback = fallback
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._names: list[str] | None = None
        self._fetched_at = 0.0
        self._tasks = TaskSet("voice list")
        self._pending: asyncio.Task[list[str] | Exception] | None = None

    @property
    def cached(self) -> list[str] | None:
        """The last list fetched, or None before the first answer."""
        return list(self._names) if self._names is not None else None

    def invalidate(self) -> None:
        """Forget the list (voices were added or removed)."""
        self._names = None

    async def close(self) -> None:
        """Stop a fetch still waiting for the engine (the bot is shutting down)."""
        self._pending = None
        await self._tasks.close()

    async def _load(self) -> list[str] | Exception:
        """Fetch and cache; a failure is returned (the waiting command reports it), not raised."""
        try:
            names = sorted({str(n) for n in await self._fetch()}, key=str.casefold)
        except Exception as exc:
            return exc
        self._names = names
        self._fetched_at = self._clock()
        return names

    async def names(self, *, refresh: bool = False) -> list[str]:
        """The usable voice names, sorted.

        Raises:
            VoiceListUnavailable: The engine did not answer in time or failed.
        """
        fresh = self._names is not None and self._clock() - self._fetched_at < self._max_age_s
        if fresh and not refresh and self._names is not None:
            return list(self._names)
        if self._pending is None or self._pending.done():
            self._pending = self._tasks.spawn(self._load(), name="voice-list")
        try:
            # shield: a timed-out command leaves the fetch running to fill the cache.
            answer = await asyncio.wait_for(asyncio.shield(self._pending), self._timeout_s)
        except TimeoutError:
            if self._names is not None:
                return list(self._names)
            if self._fallback is not None:
                try:
                    return sorted({str(n) for n in await self._fallback()}, key=str.casefold)
                except Exception as exc:
                    log.warning("voice folder scan failed: %s", exc)
            raise VoiceListUnavailable(
                "the voice engine is still starting; try again soon"
            ) from None
        if isinstance(answer, Exception):
            if self._names is not None:
                return list(self._names)
            raise VoiceListUnavailable(f"the voice list is unavailable ({answer})") from answer
        return list(answer)

    async def resolve(self, name: str) -> tuple[str | None, str | None]:
        """Match ``name`` case-insensitively.

        Returns:
            (the voice's real name, None) when found, else (None, the closest name or None).
            An unknown name refreshes the list once, so a voice added while running is found.
        """
        wanted = name.casefold()
        for refresh in (False, True):
            names = await self.names(refresh=refresh)
            for candidate in names:
                if candidate.casefold() == wanted:
                    return candidate, None
        lowered = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(wanted, list(lowered), n=1, cutoff=0.5)
        return None, (lowered[close[0]] if close else None)


def voice_pool(names: Sequence[str], pool: Sequence[str]) -> list[str]:
    """The voices a new viewer may get: ``pool`` (real names, any case), or every voice.

    Pool entries the engine does not have are left out, so a voice folder removed later
    never makes viewers silent.
    """
    if not pool:
        return list(names)
    known = {n.casefold(): n for n in names}
    return [known[p.casefold()] for p in pool if p.casefold() in known]


def stable_voice(candidates: Sequence[str], key: str) -> str | None:
    """The voice derived from ``key`` (a person's platform and id): the same on every run.

    A hash of the key, not Python's ``hash`` (which changes with every process), over the
    sorted candidates; None when there are none.
    """
    if not candidates:
        return None
    ordered = sorted(candidates, key=str.casefold)
    digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


def random_voice(candidates: Sequence[str], rng: random.Random) -> str | None:
    """A voice drawn from ``candidates``; None when there are none."""
    return rng.choice(list(candidates)) if candidates else None
