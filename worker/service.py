"""One page per message (the continuation pattern).

Guard on the partition's recorded offset, fetch the page, upsert raw rows, advance the offset, then
send the next page or finish the partition and report WORK_DONE. Redelivered, duplicated and
out-of-order messages change nothing; a redelivered message whose follow-up may never have been
sent (its sender crashed after committing) sends that follow-up again.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg.rows import class_row

from scheduler.service import partition_query, run_query
from shared.bootstrap import Container
from shared.bus.port import publish
from shared.error_records import ErrorRecord, record_errors
from shared.feed.errors import FeedError, FeedTransientError
from shared.feed.query import DiamondQuery
from shared.logs import log_context
from shared.messages import WorkItem
from shared.raw_store import seen_ids, stone_id, to_raw_items, upsert_raw
from shared.runs import (
    PARTITION_COLUMNS,
    Conn,
    PartitionRecord,
    RunRecord,
    load_partition,
    load_run_and_partition,
    page_superseded,
    work_done_for,
    work_item_for,
)
from worker.paging import Page, PageStep, StepKind, estimate_at_cap, fetch_step, offset_cap

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Outcome(StrEnum):
    PAGE = "page"  # a page was stored and the next one sent
    COMPLETED = "completed"  # the partition finished
    FAILED = "failed"  # the feed failed for good; the partition is marked failed
    REPOSITIONED = "repositioned"  # drift detected; paging continues from the last seen stone
    RESENT = "resent"  # a redelivered message: its follow-up was sent again
    STALE = "stale"  # a duplicate or out-of-order message: nothing changed


@dataclass(frozen=True)
class PageResult:
    outcome: Outcome
    stones: int = 0
    changed: int = 0


def _guard(run: RunRecord, partition: PartitionRecord, item: WorkItem) -> Outcome | None:
    """None when the message is the partition's current page; otherwise what to do instead."""
    if page_superseded(run, partition, item.attempt):
        return Outcome.STALE
    current = item.offset == partition.next_offset and item.drift == partition.drift_recoveries
    if partition.status in ("pending", "running") and current:
        return None
    if partition.status == "failed" and current:
        return Outcome.RESENT  # it failed on this page; its WORK_DONE may not have been sent
    if item.offset == partition.last_page_offset and partition.status in ("running", "completed"):
        return Outcome.RESENT
    return Outcome.STALE


async def process_work_item(container: Container, item: WorkItem, *, last_delivery: bool = True) -> PageResult:
    """Fetch and store the item's page. A feed failure fails the partition, except a transient one
    (the client has already retried it) on a delivery that is not the message's last: that is
    raised, so the bus delivers the page again (an outage may outlast the client's retries, and a
    failed partition waits for a human)."""
    with log_context(run_id=item.run_id, trace_id=item.trace_id, partition_id=item.partition_id, feed=item.feed):
        async with container.pool.connection() as conn:
            run, partition = await load_run_and_partition(conn, item.run_id, item.partition_id)
        verdict = _guard(run, partition, item)
        if verdict is Outcome.RESENT:
            await _send_follow_up(container, run, partition)
            return PageResult(Outcome.RESENT)
        if verdict is Outcome.STALE:
            log.info(
                "stale work item acknowledged: offset %d (partition at %d)",
                item.offset,
                partition.next_offset,
            )
            return PageResult(Outcome.STALE)
        await _mark_running(container, run, partition, item)
        try:
            page = await _fetch_step(container, run, item)
            estimate = await _estimate(container, run, item, page.step)
        except FeedError as exc:
            if isinstance(exc, FeedTransientError) and not last_delivery:
                raise
            return await _fail(container, run, item, f"{type(exc).__name__}: {exc}")
        return await _store_step(container, run, item, page.step, page.items, estimate)


async def _mark_running(container: Container, run: RunRecord, partition: PartitionRecord, item: WorkItem) -> None:
    if partition.status != "pending":
        return
    async with container.pool.connection() as conn, conn.transaction():
        await conn.execute(
            """UPDATE partition_progress SET status = 'running', started_at = coalesce(started_at, now()),
                   updated_at = now()
               WHERE run_id = %s AND partition_id = %s AND status = 'pending'""",
            (run.run_id, partition.partition_id),
        )
        await conn.execute(
            """INSERT INTO worker_runs (run_id, partition_id, attempt, worker_id, work_item_payload)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, partition_id, attempt) DO NOTHING""",
            (run.run_id, partition.partition_id, item.attempt, WORKER_ID, item.model_dump_json()),
        )


