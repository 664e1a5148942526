"""Consolidation end to end: the catalogue equals the simulator's truth, through churn, crashes and
concurrent consolidators; the watermark only moves in the run's final transaction."""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from consolidator import service as consolidation
from consolidator.service import consolidate
from fanin.service import sweep
from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from localhost.host import Host
from scheduler.chain import wait_for_run
from scheduler.service import start_run
from shared.db.pool import Pool
from shared.messages import Consolidate
from shared.runs import RunRecord, load_run
from tests.pipeline.conftest import ground_truth, in_default_query, pipeline, pipeline_settings, sim_control

pytestmark = pytest.mark.xdist_group("pipeline")

FEED = "nivoda-natural"
SEED_RULES = Path(__file__).resolve().parents[2] / "shared" / "db" / "migrations" / "0002_seed_pricing_rules.sql"
BASE_MARGIN = {"natural": Decimal(40), "fancy": Decimal(40), "lab": Decimal(79)}
# The seeded cost brackets (inclusive upper bounds) and their margin modifiers, restated here as the oracle.
BRACKETS = [
    (Decimal("499.99"), Decimal(6)),
    (Decimal("999.99"), Decimal(6)),
    (Decimal("2999.99"), Decimal(3)),
    (Decimal("5999.99"), Decimal(0)),
    (Decimal("9999.99"), Decimal(-4)),
    (Decimal("19999.99"), Decimal(-9)),
]
NIVODA_TO_CATALOGUE = {
    "AVAILABLE": "available",
    "On Hold": "on_hold",
    "Sold": "sold",
    "MEMO": "sold",
    "NOT AVAILABLE": "unavailable",
}


