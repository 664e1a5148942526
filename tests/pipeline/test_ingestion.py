"""End to end against the simulator over real HTTP: a full run ingests exactly the ground truth."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from feedsim.embed import ThreadedSimulator
from scheduler.chain import wait_for_run
from scheduler.service import start_run
from shared.bus.local import LocalBus
from shared.bus.port import OutgoingMessage
from shared.db.pool import Pool
from shared.runs import load_partitions
from tests.pipeline.conftest import expected_ids, ground_truth, pipeline, pipeline_settings, sim_control, sim_stats

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"


async def raw_ids(pool: Pool, feed: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT supplier_stone_id FROM raw_diamonds_nivoda WHERE feed = %s", (feed,))
        return [row[0] for row in await cur.fetchall()]


async def run_once(settings_path: Path, database_url: str, simulator: ThreadedSimulator, **overrides: object):
    settings = pipeline_settings(database_url, settings_path, simulator.endpoint, **overrides)
    async with pipeline(settings) as host:
        started = await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
        assert started is not None
        status = await wait_for_run(host.container, started.run.run_id, poll_s=0.2)
        async with host.container.pool.connection() as conn:
            partitions = await load_partitions(conn, started.run.run_id)
        return started, status, partitions


async def test_full_run_ingests_exactly_the_ground_truth(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    started, status, partitions = await run_once(tmp_path, database_url, simulator)
    assert status == "completed"
    truth = expected_ids(await ground_truth(simulator), FEED, started.run.updated_to)
    stored = await raw_ids(db, FEED)
    assert len(stored) == len(set(stored))
    assert set(stored) == truth
    assert sum(p.records_seen for p in partitions) == len(truth), "a stone was counted twice or missed"
    assert all(p.status == "completed" for p in partitions)
    # The request budget: one overlap stone per page plus one closing request per partition.
    stats = await sim_stats(simulator)
    assert stats["requests"]["diamonds_by_query"] <= 1.05 * -(-len(truth) // 50) + 2 * len(partitions)


class DuplicatingBus(LocalBus):
    """Delivers a share of messages twice (a copy under another id escapes duplicate detection)."""

    share = 0.10

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        rng = random.Random(len(messages))
        copies = [
            OutgoingMessage(m.queue, f"{m.message_id}:copy", m.body, m.scheduled_at, m.correlation_id)
            for m in messages
            if rng.random() < self.share
        ]
        await super().send([*messages, *copies])


async def test_faults_and_duplicate_deliveries_change_nothing(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.bootstrap.LocalBus", DuplicatingBus)
    await sim_control(simulator, "stats/reset")
    await sim_control(
        simulator, "config", {"error_rate": 0.05, "throttle_rate": 0.02, "timeout_rate": 0.01, "hang_s": 3}
    )
    try:
        started, status, _ = await run_once(
            tmp_path, database_url, simulator, nivoda_request_timeout_s=1, nivoda_max_retries=8
        )
    finally:
        await sim_control(simulator, "config", {"error_rate": 0, "throttle_rate": 0, "timeout_rate": 0, "hang_s": 120})
    faults = (await sim_stats(simulator))["faults"]
    for kind in ("server_error", "throttled", "timeout"):
        assert faults.get(kind, 0) > 0, f"no {kind} was injected: {faults}"
    assert status == "completed"
    truth = expected_ids(await ground_truth(simulator), FEED, started.run.updated_to)
    stored = await raw_ids(db, FEED)
    assert set(stored) == truth
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM bus_messages")
        assert (await cur.fetchone()) == (0,), "every message, copies included, was settled"
        cur = await conn.execute("SELECT count(*) FROM dead_letters")
        assert (await cur.fetchone()) == (0,)


async def test_churn_during_the_run_misses_no_stone_that_stayed(db: Pool, database_url: str, tmp_path: Path) -> None:
    from feedsim.embed import start_in_thread
    from feedsim.simulator import InventorySpec, SimConfig

    sim = start_in_thread(InventorySpec(seed=11, stones=20_000), SimConfig(latency_ms=5))
    settings = pipeline_settings(database_url, tmp_path, sim.endpoint)
    try:
        async with pipeline(settings) as host:
            started = await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
            assert started is not None
            before = await ground_truth(sim)  # nothing has changed since planning: churn starts now
            # Heavy churn while the run pages: holds, sales, removals and repricings shift offsets.
            await sim_control(sim, "config", {"churn_per_s": 400})
            status = await wait_for_run(host.container, started.run.run_id, poll_s=0.2)
            await sim_control(sim, "config", {"churn_per_s": 0})
            async with host.container.pool.connection() as conn:
                partitions = await load_partitions(conn, started.run.run_id)
        after = await ground_truth(sim)
    finally:
        sim.stop()
    assert status == "completed"
    window_end = started.run.updated_to
    at_start = expected_ids(before, FEED, window_end)
    at_end = expected_ids(after, FEED, window_end)
    stayed = at_start & at_end
    assert len(at_start - at_end) > 50, "the churn was too light to test anything"
    stored = set(await raw_ids(db, FEED))
    missed = stayed - stored
    assert not missed, f"{len(missed)} stones that stayed in the feed were missed"
    assert stored <= at_start, "only stones of the run's window are stored"
    assert sum(p.drift_recoveries for p in partitions) > 0, "the drift path was not exercised"


async def test_a_feed_outage_longer_than_the_clients_retries_is_ridden_out_by_redelivery(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    settings = pipeline_settings(database_url, tmp_path, simulator.endpoint, nivoda_max_retries=0)
    async with pipeline(settings) as host:
        await sim_control(simulator, "stats/reset")
        started = await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
        assert started is not None
        await sim_control(simulator, "config", {"error_rate": 1.0})
        try:
            # Every delivery fails at once (no client retries); the bus redelivers after 1, 2, 4 s.
            await asyncio.sleep(2.5)
        finally:
            await sim_control(simulator, "config", {"error_rate": 0.0})
        failed_requests = sum((await sim_stats(simulator))["faults"].values())
        status = await wait_for_run(host.container, started.run.run_id, poll_s=0.2)
        async with host.container.pool.connection() as conn:
            partitions = await load_partitions(conn, started.run.run_id)
    assert failed_requests > 0, "the outage hit the run"
    assert status == "completed"
    assert all(p.status == "completed" and p.attempts == 1 for p in partitions), "no partition waited for a human"
    truth = expected_ids(await ground_truth(simulator), FEED, started.run.updated_to)
    assert set(await raw_ids(db, FEED)) == truth
