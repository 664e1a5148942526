"""A small in-process LRU for results that are keyed by the catalogue version (never stale)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `size` entries and, with `weigh` (of a key and its value), at most `max_weight` in
    total (e.g. bytes): the least recently used entries are dropped first, and one heavier than the
    whole budget is not kept."""

    def __init__(self, size: int, *, max_weight: int | None = None, weigh: Callable[[K, V], int] | None = None) -> None:
        self._size = size
        self._max_weight = max_weight
        self._weigh = weigh
        self._weight = 0
        self._entries: OrderedDict[K, V] = OrderedDict()

    @property
    def weight(self) -> int:
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(key, value) if self._weigh else 0
        if self._max_weight is not None and weight > self._max_weight:
            return
        self._drop(key)
        self._entries[key] = value
        self._weight += weight
        while len(self._entries) > self._size or (self._max_weight is not None and self._weight > self._max_weight):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: K) -> None:
        value = self._entries.pop(key, None)
        if value is not None and self._weigh:
            self._weight -= self._weigh(key, value)