def _query(run: RunRecord, item: WorkItem) -> DiamondQuery:
    return partition_query(run_query(run.feed, run), item.min_price, item.max_price)


async def _estimate(container: Container, run: RunRecord, item: WorkItem, step: PageStep) -> int | None:
    """The partition's estimate after this step; None for a runaway (see `estimate_at_cap`).

    Below the cap it is unchanged. At the cap the partition is counted again: its density can
    have changed since the scan (stones listed late with an updatedAt inside the window)."""
    factor = container.settings.worker_offset_cap_factor
    if step.kind is not StepKind.ADVANCE or step.next_offset < offset_cap(item.estimated_records, factor, item.limit):
        return item.estimated_records
    recount = await container.feed.count(_query(run, item))
    log.info("partition at its offset cap %d: the feed now counts %d stones", step.next_offset, recount)
    return estimate_at_cap(step.next_offset, recount, factor, item.limit)


async def _fetch_step(container: Container, run: RunRecord, item: WorkItem) -> Page[dict[str, Any]]:
    query = _query(run, item)

    async def fetch(offset: int) -> list[dict[str, Any]]:
        return await container.feed.search(query, offset=offset, limit=item.limit)

    async def already_seen(ids: list[str]) -> set[str]:
        async with container.pool.connection() as conn:
            return await seen_ids(conn, run.run_id, ids)

    return await fetch_step(
        fetch, stone_id, already_seen, offset=item.offset, anchor_id=item.anchor_id, limit=item.limit
    )


async def _store_step(
    container: Container,
    run: RunRecord,
    item: WorkItem,
    step: PageStep,
    items: Sequence[Mapping[str, Any]],
    estimate: int | None,
) -> PageResult:
    raw_items, rejects = to_raw_items(items)
    new_ids = set(step.new_ids)
    # The anchor was judged on the page before, where it was new: a refused anchor is recorded once.
    rejects = [r for r in rejects if r.supplier_stone_id is None or r.supplier_stone_id in new_ids]
    runaway = estimate is None
    finish = step.kind is StepKind.FINISH or runaway
    cap_error = (
        f"partition passed its safety cap at offset {step.next_offset}: the feed counts fewer stones than "
        f"its pages list (estimate {item.estimated_records})"
    )
    errors = [
        ErrorRecord(
            "worker",
            reject.code,
            f"offset {item.offset}: {reject.reason}",
            run.run_id,
            item.partition_id,
            run.feed,
            reject.supplier_stone_id,
        )
        for reject in rejects
    ]
    if runaway:
        errors.append(ErrorRecord("worker", "offset_cap", cap_error, run.run_id, item.partition_id, run.feed))
    try:
        async with container.pool.connection() as conn, conn.transaction():
            upserted = await upsert_raw(conn, feed=run.feed, run_id=run.run_id, items=raw_items)
            # Stones the run stores for the first time, as its seen-set holds them: a stone can come
            # twice (moved to a partition not yet paged, refetched after drift), a refused one is
            # counted by its error record.
            new_stones = len(upserted.first_seen & new_ids)
            changed = upserted.changed
            partition = await _advance(
                conn,
                item,
                step,
                finish=finish,
                seen=new_stones,
                changed=changed,
                estimate=item.estimated_records if estimate is None else estimate,
                error=cap_error if runaway else None,
            )
            if partition is None:
                raise _Superseded
            await record_errors(conn, errors)
            if finish:
                await conn.execute(
                    """UPDATE worker_runs SET status = %s, completed_at = now(), records_processed = %s,
                           error_message = %s
                       WHERE run_id = %s AND partition_id = %s AND attempt = %s""",
                    (
                        partition.status,
                        partition.records_seen,
                        partition.error,
                        run.run_id,
                        item.partition_id,
                        item.attempt,
                    ),
                )
    except _Superseded:
        return PageResult(Outcome.STALE)  # a concurrent copy of this message got there first; rolled back
    await _send_follow_up(container, run, partition)
    if runaway:
        log.error("partition failed: %s", cap_error)
        return PageResult(Outcome.FAILED, new_stones, changed)
    if finish:
        log.info(
            "partition completed: %d stones in %d pages, %d drift repositioning(s)",
            partition.records_seen,
            partition.pages,
            partition.drift_recoveries,
        )
        return PageResult(Outcome.COMPLETED, new_stones, changed)
    if step.kind is StepKind.DRIFT:
        return PageResult(Outcome.REPOSITIONED)
    return PageResult(Outcome.PAGE, new_stones, changed)


