"""One scheduled chain of runs through the Functions entry points only, against `opus run`'s result.

Every message the app sends goes to the matching trigger body, in order; the fan-in orchestrations
run in the test Durable engine; the chain (natural, then labgrown) is started by the timer and
continued by each orchestration's last activity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feedsim.embed import ThreadedSimulator
from scheduler.chain import run_chain
from shared.db.pool import Pool
from tests.azure.conftest import FunctionsHarness
from tests.conftest import truncate_state
from tests.pipeline.conftest import pipeline, pipeline_settings

pytestmark = pytest.mark.xdist_group("pipeline")
FEEDS = ["nivoda-natural", "nivoda-labgrown"]


async def catalogue(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT feed, supplier_stone_id, status, availability, feed_price, retail_price
               FROM diamonds ORDER BY feed, supplier_stone_id"""
        )
        return await cur.fetchall()


async def runs(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT feed, status, watermark_advanced, requested_by FROM run_metadata ORDER BY started_at"
        )
        return await cur.fetchall()


async def test_a_scheduled_chain_through_the_functions_builds_the_same_catalogue_as_opus_run(
    db: Pool, database_url: str, tmp_path: Path, azure_simulator: ThreadedSimulator, harness: FunctionsHarness
) -> None:
    await harness.tick()
    await harness.drain()
    assert await runs(db) == [
        ("nivoda-natural", "completed", True, "schedule"),
        ("nivoda-labgrown", "completed", True, "schedule"),
    ]
    outputs = [i.output for i in harness.engine.instances.values()]
    assert [o["status"] for o in outputs] == ["completed", "completed"]
    assert outputs[0]["next_feed"] == "nivoda-labgrown", "the natural run's orchestration started labgrown"
    assert outputs[1]["next_feed"] is None
    for instance in harness.engine.instances.values():
        status = instance.custom_status
        assert status["phase"] == "done"
        assert status["completed"] == status["expected"] > 0
        assert status["stones"] > 0
    functions_catalogue = await catalogue(db)
    assert len(functions_catalogue) > 500
    queues = {queue for queue, _ in harness.delivered}
    assert queues == {"work-items", "work-done", "consolidate"}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM dead_letters")
        assert await cur.fetchone() == (0,)

    await truncate_state(db)
    settings = pipeline_settings(database_url, tmp_path / "local", azure_simulator.endpoint)
    async with pipeline(settings) as host:
        outcomes = await run_chain(host.container, FEEDS, requested_by="test")
    assert [outcome for _, _, outcome in outcomes] == ["completed", "completed"]
    assert await catalogue(db) == functions_catalogue
