"""Consolidate a run: pending raw rows -> mapped, priced diamonds; soft delete; complete the run.

Flow for one CONSOLIDATE message:
1. the run must be `consolidating` (anything else is a stale or duplicate message);
2. pin the pricing version for the run (reused if the consolidation is retried);
3. drain the feed's pending raw rows in batches (several batch loops overlap Python mapping with
   the database's merge; other consolidators may join, SKIP LOCKED keeps them apart);
4. for a full run whose ingestion completed: stones not seen by the run are asked of the feed by id;
   those it no longer has are soft-deleted, the others are refreshed like any raw row;
5. finalise in ONE transaction: soft delete, unlisting of live stones whose items the workers
   refused, the run's stones repriced to the newest rules if they changed since step 2
   (`repricing.catch_up_run`), catalogue version, run completed with its stats and, only when every
   partition completed and nothing was forced, the watermark = the run's updated_to.
A failure before step 5 leaves the run `consolidating` and the watermark untouched; the message is
redelivered and the work resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass, field
from decimal import Decimal

from consolidator.mapper import MappingFailure, map_item
from consolidator.payload import decode_item
from consolidator.pricing import RuleSet, price
from consolidator.repricing import catch_up_run
from consolidator.rules_store import pinned_ruleset
from consolidator.statistics import analyse_once_filled, refresh_statistics
from consolidator.writer import (
    MergeCounts,
    claim_pending,
    merge_rows,
    requeue_returned,
    soft_delete,
    staged_row,
    unlist_refused,
)
from shared.alerts import Alert, record_alert
from shared.bootstrap import Container
from shared.error_records import ErrorRecord, record_errors
from shared.feed.variants import VARIANTS
from shared.logs import log_context
from shared.messages import Consolidate
from shared.raw_store import forget_seen, to_raw_items, upsert_raw
from shared.runs import Conn, RunRecord, load_run, partition_counts
from shared.watermark_blob import mirror_watermark

log = logging.getLogger(__name__)

# Batch loops per consolidation: one maps in Python while another's merge runs in PostgreSQL.
PIPELINE_DEPTH = 2
# A full run that would delete more than this share of a feed's live stones is held for a human.
MAX_DELETE_SHARE = Decimal("0.25")


@dataclass
class DrainStats:
    processed: int = 0
    errors: int = 0
    merged: MergeCounts = field(default_factory=MergeCounts)
    unlisted: int = 0  # live stones deleted because their item no longer maps

    def add(self, processed: int, errors: int, counts: MergeCounts, unlisted: int) -> None:
        self.processed += processed
        self.errors += errors
        self.unlisted += unlisted
        m = self.merged
        self.merged = MergeCounts(
            m.inserted + counts.inserted,
            m.updated + counts.updated,
            m.unchanged + counts.unchanged,
            m.restored + counts.restored,
        )


@dataclass(frozen=True)
class ConsolidationResult:
    outcome: str  # completed | stale | joined
    stats: DrainStats = field(default_factory=DrainStats)
    deleted: int = 0
    watermark_advanced: bool = False


def _lock_key(run: RunRecord) -> int:
    return zlib.crc32(f"consolidate:{run.run_id}".encode())


async def consolidate(container: Container, message: Consolidate) -> ConsolidationResult:
    with log_context(run_id=message.run_id, trace_id=message.trace_id, feed=message.feed):
        async with container.pool.connection() as conn:
            run = await load_run(conn, message.run_id)
        if run.status != "consolidating":
            log.info("consolidation message for a %s run acknowledged without effect", run.status)
            return ConsolidationResult("stale")
        async with container.pool.connection() as lock_conn:
            cur = await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(run),))
            row = await cur.fetchone()
            if not (row and row[0]):
                # Another consolidator owns this run: help drain the feed; it finalises.
                rules = await _rules(container, run)
                return ConsolidationResult("joined", await drain(container, run, rules))
            try:
                return await _consolidate_owned(container, run)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(run),))


async def _rules(container: Container, run: RunRecord) -> RuleSet:
    async with container.pool.connection() as conn:
        return await pinned_ruleset(conn, run.run_id)


async def _consolidate_owned(container: Container, run: RunRecord) -> ConsolidationResult:
    async with container.pool.connection() as conn:
        await conn.execute(
            """UPDATE run_metadata SET consolidation_started_at = coalesce(consolidation_started_at, now()),
                   updated_at = now() WHERE run_id = %s""",
            (run.run_id,),
        )
        counts = await partition_counts(conn, run.run_id)
        returned = await requeue_returned(conn, run.feed, run.run_id)
    if returned:
        log.info("%d deleted stones are back in the feed: queued to be restored", returned)
    rules = await _rules(container, run)
    stats = await drain(container, run, rules)
    ingestion_complete = counts.expected > 0 and counts.completed == counts.expected
    advance = ingestion_complete and not run.forced
    gone: list[str] = []
    if run.run_type == "full" and advance:
        gone = await confirm_gone(container, run)
        more = await drain(container, run, rules)
        stats.add(more.processed, more.errors, more.merged, more.unlisted)
    result = await finalise(container, run, rules, stats, gone, advance=advance)
    if result.outcome == "completed":
        merged = result.stats.merged
        async with container.pool.connection() as conn:
            await refresh_statistics(
                conn, "diamonds", merged.inserted + merged.updated + result.deleted + result.stats.unlisted
            )
    return result


async def drain(container: Container, run: RunRecord, rules: RuleSet) -> DrainStats:
    """Consolidate every pending raw row of the run's feed; return what this call processed."""
    stats = DrainStats()
    labgrown = VARIANTS[run.feed].labgrown
    batch_size = container.settings.consolidator_batch_size
    async with container.pool.connection() as conn:
        await refresh_statistics(conn, "raw_pending")

    catalogue_has_statistics = False

    async def loop(watches_statistics: bool) -> None:
        nonlocal catalogue_has_statistics
        while True:
            async with container.pool.connection() as conn:
                async with conn.transaction():
                    claimed = await claim_pending(conn, run.feed, batch_size)
                    if not claimed:
                        return
                    rows, failures = _map_batch(claimed, run, rules, labgrown)
                    merged = await merge_rows(conn, rows, run.run_id)
                    await record_errors(conn, failures)
                    # A live stone whose item no longer maps (it lost its video, say) is not listable: left
                    # as it was, its price and availability would go stale. Restored once it maps again.
                    unmappable = [f.supplier_stone_id for f in failures if f.supplier_stone_id is not None]
                    unlisted = await soft_delete(conn, run.feed, unmappable, run.run_id)
                    await _count(conn, run, len(claimed), len(failures), merged, unlisted)
                if watches_statistics and not catalogue_has_statistics:  # one loop: never two ANALYZEs
                    catalogue_has_statistics = await analyse_once_filled(conn, "diamonds")
            stats.add(len(claimed), len(failures), merged, unlisted)

    await asyncio.gather(*(loop(watches_statistics=i == 0) for i in range(PIPELINE_DEPTH)))
    if stats.processed:
        log.info(
            "consolidated %d raw rows: %d new, %d updated, %d unchanged, %d unmappable (%d live ones unlisted)",
            stats.processed,
            stats.merged.inserted,
            stats.merged.updated,
            stats.merged.unchanged,
            stats.errors,
            stats.unlisted,
        )
    return stats


