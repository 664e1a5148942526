"""Balanced partitions of a density map: the pure half of run planning.

A partition is a union of whole, adjacent chunks of the density map, so its estimate is a sum of real
counts and nothing is split by guessing (the original split big chunks proportionally and produced
near-empty and inverted ranges, reference section 9). Partitions inherit the chunks' inclusive bounds:
the first starts at 0, each next one starts one price step above the previous one's end, and the last
is open-ended unless a record cap stops the run earlier, so no price is in two partitions or in none.

Choosing which chunk edges become partition boundaries is a small dynamic programme over the
non-empty chunks: it minimises the largest deviation from the target size first and the sum of squared
deviations second, using at most `workers` partitions. Balance is only as good as the chunk edges
allow; `scheduler.heatmap` places edges near the boundaries this planner will want.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from scheduler.heatmap import Chunk, DensityMap


@dataclass(frozen=True, slots=True)
class Partition:
    """Stones with price per carat in [min_price, max_price] (inclusive; None = no upper bound)."""

    partition_id: str
    position: int
    min_price: Decimal
    max_price: Decimal | None
    estimated_records: int


_Cost = tuple[int, int]  # (largest deviation, sum of squared deviations)


class _Group(NamedTuple):
    """Adjacent chunks holding exactly one non-empty chunk (empty neighbours are folded in)."""

    min_price: Decimal
    max_price: Decimal | None
    records: int


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def worker_count(total: int, *, max_workers: int, min_records_per_worker: int) -> int:
    """0 for an empty inventory, else as many workers as the records justify, capped by max_workers."""
    if total <= 0:
        return 0
    return max(1, min(_ceil_div(total, min_records_per_worker), max_workers))


def target_size(total: int, workers: int) -> int:
    """Records each of `workers` partitions should hold (rounded up); 0 without workers."""
    return _ceil_div(total, workers) if workers > 0 else 0


def max_deviation_pct(sizes: Iterable[int], target: int) -> Decimal:
    """Largest |size - target| as a percentage of target, to 0.1 % (0 when there is nothing to compare)."""
    deviations = [abs(size - target) for size in sizes]
    if not deviations or target <= 0:
        return Decimal(0)
    return (Decimal(max(deviations) * 100) / target).quantize(Decimal("0.1"))


def plan_partitions(
    density: DensityMap,
    *,
    max_workers: int,
    min_records_per_worker: int,
    max_records: int = 0,
) -> list[Partition]:
    """Cut the density map into at most `worker_count(...)` balanced partitions of whole chunks.

    `max_records > 0` caps the run: chunks are taken in price order up to and including the chunk
    in which the cumulative count reaches the cap, so the planned total may exceed the cap by less
    than that one chunk (rounding up keeps a lone chunk larger than the cap plannable), and the last
    partition then ends at that chunk's upper bound instead of being open-ended. Workers and target
    are computed from the capped total.

    Fewer partitions than workers result when there are fewer non-empty chunks or when a chunk is
    so large (e.g. many stones at one exact price) that balance is impossible; such a chunk becomes
    one oversized partition and the planner balances the rest.
    """
    if max_workers < 1 or min_records_per_worker < 1 or max_records < 0:
        raise ValueError("max_workers and min_records_per_worker must be >= 1 and max_records >= 0")
    groups = _nonempty_groups(_within_cap(density.chunks, max_records))
    total = sum(group.records for group in groups)
    workers = worker_count(total, max_workers=max_workers, min_records_per_worker=min_records_per_worker)
    if workers == 0:
        return []
    ends = balanced_cuts([group.records for group in groups], parts=workers, target=target_size(total, workers))
    partitions: list[Partition] = []
    start = 0
    for position, end in enumerate(ends):
        members = groups[start:end]
        partitions.append(
            Partition(
                partition_id=f"partition-{position}",
                position=position,
                min_price=members[0].min_price,
                max_price=members[-1].max_price,
                estimated_records=sum(group.records for group in members),
            )
        )
        start = end
    return partitions


def _within_cap(chunks: Sequence[Chunk], max_records: int) -> Sequence[Chunk]:
    if max_records <= 0:
        return chunks
    cumulative = 0
    for index, chunk in enumerate(chunks):
        cumulative += chunk.count
        if cumulative >= max_records:
            return chunks[: index + 1]
    return chunks


def _nonempty_groups(chunks: Sequence[Chunk]) -> list[_Group]:
    """Fold each empty chunk into the next non-empty one (trailing empties into the last one)."""
    groups: list[_Group] = []
    pending_min: Decimal | None = None
    for chunk in chunks:
        if pending_min is None:
            pending_min = chunk.min_price
        if chunk.count > 0:
            groups.append(_Group(pending_min, chunk.max_price, chunk.count))
            pending_min = None
    if groups and pending_min is not None:
        groups[-1] = groups[-1]._replace(max_price=chunks[-1].max_price)
    return groups


def balanced_cuts(counts: Sequence[int], *, parts: int, target: int) -> list[int]:
    """Exclusive end indices of at most `parts` consecutive groups of `counts` (all > 0), best balanced.

    Cost of a plan = (largest |sum - target|, sum of squared deviations), compared in that order.
    Only segments whose members after the first add up to less than 3 * target are considered: a
    longer one deviates by more than twice the target, and leaving those out keeps the work near
    n^2. A plan still always exists: a greedy cover by such segments needs at most
    total / (3 * target) + 1 <= parts segments, because total <= parts * target.
    """
    n = len(counts)
    if n == 0:
        return []
    prefix = [0]
    for count in counts:
        prefix.append(prefix[-1] + count)
    reach = 3 * target
    previous: list[_Cost | None] = [(0, 0)] + [None] * n
    parents: list[list[int]] = []
    best: tuple[_Cost, int] | None = None
    for k in range(1, min(parts, n) + 1):
        row: list[_Cost | None] = [None] * (n + 1)
        parent = [0] * (n + 1)
        for end in range(k, n + 1):
            for start in range(end - 1, k - 2, -1):
                if prefix[end] - prefix[start + 1] >= reach:
                    break
                base = previous[start]
                if base is None:
                    continue
                deviation = abs(prefix[end] - prefix[start] - target)
                candidate = (max(base[0], deviation), base[1] + deviation * deviation)
                current = row[end]
                if current is None or candidate < current:
                    row[end] = candidate
                    parent[end] = start
        parents.append(parent)
        final = row[n]
        if final is not None and (best is None or final <= best[0]):  # ties: more partitions
            best = (final, k)
        previous = row
    if best is None:  # excluded by the covering argument in the docstring
        raise AssertionError("no partition plan found")
    ends = [n]
    for k in range(best[1], 1, -1):
        ends.append(parents[k - 1][ends[-1]])
    return ends[::-1]