def expected_retail(cost: Decimal, stone_type: str) -> Decimal:
    modifier = next((m for upper, m in BRACKETS if cost <= upper), Decimal(-14))
    ratio = 1 + (BASE_MARGIN[stone_type] + modifier) / 100
    return (cost * ratio).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def seed_rules(pool: Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute(SEED_RULES.read_text())


async def catalogue(pool: Pool) -> dict[str, dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT supplier_stone_id, status, availability, feed_price, retail_price, fancy_color, row_hash
               FROM diamonds WHERE feed = %s""",
            (FEED,),
        )
        columns = [c.name for c in cur.description or ()]
        return {row[0]: dict(zip(columns, row, strict=True)) for row in await cur.fetchall()}


async def unmappable(pool: Pool) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT supplier_stone_id FROM error_records
               WHERE source = 'consolidator' AND supplier_stone_id IS NOT NULL"""
        )
        return {row[0] for row in await cur.fetchall()}


async def watermark(pool: Pool) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT last_updated_at FROM watermarks WHERE feed = %s", (FEED,))
        row = await cur.fetchone()
        return row[0] if row else None


async def run_feed(host: Host, run_type: str) -> RunRecord:
    started = await start_run(host.container, feed=FEED, run_type=run_type, requested_by="test")  # type: ignore[arg-type]
    assert started is not None
    await wait_for_run(host.container, started.run.run_id, poll_s=0.2)
    async with host.container.pool.connection() as conn:
        return await load_run(conn, started.run.run_id)


def assert_priced(entry: dict[str, Any], price_cents: int) -> None:
    cost = Decimal(price_cents) / 100
    assert entry["feed_price"] == cost
    assert entry["retail_price"] == expected_retail(cost, "fancy" if entry["fancy_color"] else "natural")


@pytest.fixture
def churn_sim() -> Any:
    sim = start_in_thread(InventorySpec(seed=23, stones=20_000))
    yield sim
    sim.stop()


async def test_full_run_then_churn_incremental_and_full_keep_the_catalogue_true(
    db: Pool, database_url: str, tmp_path: Path, churn_sim: ThreadedSimulator
) -> None:
    await seed_rules(db)
    settings = pipeline_settings(database_url, tmp_path, churn_sim.endpoint, max_workers_incremental=4)
    async with pipeline(settings) as host:
        # 1. A full run: the catalogue is the available inventory, priced by the seeded rules.
        first = await run_feed(host, "full")
        assert first.status == "completed"
        assert await watermark(db) == first.updated_to
        truth = {s["supplier_stone_id"]: s for s in await ground_truth(churn_sim)}
        wanted = {sid for sid, s in truth.items() if in_default_query(s, FEED, first.updated_to)}
        stored = await catalogue(db)
        failed = await unmappable(db)
        assert set(stored) | failed == wanted
        assert not set(stored) & failed
        for sid, entry in stored.items():
            assert entry["status"] == "active"
            assert entry["availability"] == "available"
            assert_priced(entry, truth[sid]["price_cents"])

        # 2. Churn, then an incremental run: holds, sales and repricings reach the catalogue.
        await sim_control(churn_sim, "churn", {"events": 1500})
        incremental = await run_feed(host, "incremental")
        assert incremental.status == "completed"
        assert incremental.run_type == "incremental"
        truth = {s["supplier_stone_id"]: s for s in await ground_truth(churn_sim)}
        stored = await catalogue(db)
        failed = await unmappable(db)
        changed = 0
        for sid, stone in truth.items():
            if not in_default_query(stone, FEED, incremental.updated_to, only_available=False) or sid in failed:
                continue
            if stone["availability"] == "AVAILABLE" or sid in stored:
                entry = stored[sid]
                assert entry["availability"] == NIVODA_TO_CATALOGUE[stone["availability"]], sid
                assert_priced(entry, stone["price_cents"])
                changed += entry["availability"] != "available"
        assert changed > 20, "the churn put stones on hold or sold them"
        removed = {sid for sid in stored if sid not in truth}
        assert removed, "the churn removed stones"
        assert all(stored[sid]["status"] == "active" for sid in removed), "an incremental run deletes nothing"

        # 3. A full run: stones that left the feed are deleted, no stone still in the feed is.
        full = await run_feed(host, "full")
        assert full.status == "completed"
        stored = await catalogue(db)
        for sid in removed:
            assert stored[sid]["status"] == "deleted", sid
        wrongly = [sid for sid, e in stored.items() if e["status"] == "deleted" and sid in truth]
        assert not wrongly, f"stones still in the feed were deleted: {wrongly[:5]}"
        assert await watermark(db) == full.updated_to

        # 4. Stones deleted from the catalogue that the feed lists again exactly as they were (their raw
        # payload unchanged, so ingestion queues nothing): the next full run restores them.
        relisted = sorted(sid for sid, e in stored.items() if e["status"] == "active")[:3]
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE diamonds SET status = 'deleted', deleted_at = now() WHERE supplier_stone_id = ANY(%s)",
                (relisted,),
            )
        again = await run_feed(host, "full")
        assert again.status == "completed"
        stored = await catalogue(db)
        assert [stored[sid]["status"] for sid in relisted] == ["active"] * 3
        async with db.connection() as conn:
            cur = await conn.execute(
                """SELECT count(*) FROM diamond_history h JOIN diamonds d ON d.id = h.diamond_id
                   WHERE h.run_id = %s AND h.change = 'restored' AND d.supplier_stone_id = ANY(%s)""",
                (again.run_id, relisted),
            )
            assert await cur.fetchone() == (3,)

        # 5. A live stone whose refreshed item no longer maps (it lost its video) leaves the live
        # catalogue with the run's error record, rather than keeping a price and availability gone stale.
        lost = relisted[0]
        async with db.connection() as conn:
            await conn.execute(
                """UPDATE raw_diamonds_nivoda SET payload = (payload::jsonb #- '{diamond,video}'
                       #- '{diamond,certificate,v360}' #- '{diamond,v360}' #- '{diamond,supplier_video_link}')::text
                   WHERE feed = %s AND supplier_stone_id = %s""",
                (FEED, lost),
            )
            await conn.execute(
                "INSERT INTO raw_pending (feed, supplier_stone_id, run_id) VALUES (%s, %s, %s)",
                (FEED, lost, again.run_id),
            )
        later = await run_feed(host, "incremental")
        assert later.status == "completed"
        assert (await catalogue(db))[lost]["status"] == "deleted"
        assert lost in await unmappable(db)


