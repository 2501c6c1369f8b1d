"""Fixtures of the Twitch tests: the double (twitchio pointed at it) and two viewers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.twitch_double import TwitchDouble, User, running_double


@pytest.fixture
async def double() -> AsyncIterator[TwitchDouble]:
    async with running_double() as d:
        yield d


@pytest.fixture
def alice(double: TwitchDouble) -> User:
    return double.add_user("alice", "Alice")


@pytest.fixture
def bob(double: TwitchDouble) -> User:
    return double.add_user("bob", "Bob")
