"""The fan-in of one run as a Durable orchestration (instance id = run id), and its activities' bodies.

Phase 1 (ingesting): collect `PartitionDone` reports (deduplicated by partition and attempt) and
publish progress as custom status; whenever every partition has reported, and whenever the deadline
passes, read the run from the database (an activity) and decide with `fanin.lifecycle.decide` at the
orchestration's replay-safe time. WAIT sleeps until the next deadline (the stall deadline, or the due
time of a delayed auto-consolidation); any other decision is applied by an activity that calls
`fanin.service.apply_decision` (request consolidation, or skip / stall with an alert).
Phase 2 (consolidating): wait for `RunFinished` (raised by the consolidate trigger) or poll, re-sending
a consolidation request nobody picked up. When the run has ended, the last activity starts the next
feed of the chain (runs requested by the schedule only), and the orchestration returns the outcome.

SDK hazard (azure-functions-durable 1.7, upstream #507): an event raised while no wait for its name
is outstanding is buffered in a slot that keeps only the last one and is never cleared. So one wait
per event name is outstanding at EVERY yield: every activity and every timer is awaited together with
the waits (`task_any`), a wait that fired is replaced before the next yield, and a wait that did not
fire is carried over to the next `task_any` (a fresh one would leave the old one registered and
swallowing the next event). Activities are retried here, not with `call_activity_with_retry`, for the
same reason.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from fanin.durable import PARTITION_DONE, RUN_FINISHED, FanInStart, current_client, instance_is_active
from fanin.lifecycle import TERMINAL_STATUSES, Action, Decision, LifecyclePolicy, PartitionCounts, RunSnapshot, decide
from fanin.service import apply_decision, request_stalled_consolidations
from scheduler.chain import next_feed
from scheduler.service import RunStarted, launch_abandoned_runs, start_run
from shared.bootstrap import Container
from shared.bus.port import publish
from shared.errors import ConflictError
from shared.logs import log_context
from shared.messages import Consolidate
from shared.runs import load_partitions, load_run, run_snapshot

log = logging.getLogger(__name__)

SNAPSHOT = "fanin_snapshot"
APPLY = "fanin_apply"
RESEND = "fanin_resend_consolidation"
FINISH = "fanin_finish"

ACTIVITY_ATTEMPTS = 4
ACTIVITY_RETRY_FIRST = timedelta(seconds=10)
# Waking exactly at a deadline would find it not yet passed (`decide` compares strictly).
DEADLINE_MARGIN = timedelta(seconds=1)
PLANNED_POLL = timedelta(seconds=30)
CONSOLIDATION_POLL_FIRST = timedelta(minutes=1)
CONSOLIDATION_POLL_MAX = timedelta(minutes=30)
CONSOLIDATION_WATCH = timedelta(hours=24)
# A consolidation request nobody claimed within this long is sent again (the local sweep's rule).
RESEND_UNCLAIMED_AFTER_S = 120.0

_OPEN = ("pending", "running")


# --- pure bookkeeping ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionState:
    attempt: int
    status: str
    records: int = 0

    @property
    def finished(self) -> bool:
        return self.status not in _OPEN

    def rank(self) -> tuple[int, int, int]:
        # A later attempt wins; within an attempt, finished beats open, then more records.
        return (self.attempt, int(self.finished), self.records)


@dataclass
class Book:
    """What the orchestration knows of the run's partitions: snapshots merged with reports, monotonic.

    Its tallies change as states merge: every replayed event publishes progress and asks whether all
    have finished, and recounting the partitions each time made a replay quadratic in them."""

    expected: int
    partitions: dict[str, PartitionState] = field(default_factory=dict)
    reports_since_snapshot: int = 0
    completed: int = 0
    failed: int = 0
    open: int = 0
    stones: int = 0

    def merge(self, partition_id: str, state: PartitionState) -> bool:
        """Keep the more advanced state; True when `state` moved the partition on."""
        known = self.partitions.get(partition_id)
        if known is not None:
            if known.rank() >= state.rank():
                return False
            self._tally(known, -1)
        self.partitions[partition_id] = state
        self._tally(state, 1)
        return True

    def _tally(self, state: PartitionState, sign: int) -> None:
        self.completed += sign * (state.status == "completed")
        self.failed += sign * (state.status == "failed")
        self.open += sign * (not state.finished)
        self.stones += sign * state.records

    def report(self, body: dict[str, Any]) -> bool:
        """A PartitionDone event (a WorkDone body); False for a duplicate or a stale attempt."""
        state = PartitionState(
            attempt=int(body.get("attempt", 1)),
            status="completed" if body.get("status") == "success" else "failed",
            records=int(body.get("records_processed", 0)),
        )
        moved = self.merge(str(body["partition_id"]), state)
        self.reports_since_snapshot += int(moved)
        return moved

    def absorb(self, view: RunView) -> None:
        self.expected = view.expected
        for partition_id, state in view.partitions.items():
            self.merge(partition_id, state)

    def counts(self) -> PartitionCounts:
        return PartitionCounts(expected=self.expected, completed=self.completed, failed=self.failed)

    @property
    def all_finished(self) -> bool:
        return len(self.partitions) >= self.expected and self.open == 0


@dataclass(frozen=True)
class RunView:
    """The run as the snapshot activity read it (JSON-safe: it is recorded in the history)."""

    status: str
    status_reason: str | None
    forced: bool
    expected: int
    completed: int
    failed: int
    last_progress_at: datetime
    partitions: dict[str, PartitionState]
    unclaimed_for_s: float | None = None
    # Seconds since a started consolidation last made progress (None unless one has started).
    stalled_for_s: float | None = None

    def snapshot(self) -> RunSnapshot:
        counts = PartitionCounts(self.expected, self.completed, self.failed)
        return RunSnapshot(self.status, counts, self.last_progress_at, self.forced)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "status_reason": self.status_reason,
            "forced": self.forced,
            "expected": self.expected,
            "completed": self.completed,
            "failed": self.failed,
            "last_progress_at": self.last_progress_at.isoformat(),
            "partitions": [[pid, s.attempt, s.status, s.records] for pid, s in self.partitions.items()],
            "unclaimed_for_s": self.unclaimed_for_s,
            "stalled_for_s": self.stalled_for_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunView:
        return cls(
            status=data["status"],
            status_reason=data.get("status_reason"),
            forced=bool(data["forced"]),
            expected=int(data["expected"]),
            completed=int(data["completed"]),
            failed=int(data["failed"]),
            last_progress_at=datetime.fromisoformat(data["last_progress_at"]),
            partitions={row[0]: PartitionState(int(row[1]), str(row[2]), int(row[3])) for row in data["partitions"]},
            unclaimed_for_s=data.get("unclaimed_for_s"),
            stalled_for_s=data.get("stalled_for_s"),  # absent from histories recorded before it existed
        )


def policy_of(start: FanInStart) -> LifecyclePolicy:
    return LifecyclePolicy(
        auto_consolidation_threshold=Decimal(start.auto_consolidation_threshold),
        stall_after=timedelta(seconds=start.stall_after_s),
        auto_consolidation_delay=timedelta(seconds=start.auto_consolidation_delay_s),
    )


def next_wake(view: RunView, policy: LifecyclePolicy, now: datetime) -> datetime:
    """When a waiting run must be looked at again without news: its auto-consolidation or stall deadline."""
    counts = view.snapshot().counts
    if counts.open == 0:
        deadline = view.last_progress_at + policy.auto_consolidation_delay
    else:
        deadline = view.last_progress_at + policy.stall_after
    return max(deadline, now) + DEADLINE_MARGIN


def consolidation_poll(polls: int) -> timedelta:
    interval: timedelta = CONSOLIDATION_POLL_FIRST * 2 ** min(polls, 16)
    return min(CONSOLIDATION_POLL_MAX, interval)


def progress(phase: str, book: Book, decision: str | None) -> dict[str, Any]:
    counts = book.counts()
    return {
        "phase": phase,
        "expected": counts.expected,
        "completed": counts.completed,
        "failed": counts.failed,
        "stones": book.stones,
        "decision": decision,
    }


# --- the orchestration ----------------------------------------------------------------------------
class _Waits:
    """The outstanding waits, one per event name; a fired wait is replaced at once."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.partition_done = ctx.wait_for_external_event(PARTITION_DONE, expected_type=dict)
        self.run_finished = ctx.wait_for_external_event(RUN_FINISHED, expected_type=dict)
        self.finished_signal = False

    def tasks(self) -> list[Any]:
        return [self.partition_done, self.run_finished]

    def take(self, winner: Any, book: Book) -> bool:
        """Absorb a fired wait; True when it was one of ours."""
        if winner is self.partition_done:
            self.partition_done = self._ctx.wait_for_external_event(PARTITION_DONE, expected_type=dict)
            if isinstance(winner.result, dict) and "partition_id" in winner.result:
                book.report(winner.result)
            return True
        if winner is self.run_finished:
            self.run_finished = self._ctx.wait_for_external_event(RUN_FINISHED, expected_type=dict)
            self.finished_signal = True
            return True
        return False


