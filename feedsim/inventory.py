"""The simulator's inventory: compact numpy columns, generated deterministically from a seed.

A stone is a row. Rows are created in `createdAt` order (ties broken by row, which is also the
order of the ids, see `ids.py`), so "createdAt ASC, id ASC" is simply row order; stones added
while running are appended with createdAt = now. Only what filtering, ordering and churn need is
stored (about 40 bytes a stone); payloads are rebuilt from the seed on demand (`payload.py`).

Timestamps are integer milliseconds. The inventory is generated relative to an anchor time (by
default the start of the process): createdAt spans the three years before it, and updatedAt is
recent for a realistic share of stones (about 15% in the last day, the rest spread over weeks), so
an incremental window of a few hours selects a few percent of the feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from feedsim import vocab

LABGROWN_SHARE: Final = 0.6  # Nivoda lists about twice as many lab-grown stones as natural ones
DAY_MS: Final = 86_400_000
HISTORY_DAYS: Final = 3 * 365
RECENT_SHARE: Final = 0.15  # stones whose last update falls in the day before the anchor
MEAN_UPDATE_AGE_DAYS: Final = 45.0
MAX_PRICE_CENTS: Final = 1_000_000_000  # $10M caps a stone's price, which keeps int64 sort keys safe

Int64Array = npt.NDArray[np.int64]
IntArray = npt.NDArray[np.integer]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Columns:
    """Attributes of `n` stones, one array each, in row order."""

    created_ms: Int64Array
    updated_ms: Int64Array
    price_cents: Int64Array
    ct100: npt.NDArray[np.int32]  # carats x 100 (the stone's true weight, whatever the payload says)
    shape: npt.NDArray[np.uint8]
    color: npt.NDArray[np.uint8]
    clarity: npt.NDArray[np.uint8]
    cut: npt.NDArray[np.uint8]
    availability: npt.NDArray[np.uint8]
    labgrown: BoolArray  # the stone's true nature (the payload's certificate flag is unreliable)
    has_image: BoolArray
    has_v360: BoolArray
    alive: BoolArray
    hold_seq: npt.NDArray[np.uint32]  # 0 = no hold; otherwise feeds the HoldId

    def __len__(self) -> int:
        return len(self.created_ms)


_FIELDS: Final = tuple(Columns.__dataclass_fields__)


def _choice(rng: np.random.Generator, n: int, weights: tuple[float, ...]) -> npt.NDArray[np.uint8]:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.uint8)


def _per_carat_dollars(
    rng: np.random.Generator,
    labgrown: BoolArray,
    carats: npt.NDArray[np.float64],
    color: npt.NDArray[np.uint8],
    clarity: npt.NDArray[np.uint8],
) -> npt.NDArray[np.float64]:
    """Heavily right-skewed $/ct: natural peaks at $500-1,500, lab-grown mostly under $250."""
    n = len(labgrown)
    colour_factor = np.where(color == vocab.FANCY, 2.5, 1.5 - 0.09 * np.minimum(color, 9))
    clarity_factor = 1.5 - 0.1 * clarity
    natural = np.exp(rng.normal(np.log(1100.0), 0.6, n)) * np.clip(carats, 0.2, 8.0) ** 0.5
    natural *= colour_factor * clarity_factor
    lab = np.exp(rng.normal(np.log(95.0), 0.6, n)) * np.clip(carats, 0.2, 8.0) ** 0.15
    lab *= np.sqrt(colour_factor * clarity_factor)
    result: npt.NDArray[np.float64] = np.where(labgrown, lab, natural)
    return result


def generate_columns(rng: np.random.Generator, n: int) -> Columns:
    """Attributes of `n` new stones; timestamps are left at 0 for the caller to set."""
    labgrown = rng.random(n) < LABGROWN_SHARE
    shape = _choice(rng, n, vocab.SHAPE_WEIGHTS)
    carats = np.where(labgrown, np.exp(rng.normal(np.log(1.2), 0.55, n)), np.exp(rng.normal(np.log(0.6), 0.6, n)))
    ct100 = np.clip(np.rint(carats * 100), 15, 2500).astype(np.int32)
    fancy = rng.random(n) < np.where(labgrown, 0.03, 0.04)
    color = np.where(
        labgrown,
        _choice(rng, n, vocab.LABGROWN_COLOUR_WEIGHTS),
        _choice(rng, n, vocab.NATURAL_COLOUR_WEIGHTS),
    ).astype(np.uint8)
    color[fancy] = vocab.FANCY
    clarity = np.where(
        labgrown,
        _choice(rng, n, vocab.LABGROWN_CLARITY_WEIGHTS),
        _choice(rng, n, vocab.NATURAL_CLARITY_WEIGHTS),
    ).astype(np.uint8)
    cut = np.where(
        shape == 0,
        _choice(rng, n, vocab.ROUND_CUT_WEIGHTS),
        _choice(rng, n, vocab.FANCY_SHAPE_CUT_WEIGHTS),
    ).astype(np.uint8)
    per_carat = _per_carat_dollars(rng, labgrown, ct100 / 100.0, color, clarity)
    price_cents = np.clip(np.rint(per_carat * ct100), 100, MAX_PRICE_CENTS).astype(np.int64)
    availability = _choice(rng, n, vocab.AVAILABILITY_WEIGHTS)
    return Columns(
        created_ms=np.zeros(n, dtype=np.int64),
        updated_ms=np.zeros(n, dtype=np.int64),
        price_cents=price_cents,
        ct100=ct100,
        shape=shape,
        color=color,
        clarity=clarity,
        cut=cut,
        availability=availability,
        labgrown=labgrown,
        has_image=rng.random(n) < 0.98,
        has_v360=rng.random(n) < 0.96,
        alive=np.ones(n, dtype=np.bool_),
        hold_seq=np.zeros(n, dtype=np.uint32),
    )


def _timestamps(rng: np.random.Generator, n: int, anchor_ms: int) -> tuple[Int64Array, Int64Array]:
    """createdAt ascending over the history; updatedAt between createdAt and the anchor."""
    age = np.sort(rng.random(n) ** 1.3)[::-1] * (HISTORY_DAYS * DAY_MS)  # more stones listed recently
    created = anchor_ms - age.astype(np.int64) - 1
    recent = rng.random(n) < RECENT_SHARE
    since_update = np.where(
        recent, rng.random(n) * DAY_MS, rng.exponential(MEAN_UPDATE_AGE_DAYS * DAY_MS, n) + DAY_MS
    ).astype(np.int64)
    updated = np.maximum(created, anchor_ms - since_update)
    return created, updated


class Inventory:
    """Growable columns plus the operations churn needs. Not thread-safe: one event loop owns it."""

    def __init__(self, seed: int, columns: Columns, anchor_ms: int) -> None:
        self.seed = seed
        self.anchor_ms = anchor_ms
        self.size = len(columns)
        self._cols = columns
        self._next_hold = int(columns.hold_seq.max(initial=0)) + 1
        # Churn never stamps a time earlier than this, so row order stays createdAt order.
        self.last_stamp_ms = int(max(columns.updated_ms.max(initial=anchor_ms), anchor_ms))

    @classmethod
    def generate(cls, seed: int, stones: int, anchor_ms: int) -> Inventory:
        rng = np.random.default_rng(seed)
        columns = generate_columns(rng, stones)
        columns.created_ms, columns.updated_ms = _timestamps(rng, stones, anchor_ms)
        inventory = cls(seed, columns, anchor_ms)
        on_hold = np.flatnonzero(columns.availability == vocab.ON_HOLD)
        columns.hold_seq[on_hold] = np.arange(1, len(on_hold) + 1, dtype=np.uint32)
        inventory._next_hold = len(on_hold) + 1
        return inventory

    def column(self, name: str) -> npt.NDArray[Any]:
        """The live part of a column (a view, no copy)."""
        array: npt.NDArray[Any] = getattr(self._cols, name)
        return array[: self.size]

    @property
    def live_count(self) -> int:
        return int(self.column("alive").sum())

    def stamp(self, now_ms: int) -> int:
        """A monotonic change time: never earlier than any timestamp already handed out."""
        self.last_stamp_ms = max(self.last_stamp_ms, now_ms)
        return self.last_stamp_ms

    def _grow(self, extra: int) -> None:
        capacity = len(self._cols)
        if self.size + extra <= capacity:
            return
        new_capacity = max(self.size + extra, capacity * 3 // 2, 1024)
        for name in _FIELDS:
            old = getattr(self._cols, name)
            grown = np.zeros(new_capacity, dtype=old.dtype)
            grown[: self.size] = old[: self.size]
            setattr(self._cols, name, grown)

    def append(self, new: Columns, stamp_ms: int) -> IntArray:
        """Add stones listed at `stamp_ms`; return their rows."""
        count = len(new)
        self._grow(count)
        rows = np.arange(self.size, self.size + count, dtype=np.int64)
        new.created_ms[:] = stamp_ms
        new.updated_ms[:] = stamp_ms
        for name in _FIELDS:
            getattr(self._cols, name)[rows] = getattr(new, name)
        self.size += count
        return rows

    def reprice(self, row: int, price_cents: int, stamp_ms: int) -> None:
        self._cols.price_cents[row] = min(max(price_cents, 100), MAX_PRICE_CENTS)
        self._cols.updated_ms[row] = stamp_ms

    def set_availability(self, row: int, availability: int, stamp_ms: int) -> None:
        self._cols.availability[row] = availability
        if availability == vocab.ON_HOLD:
            self._cols.hold_seq[row] = self._next_hold
            self._next_hold += 1
        else:
            self._cols.hold_seq[row] = 0
        self._cols.updated_ms[row] = stamp_ms

    def remove(self, row: int) -> None:
        self._cols.alive[row] = False
