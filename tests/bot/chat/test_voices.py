"""The voice list cache (bot.chat.voices): slow or failing engines are reported, not waited on."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat.voices import VoiceCatalog, VoiceListUnavailable


async def test_voice_list_unavailable_is_reported_not_raised() -> None:
    async def never() -> list[str]:
        raise RuntimeError("engine worker is not running")

    catalog = VoiceCatalog(never)
    with pytest.raises(VoiceListUnavailable, match="unavailable"):
        await catalog.names()
    await catalog.close()

    async def fallback() -> list[str]:
        return ["b", "a"]

    engine_answers = asyncio.Event()  # never set: the engine is busy loading

    async def slow() -> list[str]:
        await engine_answers.wait()
        return []

    catalog = VoiceCatalog(slow, fallback=fallback, timeout_s=0.05)
    assert await catalog.names() == ["a", "b"]
    assert catalog.cached is None  # a folder scan is never cached
    await catalog.close()


async def test_a_failure_after_a_good_answer_keeps_the_last_list() -> None:
    answers: list[list[str] | Exception] = [["Narrator", "alice"], RuntimeError("engine gone")]

    async def fetch() -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    catalog = VoiceCatalog(fetch)
    assert await catalog.names() == ["alice", "Narrator"]
    assert await catalog.names(refresh=True) == ["alice", "Narrator"]
    assert answers == []
    await catalog.close()


async def test_resolve_matches_any_case_refreshes_once_and_suggests() -> None:
    names = ["alice", "Narrator"]
    fetched = 0

    async def fetch() -> list[str]:
        nonlocal fetched
        fetched += 1
        return list(names)

    catalog = VoiceCatalog(fetch)
    assert await catalog.resolve("NARRATOR") == ("Narrator", None)
    names.append("newcomer")  # added while running: an unknown name refreshes the list
    assert await catalog.resolve("newcomer") == ("newcomer", None)
    assert await catalog.resolve("narator") == (None, "Narrator")
    assert await catalog.resolve("zzzzzz") == (None, None)
    assert fetched == 4  # first answer, then one refresh per name not in the cached list
    await catalog.close()


async def test_close_stops_a_fetch_still_waiting_for_the_engine() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> list[str]:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return []

    catalog = VoiceCatalog(stuck, timeout_s=0.01)
    with pytest.raises(VoiceListUnavailable, match="still starting"):
        await catalog.names()
    assert started.is_set()
    await catalog.close()
    assert cancelled.is_set()
