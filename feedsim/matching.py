"""Matching stones per (filter, order), cached so paging through a partition costs a slice, not a scan.

An entry holds the matching rows sorted by a unique int64 sort key (the order's value with the row
as tie-break, rows being in createdAt/id order). Churn does not invalidate entries: it re-evaluates
the changed rows against each entry and moves them in or out, so results stay exact while the
inventory changes. Entries are evicted least-recently-used beyond an element budget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from feedsim.filters import Filter, QueryInputError
from feedsim.inventory import Inventory

Rows = npt.NDArray[np.int64]
OrderSpec = tuple[str, str]  # (DiamondOrderType, ASC|DESC)
CREATED_AT_ASC: Final[OrderSpec] = ("createdAt", "ASC")

_ROW_BITS: Final = 23  # rows below 8M; the order value goes above them in the key
_ROW_ORDER: Final = frozenset({"createdAt", "insert", "none"})
_VALUE_COLUMNS: Final = {"price": "price_cents", "size": "ct100", "color": "color", "clarity": "clarity"}
SUPPORTED_ORDERS: Final = _ROW_ORDER | set(_VALUE_COLUMNS) | {"price_per_carat"}


def check_order(order: OrderSpec) -> None:
    if order[0] not in SUPPORTED_ORDERS:
        supported = ", ".join(sorted(SUPPORTED_ORDERS))
        raise QueryInputError(f"order type {order[0]!r} is not supported by the simulator ({supported})")


def sort_keys(inventory: Inventory, rows: Rows, order: OrderSpec) -> Rows:
    kind, direction = order
    sign = -1 if direction == "DESC" else 1
    if kind in _ROW_ORDER:
        return sign * rows
    if kind == "price_per_carat":
        price = inventory.column("price_cents")[rows].astype(np.int64)
        value = price * 1000 // inventory.column("ct100")[rows].astype(np.int64)
    else:
        value = inventory.column(_VALUE_COLUMNS[kind])[rows].astype(np.int64)
    keys: Rows = sign * (value.astype(np.int64) << _ROW_BITS) + rows
    return keys


@dataclass
class _Entry:
    rows: Rows
    keys: Rows | None  # None when the key is the row itself (createdAt ASC)

    @property
    def elements(self) -> int:
        return len(self.rows) * (1 if self.keys is None else 2)

    def sorted_keys(self) -> Rows:
        return self.rows if self.keys is None else self.keys


class MatchCache:
    def __init__(self, inventory: Inventory, *, max_elements: int = 4_000_000, max_entries: int = 256) -> None:
        self._inventory = inventory
        self._entries: OrderedDict[tuple[Filter, OrderSpec], _Entry] = OrderedDict()
        self._max_elements = max_elements
        self._max_entries = max_entries
        self._elements = 0
        self.hits = 0
        self.misses = 0

    def matching(self, flt: Filter, order: OrderSpec = CREATED_AT_ASC) -> Rows:
        """Rows matching `flt`, sorted by `order` (ties by createdAt then id)."""
        key = (flt, order)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return entry.rows
        check_order(order)
        if flt.rows is not None:
            # An `ids` lookup names its few candidates: evaluate just those, and keep the cache for
            # the partitions being paged (confirmation lookups come by the thousand, each different).
            candidates = np.array(sorted(flt.rows), dtype=np.int64)
            candidates = candidates[candidates < self._inventory.size]
            return self._sorted(candidates[flt.mask(self._inventory, candidates)], order)[0]
        self.misses += 1
        entry = _Entry(*self._sorted(np.flatnonzero(flt.mask(self._inventory)).astype(np.int64), order))
        self._entries[key] = entry
        self._elements += entry.elements
        self._evict()
        return entry.rows

    def _sorted(self, rows: Rows, order: OrderSpec) -> tuple[Rows, Rows | None]:
        if order == CREATED_AT_ASC:
            return rows, None
        keys = sort_keys(self._inventory, rows, order)
        by_key = np.argsort(keys, kind="stable")
        return rows[by_key], keys[by_key]

    def count(self, flt: Filter) -> int:
        return len(self.matching(flt))

    def rows_changed(self, changed: Rows) -> None:
        """Re-evaluate `changed` rows (repriced, held, sold, removed or added) in every entry."""
        if len(changed) == 0 or not self._entries:
            return
        changed = np.unique(changed)
        touched = np.zeros(self._inventory.size, dtype=np.bool_)
        touched[changed] = True
        self._elements = 0
        for (flt, order), entry in self._entries.items():
            untouched = ~touched[entry.rows]
            rows = entry.rows[untouched]
            keys = None if entry.keys is None else entry.keys[untouched]
            matched = changed[flt.mask(self._inventory, changed)]
            if len(matched):
                new_keys = sort_keys(self._inventory, matched, order)
                by_key = np.argsort(new_keys)
                matched, new_keys = matched[by_key], new_keys[by_key]
                at = np.searchsorted(rows if keys is None else keys, new_keys)
                rows = np.insert(rows, at, matched)
                if keys is not None:
                    keys = np.insert(keys, at, new_keys)
            entry.rows, entry.keys = rows, keys
            self._elements += entry.elements
        self._evict()

    def _evict(self) -> None:
        while self._entries and (self._elements > self._max_elements or len(self._entries) > self._max_entries):
            _, entry = self._entries.popitem(last=False)
            self._elements -= entry.elements

    def clear(self) -> None:
        self._entries.clear()
        self._elements = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "elements": self._elements,
            "hits": self.hits,
            "misses": self.misses,
        }