class _Flow:
    def __init__(self, ctx: Any, start: FanInStart) -> None:
        self.ctx = ctx
        self.start = start
        self.book = Book(expected=start.expected_partitions)
        self.waits = _Waits(ctx)
        self.phase = "ingesting"
        self.decision: str | None = None

    def publish(self) -> None:
        self.ctx.set_custom_status(progress(self.phase, self.book, self.decision))

    def _until(self, task: Any) -> Generator[Any, Any, Any]:
        """Yield `task` with the waits until it completes, absorbing events meanwhile."""
        while True:
            winner = yield self.ctx.task_any([*self.waits.tasks(), task])
            if winner is task:
                return task
            self.waits.take(winner, self.book)
            self.publish()

    def call(self, name: str, payload: Any, result_type: type) -> Generator[Any, Any, Any]:
        """Call an activity (retrying failures with backoff) while the waits stay outstanding."""
        delay = ACTIVITY_RETRY_FIRST
        for attempt in range(1, ACTIVITY_ATTEMPTS + 1):
            task = yield from self._until(self.ctx.call_activity(name, payload, expected_type=result_type))
            if not isinstance(task.result, Exception):
                return task.result
            if attempt == ACTIVITY_ATTEMPTS:
                raise RuntimeError(f"activity {name} failed {attempt} times: {task.result}")
            yield from self._until(self.ctx.create_timer(self.ctx.current_utc_datetime + delay))
            delay *= 2
        raise AssertionError("unreachable")

    def snapshot(self) -> Generator[Any, Any, RunView]:
        # News that arrives while the activity reads may be newer than what it read: it stays counted.
        self.book.reports_since_snapshot = 0
        self.waits.finished_signal = False
        view = RunView.from_json((yield from self.call(SNAPSHOT, self.start.run_id, dict)))
        self.book.absorb(view)
        self.publish()
        return view

    def sleep_until(self, wake_at: datetime, *, wake_on_all_reported: bool) -> Generator[Any, Any, None]:
        """Sleep until `wake_at`, or until news: every partition reported, or RunFinished."""
        timer = self.ctx.create_timer(wake_at)
        while True:
            if self.waits.finished_signal:
                return
            if wake_on_all_reported and self.book.reports_since_snapshot and self.book.all_finished:
                return
            winner = yield self.ctx.task_any([*self.waits.tasks(), timer])
            if winner is timer:
                return
            self.waits.take(winner, self.book)
            self.publish()


