"""Adversarial ingestion checks against the simulator's ground truth, over real HTTP and PostgreSQL.

Each test plans a real run (`start_run`), then pages its partitions one message at a time, so that a
change to the feed can be staged at an exact point of the run through the simulator's `/_sim/edit`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec, SimConfig
from scheduler.service import RunStarted, start_run
from shared.bootstrap import Container, open_container
from shared.db.pool import Pool
from shared.runs import PartitionRecord, load_partitions, load_run_and_partition, work_item_for
from tests.pipeline.conftest import expected_ids, ground_truth, pipeline_settings
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
    return math.ceil(dollars_per_carat * round(stone["carats"] * 100))


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
            truth = {s["supplier_stone_id"]: s for s in await ground_truth(sim)}
            in_run = expected_ids(list(truth.values()), FEED, started.run.updated_to)
            movers = sorted(sid for sid in in_run if per_carat(truth[sid]) >= second.min_price)
            moved: dict[str, int] = {}

            async def move_into_first(state: PartitionRecord) -> None:
                if state.partition_id == first.partition_id and state.pages == 2 and not moved:
                    moved.update({sid: cents_for(truth[sid], Fraction(first.max_price)) for sid in movers})
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
