"""Adversarial ingestion checks against the simulator's ground truth, over real HTTP and PostgreSQL.

Each test plans a real run (`start_run`), then pages its partitions one message at a time, so that a
change to the feed can be staged at an exact point of the run through the simulator's `/_sim/edit`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec, SimConfig
from scheduler.chain import wait_for_run
from scheduler.service import RunStarted, start_run
from shared.bootstrap import Container, open_container
from shared.db.pool import Pool
from shared.runs import PartitionRecord, load_partitions, load_run_and_partition, work_item_for
from tests.pipeline.conftest import (
    expected_ids,
    ground_truth,
    in_default_query,
    pipeline,
    pipeline_settings,
    sim_control,
    sim_stats,
)
from tests.pipeline.test_consolidation import catalogue, run_feed, seed_rules
from worker.service import process_work_item

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"
BeforePage = Callable[[PartitionRecord], Awaitable[None]]


@pytest.fixture
def small_sim() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=23, stones=2_000))
    yield sim
    sim.stop()


async def edit(sim: ThreadedSimulator, **changes: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/_sim/edit", json=changes)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    assert not result["unknown"], result
    return result


@asynccontextmanager
async def planned(
    database_url: str, data_dir: Path, sim: ThreadedSimulator, **overrides: Any
) -> AsyncIterator[tuple[Container, RunStarted]]:
    """A full run planned and launched; nothing consumes its messages (the test pages it)."""
    settings = pipeline_settings(database_url, data_dir, sim.endpoint, **overrides)
    async with open_container(settings, database_url, feed_url=sim.endpoint) as container:
        started = await start_run(container, feed=FEED, run_type="full", requested_by="test")
        assert started is not None
        yield container, started


async def page_run(container: Container, started: RunStarted, before_page: BeforePage | None = None) -> None:
    """Process each partition's current page until every partition is finished."""
    run_id = started.run.run_id
    for partition in started.partitions:
        for _ in range(10_000):
            async with container.pool.connection() as conn:
                run, state = await load_run_and_partition(conn, run_id, partition.partition_id)
            if state.status not in ("pending", "running"):
                break
            if before_page is not None:
                await before_page(state)
            await process_work_item(container, work_item_for(run, state, page_size=container.settings.worker_page_size))
        else:
            raise AssertionError(f"{partition.partition_id} did not finish")


async def stored_ids(pool: Pool) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT supplier_stone_id FROM raw_diamonds_nivoda WHERE feed = %s", (FEED,))
        return [row[0] for row in await cur.fetchall()]


async def test_many_stones_leaving_behind_the_cursor_skip_none_of_the_stones_that_stay(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator
) -> None:
    # Pages of 5: the worker's old look-back (20 windows) covered 80 positions. More seen stones than
    # that leave between two pages of the partition (a long pause, heavy churn): paging must go on
    # right after the last stone it has seen, not from a guessed position past unseen stones.
    async with planned(database_url, tmp_path, small_sim, max_workers_full=1, worker_page_size=5) as (
        container,
        started,
    ):
        in_order = sorted(expected_ids(await ground_truth(small_sim), FEED, started.run.updated_to))
        assert len(in_order) > 300, "the inventory is too small for the test"
        removed: list[str] = []

        async def remove_seen_stones(state: PartitionRecord) -> None:
            if state.pages == 40 and not removed:
                removed.extend(in_order[10 : state.next_offset - 10])
                await edit(small_sim, remove=removed)

        await page_run(container, started, remove_seen_stones)
        async with container.pool.connection() as conn:
            (partition,) = await load_partitions(conn, started.run.run_id)
    assert len(removed) > 100
    stayed = set(in_order) - set(removed)
    stored = await stored_ids(db)
    missed = stayed - set(stored)
    assert not missed, f"{len(missed)} stones that stayed in the feed were skipped"
    assert partition.status == "completed"
    assert partition.drift_recoveries >= 1
    assert partition.records_seen == len(set(stored)), "a stone was counted twice"


def per_carat(stone: dict[str, Any]) -> Fraction:
    return Fraction(stone["price_cents"], round(stone["carats"] * 100))


def cents_for(stone: dict[str, Any], dollars_per_carat: Fraction) -> int:
    """A price in cents that puts `stone` at (or just above) `dollars_per_carat`."""
    return math.ceil(dollars_per_carat * round(float(stone["carats"]) * 100))


