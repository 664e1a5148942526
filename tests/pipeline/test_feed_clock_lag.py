"""A feed clock further behind ours than the safety buffer loses no update: the simulator (over
real HTTP, its `Date` following its own clock) runs 10 minutes behind us, the buffer is 1 minute.

A stone repriced while run 2 pages is stamped by the feed inside run 2's window but behind its
cursor; run 3 starts from run 2's `updated_to` minus the buffer AND the measured lag, so it finds
the stone (with the buffer alone it would start 9 minutes too late and lose it until a full run).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from feedsim.embed import start_in_thread
from feedsim.simulator import InventorySpec, SimConfig
from scheduler.chain import wait_for_run
from scheduler.service import start_run
from shared.bootstrap import open_container
from shared.db.pool import Pool
from shared.runs import PartitionRecord, load_run
from tests.pipeline.conftest import expected_ids, ground_truth, pipeline, pipeline_settings
from tests.pipeline.test_consolidation import catalogue, seed_rules, watermark
from tests.pipeline.test_ingestion_audit import cents_for, edit, page_run, seen_by, stones_at

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"
FEED_BEHIND = timedelta(minutes=10)
BUFFER = timedelta(minutes=1)


async def recorded_feed_clock(pool: Pool, run_id: Any) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT heatmap -> 'feed_clock' FROM run_metadata WHERE run_id = %s", (run_id,))
        row = await cur.fetchone()
    assert row is not None
    clock: dict[str, Any] = row[0]
    return clock


async def test_a_stone_updated_during_a_run_is_fetched_by_the_next_although_the_feed_clock_lags_past_the_buffer(
    db: Pool, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = start_in_thread(
        InventorySpec(seed=37, stones=2_000), SimConfig(clock_offset_ms=-int(FEED_BEHIND.total_seconds() * 1000))
    )
    try:
        await seed_rules(db)
        truth = await ground_truth(sim)
        by_id = {s["supplier_stone_id"]: s for s in truth}
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO watermarks (feed, last_updated_at) VALUES (%s, %s)",
                (FEED, datetime.now(UTC) - timedelta(hours=1)),
            )
        settings = pipeline_settings(
            database_url,
            tmp_path,
            sim.endpoint,
            incremental_safety_buffer_minutes=int(BUFFER.total_seconds() // 60),
            max_workers_incremental=1,  # one partition in createdAt order: the edit lands behind its cursor
            worker_page_size=5,
        )
        natural = expected_ids(truth, FEED, datetime.now(UTC))
        staged = stones_at(truth, natural, Fraction(900), 40, skip=100)
        await edit(sim, reprice=staged)  # gives run 2 pages to go through
        # The first stones in createdAt order, not in run 2's window until repriced during it.
        late_ids = sorted(natural - set(staged), key=lambda sid: (by_id[sid]["created_at"], sid))[:5]
        late: dict[str, int] = {}

        async def reprice_passed_stones(state: PartitionRecord) -> None:
            if state.pages == 2 and not late:
                late.update({sid: cents_for(by_id[sid], Fraction(900)) for sid in late_ids})
                await edit(sim, reprice=late)

        async with open_container(settings, database_url, feed_url=sim.endpoint) as container:
            second = await start_run(container, feed=FEED, requested_by="test")
            assert second is not None
            assert second.run.run_type == "incremental"
            assert len(second.partitions) == 1
            await page_run(container, second, reprice_passed_stones)
        assert late
        assert not set(late) & await seen_by(db, second.run.run_id), "run 2 was expected to miss them"

        with caplog.at_level(logging.WARNING, logger="scheduler.service"):
            async with pipeline(settings) as host:  # a fresh process: its authentication measures the clock
                assert await wait_for_run(host.container, second.run.run_id, poll_s=0.2) == "completed"
                assert await watermark(db) == second.run.updated_to
                started = await start_run(host.container, feed=FEED, requested_by="test")
                assert started is not None, "run 3's window holds none of the stones updated during run 2"
                await wait_for_run(host.container, started.run.run_id, poll_s=0.2)
        async with db.connection() as conn:
            third = await load_run(conn, started.run.run_id)
    finally:
        sim.stop()

    assert third.status == "completed"
    listed = await catalogue(db)
    assert set(late) <= set(listed), "run 3 did not fetch the stones updated during run 2"
    for sid, cents in late.items():
        assert (listed[sid]["status"], listed[sid]["feed_price"]) == ("active", Decimal(cents) / 100)

    clock = await recorded_feed_clock(db, third.run_id)
    lag = timedelta(seconds=clock["lag_s"])
    assert clock["beyond_safety_buffer"] is True
    assert clock["safety_buffer_s"] == BUFFER.total_seconds()
    # Date has whole seconds and is stamped before the response travels: never under the true lag.
    assert FEED_BEHIND <= lag < FEED_BEHIND + timedelta(seconds=30)
    assert third.updated_from <= second.run.updated_to - BUFFER - FEED_BEHIND
    assert third.updated_from >= second.run.updated_to - BUFFER - lag - timedelta(milliseconds=1)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("behind ours, more than the 60 s safety buffer" in message for message in warned), warned
