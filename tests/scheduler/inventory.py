"""Synthetic inventories for the heatmap tests and bench: sorted prices and an exact count function.

Prices per carat follow log-normal mixtures shaped like the supplier's feeds (reference section 9):
natural stones peak at $500-1,500/ct with a long tail past $50K/ct; lab-grown stones sit mostly
below $250/ct. Prices are held as sorted integer cents, so a count is two binary searches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt

# (share of stones, median $/ct, sigma of ln price)
NATURAL = ((0.30, 700.0, 0.35), (0.35, 1300.0, 0.45), (0.25, 3500.0, 0.7), (0.10, 12000.0, 0.9))
LAB_GROWN = ((0.55, 90.0, 0.35), (0.30, 170.0, 0.3), (0.15, 400.0, 0.8))


class Inventory:
    """Stones as sorted prices (cents); `count` is a CountFn that also counts its calls."""

    def __init__(self, cents: npt.NDArray[np.int64], *, latency_s: float = 0.0) -> None:
        self.cents = np.sort(cents)
        self.latency_s = latency_s
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    @classmethod
    def from_prices(cls, prices: Sequence[Decimal]) -> Inventory:
        return cls(np.array([int(price * 100) for price in prices], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.cents)

    def exact(self, low: Decimal, high: Decimal | None) -> int:
        """Stones in [low, high] without counting a call."""
        left = int(np.searchsorted(self.cents, int(low * 100), side="left"))
        right = len(self.cents) if high is None else int(np.searchsorted(self.cents, int(high * 100), "right"))
        return max(0, right - left)

    async def count(self, low: Decimal, high: Decimal | None) -> int:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return self.exact(low, high)
        finally:
            self.in_flight -= 1


def mixture(
    components: Sequence[tuple[float, float, float]], stones: int, *, seed: int, latency_s: float = 0.0
) -> Inventory:
    """`stones` prices drawn from a log-normal mixture, rounded to cents (at least $0.01/ct)."""
    rng = np.random.default_rng(seed)
    shares = np.array([share for share, _, _ in components])
    which = rng.choice(len(components), size=stones, p=shares / shares.sum())
    medians = np.array([median for _, median, _ in components])[which]
    sigmas = np.array([sigma for _, _, sigma in components])[which]
    prices = medians * np.exp(sigmas * rng.standard_normal(stones))
    cents = np.maximum(np.round(prices * 100), 1).astype(np.int64)
    return Inventory(cents, latency_s=latency_s)