async def test_a_partition_that_grows_past_its_cap_is_paged_to_its_end(
    db: Pool, database_url: str, tmp_path: Path
) -> None:
    # The feed's clock runs 10 minutes behind ours, so stones repriced during the run are stamped
    # inside its window and move between partitions: partition-0 grows well past its estimate.
    sim = start_in_thread(InventorySpec(seed=23, stones=2_000), SimConfig(clock_offset_ms=-600_000))
    try:
        async with planned(
            database_url, tmp_path, sim, max_workers_full=2, min_records_per_worker=50, worker_page_size=10
        ) as (container, started):
            first, second = started.partitions
            assert first.max_price is not None
            top = Fraction(first.max_price)
            truth = {s["supplier_stone_id"]: s for s in await ground_truth(sim)}
            in_run = expected_ids(list(truth.values()), FEED, started.run.updated_to)
            movers = sorted(sid for sid in in_run if per_carat(truth[sid]) >= second.min_price)
            moved: dict[str, int] = {}

            async def move_into_first(state: PartitionRecord) -> None:
                if state.partition_id == first.partition_id and state.pages == 2 and not moved:
                    moved.update({sid: cents_for(truth[sid], top) for sid in movers})
                    await edit(sim, reprice=moved)

            await page_run(container, started, move_into_first)
            async with container.pool.connection() as conn:
                states = {p.partition_id: p for p in await load_partitions(conn, started.run.run_id)}
            after = expected_ids(await ground_truth(sim), FEED, started.run.updated_to)
    finally:
        sim.stop()
    assert len(moved) > first.estimated_records, "partition-0 did not grow past its cap"
    unchanged = (in_run & after) - set(moved)
    missed = unchanged - set(await stored_ids(db))
    assert not missed, f"{len(missed)} stones that never changed were not fetched"
    assert states[first.partition_id].status == "completed"
    assert states[first.partition_id].estimated_records > first.estimated_records, "the estimate was not raised"


async def seen_by(pool: Pool, run_id: Any) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT supplier_stone_id FROM run_seen_stones WHERE run_id = %s", (run_id,))
        return {row[0] for row in await cur.fetchall()}


def stones_at(
    truth: list[dict[str, Any]], in_run: set[str], dollars_per_carat: Fraction, count: int, *, skip: int = 0
) -> dict[str, int]:
    """Reprices putting `count` stones of the run (from `skip` on) exactly at a price per carat."""
    chosen = sorted(s["supplier_stone_id"] for s in truth if s["supplier_stone_id"] in in_run)[skip : skip + count]
    by_id = {s["supplier_stone_id"]: s for s in truth}
    return {sid: cents_for(by_id[sid], dollars_per_carat) for sid in chosen}


