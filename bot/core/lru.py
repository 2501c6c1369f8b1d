"""A bounded mapping that forgets the least recently used entry first.

Everything the bot remembers per person or per message (recent chatters, seen message ids,
last senders) must stay bounded over a stream that runs for days; this is the one helper that
does it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict with a size limit; reads and writes make an entry the most recent."""

    def __init__(self, size: int) -> None:
        """Keep at most ``size`` entries (at least one).

        Raises:
            ValueError: When ``size`` is below 1.
        """
        if size < 1:
            raise ValueError("size must be positive")
        self._size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recent), or ``default``."""
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Set ``key``; the oldest entry goes once the limit is passed."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def add(self, key: K, value: V) -> bool:
        """Remember ``key`` unless it is known; True when it was new (a seen-set)."""
        if key in self._items:
            self._items.move_to_end(key)
            return False
        self.put(key, value)
        return True

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, or None."""
        return self._items.pop(key, None)