async def reset_consolidation(pool: Pool, run_id: Any) -> None:
    """Put the run back to 'consolidating' with every raw row pending and an empty catalogue."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("TRUNCATE diamonds, diamond_history, watermarks, error_records CASCADE")
        await conn.execute(
            "INSERT INTO raw_pending (feed, supplier_stone_id, run_id) SELECT feed, supplier_stone_id, %s "
            "FROM raw_diamonds_nivoda ON CONFLICT DO NOTHING",
            (run_id,),
        )
        await conn.execute(
            """UPDATE run_metadata SET status = 'consolidating', completed_at = NULL, watermark_advanced = false,
                   consolidation_processed = 0, consolidation_errors = 0 WHERE run_id = %s""",
            (run_id,),
        )


async def snapshot(pool: Pool) -> set[tuple[str, str, bytes]]:
    return {(sid, e["status"], bytes(e["row_hash"])) for sid, e in (await catalogue(pool)).items()}


async def test_interrupted_or_concurrent_consolidation_yields_the_same_catalogue(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_rules(db)
    settings = pipeline_settings(database_url, tmp_path, simulator.endpoint, consolidator_batch_size=300)
    async with pipeline(settings) as host:
        run = await run_feed(host, "full")
        assert run.status == "completed"
        reference = await snapshot(db)
        assert len(reference) > 1000
        message = Consolidate(feed=FEED, run_id=run.run_id, trace_id=run.trace_id, requested_by="test")

        # A consolidator that dies mid-way (after some batches) leaves the run and the watermark alone...
        await reset_consolidation(db, run.run_id)
        real_merge = consolidation.merge_rows  # type: ignore[attr-defined]
        calls = 0

        async def dying_merge(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 4:
                raise ConnectionError("consolidator killed")
            return await real_merge(*args, **kwargs)

        monkeypatch.setattr(consolidation, "merge_rows", dying_merge)
        with pytest.raises(ConnectionError):
            await consolidate(host.container, message)
        monkeypatch.setattr(consolidation, "merge_rows", real_merge)
        async with db.connection() as conn:
            assert (await load_run(conn, run.run_id)).status == "consolidating"
        assert await watermark(db) is None
        assert 0 < len(await catalogue(db)) < len(reference)
        # ...and running it again finishes the same catalogue.
        assert (await consolidate(host.container, message)).outcome == "completed"
        assert await snapshot(db) == reference
        assert await watermark(db) == run.updated_to

        # A failure just before the final transaction: everything merged, but the run is not complete.
        await reset_consolidation(db, run.run_id)

        async def failing_finalise(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("database went away before the final transaction")

        monkeypatch.setattr(consolidation, "finalise", failing_finalise)
        with pytest.raises(ConnectionError):
            await consolidate(host.container, message)
        monkeypatch.undo()
        assert await watermark(db) is None

        # Two consolidators on the same run produce the same catalogue as one.
        await reset_consolidation(db, run.run_id)
        outcomes = await asyncio.gather(consolidate(host.container, message), consolidate(host.container, message))
        assert sorted(o.outcome for o in outcomes) == ["completed", "joined"]
        assert await snapshot(db) == reference
        assert await watermark(db) == run.updated_to


async def test_a_consolidation_that_stops_making_progress_is_requested_again_with_an_alert(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    await seed_rules(db)
    settings = pipeline_settings(database_url, tmp_path, simulator.endpoint)
    async with pipeline(settings) as host:
        run = await run_feed(host, "full")
        assert run.status == "completed"
        reference = await snapshot(db)
        # As a run is left when its consolidation message was dead-lettered mid-way: consolidating,
        # started, nothing consolidated for longer than the stall window, nothing on the bus.
        await reset_consolidation(db, run.run_id)
        async with db.connection() as conn:
            await conn.execute(
                """UPDATE run_metadata SET consolidation_started_at = now() - interval '2 hours',
                       updated_at = now() - interval '2 hours' WHERE run_id = %s""",
                (run.run_id,),
            )
        await sweep(host.container)
        assert await wait_for_run(host.container, run.run_id, poll_s=0.2) == "completed"
        assert await snapshot(db) == reference
        async with db.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM alerts WHERE kind = 'consolidation_failed' AND run_id = %s", (run.run_id,)
            )
            assert await cur.fetchone() == (1,)
            # A run that consolidates normally is left alone.
            await sweep(host.container)
            cur = await conn.execute("SELECT count(*) FROM alerts WHERE kind = 'consolidation_failed'")
            assert await cur.fetchone() == (1,)


async def statistics(pool: Pool) -> tuple[float, int]:
    """The planner's row count for the catalogue (set by ANALYZE, or autovacuum), and the true one."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.reltuples, (SELECT count(*) FROM diamonds) FROM pg_class c WHERE c.oid = 'diamonds'::regclass"
        )
        estimated, live = await cur.fetchone() or (0.0, 0)
    return float(estimated), int(live)


async def analyses(pool: Pool) -> dict[str, int]:
    """How many times each bulk table was analysed by hand (autovacuum's are counted apart)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT relname, analyze_count FROM pg_stat_user_tables WHERE relname IN ('diamonds', 'raw_pending')"
        )
        return {name: int(count) for name, count in await cur.fetchall()}


async def test_a_large_consolidation_refreshes_the_catalogue_statistics(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> None:
    before = await analyses(db)
    async with pipeline(pipeline_settings(database_url, tmp_path, simulator.endpoint)) as host:
        first = await run_feed(host, "full")
        # The run is completed when its final transaction commits; the refresh follows it.
        for _ in range(100):
            estimated, live = await statistics(db)
            if estimated == live:
                break
            await asyncio.sleep(0.1)
    assert first.status == "completed"
    assert live > 0
    assert estimated == live, "searches are planned and counted from the loaded catalogue"
    after = await analyses(db)
    # The emptied catalogue was analysed once its first batch was in (the drain's own statements are
    # planned from it), and again after the run; the queue the workers filled, before it was drained.
    assert after["diamonds"] - before["diamonds"] == 2
    assert after["raw_pending"] > before["raw_pending"]
