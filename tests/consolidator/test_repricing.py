"""Repricing against a real PostgreSQL: rule changes racing a consolidation, jobs killed and resumed,
progress figures, and the catalogue ending priced by the newest rules exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from api import pricing as rules_api
from consolidator import repricing
from consolidator.pricing import PricingInput, price
from consolidator.repricing import load_job, resumable_job, run_job
from consolidator.rules_store import latest_ruleset, pinned_ruleset, record_version
from consolidator.service import consolidate
from shared.bootstrap import Container, open_container
from shared.db.pool import Pool
from shared.errors import ConflictError
from shared.messages import Consolidate
from shared.raw_store import to_raw_items, upsert_raw
from shared.settings import Settings
from tests.consolidator.items import nivoda_item

FEED = "nivoda-natural"
NATURAL_X2 = {"priority": 5, "stone_type": "natural", "markup_multiplier": Decimal(2), "rating": 7}


@pytest.fixture
async def container(db: Pool, settings: Settings, database_url: str) -> AsyncIterator[Container]:
    async with open_container(settings, database_url, name="repricing-tests") as opened:
        yield opened


async def new_run(pool: Pool) -> UUID:
    """An incremental run whose ingestion is over, waiting for its consolidation."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """INSERT INTO run_metadata (feed, run_type, status, trace_id, updated_from, updated_to,
                   expected_partitions, estimated_records)
               VALUES (%s, 'incremental', 'consolidating', 'repricing-test', now() - interval '1 hour', now(), 1, 0)
               RETURNING run_id""",
            (FEED,),
        )
        row = await cur.fetchone()
    assert row is not None
    run_id: UUID = row[0]
    return run_id


async def ingest(pool: Pool, run_id: UUID, prices_cents: list[int]) -> None:
    """Raw rows for natural stones s0, s1, ... costing the given cents, pending consolidation."""
    items = [nivoda_item(id=f"offer-{n}", price=cents, diamond={"id": f"s{n}"}) for n, cents in enumerate(prices_cents)]
    raw, unkeyed = to_raw_items(items)
    assert not unkeyed
    async with pool.connection() as conn, conn.transaction():
        await upsert_raw(conn, feed=FEED, run_id=run_id, items=raw)


async def change_rules(pool: Pool, values: dict[str, Any]) -> int:
    """Create a rule with a repricing job, as the API does; return the job's id."""
    applied = await rules_api.apply_change(pool, rules_api.Change("create", values=values), reprice=True)
    assert applied.job_id is not None
    return applied.job_id


async def stale_stones(pool: Pool) -> dict[str, tuple[Decimal, Decimal]]:
    """Live stones whose stored price is not what the newest rule version gives: id -> (stored, due)."""
    async with pool.connection() as conn:
        rules = await latest_ruleset(conn)
        cur = await conn.execute(
            """SELECT supplier_stone_id, feed, shape, carats, color, clarity, cut, lab_grown, fancy_color, feed_price,
                      retail_price
               FROM diamonds WHERE status = 'active'"""
        )
        rows = await cur.fetchall()
    assert rows, "the catalogue is empty: nothing was checked"
    due = {row[0]: (row[10], price(PricingInput(*row[:10]), rules).retail_price) for row in rows}
    return {sid: prices for sid, prices in due.items() if prices[0] != prices[1]}


async def consolidated(pool: Pool, container: Container, prices_cents: list[int]) -> UUID:
    """A completed run that put natural stones costing these cents into the catalogue."""
    run_id = await new_run(pool)
    await ingest(pool, run_id, prices_cents)
    message = Consolidate(feed=FEED, run_id=run_id, trace_id="repricing-test", requested_by="test")
    assert (await consolidate(container, message)).outcome == "completed"
    return run_id


