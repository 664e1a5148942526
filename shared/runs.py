"""Reading runs and partitions: the records every stage shares, and the messages derived from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import class_row

from fanin.lifecycle import PartitionCounts, RunSnapshot
from shared.errors import NotFoundError
from shared.messages import FeedName, RunType, WorkDone, WorkItem

Conn = AsyncConnection[Any]


@dataclass(frozen=True)
class RunRecord:
    run_id: UUID
    feed: FeedName
    run_type: RunType
    status: str
    status_reason: str | None
    trace_id: str
    updated_from: datetime
    updated_to: datetime
    watermark_before: datetime | None
    expected_partitions: int
    estimated_records: int
    forced: bool
    last_progress_at: datetime
    started_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class PartitionRecord:
    run_id: UUID
    partition_id: str
    position: int
    min_price: Decimal
    max_price: Decimal | None
    estimated_records: int
    status: str
    next_offset: int
    last_page_offset: int | None
    anchor_id: str | None
    pages: int
    records_seen: int
    drift_recoveries: int
    attempts: int
    error: str | None


_RUN_COLUMNS = """run_id, feed, run_type, status, status_reason, trace_id, updated_from, updated_to,
    watermark_before, expected_partitions, estimated_records, forced, last_progress_at, started_at, completed_at"""

PARTITION_COLUMNS = """run_id, partition_id, position, min_price, max_price, estimated_records, status,
    next_offset, last_page_offset, anchor_id, pages, records_seen, drift_recoveries, attempts, error"""


async def load_run(conn: Conn, run_id: UUID, *, for_update: bool = False) -> RunRecord:
    cur = conn.cursor(row_factory=class_row(RunRecord))
    lock = " FOR UPDATE" if for_update else ""
    await cur.execute(f"SELECT {_RUN_COLUMNS} FROM run_metadata WHERE run_id = %s{lock}", (run_id,))
    run = await cur.fetchone()
    if run is None:
        raise NotFoundError(f"run {run_id} does not exist")
    return run


async def active_run(conn: Conn, feed: str) -> RunRecord | None:
    cur = conn.cursor(row_factory=class_row(RunRecord))
    await cur.execute(
        f"""SELECT {_RUN_COLUMNS} FROM run_metadata
            WHERE feed = %s AND status IN ('planned', 'ingesting', 'consolidating')""",
        (feed,),
    )
    return await cur.fetchone()


async def load_partition(conn: Conn, run_id: UUID, partition_id: str) -> PartitionRecord:
    cur = conn.cursor(row_factory=class_row(PartitionRecord))
    await cur.execute(
        f"SELECT {PARTITION_COLUMNS} FROM partition_progress WHERE run_id = %s AND partition_id = %s",
        (run_id, partition_id),
    )
    partition = await cur.fetchone()
    if partition is None:
        raise NotFoundError(f"run {run_id} has no partition {partition_id}")
    return partition


async def load_run_and_partition(conn: Conn, run_id: UUID, partition_id: str) -> tuple[RunRecord, PartitionRecord]:
    """Both records in one round trip (the worker reads them for every page)."""
    run_fields = [f.strip() for f in _RUN_COLUMNS.split(",")]
    part_fields = [f.strip() for f in PARTITION_COLUMNS.split(",")]
    cur = await conn.execute(
        f"""SELECT {", ".join(f"r.{c}" for c in run_fields)}, {", ".join(f"p.{c}" for c in part_fields)}
            FROM partition_progress p JOIN run_metadata r USING (run_id)
            WHERE p.run_id = %s AND p.partition_id = %s""",
        (run_id, partition_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"run {run_id} has no partition {partition_id}")
    run = RunRecord(*row[: len(run_fields)])
    return run, PartitionRecord(*row[len(run_fields) :])


async def load_partitions(
    conn: Conn, run_id: UUID, *, statuses: tuple[str, ...] | None = None
) -> list[PartitionRecord]:
    cur = conn.cursor(row_factory=class_row(PartitionRecord))
    if statuses is None:
        await cur.execute(
            f"SELECT {PARTITION_COLUMNS} FROM partition_progress WHERE run_id = %s ORDER BY position",
            (run_id,),
        )
    else:
        await cur.execute(
            f"""SELECT {PARTITION_COLUMNS} FROM partition_progress
                WHERE run_id = %s AND status = ANY(%s) ORDER BY position""",
            (run_id, list(statuses)),
        )
    return await cur.fetchall()


async def partition_counts(conn: Conn, run_id: UUID) -> PartitionCounts:
    cur = await conn.execute(
        """SELECT count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
           FROM partition_progress WHERE run_id = %s""",
        (run_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return PartitionCounts(expected=row[0], completed=row[1], failed=row[2])


async def run_snapshot(conn: Conn, run: RunRecord) -> RunSnapshot:
    """The run as the lifecycle sees it; progress is the latest partition change (not a counter)."""
    cur = await conn.execute("SELECT max(updated_at) FROM partition_progress WHERE run_id = %s", (run.run_id,))
    row = await cur.fetchone()
    latest = row[0] if row and row[0] else run.last_progress_at
    return RunSnapshot(
        status=run.status,
        counts=await partition_counts(conn, run.run_id),
        last_progress_at=max(latest, run.last_progress_at),
        forced=run.forced,
    )


async def load_watermark(conn: Conn, feed: str) -> datetime | None:
    cur = await conn.execute("SELECT last_updated_at FROM watermarks WHERE feed = %s", (feed,))
    row = await cur.fetchone()
    return row[0] if row else None


def page_superseded(run: RunRecord, partition: PartitionRecord, attempt: int) -> bool:
    """Whether the worker ignores a page of `attempt` whatever its offset: the run no longer ingests,
    or a retry started a later attempt of the partition (whose own pages are then on their way)."""
    return run.status != "ingesting" or attempt != partition.attempts


def work_item_for(run: RunRecord, partition: PartitionRecord, *, page_size: int) -> WorkItem:
    """The message that fetches the partition's next page, as its recorded state says."""
    return WorkItem(
        feed=run.feed,
        run_id=run.run_id,
        run_type=run.run_type,
        trace_id=run.trace_id,
        partition_id=partition.partition_id,
        min_price=partition.min_price,
        max_price=partition.max_price,
        estimated_records=partition.estimated_records,
        offset=partition.next_offset,
        limit=page_size,
        anchor_id=partition.anchor_id,
        attempt=partition.attempts,
        drift=partition.drift_recoveries,
        updated_from=run.updated_from,
        updated_to=run.updated_to,
    )


def work_done_for(run: RunRecord, partition: PartitionRecord, *, worker_id: str) -> WorkDone:
    return WorkDone(
        feed=run.feed,
        run_id=run.run_id,
        trace_id=run.trace_id,
        partition_id=partition.partition_id,
        attempt=partition.attempts,
        worker_id=worker_id,
        status="success" if partition.status == "completed" else "failed",
        records_processed=partition.records_seen,
        error=partition.error,
    )