async def test_skewed_prices_and_prices_on_every_edge_are_each_fetched_exactly_once(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator
) -> None:
    truth = await ground_truth(small_sim)
    everything = expected_ids(truth, FEED, datetime.now(UTC) + timedelta(days=1))
    # A third of the stones at one exact price, the rest on the edges of the scanned range
    # ($300-$20,000/ct here), far above and below it, and a hair below the next cent.
    staged = {
        **stones_at(truth, everything, Fraction(1234), len(everything) // 3),
        **stones_at(truth, everything, Fraction("1234.01") - Fraction(1, 10**4), 10, skip=300),
        **stones_at(truth, everything, Fraction(20_000), 5, skip=310),
        **stones_at(truth, everything, Fraction("20000.01"), 5, skip=315),
        **stones_at(truth, everything, Fraction(150_000), 5, skip=320),
        **stones_at(truth, everything, Fraction(300), 5, skip=325),
        **stones_at(truth, everything, Fraction("299.99"), 5, skip=330),
        **stones_at(truth, everything, Fraction(5), 5, skip=335),
    }
    await edit(small_sim, reprice=staged)
    async with planned(
        database_url,
        tmp_path,
        small_sim,
        max_workers_full=6,
        min_records_per_worker=20,
        heatmap_min_price_per_carat=Decimal(300),
        heatmap_max_price_per_carat=Decimal(20_000),
    ) as (container, started):
        await page_run(container, started)
        async with container.pool.connection() as conn:
            partitions = await load_partitions(conn, started.run.run_id)
    expected = expected_ids(await ground_truth(small_sim), FEED, started.run.updated_to)
    assert set(staged) <= expected
    stored = await stored_ids(db)
    assert sorted(stored) == sorted(expected)
    assert sum(p.records_seen for p in partitions) == len(expected), "a stone was counted twice"
    assert all(p.status == "completed" for p in partitions)
    assert partitions[0].min_price == 0
    assert partitions[-1].max_price is None
    for below, above in pairwise(partitions):
        assert below.max_price is not None
        assert above.min_price == below.max_price + Decimal("0.01")
    assert len(partitions) > 2
    assert max(p.estimated_records for p in partitions) >= len(everything) // 3, "the one-price spike was split"


async def test_an_incremental_window_starts_exactly_at_the_watermark(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator
) -> None:
    truth = await ground_truth(small_sim)
    in_window = [s for s in truth if in_default_query(s, FEED, datetime.now(UTC), only_available=False)]
    moments = sorted({datetime.fromisoformat(s["updated_at"]) for s in in_window})
    watermark = moments[len(moments) // 2]
    async with db.connection() as conn:
        await conn.execute("INSERT INTO watermarks (feed, last_updated_at) VALUES (%s, %s)", (FEED, watermark))
    settings = pipeline_settings(database_url, tmp_path, small_sim.endpoint, incremental_safety_buffer_minutes=0)
    async with open_container(settings, database_url, feed_url=small_sim.endpoint) as container:
        started = await start_run(container, feed=FEED, requested_by="test")
        assert started is not None
        assert started.run.run_type == "incremental"
        # At the watermark, or before it by a feed clock lag measured on a stalled machine (>= 2 s counts).
        assert timedelta(0) <= watermark - started.run.updated_from < timedelta(seconds=30)
        await page_run(container, started)
    expected = {
        s["supplier_stone_id"]
        for s in truth
        if in_default_query(s, FEED, started.run.updated_to, only_available=False)
        and datetime.fromisoformat(s["updated_at"]) >= started.run.updated_from
    }
    at_watermark = {s["supplier_stone_id"] for s in truth if datetime.fromisoformat(s["updated_at"]) == watermark}
    assert at_watermark & expected, "no stone of the run was updated exactly at the watermark"
    assert await seen_by(db, started.run.run_id) == expected


async def test_a_feed_clock_behind_ours_is_covered_by_the_next_incremental_window(
    db: Pool, database_url: str, tmp_path: Path
) -> None:
    # The feed stamps updatedAt 5 minutes behind our clock (the safety buffer is 15). A stone
    # updated during run 2 gets a stamp inside run 2's window but behind its cursor: run 2 cannot
    # see it, run 3 (from run 2's updated_to minus the buffer) must.
    sim = start_in_thread(InventorySpec(seed=29, stones=2_000), SimConfig(clock_offset_ms=-300_000))
    try:
        truth = await ground_truth(sim)
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO watermarks (feed, last_updated_at) VALUES (%s, %s)",
                (FEED, datetime.now(UTC) - timedelta(hours=1)),
            )
        settings = pipeline_settings(database_url, tmp_path, sim.endpoint, worker_page_size=5)
        async with open_container(settings, database_url, feed_url=sim.endpoint) as container:
            natural = expected_ids(truth, FEED, datetime.now(UTC))
            staged = stones_at(truth, natural, Fraction(900), 40, skip=100)
            await edit(sim, reprice=staged)  # gives run 2 something to page through
            second = await start_run(container, feed=FEED, requested_by="test")
            assert second is not None
            assert second.run.run_type == "incremental"
            oldest = sorted(natural - set(staged))[:5]
            late: dict[str, int] = {}

            async def update_passed_stones(state: PartitionRecord) -> None:
                if state.pages == 2 and not late:
                    late.update({sid: cents_for(by_id[sid], Fraction(900)) for sid in oldest})
                    await edit(sim, reprice=late)

            by_id = {s["supplier_stone_id"]: s for s in truth}
            await page_run(container, second, update_passed_stones)
            assert not set(late) & await seen_by(db, second.run.run_id), "run 2 was expected to miss them"
            async with container.pool.connection() as conn:
                # What the consolidator does when run 2 completes.
                await conn.execute(
                    "UPDATE run_metadata SET status = 'completed', completed_at = now() WHERE run_id = %s",
                    (second.run.run_id,),
                )
                await conn.execute(
                    "UPDATE watermarks SET last_updated_at = %s WHERE feed = %s", (second.run.updated_to, FEED)
                )
            third = await start_run(container, feed=FEED, requested_by="test")
            assert third is not None
            await page_run(container, third)
    finally:
        sim.stop()
    assert late
    assert set(late) <= await seen_by(db, third.run.run_id)


async def test_a_stone_fetched_by_two_partitions_is_counted_once(db: Pool, database_url: str, tmp_path: Path) -> None:
    # With the feed's clock behind ours, a stone repriced during the run keeps an updatedAt inside
    # the window: fetched by partition-0, then moved into partition-1 before that one is paged.
    sim = start_in_thread(InventorySpec(seed=31, stones=2_000), SimConfig(clock_offset_ms=-600_000))
    try:
        async with planned(
            database_url, tmp_path, sim, max_workers_full=2, min_records_per_worker=50, worker_page_size=20
        ) as (container, started):
            first, second = started.partitions
            assert first.max_price is not None
            truth = {s["supplier_stone_id"]: s for s in await ground_truth(sim)}
            in_run = expected_ids(list(truth.values()), FEED, started.run.updated_to)
            movers = sorted(sid for sid in in_run if per_carat(truth[sid]) <= first.max_price)[:20]
            moved: dict[str, int] = {}

            async def move_into_second(state: PartitionRecord) -> None:
                if state.partition_id == second.partition_id and not moved:
                    moved.update({sid: cents_for(truth[sid], Fraction(second.min_price)) for sid in movers})
                    await edit(sim, reprice=moved)

            await page_run(container, started, move_into_second)
            async with container.pool.connection() as conn:
                partitions = await load_partitions(conn, started.run.run_id)
    finally:
        sim.stop()
    stored = set(await stored_ids(db))
    assert set(moved) <= stored
    assert sum(p.records_seen for p in partitions) == len(stored), "a stone fetched twice was counted twice"


async def test_full_runs_under_departures_and_moves_delete_exactly_the_stones_that_left(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator
) -> None:
    # Run 1 builds the catalogue. During run 2, ~80 seen stones leave behind a cursor and 10 stones
    # not yet fetched are repriced into the partition already paged (they leave run 2's window):
    # run 2's confirm-gone step keeps and refreshes the moved ones, and deletes nothing still
    # listed; run 3 deletes exactly the stones that left.
    await seed_rules(db)
    settings = pipeline_settings(
        database_url, tmp_path, small_sim.endpoint, max_workers_full=2, min_records_per_worker=50, worker_page_size=5
    )
    async with pipeline(settings) as host:
        assert (await run_feed(host, "full")).status == "completed"
    listed = {sid for sid, entry in (await catalogue(db)).items() if entry["status"] == "active"}
    async with planned(
        database_url, tmp_path, small_sim, max_workers_full=2, min_records_per_worker=50, worker_page_size=5
    ) as (container, started):
        first, second = started.partitions
        assert first.max_price is not None
        top = Fraction(first.max_price)
        truth = {s["supplier_stone_id"]: s for s in await ground_truth(small_sim)}
        in_run = sorted(expected_ids(list(truth.values()), FEED, started.run.updated_to) & listed)
        in_first = [sid for sid in in_run if per_carat(truth[sid]) <= first.max_price]
        in_second = [sid for sid in in_run if per_carat(truth[sid]) > first.max_price]
        removed: list[str] = []
        moved: dict[str, int] = {}

        async def churn(state: PartitionRecord) -> None:
            if state.partition_id == first.partition_id and state.pages == 25 and not removed:
                removed.extend(in_first[10 : state.next_offset - 10])
                await edit(small_sim, remove=removed)
            if state.partition_id == second.partition_id and not moved:
                moved.update({sid: cents_for(truth[sid], top) for sid in in_second[-10:]})
                await edit(small_sim, reprice=moved)

        await page_run(container, started, churn)
    async with pipeline(settings) as host:
        assert await wait_for_run(host.container, started.run.run_id, poll_s=0.2) == "completed"
        after = await catalogue(db)
        # Run 2 saw the departed stones before they left: the next full run deletes them.
        assert (await run_feed(host, "full")).status == "completed"
    final = await catalogue(db)
    assert len(removed) > 50
    assert len(moved) == 10
    assert not {sid for sid, entry in after.items() if entry["status"] == "deleted"}
    for sid, cents in moved.items():
        assert after[sid]["status"] == "active"
        assert after[sid]["feed_price"] == Decimal(cents) / 100, "a moved stone was refreshed by the confirm step"
    deleted = {sid for sid, entry in final.items() if entry["status"] == "deleted"}
    assert deleted == set(removed), "exactly the stones that left the feed are deleted"


async def test_a_feed_of_one_stone_costs_two_pages_and_an_empty_feed_plans_no_run(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator
) -> None:
    listed = sorted(expected_ids(await ground_truth(small_sim), FEED, datetime.now(UTC)))
    await edit(small_sim, remove=listed[1:])
    await sim_control(small_sim, "stats/reset")
    async with planned(database_url, tmp_path, small_sim) as (container, started):
        await page_run(container, started)
        async with container.pool.connection() as conn:
            (partition,) = await load_partitions(conn, started.run.run_id)
        stats = await sim_stats(small_sim)
        assert await stored_ids(db) == listed[:1]
        assert (partition.status, partition.records_seen, partition.estimated_records) == ("completed", 1, 1)
        assert stats["requests"]["diamonds_by_query"] == 2, "the stone's page and the empty page after it"
        assert stats["requests"]["diamonds_by_query_count"] == 1
        await edit(small_sim, remove=listed[:1])
        async with container.pool.connection() as conn:
            await conn.execute("UPDATE run_metadata SET status = 'completed', completed_at = now()")
        assert await start_run(container, feed=FEED, run_type="full", requested_by="test") is None
