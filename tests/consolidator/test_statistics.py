"""Planner statistics of the bulk tables, on the real database: when the consolidation analyses them."""

from __future__ import annotations

import uuid

import psycopg

from consolidator.statistics import analyse_once_filled, refresh_statistics, statistics_stale
from shared.db.pool import Pool

FEED = "nivoda-natural"


async def analysed(pool: Pool) -> tuple[int, float]:
    """How many times raw_pending was analysed by hand, and the row count its statistics hold."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT s.analyze_count, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.relname = 'raw_pending'"""
        )
        count, rows = await cur.fetchone() or (0, 0.0)
    return int(count), float(rows)


async def queue(database_url: str, count: int) -> None:
    """Queue rows from another connection, its statistics reported to the server when it commits."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            """INSERT INTO raw_pending (feed, supplier_stone_id, run_id)
               SELECT %s, 'stone-' || n || '-' || %s, %s FROM generate_series(1, %s) n""",
            (FEED, uuid.uuid4().hex, uuid.uuid4(), count),
        )
        await conn.execute("SELECT pg_stat_force_next_flush()")


def test_statistics_are_stale_after_a_tenth_of_the_table_changed() -> None:
    assert statistics_stale(5, -1.0), "a table never analysed"
    assert statistics_stale(101, 1000.0)
    assert not statistics_stale(100, 1000.0)
    assert not statistics_stale(0, 0.0)
    assert statistics_stale(1, 0.0), "an empty table that has rows now"


async def test_an_empty_table_is_analysed_once_it_has_rows_and_then_left_alone(db: Pool, database_url: str) -> None:
    before, _ = await analysed(db)
    async with db.connection() as conn:
        assert not await analyse_once_filled(conn, "raw_pending"), "nothing to learn from an empty table"
    assert (await analysed(db))[0] == before

    await queue(database_url, 300)
    async with db.connection() as conn:
        assert await analyse_once_filled(conn, "raw_pending")
    count, rows = await analysed(db)
    assert (count, rows) == (before + 1, 300.0)

    await queue(database_url, 3000)  # ten times as many: the plans' estimates scale with the table's size
    async with db.connection() as conn:
        assert await analyse_once_filled(conn, "raw_pending")
    assert await analysed(db) == (before + 1, 300.0), "a filled table is not analysed again as it grows"


async def test_a_table_is_refreshed_when_a_tenth_of_it_changed_by_anyone(db: Pool, database_url: str) -> None:
    await queue(database_url, 1000)
    async with db.connection() as conn:
        await conn.execute("ANALYZE raw_pending")
        before, _ = await analysed(db)
        assert not await refresh_statistics(conn, "raw_pending", changed=100), "a tenth is not more than a tenth"
        assert await refresh_statistics(conn, "raw_pending", changed=101), "what the caller changed"
    assert (await analysed(db))[0] == before + 1

    await queue(database_url, 200)  # another process's change, counted by the server
    async with db.connection() as conn:
        assert await refresh_statistics(conn, "raw_pending")
    assert await analysed(db) == (before + 2, 1200.0)