async def test_a_rule_change_during_a_consolidation_leaves_no_stone_priced_by_the_old_rules(
    db: Pool, container: Container
) -> None:
    run_id = await new_run(db)
    await ingest(db, run_id, [100_000, 250_050, 99_999])
    # The consolidation starts (and pins the rules of the moment) ...
    async with db.connection() as conn:
        pinned = await pinned_ruleset(conn, run_id)
    # ... the rules change and their repricing job runs to completion before it merges anything ...
    job_id = await change_rules(db, NATURAL_X2)
    job = await run_job(db, job_id)
    assert job.status == "completed"
    # ... then it merges its stones, priced by the version it pinned, and completes.
    message = Consolidate(feed=FEED, run_id=run_id, trace_id="repricing-test", requested_by="test")
    assert (await consolidate(container, message)).outcome == "completed"

    assert await stale_stones(db) == {}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT pricing_version FROM run_metadata WHERE run_id = %s", (run_id,))
        assert await cur.fetchone() == (pinned.version,), "the run records the one version it priced with"
        cur = await conn.execute(
            "SELECT retail_price, markup_ratio, rating FROM diamonds WHERE supplier_stone_id = 's1'"
        )
        assert await cur.fetchone() == (Decimal("5001.00"), Decimal("2.0000"), 7)
        cur = await conn.execute(
            """SELECT count(*), min(old_retail_price), min(new_retail_price) FROM diamond_history
               WHERE change = 'repriced' AND run_id = %s""",
            (run_id,),
        )
        assert await cur.fetchone() == (3, Decimal("1399.99"), Decimal("1999.98"))


async def test_a_run_under_unchanged_rules_reprices_nothing_after_merging(db: Pool, container: Container) -> None:
    run_id = await new_run(db)
    await ingest(db, run_id, [100_000, 250_050])
    message = Consolidate(feed=FEED, run_id=run_id, trace_id="repricing-test", requested_by="test")
    assert (await consolidate(container, message)).outcome == "completed"
    assert await stale_stones(db) == {}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM diamond_history WHERE change = 'repriced'")
        assert await cur.fetchone() == (0,)


