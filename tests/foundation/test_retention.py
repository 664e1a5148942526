"""Retention on the real database: what is old enough goes, in batches; what must stay, stays."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import retention
from shared.db.pool import Pool
from shared.retention import Pruned, prune

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=91)
RECENT = NOW - timedelta(days=89)
FEED = "nivoda-natural"


async def add_run(pool: Pool, *, status: str, started: datetime, feed: str = FEED) -> uuid.UUID:
    run_id = uuid.uuid4()
    finished = started + timedelta(hours=1) if status in ("completed", "failed", "skipped", "cancelled") else None
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO run_metadata (run_id, feed, run_type, status, trace_id, updated_from, updated_to,
                   expected_partitions, estimated_records, started_at, completed_at)
               VALUES (%s, %s, 'full', %s, 't', %s, %s, 1, 10, %s, %s)""",
            (run_id, feed, status, started - timedelta(days=1), started, started, finished),
        )
        await conn.execute(
            """INSERT INTO partition_progress (run_id, partition_id, position, min_price, estimated_records)
               VALUES (%s, 'partition-0', 0, 0, 10)""",
            (run_id,),
        )
    return run_id


async def add_records(pool: Pool, at: datetime, run_id: uuid.UUID) -> None:
    """One of each record retention may delete, dated `at`; and one of each it must keep."""
    body = json.dumps({"type": "CONSOLIDATE"})
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO error_records (source, code, message, run_id, occurred_at)
               VALUES ('worker', 'malformed_item', 'bad', %s, %s)""",
            (run_id, at),
        )
        for delivered in (at, None):
            await conn.execute(
                """INSERT INTO alerts (kind, severity, title, message, created_at, delivered_at)
                   VALUES ('run_failed', 'warning', 't', 'm', %s, %s)""",
                (at, delivered),
            )
        for replayed in (at, None):
            await conn.execute(
                """INSERT INTO dead_letters (source, queue, message_id, body, reason, dead_lettered_at,
                       replayed_at, replay_message_id)
                   VALUES ('local', 'consolidate', %s, %s, 'r', %s, %s, %s)""",
                (f"m-{uuid.uuid4()}", body, at, replayed, "x" if replayed else None),
            )


async def counts(pool: Pool) -> dict[str, Any]:
    async with pool.connection() as conn:
        result = {}
        for table, where in (
            ("error_records", "true"),
            ("run_metadata", "true"),
            ("partition_progress", "true"),
            ("alerts", "delivered_at IS NOT NULL"),
            ("alerts", "delivered_at IS NULL"),
            ("dead_letters", "replayed_at IS NOT NULL"),
            ("dead_letters", "replayed_at IS NULL"),
        ):
            cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE {where}")
            result[f"{table} where {where}"] = (await cur.fetchone() or (0,))[0]
        return result


async def test_old_operational_records_go_and_what_must_stay_stays(db: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 2)  # several batches per table
    old_runs = [
        await add_run(db, status=status, started=OLD - timedelta(hours=i))
        for i, status in enumerate(("completed", "failed", "skipped", "cancelled"))
    ]
    named = await add_run(db, status="completed", started=OLD - timedelta(days=3))
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO watermarks (feed, last_updated_at, last_run_id) VALUES (%s, %s, %s)", (FEED, OLD, named)
        )
    recent = await add_run(db, status="completed", started=RECENT)
    active = await add_run(db, status="ingesting", started=OLD - timedelta(days=7), feed="nivoda-labgrown")
    latest = await add_run(db, status="failed", started=OLD - timedelta(days=6), feed="nivoda-labgrown")
    for run_id in old_runs:
        await add_records(db, OLD, run_id)
    await add_records(db, RECENT, recent)

    pruned = await prune(db, 90, NOW)

    assert pruned == Pruned(error_records=4, runs=4, alerts=4, dead_letters=4, repricing_snapshots=0)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT run_id FROM run_metadata")
        kept = {row[0] for row in await cur.fetchall()}
    # The watermark's run, the recent one, an active one and a feed's latest run stay.
    assert kept == {named, recent, active, latest}
    assert await counts(db) == {
        "error_records where true": 1,
        "run_metadata where true": 4,
        "partition_progress where true": 4,
        "alerts where delivered_at IS NOT NULL": 1,
        "alerts where delivered_at IS NULL": 5,
        "dead_letters where replayed_at IS NOT NULL": 1,
        "dead_letters where replayed_at IS NULL": 5,
    }
    assert await prune(db, 90, NOW) == Pruned(), "a second pass finds nothing"


async def test_zero_days_keeps_everything(db: Pool) -> None:
    old = await add_run(db, status="completed", started=OLD - timedelta(days=400))
    await add_run(db, status="completed", started=OLD)
    await add_records(db, OLD - timedelta(days=400), old)
    before = await counts(db)
    assert await prune(db, 0, NOW) == Pruned()
    assert await counts(db) == before


async def test_snapshots_of_finished_repricing_jobs_go_and_their_jobs_stay(db: Pool) -> None:
    async with db.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO pricing_rule_versions (snapshot, reason) VALUES ('{}', 'test') RETURNING version"
        )
        version = (await cur.fetchone() or (0,))[0]
        diamond = uuid.uuid4()
        await conn.execute(
            """INSERT INTO diamonds (id, feed, supplier_stone_id, offer_id, shape, carats, lab_grown, feed_price,
                   price_per_carat, retail_price, markup_ratio, availability, row_hash)
               SELECT %s, %s, 's-1', 'o-1', 'ROUND', 1.0, false, 100, 100, 120, 1.2, 'available', '\\x00'""",
            (diamond, FEED),
        )
        jobs = []
        for status, finished in (("completed", OLD), ("completed", RECENT), ("running", None)):
            cur = await conn.execute(
                """INSERT INTO repricing_jobs (status, to_version, reason, created_at, completed_at)
                   VALUES (%s, %s, 'test', %s, %s) RETURNING id""",
                (status, version, OLD, finished),
            )
            job = (await cur.fetchone() or (0,))[0]
            jobs.append(job)
            await conn.execute(
                """INSERT INTO repricing_snapshots (job_id, diamond_id, old_retail_price, old_markup_ratio,
                       new_retail_price, new_markup_ratio) VALUES (%s, %s, 120, 1.2, 130, 1.3)""",
                (job, diamond),
            )
    assert (await prune(db, 90, NOW)).repricing_snapshots == 1
    async with db.connection() as conn:
        cur = await conn.execute("SELECT job_id FROM repricing_snapshots ORDER BY job_id")
        assert [row[0] for row in await cur.fetchall()] == jobs[1:]
        cur = await conn.execute("SELECT count(*) FROM repricing_jobs")
        assert await cur.fetchone() == (3,)


async def test_dismissed_dead_letters_go_the_period_after_their_dismissal(db: Pool) -> None:
    """Counted from the dismissal, as a replayed letter's from its replay; outstanding ones stay."""
    letters = {
        # message id: (dead-lettered, replayed, dismissed)
        "dismissed-long-ago": (OLD - timedelta(days=30), None, OLD),
        "dismissed-lately": (OLD - timedelta(days=30), None, RECENT),
        "replayed-long-ago": (OLD - timedelta(days=30), OLD, None),
        "outstanding": (OLD - timedelta(days=30), None, None),
    }
    async with db.connection() as conn:
        for message_id, (dead_lettered, replayed, dismissed) in letters.items():
            await conn.execute(
                """INSERT INTO dead_letters (source, queue, message_id, body, reason, dead_lettered_at,
                       replayed_at, replay_message_id, dismissed_at, dismissal_note)
                   VALUES ('local', 'work-items', %s, '{}', 'TTLExpiredException', %s, %s, %s, %s, %s)""",
                (
                    message_id,
                    dead_lettered,
                    replayed,
                    "r" if replayed else None,
                    dismissed,
                    "handled" if dismissed else None,
                ),
            )

    assert (await prune(db, 90, NOW)).dead_letters == 2

    async with db.connection() as conn:
        cur = await conn.execute("SELECT message_id FROM dead_letters ORDER BY message_id")
        assert [row[0] for row in await cur.fetchall()] == ["dismissed-lately", "outstanding"]
