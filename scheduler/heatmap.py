"""Inventory density by price per carat (the heatmap), measured with few supplier count calls.

The result is a `DensityMap`: contiguous chunks with inclusive bounds covering [0, ∞) and exact
counts. Count calls are the scarce resource (rate-limited for the whole supplier account), so the scan
learns where the partition boundaries must go instead of walking a fixed dense grid (the original spent
~100-250 calls, reference section 4.2):

1. one count of everything (stones above `max_price` are covered by the open top chunk);
2. a coarse grid with geometric steps between `min_price` and `max_price` - the distribution is
   heavily skewed (natural peaks at $500-1,500/ct with a tail past $50K/ct, lab-grown mostly below
   $250/ct), so equal steps in log price spend calls where the stones are;
3. rounds of refinement: a greedy walk over the known cumulative counts looks for a chunk edge
   within the balance goal of each partition boundary the planner will want; where none exists, the
   chunk holding that boundary is cut where a monotone cubic through the known cumulative counts (in
   log-price space) predicts the boundary. Each round issues up to `concurrency` calls at once, so
   later cuts learn from earlier ones.

The scan stops when `plan_partitions` can meet the balance goal, when no boundary can be improved
(a chunk of a single price cannot be cut: with more stones at one exact price than a partition's
target, balance is impossible and the planner makes that chunk one oversized partition), or when the
hard budget `max_calls` is spent.

Cutting a chunk with known count `c` at k points costs k calls: each piece but the last is counted, the
last is `c` minus the others. On a static inventory that is exact; on a live feed stones can move
between two calls, and a remainder that comes out negative is recounted (or, with the budget spent,
recorded as 0). Estimates are a snapshot either way; the partitions' bounds cover every price
regardless of the counts.
"""

from __future__ import annotations

import asyncio
import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from itertools import pairwise

from scheduler.partitioning import max_deviation_pct, plan_partitions, target_size, worker_count

GRANULARITY = Decimal("0.01")
"""Smallest price step ($/ct); bounds are inclusive, so adjacent ranges differ by exactly this."""

CountFn = Callable[[Decimal, Decimal | None], Awaitable[int]]
"""Counts stones with price per carat in [low, high] (inclusive; high None = unbounded).

Bounds are on the $0.01 grid and a stone belongs to the cent its price per carat truncates to, so
adjacent ranges leave no gap. A feed that compares finer prices (Nivoda's $/ct is price / carats, e.g.
$746.3095/ct) must be queried up to just below the next cent (`to = high + 0.009999` where bounds
resolve to 6 decimals, as in the simulator), or stones between two ranges are counted and fetched by
neither; partition queries need the same mapping.
"""

DEFAULT_COARSE_POINTS = 8
DEFAULT_BALANCE_GOAL = Decimal("0.10")

# Prices map to ln(price + shift): geometric steps above ~$20/ct where the skewed distribution lives,
# near-linear steps below, where stones are sparse and ln(price) would waste calls near $0.
_LOG_SHIFT = 20.0
# A chunk holding more than this many partitions' worth of stones gets one cut per round (`_this_round`).
_BIG_CHUNK = 3


def _on_grid(price: Decimal) -> bool:
    return price == price.quantize(GRANULARITY)


@dataclass(frozen=True, slots=True)
class Chunk:
    """`count` stones with price per carat in [min_price, max_price] (inclusive; None = unbounded)."""

    min_price: Decimal
    max_price: Decimal | None
    count: int

    def __post_init__(self) -> None:
        bounds_ok = self.min_price >= 0 and _on_grid(self.min_price)
        if self.max_price is not None:
            bounds_ok = bounds_ok and _on_grid(self.max_price) and self.max_price >= self.min_price
        if not bounds_ok or self.count < 0:
            raise ValueError(f"invalid chunk {self!r}")

    @property
    def splittable(self) -> bool:
        return self.max_price is None or self.max_price > self.min_price


@dataclass(frozen=True, slots=True)
class DensityMap:
    """Contiguous chunks from 0 to unbounded with exact counts, plus what the scan cost."""

    chunks: tuple[Chunk, ...]
    count_calls: int = 0
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.chunks or self.chunks[0].min_price != 0 or self.chunks[-1].max_price is not None:
            raise ValueError("a density map must start at 0 and end with an unbounded chunk")
        for below, above in pairwise(self.chunks):
            if below.max_price is None or above.min_price != below.max_price + GRANULARITY:
                raise ValueError(f"chunks {below!r} and {above!r} are not adjacent")

    @property
    def total(self) -> int:
        return sum(chunk.count for chunk in self.chunks)