def _map_batch(
    claimed: list[tuple[str, str]], run: RunRecord, rules: RuleSet, labgrown: bool
) -> tuple[list[bytes], list[ErrorRecord]]:
    rows = []
    failures = []
    for supplier_stone_id, payload in claimed:
        mapped = map_item(decode_item(payload), feed=run.feed, labgrown=labgrown)
        if isinstance(mapped, MappingFailure):
            failures.append(
                ErrorRecord(
                    "consolidator",
                    mapped.code,
                    mapped.reason,
                    run.run_id,
                    feed=run.feed,
                    supplier_stone_id=supplier_stone_id,
                )
            )
            continue
        rows.append(staged_row(mapped, price(mapped, rules), run.run_id))
    return rows, failures


async def _count(conn: Conn, run: RunRecord, processed: int, errors: int, merged: MergeCounts, unlisted: int) -> None:
    await conn.execute(
        """UPDATE run_metadata SET consolidation_processed = consolidation_processed + %s,
               consolidation_errors = consolidation_errors + %s, diamonds_inserted = diamonds_inserted + %s,
               diamonds_updated = diamonds_updated + %s, diamonds_unchanged = diamonds_unchanged + %s,
               diamonds_restored = diamonds_restored + %s, diamonds_deleted = diamonds_deleted + %s,
               updated_at = now()
           WHERE run_id = %s""",
        (processed, errors, merged.inserted, merged.updated, merged.unchanged, merged.restored, unlisted, run.run_id),
    )


async def confirm_gone(container: Container, run: RunRecord) -> list[str]:
    """Live stones a complete full run did not see, that the feed confirms are gone.

    The ones the feed still has (updated during the run, now on hold, ...) are stored as raw rows so
    that the next drain refreshes them instead of deleting them.
    """
    async with container.pool.connection() as conn:
        cur = await conn.execute(
            """SELECT d.supplier_stone_id FROM diamonds d
               WHERE d.feed = %s AND d.status = 'active'
                 AND NOT EXISTS (SELECT 1 FROM run_seen_stones s
                                 WHERE s.run_id = %s AND s.supplier_stone_id = d.supplier_stone_id)""",
            (run.feed, run.run_id),
        )
        candidates = [row[0] for row in await cur.fetchall()]
    if not candidates:
        return []
    found = await container.feed.by_ids(candidates, labgrown=VARIANTS[run.feed].labgrown)
    still_there, _ = to_raw_items(found)
    if still_there:
        async with container.pool.connection() as conn, conn.transaction():
            await upsert_raw(conn, feed=run.feed, run_id=run.run_id, items=still_there)
    present = {item.supplier_stone_id for item in still_there}
    gone = [sid for sid in candidates if sid not in present]
    log.info("soft delete: %d unseen, %d still in the feed, %d gone", len(candidates), len(present), len(gone))
    return gone


