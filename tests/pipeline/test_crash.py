"""`opus run` killed with SIGKILL mid-run: after a restart the run completes, exactly once in effect."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from fanin.service import sweep
from feedsim.embed import ThreadedSimulator
from scheduler.chain import wait_for_run
from scheduler.service import start_run
from shared.db.pool import Pool
from shared.errors import ConflictError
from shared.runs import RunRecord, load_run
from tests.helpers import free_port, scalars, wait_for
from tests.pipeline.conftest import expected_ids, ground_truth, pipeline, pipeline_settings, sim_control

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"


def _host(database_url: str, simulator: ThreadedSimulator, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NIVODA_ENDPOINT": simulator.endpoint,
        "NIVODA_RATE_LIMIT_SCOPE": "process",
        "NIVODA_RATE_LIMIT_PER_S": "10000",
        "FEEDS": FEED,
        "RUN_ON_STARTUP": "true",
        "API_PORT": str(free_port()),
        "OPUS_DATA_DIR": str(data_dir),
        "BUS_LOCK_DURATION_S": "5",
        "WORKER_CONCURRENCY": "4",
        "MAX_WORKERS_FULL": "8",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "opus", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _run_state(database_url: str) -> tuple[str, int] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT r.status, coalesce(sum(p.pages), 0)::int FROM run_metadata r
               LEFT JOIN partition_progress p USING (run_id) GROUP BY r.run_id, r.status"""
        ).fetchone()
    return (row[0], row[1]) if row else None


def _where_it_stands(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        runs = conn.execute("SELECT status, status_reason, consolidation_processed FROM run_metadata").fetchall()
        partitions = conn.execute(
            "SELECT partition_id, status, next_offset, attempts, error FROM partition_progress ORDER BY position"
        ).fetchall()
        messages = conn.execute("SELECT queue, delivery_count, locked_until FROM bus_messages").fetchall()
        letters = conn.execute("SELECT queue, reason, description FROM dead_letters").fetchall()
    return f"runs {runs}\npartitions {partitions}\nmessages {messages}\ndead letters {letters}"


async def test_a_host_killed_mid_run_resumes_and_completes_exactly_once(
    db: object, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    await sim_control(simulator, "config", {"latency_ms": 25})
    try:
        first = _host(database_url, simulator, tmp_path)
        try:
            wait_for(
                lambda: (state := _run_state(database_url)) and state[0] == "ingesting" and state[1] >= 15,
                timeout=120,
                what="the run to be well under way",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        state = _run_state(database_url)
        assert state is not None
        assert state[0] == "ingesting", f"the kill came too late: {state}"
        second = _host(database_url, simulator, tmp_path)
        completed = False
        try:
            wait_for(
                lambda: (state := _run_state(database_url)) and state[0] == "completed",
                timeout=240,
                interval=0.5,
                what="the resumed run to complete",
            )
            completed = True
        finally:
            second.send_signal(signal.SIGINT)
            _, errors = second.communicate(timeout=60)
            if not completed:  # shown with the failure: where the run stood, and what the host said
                print(_where_it_stands(database_url), errors.decode()[-8000:], sep="\n")
        assert second.returncode == 0, errors.decode()[-2000:]
    finally:
        await sim_control(simulator, "config", {"latency_ms": 0})
    with psycopg.connect(database_url) as conn:
        run_id, updated_to = scalars(conn, "SELECT run_id, updated_to FROM run_metadata")
        query = "SELECT supplier_stone_id FROM raw_diamonds_nivoda WHERE feed = %s"
        stored = [r[0] for r in conn.execute(query, (FEED,))]
        (seen,) = scalars(conn, "SELECT sum(records_seen) FROM partition_progress WHERE run_id = %s", run_id)
        (diamonds,) = scalars(conn, "SELECT count(*) FROM diamonds WHERE feed = %s", FEED)
        (errors,) = scalars(
            conn, "SELECT count(*) FROM error_records WHERE source = 'consolidator' AND run_id = %s", run_id
        )
    truth = expected_ids(await ground_truth(simulator), FEED, updated_to)
    assert set(stored) == truth
    assert seen == len(truth), "pages were counted twice or skipped across the crash"
    assert diamonds + errors == len(truth), "every stone is in the catalogue or recorded as unmappable"


class _DiesBeforeTheFanIn:
    """A process that dies after recording its run and before handing it to the fan-in."""

    async def start(self, run: RunRecord) -> None:
        raise RuntimeError("killed")


async def test_a_run_left_planned_by_a_dead_process_is_launched_and_completes(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        dying = replace(host.container, fanin=_DiesBeforeTheFanIn())
        with pytest.raises(RuntimeError, match="killed"):
            await start_run(dying, feed=FEED, run_type="full", requested_by="test")
        async with db.connection() as conn:
            cur = await conn.execute("SELECT run_id, status FROM run_metadata")
            [(run_id, status)] = await cur.fetchall()
        assert status == "planned"
        await sweep(host.container)
        async with db.connection() as conn:
            assert (await load_run(conn, run_id)).status == "planned", "a run being launched right now is left alone"
            await conn.execute("UPDATE run_metadata SET updated_at = now() - interval '3 minutes'")
        with pytest.raises(ConflictError):
            await start_run(host.container, feed=FEED, run_type="full", requested_by="test")
        await sweep(host.container)
        assert await asyncio.wait_for(wait_for_run(host.container, run_id, poll_s=0.2), 120) == "completed"
        async with db.connection() as conn:
            run = await load_run(conn, run_id)
            cur = await conn.execute("SELECT supplier_stone_id FROM diamonds WHERE feed = %s", (FEED,))
            stones = {row[0] for row in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT supplier_stone_id FROM error_records WHERE source = 'consolidator' AND run_id = %s", (run_id,)
            )
            unmappable = {row[0] for row in await cur.fetchall()}
            cur = await conn.execute("SELECT last_updated_at FROM watermarks WHERE feed = %s", (FEED,))
            (mark,) = await cur.fetchone() or (None,)
    assert mark == run.updated_to
    assert stones | unmappable == expected_ids(await ground_truth(simulator), FEED, run.updated_to)
    assert not stones & unmappable