async def scan_density(
    count: CountFn,
    *,
    min_price: Decimal,
    max_price: Decimal,
    target_partitions: int | None = None,
    max_calls: int,
    concurrency: int,
    min_records_per_partition: int = 1,
    max_records: int = 0,
    balance_goal: Decimal = DEFAULT_BALANCE_GOAL,
    coarse_points: int = DEFAULT_COARSE_POINTS,
) -> DensityMap:
    """Measure inventory density with at most `max_calls` count calls, `concurrency` at a time.

    `target_partitions`, `min_records_per_partition` and `max_records` are the planner's
    `max_workers`, `min_records_per_worker` and `max_records`: refinement stops once `plan_partitions`
    with them keeps every partition within `balance_goal` (a fraction) of its target size. Without
    `target_partitions` only the coarse grid is scanned (a density overview); when the inventory
    needs a single worker, the first count is all there is to measure.
    """
    if not 0 <= min_price < max_price or not _on_grid(min_price) or not _on_grid(max_price):
        raise ValueError("need 0 <= min_price < max_price on the $0.01 grid")
    positive = [max_calls, concurrency, min_records_per_partition, coarse_points]
    if min([*positive, 1 if target_partitions is None else target_partitions]) < 1:
        raise ValueError(
            "max_calls, concurrency, min_records_per_partition, coarse_points, target_partitions must be >= 1"
        )
    if max_records < 0 or not 0 < balance_goal < 1:
        raise ValueError("max_records must be >= 0 and balance_goal a fraction in (0, 1)")
    started = time.perf_counter()
    counter = _Counter(count, max_calls=max_calls, concurrency=concurrency)
    chunks = [Chunk(Decimal(0), None, await counter(Decimal(0), None))]
    if target_partitions is None:
        if chunks[0].count > 0:
            chunks = await _cut(counter, chunks, {0: _coarse_grid(min_price, max_price, coarse_points, counter)})
        return DensityMap(tuple(chunks), counter.calls, time.perf_counter() - started)

    def sizing() -> tuple[int, int, int]:
        """(position where the run ends, workers, target size) for the current chunks."""
        total = sum(chunk.count for chunk in chunks)
        end = min(total, max_records) if max_records > 0 else total
        workers = worker_count(end, max_workers=target_partitions, min_records_per_worker=min_records_per_partition)
        return end, workers, target_size(end, workers)

    if sizing()[1] > 1:
        chunks = await _cut(counter, chunks, {0: _coarse_grid(min_price, max_price, coarse_points, counter)})
    while counter.remaining > 0:
        plan = plan_partitions(
            DensityMap(tuple(chunks)),
            max_workers=target_partitions,
            min_records_per_worker=min_records_per_partition,
            max_records=max_records,
        )
        planned = sum(p.estimated_records for p in plan)
        planned_target = target_size(
            planned,
            worker_count(planned, max_workers=target_partitions, min_records_per_worker=min_records_per_partition),
        )
        if max_deviation_pct((p.estimated_records for p in plan), planned_target) <= balance_goal * 100:
            break
        end, workers, target = sizing()
        wanted = _missing_boundaries(chunks, end=end, workers=workers, target=target, goal=balance_goal)
        cuts = _cut_prices(chunks, _this_round(chunks, wanted, target, min(concurrency, counter.remaining)))
        if not cuts:
            break
        chunks = await _cut(counter, chunks, cuts)
    return DensityMap(tuple(chunks), counter.calls, time.perf_counter() - started)


class _Counter:
    """Issues count calls, at most `concurrency` at a time and never more than `max_calls` in total."""

    def __init__(self, count: CountFn, *, max_calls: int, concurrency: int) -> None:
        self._count = count
        self._max_calls = max_calls
        self._semaphore = asyncio.Semaphore(concurrency)
        self.calls = 0

    @property
    def remaining(self) -> int:
        return self._max_calls - self.calls

    async def __call__(self, low: Decimal, high: Decimal | None) -> int:
        if self.calls >= self._max_calls:
            raise AssertionError("count-call budget exceeded")  # callers check `remaining` first
        self.calls += 1
        async with self._semaphore:
            result = await self._count(low, high)
        if result < 0:
            raise ValueError(f"count({low}, {high}) returned {result}")
        return result


