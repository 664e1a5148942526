"""Apply lifecycle decisions to a run: consolidate, consolidate partially, skip, or fail a stalled run.

The local host calls `evaluate_run` for every WORK_DONE and from a periodic sweep; in Azure the
Durable orchestration decides with the same `decide` and calls `apply_decision` from an activity.
Every transition is a conditional UPDATE on the run's status, so concurrent evaluations of one run
act once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from fanin.lifecycle import Action, Decision, LifecyclePolicy, decide
from scheduler.service import launch_abandoned_runs
from shared.alerts import Alert, record_alert
from shared.bootstrap import Container
from shared.bus.port import publish
from shared.logs import log_context
from shared.messages import Consolidate
from shared.raw_store import forget_seen
from shared.runs import RunRecord, load_run, run_snapshot
from shared.settings import Settings

log = logging.getLogger(__name__)


def policy_from(settings: Settings) -> LifecyclePolicy:
    return LifecyclePolicy(
        auto_consolidation_threshold=settings.auto_consolidation_threshold,
        stall_after=timedelta(minutes=settings.run_stall_minutes),
        auto_consolidation_delay=timedelta(minutes=settings.auto_consolidation_delay_minutes),
    )


async def evaluate_run(container: Container, run_id: UUID) -> Decision:
    """Decide what the run needs now and do it."""
    async with container.pool.connection() as conn:
        run = await load_run(conn, run_id)
        snapshot = await run_snapshot(conn, run)
    decision = decide(snapshot, policy_from(container.settings), container.clock.now())
    await apply_decision(container, run, decision)
    return decision


async def apply_decision(container: Container, run: RunRecord, decision: Decision) -> bool:
    """Carry out a decision; False when another evaluation already moved the run on."""
    if decision.action in (Action.WAIT, Action.NONE):
        return False
    with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=run.feed):
        if decision.action in (Action.CONSOLIDATE, Action.CONSOLIDATE_PARTIAL):
            return await _request_consolidation(container, run, decision)
        return await _close_run(container, run, decision)


async def _request_consolidation(container: Container, run: RunRecord, decision: Decision) -> bool:
    partial = decision.action is Action.CONSOLIDATE_PARTIAL
    async with container.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """UPDATE run_metadata
               SET status = 'consolidating', forced = forced OR %s, status_reason = %s,
                   ingestion_completed_at = now(), consolidation_requested_at = now(), updated_at = now()
               WHERE run_id = %s AND status = 'ingesting'""",
            (partial, decision.reason, run.run_id),
        )
        if cur.rowcount != 1:
            # Already consolidating: re-send the request unless a consolidator has picked it up, so a
            # publish lost after the commit is repaired by the next evaluation (the id deduplicates).
            return await _resend_unclaimed(container, run)
        if partial:
            await record_alert(
                conn,
                Alert(
                    "run_partial",
                    "warning",
                    f"Partial consolidation of {run.feed}",
                    f"{decision.reason}. The catalogue gets what was fetched; the watermark stays.",
                    run.run_id,
                    run.feed,
                ),
            )
    log.info("consolidation requested: %s", decision.reason)
    async with container.pool.connection() as conn:
        requested = await load_run(conn, run.run_id)
    await publish(container.bus, _consolidate_message(requested, requested_by="fanin"))
    return True


async def _resend_unclaimed(container: Container, run: RunRecord) -> bool:
    async with container.pool.connection() as conn:
        current = await load_run(conn, run.run_id)
        cur = await conn.execute(
            "SELECT consolidation_started_at IS NULL FROM run_metadata WHERE run_id = %s", (run.run_id,)
        )
        row = await cur.fetchone()
    if current.status != "consolidating" or not (row and row[0]):
        return False
    await publish(container.bus, _consolidate_message(current, requested_by="fanin"))
    return False


def _consolidate_message(run: RunRecord, *, requested_by: str) -> Consolidate:
    return Consolidate(
        feed=run.feed, run_id=run.run_id, trace_id=run.trace_id, force=run.forced, requested_by=requested_by
    )


def _closing_alert(run: RunRecord, decision: Decision) -> tuple[str, Alert]:
    """The status a skip or stall leaves the run in, and the alert it raises."""
    message = f"{decision.reason}. The watermark stays."
    if decision.action is Action.SKIP:
        return "skipped", Alert("run_skipped", "warning", f"Run skipped: {run.feed}", message, run.run_id, run.feed)
    return "failed", Alert("run_stalled", "critical", f"Run stalled: {run.feed}", message, run.run_id, run.feed)


async def _close_run(container: Container, run: RunRecord, decision: Decision) -> bool:
    status, alert = _closing_alert(run, decision)
    async with container.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """UPDATE run_metadata SET status = %s, status_reason = %s, completed_at = now(), updated_at = now()
               WHERE run_id = %s AND status = 'ingesting'""",
            (status, decision.reason, run.run_id),
        )
        if cur.rowcount != 1:
            return False
        await record_alert(conn, alert)
    log.warning("run %s: %s", status, decision.reason)
    return True


async def request_stalled_consolidations(container: Container, run_id: UUID | None = None) -> list[UUID]:
    """Request again the consolidations (of every run, or of `run_id`) that started and then made no
    progress for RUN_STALL_MINUTES: their message was dead-lettered (the feed failed on every
    delivery, say) or their process died for good. Consolidating resumes where it stopped, so the
    request is simply sent again, with an alert, under a new message id (duplicate detection would
    drop the first one's); marking the run as touched spaces the next attempt by another window.
    The local sweep calls this for every run; in Azure, the run's orchestration for its run."""
    stall_minutes = container.settings.run_stall_minutes
    async with container.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """UPDATE run_metadata SET updated_at = now()
               WHERE status = 'consolidating' AND consolidation_started_at IS NOT NULL
                 AND updated_at < now() - make_interval(mins => %s) AND (%s::uuid IS NULL OR run_id = %s)
               RETURNING run_id, feed, trace_id, forced, floor(extract(epoch FROM now()))::bigint""",
            (stall_minutes, run_id, run_id),
        )
        stalled = await cur.fetchall()
        for stalled_id, feed, _, _, _ in stalled:
            await record_alert(
                conn,
                Alert(
                    "consolidation_failed",
                    "warning",
                    f"Consolidation stalled: {feed}",
                    f"run {stalled_id} made no consolidation progress for {stall_minutes} minutes "
                    "(see the dead letters and the log); its consolidation was requested again",
                    stalled_id,
                    feed,
                ),
            )
    for stalled_id, feed, trace_id, forced, stamp in stalled:
        await publish(
            container.bus,
            Consolidate(
                feed=feed, run_id=stalled_id, trace_id=trace_id, force=forced, requested_by="stall", resend=stamp
            ),
        )
    return [row[0] for row in stalled]


