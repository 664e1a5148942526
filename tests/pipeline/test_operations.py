"""The ops CLI against a running local host: start and watch, list, retry a failed run, cancel,
dead letters (list and replay), and the lifecycle paths they lead to."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from api.operations import MAX_LIMIT
from fanin.operations import cancel_run
from feedsim.embed import ThreadedSimulator
from localhost.host import Host
from scheduler.chain import wait_for_run
from scheduler.service import start_run
from shared.bus.port import OutgoingMessage
from shared.db.pool import Pool
from shared.runs import load_partitions, load_run
from tests.pipeline.conftest import expected_ids, ground_truth, pipeline, pipeline_settings, sim_control

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"


async def opus(host: Host, *args: str, **settings_env: str) -> tuple[int, str, str]:
    """Run the CLI as a user would, against the host's database and feed (without blocking the host);
    `settings_env` sets more of its settings (e.g. NIVODA_MAX_RETRIES="0")."""
    settings = host.settings
    env = {
        **os.environ,
        "DATABASE_URL": host.database.url,
        "NIVODA_ENDPOINT": str(settings.nivoda_endpoint),
        "NIVODA_RATE_LIMIT_SCOPE": "process",
        "BUS_LOCK_DURATION_S": "" if settings.bus_lock_duration_s is None else str(settings.bus_lock_duration_s),
        "MAX_WORKERS_FULL": str(settings.max_workers_full),
        **settings_env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "opus", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def raw_ids(pool: Pool) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT supplier_stone_id FROM raw_diamonds_nivoda WHERE feed = %s", (FEED,))
        return {row[0] for row in await cur.fetchall()}


async def test_start_watch_list_and_inspect_a_run(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        code, out, err = await opus(host, "start-run", "--feed", FEED, "--type", "full", "--wait")
        assert code == 0, err
        assert out.splitlines()[-1].startswith("run ")  # its own line, after the last progress frame
        assert out.splitlines()[-1].endswith(" completed")
        code, out, err = await opus(host, "start-run", "--all", "--type", "full", "--wait", FEEDS=FEED)
        assert code == 0, err
        assert "throughput" in out, "--all --wait shows each run's progress as --wait does"
        assert re.fullmatch(rf"{FEED}: completed \(run [0-9a-f-]{{36}}\)", out.splitlines()[-1]), out
        code, out, _ = await opus(host, "runs")
        assert code == 0
        async with db.connection() as conn:
            cur = await conn.execute("SELECT run_id FROM run_metadata")
            (run_id,) = await cur.fetchone() or (None,)
        assert str(run_id) in out
        code, out, _ = await opus(host, "run-status", str(run_id))
        assert code == 0
        assert "partition-0" in out
        code, _, err = await opus(host, "consolidate", str(run_id))
        assert code == 1
        assert err.startswith(f"error: run {run_id} is completed (")
        assert "--force" not in err, "forcing a completed run is refused: do not suggest it"
        for limit in ("-1", "0", "99999999999999999999"):
            code, _, err = await opus(host, "runs", "--limit", limit)
            assert code == 2
            assert err.splitlines()[-1] == f"opus runs: error: argument --limit: must be an integer 1-{MAX_LIMIT}"
        code, _, err = await opus(host, "start-run", "--all", "--feed", FEED)
        assert code == 2
        assert "not allowed with argument" in err
        code, _, err = await opus(host, "start-run", "--feed", "nivoda-pink")
        assert code == 2
        assert "invalid choice: 'nivoda-pink'" in err
        code, _, err = await opus(host, "run-status", "not-a-uuid")
        assert code == 2
        assert "is not a run id" in err
    # A run whose partitions are still fetching (the host stopped): waiting is the advice, not --force.
    async with db.connection() as conn:
        await conn.execute(
            """UPDATE run_metadata SET status = 'ingesting', completed_at = NULL, watermark_advanced = false
               WHERE run_id = %s""",
            (run_id,),
        )
        await conn.execute(
            "UPDATE partition_progress SET status = 'running', completed_at = NULL WHERE run_id = %s", (run_id,)
        )
    code, _, err = await opus(host, "consolidate", str(run_id))
    assert code == 1
    assert "still fetching" in err
    assert "--force" not in err


async def test_a_feed_failing_while_planning_is_one_line_of_error(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        await sim_control(simulator, "config", {"cdn_block_rate": 1.0})
        try:
            code, out, err = await opus(host, "start-run", "--feed", FEED, "--type", "full", NIVODA_MAX_RETRIES="0")
        finally:
            await sim_control(simulator, "config", {"cdn_block_rate": 0.0})
    assert (code, out) == (1, "")
    assert err.startswith("error: Nivoda authenticate failed after 1 attempt(s); last cause cdn_403: HTTP 403"), err
    assert err.count("\n") == 1, err
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM run_metadata")
        assert await cur.fetchone() == (0,), "a run that could not be planned is not recorded"


async def test_failed_partitions_are_skipped_then_retried_to_completion(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    settings = pipeline_settings(
        database_url, tmp_path, simulator.endpoint, nivoda_max_retries=0, auto_consolidation_threshold="1"
    )
    async with pipeline(settings) as host:
        await sim_control(simulator, "config", {"latency_ms": 30})
        started = await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
        assert started is not None
        run_id = started.run.run_id
        await asyncio.sleep(0.5)  # some pages in, then the feed starts refusing every query
        await sim_control(simulator, "config", {"graphql_error_rate": 1.0, "latency_ms": 0})
        try:
            status = await wait_for_run(host.container, run_id, poll_s=0.2)
        finally:
            await sim_control(simulator, "config", {"graphql_error_rate": 0.0})
        assert status == "skipped"
        async with db.connection() as conn:
            run = await load_run(conn, run_id)
            failed = [p for p in await load_partitions(conn, run_id) if p.status == "failed"]
            cur = await conn.execute("SELECT kind FROM alerts WHERE run_id = %s", (run_id,))
            alerts = [row[0] for row in await cur.fetchall()]
            cur = await conn.execute("SELECT count(*) FROM watermarks")
            (watermarks,) = await cur.fetchone() or (None,)
        assert failed, "the refused queries failed partitions"
        assert "run_skipped" in alerts
        assert watermarks == 0, "a skipped run does not advance the watermark"
        assert run.status_reason is not None
        assert "failed" in run.status_reason

        code, out, err = await opus(host, "retry", str(run_id), "--partition", failed[0].partition_id)
        assert code == 0, err
        assert failed[0].partition_id in out
        code, out, err = await opus(host, "retry", str(run_id))
        assert code == 0 or "no failed partitions" in err, err
        assert await wait_for_run(host.container, run_id, poll_s=0.2) == "completed"
        assert await raw_ids(db) == expected_ids(await ground_truth(simulator), FEED, run.updated_to)
        async with db.connection() as conn:
            partitions = await load_partitions(conn, run_id)
            cur = await conn.execute("SELECT last_updated_at FROM watermarks WHERE feed = %s", (FEED,))
            (mark,) = await cur.fetchone() or (None,)
        assert all(p.status == "completed" for p in partitions)
        assert max(p.attempts for p in partitions) == 2
        assert mark == run.updated_to


async def test_cancel_stops_a_run_and_its_messages_do_nothing(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        await sim_control(simulator, "config", {"latency_ms": 40})
        try:
            started = await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
            assert started is not None
            code, _, err = await opus(host, "cancel", str(started.run.run_id), "--reason", "testing cancel")
            assert code == 0, err
            await asyncio.sleep(1)
            async with db.connection() as conn:
                run = await load_run(conn, started.run.run_id)
                pages_then = sum(p.pages for p in await load_partitions(conn, run.run_id))
            await asyncio.sleep(1)
            async with db.connection() as conn:
                pages_now = sum(p.pages for p in await load_partitions(conn, run.run_id))
        finally:
            await sim_control(simulator, "config", {"latency_ms": 0})
        assert run.status == "cancelled"
        assert run.status_reason == "testing cancel"
        assert pages_now == pages_then, "in-flight messages of a cancelled run change nothing"
        code, _, err = await opus(host, "cancel", str(run.run_id))
        assert code == 1
        assert "only planned or ingesting runs can be cancelled" in err


async def test_start_run_all_exits_1_when_a_run_does_not_complete(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        await sim_control(simulator, "config", {"latency_ms": 40})
        try:
            chain = asyncio.create_task(opus(host, "start-run", "--all", "--type", "full", FEEDS=FEED))
            run_id = None
            while run_id is None:
                assert not chain.done(), chain.result()
                async with db.connection() as conn:
                    cur = await conn.execute("SELECT run_id FROM run_metadata WHERE status IN ('planned', 'ingesting')")
                    run_id = ((await cur.fetchone()) or (None,))[0]
                await asyncio.sleep(0.05)
            await cancel_run(host.container, run_id, "testing start-run --all")
            code, out, err = await chain
        finally:
            await sim_control(simulator, "config", {"latency_ms": 0})
    assert out.strip() == f"{FEED}: cancelled (run {run_id})", (out, err)
    assert code == 1, "like --wait, --all says when a run did not complete"


async def test_poison_messages_are_dead_lettered_listed_and_replayable(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        queues = host.container.queues
        body: dict[str, Any] = {"type": "WORK_ITEM", "feed": FEED, "offset": "not a number"}
        await host.container.bus.send([OutgoingMessage(queues.work_items, "poison-1", body)])

        async def dead_letters() -> list[tuple[int, str, str]]:
            async with db.connection() as conn:
                cur = await conn.execute("SELECT id, reason, description FROM dead_letters ORDER BY id")
                return list(await cur.fetchall())

        for _ in range(100):
            if await dead_letters():
                break
            await asyncio.sleep(0.1)
        [(letter_id, reason, description)] = await dead_letters()
        assert reason == "PoisonMessage"
        assert "invalid message" in description
        assert "offset" in description
        code, out, _ = await opus(host, "dead-letters")
        assert code == 0
        assert "poison-1" in out
        code, out, err = await opus(host, "dead-letters", "--replay", str(letter_id))
        assert code == 0, err
        assert f"poison-1:replay-{letter_id}" in out
        code, _, err = await opus(host, "dead-letters", "--replay", str(letter_id))
        assert code == 1
        assert "already replayed" in err