async def _cut(counter: _Counter, chunks: Sequence[Chunk], cuts: Mapping[int, Sequence[Decimal]]) -> list[Chunk]:
    """Replace chunks[i] by pieces ending at each price of cuts[i] plus the remainder above the last.

    All counts of the round run concurrently; the remainder is derived (see module docstring).
    """
    cuts = {index: prices for index, prices in cuts.items() if prices}
    ranges = [
        (index, low, high)
        for index, prices in cuts.items()
        for low, high in zip(
            [chunks[index].min_price, *(price + GRANULARITY for price in prices[:-1])], prices, strict=True
        )
    ]
    counts = await asyncio.gather(*(counter(low, high) for _, low, high in ranges))
    pieces: dict[int, list[Chunk]] = {index: [] for index in cuts}
    for (index, low, high), found in zip(ranges, counts, strict=True):
        pieces[index].append(Chunk(low, high, found))
    remainders = {index: Chunk(prices[-1] + GRANULARITY, chunks[index].max_price, 0) for index, prices in cuts.items()}
    recount: list[int] = []
    for index, remainder in remainders.items():
        left = chunks[index].count - sum(piece.count for piece in pieces[index])
        if left >= 0:
            remainders[index] = Chunk(remainder.min_price, remainder.max_price, left)
        elif len(recount) < counter.remaining:
            recount.append(index)
    recounted = await asyncio.gather(
        *(counter(remainders[index].min_price, remainders[index].max_price) for index in recount)
    )
    for index, found in zip(recount, recounted, strict=True):
        remainders[index] = Chunk(remainders[index].min_price, remainders[index].max_price, found)
    result: list[Chunk] = []
    for index, chunk in enumerate(chunks):
        result.extend([*pieces[index], remainders[index]] if index in cuts else [chunk])
    return result


def _to_price(value: float) -> Decimal:
    """A modelled price rounded down to the price grid (never below 0)."""
    return max(Decimal(0), Decimal(repr(value)).quantize(GRANULARITY, rounding=ROUND_FLOOR))


def _coarse_grid(min_price: Decimal, max_price: Decimal, points: int, counter: _Counter) -> list[Decimal]:
    """Up to `points` upper bounds (within the budget): below min_price (if > 0), geometric steps, max_price."""
    points = min(points, counter.remaining)
    if points <= 0:
        return []
    grid = {max_price}
    if min_price > 0 and points > 1:
        grid.add(min_price - GRANULARITY)
    steps = points - len(grid) + 1
    low, high = math.log(float(min_price) + _LOG_SHIFT), math.log(float(max_price) + _LOG_SHIFT)
    for step in range(1, steps):
        grid.add(_to_price(math.exp(low + (high - low) * step / steps) - _LOG_SHIFT))
    return sorted(grid)


