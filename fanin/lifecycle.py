"""Run lifecycle decisions (seed diagram 10) as pure functions of a run's state.

`planned -> ingesting -> (consolidating -> completed) | skipped | failed | cancelled`

The local host and the Durable orchestration both call `decide`; neither keeps its own rules.
Counts come from partition_progress (the single source of truth), never from counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

ACTIVE_STATUSES = ("planned", "ingesting", "consolidating")
TERMINAL_STATUSES = ("completed", "skipped", "failed", "cancelled")


class Action(StrEnum):
    WAIT = "wait"
    CONSOLIDATE = "consolidate"  # every partition completed: publish and advance the watermark
    CONSOLIDATE_PARTIAL = "consolidate_partial"  # forced or above threshold: publish, keep the watermark
    SKIP = "skip"  # some partitions failed: publish nothing, alert
    STALL = "stall"  # no progress before the deadline: fail the run, alert
    NONE = "none"  # the run is not ingesting: nothing to decide


@dataclass(frozen=True)
class PartitionCounts:
    expected: int
    completed: int
    failed: int

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def open(self) -> int:
        return self.expected - self.finished

    @property
    def success_rate(self) -> Decimal:
        return Decimal(self.completed) / Decimal(self.expected) if self.expected else Decimal(0)


@dataclass(frozen=True)
class LifecyclePolicy:
    auto_consolidation_threshold: Decimal
    stall_after: timedelta
    # A partial run waits this long before auto-consolidating, so failed partitions can be retried.
    auto_consolidation_delay: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.auto_consolidation_threshold <= Decimal(1):
            raise ValueError("auto_consolidation_threshold must be within [0, 1]")


@dataclass(frozen=True)
class RunSnapshot:
    status: str
    counts: PartitionCounts
    last_progress_at: datetime
    forced: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str

    @property
    def advances_watermark(self) -> bool:
        return self.action is Action.CONSOLIDATE


def decide(run: RunSnapshot, policy: LifecyclePolicy, now: datetime) -> Decision:
    """What to do with a run now, given its partitions and the policy."""
    counts = run.counts
    if run.status != "ingesting":
        return Decision(Action.NONE, f"run is {run.status}")
    if counts.expected > 0 and counts.completed == counts.expected:
        return Decision(Action.CONSOLIDATE, f"all {counts.expected} partitions completed")
    if counts.open == 0:
        summary = f"{counts.failed} of {counts.expected} partitions failed"
        if run.forced and counts.completed > 0:
            return Decision(Action.CONSOLIDATE_PARTIAL, f"{summary}; consolidation forced")
        if counts.completed > 0 and counts.success_rate >= policy.auto_consolidation_threshold:
            rate = f"{counts.success_rate:.0%}"
            due = run.last_progress_at + policy.auto_consolidation_delay
            if now < due:
                return Decision(Action.WAIT, f"{summary}; auto-consolidation of {rate} at {due.isoformat()}")
            return Decision(
                Action.CONSOLIDATE_PARTIAL,
                f"{summary}; {rate} completed is at or above the auto-consolidation threshold",
            )
        return Decision(Action.SKIP, f"{summary}; consolidation skipped")
    idle = now - run.last_progress_at
    if idle > policy.stall_after:
        minutes = int(idle.total_seconds() // 60)
        return Decision(Action.STALL, f"stalled: no progress for {minutes} min with {counts.open} partitions open")
    return Decision(Action.WAIT, f"{counts.finished} of {counts.expected} partitions finished")


def stall_deadline(last_progress_at: datetime, policy: LifecyclePolicy) -> datetime:
    return last_progress_at + policy.stall_after