async def sweep(container: Container) -> list[tuple[UUID, Decision]]:
    """Launch runs a crash left planned, evaluate every ingesting run (catches stalls and due
    auto-consolidations), resend consolidation requests that were recorded but never picked up or
    whose consolidation stopped making progress, and drop the seen-sets of finished runs."""
    await launch_abandoned_runs(container)
    async with container.pool.connection() as conn:
        cur = await conn.execute("SELECT run_id FROM run_metadata WHERE status = 'ingesting' ORDER BY started_at")
        ingesting = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute(
            """SELECT run_id FROM run_metadata
               WHERE status = 'consolidating' AND consolidation_started_at IS NULL
                 AND consolidation_requested_at < now() - interval '2 minutes'"""
        )
        unclaimed = [row[0] for row in await cur.fetchall()]
        # A skipped or failed run may still be retried, so its set is kept for a day.
        cur = await conn.execute(
            """SELECT run_id FROM run_metadata r
               WHERE (status = 'completed' OR completed_at < now() - interval '1 day')
                 AND EXISTS (SELECT 1 FROM run_seen_stones s WHERE s.run_id = r.run_id)"""
        )
        finished = [row[0] for row in await cur.fetchall()]
        if finished:
            await forget_seen(conn, finished)
    results = [(run_id, await evaluate_run(container, run_id)) for run_id in ingesting]
    for run_id in unclaimed:
        async with container.pool.connection() as conn:
            run = await load_run(conn, run_id)
        await publish(
            container.bus,
            Consolidate(
                feed=run.feed, run_id=run.run_id, trace_id=run.trace_id, force=run.forced, requested_by="sweep"
            ),
        )
    await request_stalled_consolidations(container)
    return results