def orchestrate(ctx: Any) -> Generator[Any, Any, dict[str, Any]]:
    """The orchestrator function (a generator the Durable SDK replays)."""
    start = FanInStart.from_json(ctx.get_input(expected_type=dict))
    policy = policy_of(start)
    flow = _Flow(ctx, start)
    flow.publish()
    began = ctx.current_utc_datetime
    consolidation_polls = 0
    consolidating_since: datetime | None = None

    view = yield from flow.snapshot()
    while view.status not in TERMINAL_STATUSES:
        now = ctx.current_utc_datetime
        if view.status == "planned":
            # Started before the scheduler marks the run ingesting; a run stuck here was abandoned
            # and is launched again (with a new orchestration) by the next scheduler tick.
            if now - began > policy.stall_after:
                return outcome(start, view, None)
            yield from flow.sleep_until(now + PLANNED_POLL, wake_on_all_reported=False)
        elif view.status == "ingesting":
            decision = decide(view.snapshot(), policy, now)
            flow.decision = decision.reason
            flow.publish()
            if decision.action is Action.WAIT:
                yield from flow.sleep_until(next_wake(view, policy, now), wake_on_all_reported=True)
            else:
                payload = {"run_id": start.run_id, "action": str(decision.action), "reason": decision.reason}
                yield from flow.call(APPLY, payload, bool)
        else:  # consolidating
            flow.phase = "consolidating"
            flow.publish()
            consolidating_since = consolidating_since or now
            if now - consolidating_since > CONSOLIDATION_WATCH:
                return outcome(start, view, None)
            unclaimed = view.unclaimed_for_s is not None and view.unclaimed_for_s > RESEND_UNCLAIMED_AFTER_S
            stalled = view.stalled_for_s is not None and view.stalled_for_s > policy.stall_after.total_seconds()
            if unclaimed or stalled:
                yield from flow.call(RESEND, start.run_id, bool)
            yield from flow.sleep_until(now + consolidation_poll(consolidation_polls), wake_on_all_reported=False)
            consolidation_polls += 1
        view = yield from flow.snapshot()
    flow.phase = "done"
    flow.publish()
    chained = yield from flow.call(FINISH, start.run_id, dict)
    return outcome(start, view, chained)