async def finalise(
    container: Container, run: RunRecord, rules: RuleSet, stats: DrainStats, gone: list[str], *, advance: bool
) -> ConsolidationResult:
    """Complete the run in one transaction, once no pending row of its feed is left in flight."""
    while True:
        async with container.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT count(*) FROM raw_pending WHERE feed = %s", (run.feed,))
            pending = (await cur.fetchone() or (0,))[0]
            if pending == 0:
                current = await load_run(conn, run.run_id, for_update=True)
                if current.status != "consolidating":
                    return ConsolidationResult("stale", stats)
                deleted = await _apply_soft_delete(conn, run, gone) + await unlist_refused(conn, run.feed, run.run_id)
                await catch_up_run(conn, run.feed, run.run_id, rules)
                await _complete(conn, run, rules, deleted, advance)
                await _alert_on_mapping_errors(conn, container, run)
                break
        # Rows still pending: another consolidator's batch is in flight, or rows arrived late.
        more = await drain(container, run, rules)
        stats.add(more.processed, more.errors, more.merged, more.unlisted)
        if more.processed == 0:
            await asyncio.sleep(0.2)
    async with container.pool.connection() as conn:
        await forget_seen(conn, [run.run_id])
    log.info("run completed: %d deleted, watermark %s", deleted, "advanced" if advance else "unchanged")
    if advance:
        await mirror_watermark(container.settings, run.feed, run.updated_to, run.run_id, container.clock.now())
    return ConsolidationResult("completed", stats, deleted, advance)


async def _apply_soft_delete(conn: Conn, run: RunRecord, gone: list[str]) -> int:
    if not gone:
        return 0
    cur = await conn.execute("SELECT count(*) FROM diamonds WHERE feed = %s AND status = 'active'", (run.feed,))
    live = (await cur.fetchone() or (0,))[0]
    if live and Decimal(len(gone)) / Decimal(live) > MAX_DELETE_SHARE:
        await record_alert(
            conn,
            Alert(
                "run_failed",
                "critical",
                f"Soft delete held back: {run.feed}",
                f"the feed confirms {len(gone)} of {live} live stones gone (over {MAX_DELETE_SHARE:.0%}); "
                "nothing was deleted — check the feed, then run a full run again",
                run.run_id,
                run.feed,
            ),
        )
        return 0
    return await soft_delete(conn, run.feed, gone, run.run_id)


async def _complete(conn: Conn, run: RunRecord, rules: RuleSet, deleted: int, advance: bool) -> None:
    await conn.execute(
        "UPDATE dataset_versions SET version = version + 1, updated_at = now() WHERE feed = %s", (run.feed,)
    )
    await conn.execute(
        """UPDATE run_metadata
           SET status = 'completed', completed_at = now(), consolidation_completed_at = now(),
               diamonds_deleted = diamonds_deleted + %s, watermark_advanced = %s, pricing_version = %s,
               updated_at = now()
           WHERE run_id = %s""",
        (deleted, advance, rules.version, run.run_id),
    )
    if advance:
        await conn.execute(
            """INSERT INTO watermarks (feed, last_updated_at, last_run_id) VALUES (%s, %s, %s)
               ON CONFLICT (feed) DO UPDATE SET last_updated_at = EXCLUDED.last_updated_at,
                   last_run_id = EXCLUDED.last_run_id, updated_at = now()
               WHERE watermarks.last_updated_at < EXCLUDED.last_updated_at""",
            (run.feed, run.updated_to, run.run_id),
        )


async def _alert_on_mapping_errors(conn: Conn, container: Container, run: RunRecord) -> None:
    cur = await conn.execute(
        "SELECT consolidation_processed, consolidation_errors FROM run_metadata WHERE run_id = %s", (run.run_id,)
    )
    processed, errors = await cur.fetchone() or (0, 0)
    threshold = container.settings.mapping_error_alert_ratio
    if processed and errors and Decimal(errors) / Decimal(processed) > threshold:
        await record_alert(
            conn,
            Alert(
                "mapping_errors",
                "warning",
                f"Unmappable stones: {run.feed}",
                f"{errors} of {processed} items could not be mapped (over {threshold:.0%}); see the error records",
                run.run_id,
                run.feed,
                {"processed": processed, "errors": errors},
            ),
        )