def _missing_boundaries(
    chunks: Sequence[Chunk], *, end: int, workers: int, target: int, goal: Decimal
) -> list[tuple[int, int]]:
    """(chunk index, cumulative position) of each boundary the greedy plan lacks an edge for.

    Walks the partitions in price order: partition k should end within `goal` of `target` after the
    previous boundary, ideally at an equal share of what remains up to `end` (the record cap or the
    total). An existing edge in that window is taken; otherwise the boundary is assumed at the ideal
    position (a cut is wanted there) unless it falls in a chunk of a single price, whose nearest edge
    is taken instead. With a cap, an edge is also wanted close above `end`, where the run stops.
    """
    edges: list[int] = []
    for chunk in chunks:
        edges.append((edges[-1] if edges else 0) + chunk.count)
    tolerance = int(target * goal)
    wanted: list[tuple[int, int]] = []
    previous = 0
    for k in range(1, workers):
        # The forward window keeps this partition within the goal; the backward one keeps the
        # remaining partitions able to reach it (ignored when drift already made that impossible).
        low, high = previous + target - tolerance, previous + target + tolerance
        if low >= end:
            break
        left = workers - k
        reachable = (
            max(low, end - left * (target + tolerance)),
            min(high, end - left * (target - tolerance)),
        )
        if reachable[0] <= reachable[1]:
            low, high = reachable
        ideal = min(max(previous + (end - previous) // (workers - k + 1), low), high)
        index = bisect_left(edges, ideal)
        candidates = [edges[i] for i in (index - 1, index) if 0 <= i < len(edges) and low <= edges[i] <= high]
        if candidates:
            previous = min(candidates, key=lambda edge: abs(edge - ideal))
        elif chunks[index].splittable:
            wanted.append((index, ideal))
            previous = ideal
        else:
            around = [edge for edge in (edges[index - 1] if index else 0, edges[index]) if edge > previous]
            previous = min(around, key=lambda edge: abs(edge - ideal))
    stop = bisect_left(edges, end)
    if end < edges[-1] and edges[stop] > end + tolerance and chunks[stop].splittable:
        wanted.append((stop, end))
    return wanted


def _this_round(
    chunks: Sequence[Chunk], wanted: Sequence[tuple[int, int]], target: int, limit: int
) -> list[tuple[int, int]]:
    """Up to `limit` wanted boundaries, in price order, at most one (the middle one) per big chunk.

    Predictions inside a chunk of more than a few targets' worth of stones are rough; one cut in
    its middle halves it and gives the curve a knot there, so the next predictions are close.
    """
    by_chunk: dict[int, list[int]] = {}
    for index, position in wanted:
        by_chunk.setdefault(index, []).append(position)
    chosen = [
        (index, position)
        for index, positions in by_chunk.items()
        for position in ([positions[len(positions) // 2]] if chunks[index].count > _BIG_CHUNK * target else positions)
    ]
    return chosen[:limit]


def _cut_prices(chunks: Sequence[Chunk], wanted: Sequence[tuple[int, int]]) -> dict[int, list[Decimal]]:
    """Prices to cut each chunk at so that the wanted cumulative positions become (nearly) edges."""
    curve = _CumulativeCurve(chunks)
    cuts: dict[int, set[Decimal]] = {}
    for index, position in wanted:
        chunk = chunks[index]
        if chunk.max_price is None:
            # Nothing is known above the last finite edge: probe geometrically further out.
            price = max(chunk.min_price * 2, chunk.min_price + 1)
        else:
            price = min(
                max(_to_price(curve.price_at(index, position)), chunk.min_price),
                chunk.max_price - GRANULARITY,
            )
        cuts.setdefault(index, set()).add(price)
    return {index: sorted(prices) for index, prices in cuts.items()}


class _CumulativeCurve:
    """Monotone cubic (Fritsch-Carlson PCHIP) through the known cumulative counts over ln(price + shift).

    Knots sit halfway between adjacent chunks, so chunk i spans knots i and i + 1. Floats only decide
    where to probe next; every bound that is kept is an exact Decimal on the price grid.
    """

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        half_step = float(GRANULARITY) / 2
        self._x = [math.log(_LOG_SHIFT - half_step)]
        self._y = [0.0]
        for chunk in chunks[:-1]:
            assert chunk.max_price is not None  # only the last chunk is unbounded
            self._x.append(math.log(float(chunk.max_price) + half_step + _LOG_SHIFT))
            self._y.append(self._y[-1] + chunk.count)
        secants = [
            (y1 - y0) / (x1 - x0) for (x0, x1), (y0, y1) in zip(pairwise(self._x), pairwise(self._y), strict=True)
        ]
        self._slopes = [secants[0] if secants else 0.0]
        for i in range(1, len(secants)):
            left, right = secants[i - 1], secants[i]
            if left <= 0 or right <= 0:
                self._slopes.append(0.0)
            else:
                h0, h1 = self._x[i] - self._x[i - 1], self._x[i + 1] - self._x[i]
                w0, w1 = 2 * h1 + h0, h1 + 2 * h0
                self._slopes.append((w0 + w1) / (w0 / left + w1 / right))
        if secants:
            self._slopes.append(secants[-1])

    def price_at(self, index: int, position: int) -> float:
        """The price inside chunk `index` (bounded) where the curve reaches `position` stones."""
        x0, x1 = self._x[index], self._x[index + 1]
        y0, y1 = self._y[index], self._y[index + 1]
        width = x1 - x0
        d0, d1 = self._slopes[index] * width, self._slopes[index + 1] * width

        def value(t: float) -> float:
            t2, t3 = t * t, t * t * t
            return (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * d0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * d1

        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            if value(middle) < position:
                low = middle
            else:
                high = middle
        return math.exp(x0 + width * (low + high) / 2) - _LOG_SHIFT