def outcome(start: FanInStart, view: RunView, chained: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "run_id": start.run_id,
        "feed": start.feed,
        "status": view.status,
        "reason": view.status_reason,
        "expected": view.expected,
        "completed": view.completed,
        "failed": view.failed,
        "next_feed": (chained or {}).get("feed"),
        "next_run_id": (chained or {}).get("run_id"),
    }


# --- activities' bodies -----------------------------------------------------------------------------
async def snapshot_run(container: Container, run_id: str) -> dict[str, Any]:
    async with container.pool.connection() as conn:
        run = await load_run(conn, UUID(run_id))
        snapshot = await run_snapshot(conn, run)
        partitions = await load_partitions(conn, run.run_id)
        cur = await conn.execute(
            """SELECT CASE WHEN consolidation_started_at IS NULL
                           THEN extract(epoch FROM now() - consolidation_requested_at)::float8 END,
                      CASE WHEN consolidation_started_at IS NOT NULL
                           THEN extract(epoch FROM now() - updated_at)::float8 END
               FROM run_metadata WHERE run_id = %s AND status = 'consolidating'""",
            (run.run_id,),
        )
        row = await cur.fetchone()
    view = RunView(
        status=run.status,
        status_reason=run.status_reason,
        forced=run.forced,
        expected=snapshot.counts.expected,
        completed=snapshot.counts.completed,
        failed=snapshot.counts.failed,
        last_progress_at=snapshot.last_progress_at,
        partitions={p.partition_id: PartitionState(p.attempts, p.status, p.records_seen) for p in partitions},
        unclaimed_for_s=row[0] if row else None,
        stalled_for_s=row[1] if row else None,
    )
    return view.to_json()


async def apply_run_decision(container: Container, payload: dict[str, Any]) -> bool:
    async with container.pool.connection() as conn:
        run = await load_run(conn, UUID(payload["run_id"]))
    return await apply_decision(container, run, Decision(Action(payload["action"]), payload["reason"]))


