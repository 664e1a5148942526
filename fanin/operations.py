"""Operator actions on a run: retry failed partitions, force a consolidation, cancel.

Used by the CLI and the API alike; each validates the run's state and answers with a clear error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

import psycopg

from shared.alerts import Alert, record_alert
from shared.bootstrap import Container
from shared.bus.port import publish
from shared.errors import ConflictError, NotFoundError
from shared.logs import log_context
from shared.messages import Consolidate
from shared.runs import load_partitions, load_run, work_item_for

log = logging.getLogger(__name__)

# A run can be reopened for retry while it has not published anything.
_RETRYABLE = ("ingesting", "skipped", "failed")
# Runs whose result stands: a forced consolidation has nothing to add to them.
SETTLED = ("completed", "cancelled")


@dataclass(frozen=True)
class RetryResult:
    run_id: UUID
    retried: tuple[str, ...]


async def retry_failed(container: Container, run_id: UUID, partition_id: str | None = None) -> RetryResult:
    """Resume failed partitions (or the open ones of a stalled run) from their recorded offset."""
    with log_context(run_id=run_id):
        try:
            async with container.pool.connection() as conn, conn.transaction():
                run = await load_run(conn, run_id, for_update=True)
                if run.status not in _RETRYABLE:
                    raise ConflictError(f"run {run_id} is {run.status}; only ingesting, skipped or failed runs retry")
                wanted = ("failed",) if run.status != "failed" else ("failed", "pending", "running")
                targets = await load_partitions(conn, run_id, statuses=wanted)
                if partition_id is not None:
                    targets = [p for p in targets if p.partition_id == partition_id]
                    if not targets:
                        all_ids = {p.partition_id for p in await load_partitions(conn, run_id)}
                        if partition_id not in all_ids:
                            raise NotFoundError(f"run {run_id} has no partition {partition_id}")
                        raise ConflictError(f"partition {partition_id} of run {run_id} has not failed")
                if not targets:
                    raise ConflictError(f"run {run_id} has no failed partitions to retry")
                ids = [p.partition_id for p in targets]
                await conn.execute(
                    """UPDATE partition_progress
                       SET status = 'pending', error = NULL, attempts = attempts + 1, completed_at = NULL,
                           updated_at = now()
                       WHERE run_id = %s AND partition_id = ANY(%s)""",
                    (run_id, ids),
                )
                await conn.execute(
                    """UPDATE run_metadata
                       SET status = 'ingesting', completed_at = NULL, last_progress_at = now(), updated_at = now(),
                           status_reason = %s
                       WHERE run_id = %s""",
                    (f"retrying {len(ids)} partition(s)", run_id),
                )
                run = await load_run(conn, run_id)
                partitions = [p for p in await load_partitions(conn, run_id) if p.partition_id in ids]
        except psycopg.errors.UniqueViolation:
            raise ConflictError(f"another run of this feed is active; run {run_id} cannot be reopened") from None
        await container.fanin.start(run)
        page_size = container.settings.worker_page_size
        await publish(container.bus, *(work_item_for(run, p, page_size=page_size) for p in partitions))
        log.info("retrying partitions %s", ", ".join(ids))
        return RetryResult(run_id, tuple(ids))


async def force_consolidation(container: Container, run_id: UUID, *, requested_by: str = "operator") -> None:
    """Consolidate what a run fetched even though some partitions failed; the watermark stays."""
    with log_context(run_id=run_id):
        try:
            async with container.pool.connection() as conn, conn.transaction():
                run = await load_run(conn, run_id, for_update=True)
                if run.status in (*SETTLED, "consolidating"):
                    raise ConflictError(f"run {run_id} is {run.status}; nothing to force")
                if run.status == "ingesting":
                    open_partitions = await load_partitions(conn, run_id, statuses=("pending", "running"))
                    if open_partitions:
                        raise ConflictError(
                            f"run {run_id} still has {len(open_partitions)} partition(s) fetching; "
                            "wait for them or cancel the run"
                        )
                await conn.execute(
                    """UPDATE run_metadata
                       SET status = 'consolidating', forced = true, completed_at = NULL,
                           consolidation_requested_at = now(), updated_at = now(),
                           status_reason = 'consolidation forced by ' || %s
                       WHERE run_id = %s""",
                    (requested_by, run_id),
                )
        except psycopg.errors.UniqueViolation:
            raise ConflictError(
                f"another run of this feed is active; run {run_id} cannot be consolidated now"
            ) from None
        await publish(
            container.bus,
            Consolidate(feed=run.feed, run_id=run.run_id, trace_id=run.trace_id, force=True, requested_by=requested_by),
        )
        log.info("consolidation forced by %s", requested_by)


async def cancel_run(container: Container, run_id: UUID, reason: str) -> None:
    """Stop a run that is planning or fetching; its in-flight messages become no-ops."""
    reason = reason.strip() or "cancelled by an operator"
    with log_context(run_id=run_id):
        async with container.pool.connection() as conn, conn.transaction():
            run = await load_run(conn, run_id, for_update=True)
            if run.status not in ("planned", "ingesting"):
                raise ConflictError(f"run {run_id} is {run.status}; only planned or ingesting runs can be cancelled")
            await conn.execute(
                """UPDATE partition_progress SET status = 'failed', error = %s, updated_at = now()
                   WHERE run_id = %s AND status IN ('pending', 'running')""",
                (f"cancelled: {reason}", run_id),
            )
            await conn.execute(
                """UPDATE run_metadata SET status = 'cancelled', status_reason = %s, completed_at = now(),
                       updated_at = now()
                   WHERE run_id = %s""",
                (reason, run_id),
            )
            await record_alert(
                conn,
                Alert("run_cancelled", "info", f"Run cancelled: {run.feed}", reason, run.run_id, run.feed),
            )
        log.info("run cancelled: %s", reason)
