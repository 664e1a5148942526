"""plan_partitions: every stone of the density map lands in exactly one balanced partition."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.heatmap import GRANULARITY, Chunk, DensityMap
from scheduler.partitioning import (
    Partition,
    balanced_cuts,
    max_deviation_pct,
    plan_partitions,
    target_size,
    worker_count,
)

CENT = GRANULARITY


def density_map(counts: list[int], widths: list[int]) -> DensityMap:
    """Chunks with the given counts; chunk i spans widths[i] cents (the last one is open-ended)."""
    chunks = []
    low = Decimal(0)
    for index, count in enumerate(counts):
        if index == len(counts) - 1:
            chunks.append(Chunk(low, None, count))
        else:
            high = low + (widths[index] - 1) * CENT
            chunks.append(Chunk(low, high, count))
            low = high + CENT
    return DensityMap(tuple(chunks))


def contains(partition: Partition, price: Decimal) -> bool:
    return partition.min_price <= price and (partition.max_price is None or price <= partition.max_price)


@st.composite
def density_maps(draw: st.DrawFn) -> DensityMap:
    size = draw(st.integers(1, 40))
    # Mostly modest counts with some empty chunks and the occasional huge one (a price spike).
    count = st.one_of(st.integers(0, 3000), st.just(0), st.integers(0, 200_000))
    counts = draw(st.lists(count, min_size=size, max_size=size))
    widths = draw(st.lists(st.integers(1, 50_000), min_size=size, max_size=size))
    return density_map(counts, widths)


def covered_chunks(density: DensityMap, max_records: int = 0) -> list[Chunk]:
    """The chunks a plan must cover: all, or with a cap the prefix up to the chunk reaching it."""
    running = 0
    for index, chunk in enumerate(density.chunks):
        running += chunk.count
        if 0 < max_records <= running:
            return list(density.chunks[: index + 1])
    return list(density.chunks)


def assert_well_formed(density: DensityMap, partitions: list[Partition], *, max_records: int = 0) -> None:
    covered = covered_chunks(density, max_records)
    total = sum(chunk.count for chunk in covered)
    if total == 0:
        assert partitions == []
        return
    assert [p.partition_id for p in partitions] == [f"partition-{i}" for i in range(len(partitions))]
    assert [p.position for p in partitions] == list(range(len(partitions)))
    assert partitions[0].min_price == 0
    assert partitions[-1].max_price == covered[-1].max_price
    for below, above in pairwise(partitions):
        assert below.max_price is not None
        assert above.min_price == below.max_price + CENT
    for partition in partitions:
        assert partition.max_price is None or partition.min_price <= partition.max_price
        assert partition.estimated_records > 0
    assert sum(p.estimated_records for p in partitions) == total
    # Unions of whole chunks: each covered chunk lies inside exactly one partition.
    for chunk in covered:
        holders = [p for p in partitions if contains(p, chunk.min_price)]
        assert len(holders) == 1
        assert chunk.max_price is None or contains(holders[0], chunk.max_price)


@given(
    density=density_maps(),
    max_workers=st.integers(1, 40),
    min_records=st.integers(1, 5000),
)
@settings(max_examples=300, deadline=None)
def test_every_record_lands_in_exactly_one_partition(density: DensityMap, max_workers: int, min_records: int) -> None:
    partitions = plan_partitions(density, max_workers=max_workers, min_records_per_worker=min_records)
    assert_well_formed(density, partitions)
    assert len(partitions) <= worker_count(density.total, max_workers=max_workers, min_records_per_worker=min_records)


@given(
    density=density_maps(),
    max_workers=st.integers(1, 40),
    min_records=st.integers(1, 5000),
    max_records=st.integers(1, 300_000),
)
@settings(max_examples=200, deadline=None)
def test_record_cap_takes_whole_chunks_up_to_the_one_reaching_it(
    density: DensityMap, max_workers: int, min_records: int, max_records: int
) -> None:
    partitions = plan_partitions(
        density, max_workers=max_workers, min_records_per_worker=min_records, max_records=max_records
    )
    assert_well_formed(density, partitions, max_records=max_records)
    planned = sum(p.estimated_records for p in partitions)
    assert planned >= min(max_records, density.total)
    # Rounding up: only the chunk that reaches the cap may push the plan past it.
    covered = covered_chunks(density, max_records)
    assert planned - covered[-1].count < max_records


@given(
    prices=st.lists(st.integers(0, 2_000_000), min_size=1, max_size=400),
    cuts=st.lists(st.integers(0, 2_000_000), max_size=30, unique=True),
    max_workers=st.integers(1, 30),
    min_records=st.integers(1, 50),
)
@settings(max_examples=200, deadline=None)
def test_each_stone_price_falls_in_exactly_one_partition(
    prices: list[int], cuts: list[int], max_workers: int, min_records: int
) -> None:
    """A density map built from an explicit stone list (cents) by arbitrary cut points."""
    uppers = sorted(cuts)
    bounds = list(zip([0, *(u + 1 for u in uppers)], [*uppers, None], strict=True))
    chunks = tuple(
        Chunk(
            low * CENT,
            None if high is None else high * CENT,
            sum(1 for p in prices if p >= low and (high is None or p <= high)),
        )
        for low, high in bounds
    )
    density = DensityMap(chunks)
    assert density.total == len(prices)
    partitions = plan_partitions(density, max_workers=max_workers, min_records_per_worker=min_records)
    for price in prices:
        holders = [p for p in partitions if contains(p, price * CENT)]
        assert len(holders) == 1, f"stone at {price * CENT} is in {len(holders)} partitions"
    for partition in partitions:
        assert partition.estimated_records == sum(1 for price in prices if contains(partition, price * CENT))


@given(records=st.integers(1, 250), max_workers=st.integers(1, 60))
@settings(max_examples=100, deadline=None)
def test_fine_grained_maps_balance_to_within_one_record(records: int, max_workers: int) -> None:
    density = density_map([1] * records + [0], [1] * (records + 1))
    partitions = plan_partitions(density, max_workers=max_workers, min_records_per_worker=1)
    workers = worker_count(records, max_workers=max_workers, min_records_per_worker=1)
    target = target_size(records, workers)
    assert len(partitions) <= workers
    assert all(abs(p.estimated_records - target) <= 1 for p in partitions)


@pytest.mark.parametrize(
    ("total", "max_workers", "min_records", "workers"),
    [
        (0, 30, 1000, 0),
        (1, 30, 1000, 1),
        (999, 30, 1000, 1),
        (1001, 30, 1000, 2),
        (500_000, 30, 1000, 30),
        (500_000, 10, 1000, 10),
        (25_000, 30, 1000, 25),
    ],
)
def test_worker_count(total: int, max_workers: int, min_records: int, workers: int) -> None:
    assert worker_count(total, max_workers=max_workers, min_records_per_worker=min_records) == workers


def test_empty_inventory_has_no_partitions() -> None:
    density = density_map([0, 0, 0], [100, 100, 1])
    assert plan_partitions(density, max_workers=10, min_records_per_worker=1) == []


def test_fewer_stones_than_min_records_make_one_open_partition() -> None:
    density = density_map([0, 7, 0, 5, 0], [10, 10, 10, 10, 1])
    assert plan_partitions(density, max_workers=10, min_records_per_worker=1000) == [
        Partition("partition-0", 0, Decimal(0), None, 12)
    ]


def test_empty_chunks_are_merged_not_planned() -> None:
    density = density_map([0, 100, 0, 0, 100, 0], [10, 10, 10, 10, 10, 1])
    partitions = plan_partitions(density, max_workers=2, min_records_per_worker=1)
    assert [(p.min_price, p.max_price, p.estimated_records) for p in partitions] == [
        (Decimal("0.00"), Decimal("0.19"), 100),
        (Decimal("0.20"), None, 100),
    ]


def test_a_spike_larger_than_the_target_becomes_one_partition_and_the_rest_stays_balanced() -> None:
    # 10 000 stones at one exact price among 20 chunks of 1 000: the target is 3 000, balance is
    # impossible for the spike, the other partitions still hit the target.
    counts = [1000] * 10 + [10_000] + [1000] * 10
    widths = [100] * 10 + [1] + [100] * 10
    density = density_map(counts, widths)
    partitions = plan_partitions(density, max_workers=10, min_records_per_worker=1)
    assert_well_formed(density, partitions)
    spike = density.chunks[10]
    holder = next(p for p in partitions if contains(p, spike.min_price))
    assert holder.estimated_records == 10_000
    assert (holder.min_price, holder.max_price) == (spike.min_price, spike.max_price)
    others = [p.estimated_records for p in partitions if p is not holder]
    # Each 10 000 side as 3 000 + 3 000 + 4 000: seven partitions, the rest within 1/3 of the target.
    assert len(partitions) == 7
    assert max_deviation_pct(others, 3000) == Decimal("33.3")


def test_record_cap_stops_at_the_chunk_that_reaches_it() -> None:
    density = density_map([400, 400, 400, 400], [100, 100, 100, 1])
    partitions = plan_partitions(density, max_workers=10, min_records_per_worker=100, max_records=700)
    assert partitions[-1].max_price == Decimal("1.99")
    assert sum(p.estimated_records for p in partitions) == 800


def test_balanced_cuts_prefers_the_smallest_worst_deviation() -> None:
    # Target 10: [6, 4 | 10 | 5, 5] is perfect; a greedy "close at >= target" would take [6, 4, 10] etc.
    assert balanced_cuts([6, 4, 10, 5, 5], parts=3, target=10) == [2, 3, 5]


def test_max_deviation_pct() -> None:
    assert max_deviation_pct([100, 115, 90], 100) == Decimal("15.0")
    assert max_deviation_pct([], 100) == Decimal(0)


@pytest.mark.parametrize(
    "chunks",
    [
        (),
        (Chunk(Decimal(1), None, 5),),
        (Chunk(Decimal(0), Decimal(10), 5),),
        (Chunk(Decimal(0), Decimal(10), 5), Chunk(Decimal("10.02"), None, 1)),  # gap
        (Chunk(Decimal(0), Decimal(10), 5), Chunk(Decimal(10), None, 1)),  # overlap
    ],
)
def test_density_map_rejects_gaps_overlaps_and_missing_ends(chunks: tuple[Chunk, ...]) -> None:
    with pytest.raises(ValueError):
        DensityMap(chunks)


@pytest.mark.parametrize(
    ("low", "high", "count"),
    [(Decimal(5), Decimal(4), 1), (Decimal("0.001"), None, 1), (Decimal(0), None, -1), (Decimal(-1), None, 0)],
)
def test_chunk_rejects_inverted_off_grid_or_negative(low: Decimal, high: Decimal | None, count: int) -> None:
    with pytest.raises(ValueError):
        Chunk(low, high, count)
