"""Inventory churn: stones added, repriced, put on hold, sold or removed while the simulator runs.

Deterministic given the seed and the sequence of `apply(n)` calls (only the timestamps follow the
clock). Every change stamps updatedAt with the current (monotonic) time and additions get
createdAt = now, so they sort last in createdAt order; removed stones disappear entirely.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

import numpy as np

from feedsim import ids, vocab
from feedsim.inventory import Inventory, generate_columns
from feedsim.matching import MatchCache

KINDS: Final = ("added", "repriced", "on_hold", "sold", "removed")
_WEIGHTS: Final = np.array([0.2, 0.45, 0.15, 0.1, 0.1])
_PICK_TRIES: Final = 64


@dataclass(frozen=True)
class ChurnEvent:
    kind: str
    row: int


class ChurnEngine:
    def __init__(self, inventory: Inventory, cache: MatchCache, seed: int) -> None:
        self._inventory = inventory
        self._cache = cache
        self._rng = np.random.default_rng([seed, 0xC4_0A])
        self.counts: Counter[str] = Counter()

    def _pick(self, *, available_only: bool) -> int | None:
        """A random live stone (an available one if asked); None if none was found quickly."""
        alive = self._inventory.column("alive")
        availability = self._inventory.column("availability")
        for _ in range(_PICK_TRIES):
            if self._inventory.size == 0:
                return None
            row = int(self._rng.integers(self._inventory.size))
            if alive[row] and (not available_only or availability[row] == vocab.AVAILABLE):
                return row
        return None

    def apply(self, n: int, now_ms: int) -> list[ChurnEvent]:
        """Apply `n` random churn events now; return what happened (skipped events are left out)."""
        if n <= 0:
            return []
        inventory = self._inventory
        stamp = inventory.stamp(now_ms)
        kinds = self._rng.choice(len(KINDS), size=n, p=_WEIGHTS)
        events: list[ChurnEvent] = []
        additions = int((kinds == 0).sum())
        if additions:
            rows = inventory.append(generate_columns(self._rng, additions), stamp)
            events.extend(ChurnEvent("added", int(row)) for row in rows)
        for kind in kinds[kinds != 0].tolist():
            name = KINDS[kind]
            row = self._pick(available_only=name in ("on_hold", "sold"))
            if row is None:
                continue
            if name == "repriced":
                price = int(inventory.column("price_cents")[row])
                change = round(price * float(self._rng.normal(0.0, 0.05))) or 1
                inventory.reprice(row, price + change, stamp)
            elif name == "on_hold":
                inventory.set_availability(row, vocab.ON_HOLD, stamp)
            elif name == "sold":
                inventory.set_availability(row, vocab.SOLD, stamp)
            else:
                inventory.remove(row)
            events.append(ChurnEvent(name, row))
        self.counts.update(event.kind for event in events)
        self._cache.rows_changed(np.fromiter((event.row for event in events), dtype=np.int64))
        return events

    def describe(self, event: ChurnEvent) -> dict[str, str]:
        seed = self._inventory.seed
        return {
            "kind": event.kind,
            "supplier_stone_id": ids.diamond_id(seed, event.row),
            "offer_id": ids.offer_id(seed, event.row),
        }