async def resend_consolidation(container: Container, run_id: str) -> bool:
    """Send the consolidation request again when it is still unclaimed (its first send may have
    failed), or when the consolidation started and stalled (`request_stalled_consolidations`)."""
    async with container.pool.connection() as conn:
        run = await load_run(conn, UUID(run_id))
        cur = await conn.execute(
            "SELECT consolidation_started_at IS NOT NULL FROM run_metadata WHERE run_id = %s", (run.run_id,)
        )
        started = await cur.fetchone()
    if run.status != "consolidating":
        return False
    if started and started[0]:
        return bool(await request_stalled_consolidations(container, run.run_id))
    with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=run.feed):
        log.warning("consolidation request unclaimed: sending it again")
        await publish(
            container.bus,
            Consolidate(
                feed=run.feed, run_id=run.run_id, trace_id=run.trace_id, force=run.forced, requested_by="fanin"
            ),
        )
    return True


async def adopt_orphaned_runs(container: Container, run_ids: Sequence[UUID]) -> None:
    """Start the fan-in again of each ingesting or consolidating run whose orchestration is not running:
    it failed (an activity out of retries), stopped watching, or was purged. Without it no report may
    be left to come, and the run would hold its feed's active slot for good; the new one reads the run
    from the database and carries on (a running one is left alone)."""
    for run_id in run_ids:
        if await instance_is_active(current_client(), str(run_id)):
            continue
        async with container.pool.connection() as conn:
            run = await load_run(conn, run_id)
        if run.status not in ("ingesting", "consolidating"):
            continue
        with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=run.feed):
            log.warning("the %s run's fan-in orchestration is not running: starting it again", run.status)
            await container.fanin.start(run)


async def recover_active_runs(container: Container) -> list[tuple[str, UUID]]:
    """Launch the runs a dead process left planned, start a new orchestration for each ingesting or
    consolidating run whose own stopped, and return the active runs of the configured feeds as
    (feed, run id)."""
    await launch_abandoned_runs(container)
    async with container.pool.connection() as conn:
        cur = await conn.execute(
            """SELECT feed, run_id FROM run_metadata
               WHERE feed = ANY(%s) AND status IN ('planned', 'ingesting', 'consolidating')""",
            (list(container.settings.feeds),),
        )
        active: list[tuple[str, UUID]] = await cur.fetchall()
    await adopt_orphaned_runs(container, [run_id for _, run_id in active])
    return active


async def start_chain(
    container: Container, feeds: Sequence[str], *, requested_by: str = "schedule"
) -> RunStarted | None:
    """Start the first of `feeds` that has something to fetch, unless a run of the chain is active
    (feeds run one after the other: concurrent runs trip the vendor's WAF); active runs are recovered
    first (`recover_active_runs`)."""
    active = await recover_active_runs(container)
    if active:
        log.info("not starting %s: run %s of %s is still active", ", ".join(feeds), active[0][1], active[0][0])
        return None
    for feed in feeds:
        try:
            started = await start_run(container, feed=feed, requested_by=requested_by)
        except ConflictError as exc:
            log.info("feed %s not started: %s", feed, exc)
            return None
        if started is not None:
            return started
    return None


async def finish_run(container: Container, run_id: str) -> dict[str, Any]:
    """The run ended: start the next feed of the chain when the schedule started this one."""
    async with container.pool.connection() as conn:
        run = await load_run(conn, UUID(run_id))
        cur = await conn.execute("SELECT requested_by FROM run_metadata WHERE run_id = %s", (run.run_id,))
        row = await cur.fetchone()
    requested_by = row[0] if row else None
    feeds = container.settings.feeds
    following = next_feed(feeds, run.feed) if run.feed in feeds else None
    with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=run.feed):
        if requested_by != "schedule" or following is None:
            return {"feed": None, "run_id": None}
        started = await start_chain(container, feeds[list(feeds).index(following) :])
    if started is None:
        return {"feed": None, "run_id": None}
    return {"feed": started.run.feed, "run_id": str(started.run.run_id)}
