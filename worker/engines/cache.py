"""A least-recently-used cache bounded in bytes (cachetools underneath; no torch: the web process uses it).

Values declare their size when they are put, since a tensor's or an array's size is not what
``sys.getsizeof`` says. A value larger than the whole budget is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from cachetools import LRUCache


class _Sized(LRUCache):
    """cachetools' LRU over (value, nbytes) pairs, counting the evictions it makes for room."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=lambda entry: entry[1])
        self.evictions = 0

    def popitem(self):  # called by cachetools only to make room
        self.evictions += 1
        return super().popitem()


class LRUByteCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries = _Sized(max_bytes)
        self.hits = 0
        self.misses = 0

    @property
    def total_bytes(self) -> int:
        return int(self._entries.currsize)

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)  # a hit also marks the entry as recently used
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        self.discard(key)
        if nbytes > self.max_bytes:
            return
        self._entries[key] = (value, nbytes)

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def keys(self) -> list[Hashable]:
        """The cached keys (in no particular order)."""
        return list(self._entries)

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        for key in [k for k in self._entries if predicate(k)]:
            self.discard(key)

    def clear(self) -> None:
        self._entries.clear()