class _Superseded(Exception):
    """Rolls back a page whose compare-and-set lost to a concurrent copy of the same message."""


_ADVANCE = f"""
UPDATE partition_progress
SET next_offset = %(next)s, last_page_offset = %(offset)s, anchor_id = %(anchor)s,
    pages = pages + 1, records_seen = records_seen + %(seen)s, records_changed = records_changed + %(changed)s,
    drift_recoveries = drift_recoveries + %(drift)s, estimated_records = %(estimate)s,
    status = CASE WHEN %(error)s::text IS NOT NULL THEN 'failed' WHEN %(finish)s THEN 'completed' ELSE status END,
    error = coalesce(%(error)s, error),
    completed_at = CASE WHEN %(finish)s AND %(error)s::text IS NULL THEN now() END,
    updated_at = now()
WHERE run_id = %(run)s AND partition_id = %(pid)s AND next_offset = %(offset)s AND attempts = %(attempt)s
  AND drift_recoveries = %(drift_before)s AND status IN ('pending', 'running')
RETURNING {PARTITION_COLUMNS}
"""


async def _advance(
    conn: Conn,
    item: WorkItem,
    step: PageStep,
    *,
    finish: bool,
    seen: int,
    changed: int,
    estimate: int,
    error: str | None,
) -> PartitionRecord | None:
    """The compare-and-set on the partition's offset; None when this message is no longer current.
    An `error` fails the partition instead of completing it."""
    cur = conn.cursor(row_factory=class_row(PartitionRecord))
    await cur.execute(
        _ADVANCE,
        {
            "next": step.next_offset,
            "offset": item.offset,
            "anchor": step.anchor_id,
            "seen": seen,
            "changed": changed,
            "drift": int(step.kind is StepKind.DRIFT),
            "finish": finish,
            "estimate": estimate,
            "error": error,
            "run": item.run_id,
            "pid": item.partition_id,
            "attempt": item.attempt,
            "drift_before": item.drift,
        },
    )
    return await cur.fetchone()


async def _lock_current(conn: Conn, item: WorkItem) -> bool:
    """Lock the partition row and confirm this message is still its current page (the CAS)."""
    cur = await conn.execute(
        """SELECT 1 FROM partition_progress
           WHERE run_id = %s AND partition_id = %s AND next_offset = %s AND attempts = %s
             AND drift_recoveries = %s AND status IN ('pending', 'running')
           FOR UPDATE""",
        (item.run_id, item.partition_id, item.offset, item.attempt, item.drift),
    )
    return await cur.fetchone() is not None


async def _send_follow_up(container: Container, run: RunRecord, partition: PartitionRecord) -> None:
    """The message that follows the partition's recorded state: its next page, or WORK_DONE."""
    if partition.status in ("completed", "failed"):
        await publish(container.bus, work_done_for(run, partition, worker_id=WORKER_ID))
    elif partition.status == "running":
        await publish(container.bus, work_item_for(run, partition, page_size=container.settings.worker_page_size))


async def _fail(container: Container, run: RunRecord, item: WorkItem, error: str) -> PageResult:
    """The feed failed for good (the client already retried transient causes): record and report."""
    log.error("partition failed at offset %d: %s", item.offset, error)
    async with container.pool.connection() as conn, conn.transaction():
        if not await _lock_current(conn, item):
            return PageResult(Outcome.STALE)
        await conn.execute(
            """UPDATE partition_progress SET status = 'failed', error = %s, updated_at = now()
               WHERE run_id = %s AND partition_id = %s""",
            (error, item.run_id, item.partition_id),
        )
        await conn.execute(
            """UPDATE worker_runs SET status = 'failed', error_message = %s, completed_at = now(),
                   records_processed = (SELECT records_seen FROM partition_progress
                                        WHERE run_id = %s AND partition_id = %s)
               WHERE run_id = %s AND partition_id = %s AND attempt = %s""",
            (error, item.run_id, item.partition_id, item.run_id, item.partition_id, item.attempt),
        )
        await record_errors(
            conn, [ErrorRecord("worker", "feed_failed", error, run.run_id, item.partition_id, run.feed)]
        )
        partition = await load_partition(conn, run.run_id, item.partition_id)
    await _send_follow_up(container, run, partition)
    return PageResult(Outcome.FAILED)
