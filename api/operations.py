"""Read side of operations: runs with their derived state, a run's partitions and fan-in state,
watermarks and error records. The actions (start, retry, force, cancel, replay) are the pipeline's
own services, called by the routes as they are.

"stalled": a run still `ingesting` without progress for RUN_STALL_MINUTES, or a run the fan-in
already failed for that reason (status_reason starting with "stalled").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from uuid import UUID

from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fanin.lifecycle import decide, stall_deadline
from fanin.service import policy_from
from scheduler.planning import lag_to_cover
from shared.errors import NotFoundError
from shared.runs import Conn, load_run, run_snapshot
from shared.settings import Settings

RUN_STATUSES: Final = ("planned", "ingesting", "consolidating", "completed", "skipped", "failed", "cancelled")
STATUS_FILTERS: Final = (*RUN_STATUSES, "stalled", "active")
# Most rows one request lists (runs, dead letters, error records), over HTTP and in `opus runs`.
MAX_LIMIT: Final = 500

_STALLED = """(r.status = 'ingesting' AND r.last_progress_at < now() - make_interval(mins => %(stall)s)
               OR r.status = 'failed' AND r.status_reason LIKE 'stalled%%')"""

_RUN_SUMMARY = f"""
SELECT r.run_id, r.feed, r.run_type, r.status, {_STALLED} AS stalled, r.status_reason, r.requested_by, r.forced,
       r.trace_id, r.updated_from, r.updated_to, r.watermark_before, r.watermark_advanced,
       r.expected_partitions, r.estimated_records,
       coalesce(p.completed, 0) AS completed_partitions, coalesce(p.failed, 0) AS failed_partitions,
       coalesce(p.records, 0) AS records_fetched, coalesce(p.changed, 0) AS records_changed,
       r.consolidation_processed, r.consolidation_errors, r.diamonds_inserted, r.diamonds_updated,
       r.diamonds_unchanged, r.diamonds_deleted, r.diamonds_restored, r.pricing_version,
       r.started_at, r.ingestion_completed_at, r.consolidation_requested_at, r.consolidation_started_at,
       r.consolidation_completed_at, r.completed_at, r.last_progress_at, r.heatmap -> 'feed_clock' AS feed_clock
FROM run_metadata r
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed, sum(records_seen) AS records,
           sum(records_changed) AS changed
    FROM partition_progress WHERE run_id = r.run_id
) p ON true
"""


@dataclass(frozen=True)
class RunFilter:
    feed: str | None = None
    run_type: str | None = None
    status: str | None = None


def _status_clause(status: str | None) -> str:
    if status is None:
        return "true"
    if status == "stalled":
        return _STALLED
    if status == "active":
        return "r.status IN ('planned', 'ingesting', 'consolidating')"
    return "r.status = %(status)s"


class _StoredFeedClock(BaseModel):
    """The note `feed_clock_note` stores; anything else in its place is no reading."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    lag_s: float
    beyond_safety_buffer: bool
    safety_buffer_s: float | None = Field(default=None, ge=0)  # runs planned before it was recorded lack it


def _seconds(seconds: float) -> timedelta:
    # A lag beyond what a timedelta holds (some 2.7 million years) is no less a lag to cover.
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return timedelta.max if seconds > 0 else timedelta.min


def feed_clock_reading(row: dict[str, Any]) -> dict[str, Any] | None:
    """The feed clock note the scheduler stored with the run (None: unmeasured, or a stored value that
    is no reading), plus whether its lag widened the run's window, decided as `plan_window` did: only
    an incremental run from a watermark reaches back, and only by a lag `lag_to_cover` counts."""
    try:
        note = _StoredFeedClock.model_validate(row["feed_clock"])
    except ValidationError:
        return None
    from_watermark = row["run_type"] == "incremental" and row["watermark_before"] is not None
    added = from_watermark and lag_to_cover(_seconds(note.lag_s)) > timedelta(0)
    return {**note.model_dump(), "added_to_window": added}


def _present(row: dict[str, Any]) -> dict[str, Any]:
    stalled = row.pop("stalled")
    row["state"] = "stalled" if stalled else row["status"]
    row["feed_clock"] = feed_clock_reading(row)
    return row


async def list_runs(conn: Conn, settings: Settings, where: RunFilter, limit: int, offset: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _RUN_SUMMARY
        + f"""WHERE (%(feed)s::text IS NULL OR r.feed = %(feed)s)
                AND (%(type)s::text IS NULL OR r.run_type = %(type)s)
                AND {_status_clause(where.status)}
              ORDER BY r.started_at DESC, r.run_id LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "feed": where.feed,
            "type": where.run_type,
            "status": where.status,
            "stall": settings.run_stall_minutes,
            "limit": limit,
            "offset": offset,
        },
    )
    return [_present(row) for row in await cur.fetchall()]


_PARTITIONS = """
SELECT partition_id, position, min_price, max_price, estimated_records, status, next_offset, last_page_offset,
       pages, records_seen, records_changed, drift_recoveries, attempts, error, started_at, completed_at, updated_at
FROM partition_progress WHERE run_id = %s ORDER BY position
"""


async def run_detail(conn: Conn, settings: Settings, now: Any, run_id: UUID) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_RUN_SUMMARY + "WHERE r.run_id = %(run)s", {"run": run_id, "stall": settings.run_stall_minutes})
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"run {run_id} does not exist")
    run = _present(row)
    await cur.execute(_PARTITIONS, (run_id,))
    run["partitions"] = await cur.fetchall()
    heatmap = await (await conn.execute("SELECT heatmap FROM run_metadata WHERE run_id = %s", (run_id,))).fetchone()
    run["heatmap"] = heatmap[0] if heatmap else None
    snapshot = await run_snapshot(conn, await load_run(conn, run_id))
    policy = policy_from(settings)
    decision = decide(snapshot, policy, now)
    run["fan_in"] = {
        "expected": snapshot.counts.expected,
        "completed": snapshot.counts.completed,
        "failed": snapshot.counts.failed,
        "open": snapshot.counts.open,
        "last_progress_at": snapshot.last_progress_at,
        "stall_deadline": stall_deadline(snapshot.last_progress_at, policy) if snapshot.status == "ingesting" else None,
        "next_action": decision.action.value,
        "reason": decision.reason,
    }
    return run


async def watermarks(conn: Conn) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT f.feed, w.last_updated_at, w.last_run_id, w.updated_at
           FROM feeds f LEFT JOIN watermarks w USING (feed) ORDER BY f.feed"""
    )
    return await cur.fetchall()


@dataclass(frozen=True)
class ErrorFilter:
    source: str | None = None
    code: str | None = None
    feed: str | None = None
    run_id: UUID | None = None


async def error_records(conn: Conn, where: ErrorFilter, limit: int, offset: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, source, code, message, run_id, partition_id, feed, supplier_stone_id, context, occurred_at
           FROM error_records
           WHERE (%(source)s::text IS NULL OR source = %(source)s) AND (%(code)s::text IS NULL OR code = %(code)s)
             AND (%(feed)s::text IS NULL OR feed = %(feed)s) AND (%(run)s::uuid IS NULL OR run_id = %(run)s)
           ORDER BY occurred_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s""",
        {
            "source": where.source,
            "code": where.code,
            "feed": where.feed,
            "run": where.run_id,
            "limit": limit,
            "offset": offset,
        },
    )
    return await cur.fetchall()
