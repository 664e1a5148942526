"""scan_density against in-memory inventories: exact contiguous chunks, the call budget, balance."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.heatmap import GRANULARITY, DensityMap, scan_density
from scheduler.partitioning import max_deviation_pct, plan_partitions, target_size, worker_count
from tests.scheduler.inventory import LAB_GROWN, NATURAL, Inventory, mixture

MIN_PRICE, MAX_PRICE = Decimal(0), Decimal(100_000)
BUDGET = 60


@cache
def shared_inventory(kind: str, seed: int) -> Inventory:
    return mixture(NATURAL if kind == "natural" else LAB_GROWN, 500_000, seed=seed)


def fresh(kind: str, seed: int) -> Inventory:
    """A call-counting view of a cached 500K-stone inventory."""
    return Inventory(shared_inventory(kind, seed).cents)


async def scan(inventory: Inventory, *, workers: int | None = 30, **options: object) -> DensityMap:
    arguments: dict[str, object] = {
        "min_price": MIN_PRICE,
        "max_price": MAX_PRICE,
        "target_partitions": workers,
        "max_calls": BUDGET,
        "concurrency": 6,
        "min_records_per_partition": 1000,
    }
    arguments.update(options)
    return await scan_density(inventory.count, **arguments)  # type: ignore[arg-type]


def assert_exact_and_contiguous(density: DensityMap, inventory: Inventory) -> None:
    assert density.chunks[0].min_price == 0
    assert density.chunks[-1].max_price is None
    for below, above in pairwise(density.chunks):
        assert below.max_price is not None
        assert above.min_price == below.max_price + GRANULARITY
    for chunk in density.chunks:
        assert chunk.count == inventory.exact(chunk.min_price, chunk.max_price)
    assert density.total == len(inventory)


def balance(density: DensityMap, max_workers: int) -> tuple[int, Decimal]:
    partitions = plan_partitions(density, max_workers=max_workers, min_records_per_worker=1000)
    workers = worker_count(density.total, max_workers=max_workers, min_records_per_worker=1000)
    target = target_size(density.total, workers)
    return len(partitions), max_deviation_pct((p.estimated_records for p in partitions), target)


@pytest.mark.parametrize("kind", ["natural", "lab-grown"])
@pytest.mark.parametrize("max_workers", [30, 10])
@pytest.mark.parametrize("seed", [1, 2])
async def test_realistic_inventory_is_balanced_within_15_percent_on_budget(
    kind: str, max_workers: int, seed: int
) -> None:
    inventory = fresh(kind, seed)
    density = await scan(inventory, workers=max_workers)
    assert_exact_and_contiguous(density, inventory)
    assert density.count_calls == inventory.calls
    assert inventory.calls <= BUDGET
    partitions, deviation = balance(density, max_workers)
    assert partitions == max_workers
    assert deviation <= 15


async def test_calls_are_concurrent_but_never_more_than_the_limit() -> None:
    inventory = Inventory(shared_inventory("natural", 1).cents, latency_s=0.001)
    await scan(inventory, concurrency=4)
    assert inventory.max_in_flight == 4


@pytest.mark.parametrize("budget", [1, 2, 5, 9, 20])
async def test_a_small_budget_is_a_hard_limit_and_still_yields_an_exact_map(budget: int) -> None:
    inventory = fresh("natural", 1)
    density = await scan(inventory, max_calls=budget)
    assert inventory.calls <= budget
    assert_exact_and_contiguous(density, inventory)
    assert plan_partitions(density, max_workers=30, min_records_per_worker=1000)


async def test_stones_outside_the_scanned_price_range_are_still_covered() -> None:
    inventory = fresh("natural", 1)
    density = await scan(inventory, min_price=Decimal(1000), max_price=Decimal(5000))
    assert_exact_and_contiguous(density, inventory)
    edges = {chunk.max_price for chunk in density.chunks}
    assert {Decimal("999.99"), Decimal(5000)} <= edges
    assert density.chunks[-1].count > 0  # the open top chunk holds the stones above $5,000/ct


async def test_without_a_partition_target_only_the_coarse_grid_is_scanned() -> None:
    inventory = fresh("lab-grown", 1)
    density = await scan(inventory, workers=None, coarse_points=10)
    assert_exact_and_contiguous(density, inventory)
    assert inventory.calls == 11
    assert len(density.chunks) == 11


async def test_empty_inventory_costs_one_call_and_plans_nothing() -> None:
    inventory = Inventory(np.array([], dtype=np.int64))
    density = await scan(inventory)
    assert inventory.calls == 1
    assert_exact_and_contiguous(density, inventory)
    assert plan_partitions(density, max_workers=30, min_records_per_worker=1000) == []


@pytest.mark.parametrize(
    "prices", [["0.01"], ["123.45"] * 3, ["5.00", "999.99", "250000.00"]], ids=["one", "same", "few"]
)
async def test_fewer_stones_than_min_records_need_one_call_and_one_partition(prices: list[str]) -> None:
    inventory = Inventory.from_prices([Decimal(p) for p in prices])
    density = await scan(inventory)
    assert inventory.calls == 1
    assert_exact_and_contiguous(density, inventory)
    partitions = plan_partitions(density, max_workers=30, min_records_per_worker=1000)
    assert [(p.min_price, p.max_price, p.estimated_records) for p in partitions] == [(Decimal(0), None, len(prices))]


async def test_all_stones_at_one_price_end_in_one_single_price_chunk() -> None:
    inventory = Inventory(np.full(5000, 12345, dtype=np.int64))  # 5 000 stones at $123.45/ct
    density = await scan(inventory)
    assert inventory.calls <= BUDGET
    assert_exact_and_contiguous(density, inventory)
    [full] = [chunk for chunk in density.chunks if chunk.count]
    assert (full.min_price, full.max_price, full.count) == (Decimal("123.45"), Decimal("123.45"), 5000)
    partitions = plan_partitions(density, max_workers=30, min_records_per_worker=1000)
    assert [p.estimated_records for p in partitions] == [5000]  # balance is impossible: one partition


async def test_a_spike_bigger_than_a_partition_is_isolated_and_the_rest_stays_valid() -> None:
    spike = np.full(100_000, 100_000, dtype=np.int64)  # 100 000 stones at exactly $1,000.00/ct
    inventory = Inventory(np.concatenate([shared_inventory("natural", 1).cents[:400_000], spike]))
    density = await scan(inventory)
    assert inventory.calls <= BUDGET
    assert_exact_and_contiguous(density, inventory)
    assert any(
        chunk.min_price == chunk.max_price == Decimal(1000) and chunk.count >= 100_000 for chunk in density.chunks
    )
    partitions = plan_partitions(density, max_workers=30, min_records_per_worker=1000)
    holder = next(p for p in partitions if p.min_price <= 1000 and (p.max_price is None or p.max_price >= 1000))
    assert holder.estimated_records >= 100_000
    assert len(partitions) <= 30


async def test_record_cap_is_balanced_too() -> None:
    inventory = fresh("natural", 1)
    density = await scan(inventory, max_records=20_000)
    assert_exact_and_contiguous(density, inventory)
    partitions = plan_partitions(density, max_workers=30, min_records_per_worker=1000, max_records=20_000)
    planned = sum(p.estimated_records for p in partitions)
    assert 20_000 <= planned <= 22_000
    workers = worker_count(planned, max_workers=30, min_records_per_worker=1000)
    assert max_deviation_pct((p.estimated_records for p in partitions), target_size(planned, workers)) <= 15


async def test_a_remainder_gone_negative_on_a_live_feed_is_recounted() -> None:
    """Stones appear after the first count: derived remainders could go negative; counts stay >= 0."""
    before = shared_inventory("lab-grown", 1).cents[:100_000]
    after = Inventory(np.concatenate([before, np.full(5000, 3000, dtype=np.int64)]))  # +5 000 at $30/ct
    calls = 0

    async def count(low: Decimal, high: Decimal | None) -> int:
        nonlocal calls
        calls += 1
        return len(before) if calls == 1 else after.exact(low, high)

    density = await scan_density(
        count, min_price=MIN_PRICE, max_price=MAX_PRICE, target_partitions=10, max_calls=BUDGET, concurrency=6
    )
    assert calls <= BUDGET
    assert all(chunk.count >= 0 for chunk in density.chunks)
    # The top remainder was derived from the stale total, every other chunk is a fresh count.
    for chunk in density.chunks[:-1]:
        assert chunk.count == after.exact(chunk.min_price, chunk.max_price)


@given(
    prices=st.lists(st.integers(1, 5_000_000), min_size=0, max_size=3000),
    max_workers=st.integers(1, 30),
    min_records=st.integers(1, 200),
    budget=st.integers(1, 80),
    concurrency=st.integers(1, 8),
)
@settings(max_examples=60, deadline=None)
async def test_any_inventory_gives_an_exact_map_within_budget(
    prices: list[int], max_workers: int, min_records: int, budget: int, concurrency: int
) -> None:
    inventory = Inventory(np.array(prices, dtype=np.int64))
    density = await scan(
        inventory,
        workers=max_workers,
        min_records_per_partition=min_records,
        max_calls=budget,
        concurrency=concurrency,
    )
    assert inventory.calls <= budget
    assert_exact_and_contiguous(density, inventory)


@pytest.mark.parametrize(
    "options",
    [
        {"max_calls": 0},
        {"concurrency": 0},
        {"min_price": Decimal(10), "max_price": Decimal(10)},
        {"max_price": Decimal("10.001")},
        {"balance_goal": Decimal(0)},
        {"workers": 0},
    ],
)
async def test_bad_arguments_are_refused_before_any_call(options: dict[str, Any]) -> None:
    inventory = fresh("natural", 1)
    with pytest.raises(ValueError):
        await scan(inventory, **options)
    assert inventory.calls == 0