def fail_the_second_batch(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The job's second batch raises `error` (its process died, a statement timed out, ...)."""
    real_batch = repricing._reprice_batch
    calls = 0

    async def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise error
        return await real_batch(*args, **kwargs)

    monkeypatch.setattr(repricing, "_reprice_batch", failing)


async def test_a_job_killed_mid_way_resumes_and_reprices_each_stone_once(
    db: Pool, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    await consolidated(db, container, [100_000, 200_000, 300_000, 400_000, 500_000])
    job_id = await change_rules(db, NATURAL_X2)
    fail_the_second_batch(monkeypatch, ConnectionError("the runner's process died"))
    with pytest.raises(ConnectionError):
        await run_job(db, job_id, batch_size=2)
    monkeypatch.undo()
    async with db.connection() as conn:
        job = await load_job(conn, job_id)
        assert (job.status, job.total, job.processed, job.changed) == ("running", 5, 2, 2)
        # A stone ahead of the resume point leaves the catalogue before the job is resumed.
        await conn.execute(
            """UPDATE diamonds SET status = 'deleted', deleted_at = now()
               WHERE id = (SELECT id FROM diamonds ORDER BY id DESC LIMIT 1)"""
        )

    job = await run_job(db, job_id, batch_size=2)

    assert await stale_stones(db) == {}
    assert (job.status, job.processed, job.changed) == ("completed", 4, 4)
    assert job.total == job.processed, "a completed job has walked all it had to"
    async with db.connection() as conn:
        cur = await conn.execute(
            """SELECT count(*), count(DISTINCT diamond_id), sum(new_retail_price - old_retail_price)
               FROM diamond_history WHERE change = 'repriced' AND repricing_job_id = %s""",
            (job_id,),
        )
        assert await cur.fetchone() == (4, 4, job.price_delta)
        cur = await conn.execute("SELECT count(*) FROM repricing_snapshots WHERE job_id = %s", (job_id,))
        assert await cur.fetchone() == (4,)


async def test_a_failed_job_is_resumed_while_its_rules_are_current(
    db: Pool, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    await consolidated(db, container, [100_000, 200_000, 300_000, 400_000, 500_000])
    job_id = await change_rules(db, NATURAL_X2)
    fail_the_second_batch(monkeypatch, psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))
    job = await run_job(db, job_id, batch_size=2)
    monkeypatch.undo()
    assert (job.status, job.processed) == ("failed", 2)
    assert len(await stale_stones(db)) == 3, "the catalogue is left half repriced"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT kind, severity, title, message FROM alerts")
        [(kind, severity, title, message)] = await cur.fetchall()
    assert (kind, severity, title) == ("repricing_failed", "critical", f"Repricing job {job_id} failed")
    assert "statement timeout" in message
    assert f"/api/v2/pricing/jobs/{job_id}/resume" in message

    async with db.connection() as conn:
        assert (await resumable_job(conn, job_id)).status == "running"
    job = await run_job(db, job_id, batch_size=2)

    assert (job.status, job.processed, job.changed, job.total, job.error) == ("completed", 5, 5, 5, None)
    assert await stale_stones(db) == {}
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(DISTINCT diamond_id), count(*) FROM diamond_history WHERE repricing_job_id = %s", (job_id,)
        )
        assert await cur.fetchone() == (5, 5)
        with pytest.raises(ConflictError, match="completed"):
            await resumable_job(conn, job_id)


async def test_a_failed_job_is_not_resumed_once_the_rules_changed(db: Pool, container: Container) -> None:
    await consolidated(db, container, [100_000])
    job_id = await change_rules(db, NATURAL_X2)
    async with db.connection() as conn:
        await conn.execute("UPDATE repricing_jobs SET status = 'failed', completed_at = now() WHERE id = %s", (job_id,))
    later = await rules_api.apply_change(
        db, rules_api.Change("create", values={**NATURAL_X2, "priority": 6}), reprice=False
    )
    async with db.connection() as conn:
        with pytest.raises(ConflictError, match=f"version {later.version} is current"):
            await resumable_job(conn, job_id)
        assert (await load_job(conn, job_id)).status == "failed"


async def test_the_first_version_recorded_while_the_first_change_commits_is_not_stale(
    db: Pool, database_url: str
) -> None:
    run_id = await new_run(db)
    # The first rule change ever is committing: it recorded the rules before it (version 1) and after
    # it (version 2) under its table lock ...
    async with await psycopg.AsyncConnection.connect(database_url) as changing:
        await changing.execute("LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE")
        await latest_ruleset(changing)
        await changing.execute(
            "INSERT INTO pricing_rules (priority, stone_type, markup_multiplier) VALUES (5, 'natural', 2)"
        )
        changed = await record_version(changing, "created rule")
        # ... when a consolidation pins the rules: it finds no version yet, and records one.
        async with db.connection() as conn:
            pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0]
            pinning = asyncio.create_task(pinned_ruleset(conn, run_id))
            # Until it waits for the change's lock (or, not waiting, is done): only the server knows.
            while not pinning.done() and not await _waits_for_a_lock(db, pid):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await changing.commit()
            pinned = await pinning
    assert pinned.version == changed.version
    assert [rule.markup_multiplier for rule in pinned.rules] == [Decimal(2)]


async def _waits_for_a_lock(pool: Pool, pid: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
    return bool(row and row[0])


async def test_a_runs_catch_up_and_a_jobs_batch_do_not_deadlock(
    db: Pool, container: Container, database_url: str
) -> None:
    run_id = await consolidated(db, container, [100_000, 200_000])
    async with db.connection() as conn:
        pinned = await latest_ruleset(conn)
    await change_rules(db, NATURAL_X2)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id FROM diamonds ORDER BY id")
        first, second = [row[0] for row in await cur.fetchall()]
    # A job's batch has locked the run's second stone (and will bump the feed's catalogue version) ...
    async with await psycopg.AsyncConnection.connect(database_url) as job:
        await job.execute("SELECT 1 FROM diamonds WHERE id = %s FOR UPDATE", (second,))
        # ... while the run's completion reprices its stones one by one: the first, then it waits.
        async with db.connection() as conn:
            pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0]

            async def complete() -> int:
                async with conn.transaction():
                    return await repricing.catch_up_run(conn, FEED, run_id, pinned, batch_size=1)

            catching_up = asyncio.create_task(complete())
            while not catching_up.done() and not await _waits_for_a_lock(db, pid):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await job.execute("UPDATE dataset_versions SET version = version + 1 WHERE feed = %s", (FEED,))
            await job.commit()
            assert await catching_up == 2
    assert first < second
    assert await stale_stones(db) == {}
