"""`opus run` stopped while the feed fails: the pages in hand are given back at once, each with its one
delivery counted, instead of every handler riding out the client's retries first (minutes). Its
database pool fits the consumers it starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from feedsim.embed import ThreadedSimulator
from localhost.host import POOL_HEADROOM, WORK_DONE_CONSUMERS
from scheduler.service import start_run
from shared.db.pool import Pool
from tests.pipeline.conftest import pipeline, pipeline_settings, sim_control, sim_stats

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"
CONSUMERS = 3
MAX_RETRIES = 8  # the client's whole retry schedule is about 90 s


async def _work_items(db: Pool) -> list[tuple[int, bool]]:
    """(delivery count, locked) of every page message still on the bus."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT delivery_count, lock_token IS NOT NULL FROM bus_messages WHERE queue = 'work-items' ORDER BY id"
        )
        return [(int(row[0]), bool(row[1])) for row in await cur.fetchall()]


async def test_stop_gives_the_pages_in_hand_back_without_riding_out_the_retries(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    settings = pipeline_settings(
        database_url, tmp_path, simulator.endpoint, worker_concurrency=CONSUMERS, nivoda_max_retries=MAX_RETRIES
    )
    try:
        async with pipeline(settings) as host:
            # DB_POOL_MAX_SIZE 8 is raised to fit the consumers, so that they cannot starve the renewals.
            consumers = CONSUMERS + WORK_DONE_CONSUMERS + settings.consolidator_concurrency
            assert host.container.pool.max_size == consumers + POOL_HEADROOM > settings.db_pool_max_size
            started = await start_run(host.container, feed=FEED, requested_by="test")
            assert started is not None
            await sim_control(simulator, "stats/reset")  # so every failed request of the pages is counted
            await sim_control(simulator, "config", {"graphql_error_rate": 1.0})
            # Every consumer holds a page whose search has failed at least once: all are mid-retry.
            for _ in range(300):
                held = sum(locked for _, locked in await _work_items(db))
                failing = (await sim_stats(simulator))["faults"].get("graphql_error", 0)
                if held == CONSUMERS and failing >= CONSUMERS:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the consumers never all held a failing page: {await _work_items(db)}")
        failed_requests = (await sim_stats(simulator))["faults"]["graphql_error"]
    finally:
        await sim_control(simulator, "config", {"graphql_error_rate": 0.0})

    messages = await _work_items(db)
    assert messages, "the run's pages are still to do"
    assert all(not locked for _, locked in messages), f"every page given back unlocked: {messages}"
    assert max(count for count, _ in messages) == 1, "each page had one delivery, given back by the stop"
    # Riding the retries out makes each page's search fail MAX_RETRIES + 1 times.
    assert failed_requests < CONSUMERS * (MAX_RETRIES + 1), "no handler rode out the client's retries"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM partition_progress WHERE status = 'failed'")
        assert await cur.fetchone() == (0,), "a stop fails no partition"
