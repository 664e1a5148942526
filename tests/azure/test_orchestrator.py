"""The fan-in orchestration driven through its indexed handler with real Durable histories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fanin.durable import ORCHESTRATOR, PARTITION_DONE, RUN_FINISHED, FanInStart
from fanin.orchestrator import APPLY, FINISH, RESEND, SNAPSHOT, PartitionState, RunView
from tests.azure.durable import (
    CALL_ACTIVITY,
    EVENT_RAISED,
    EXECUTION_STARTED,
    ORCHESTRATOR_COMPLETED,
    ORCHESTRATOR_STARTED,
    TASK_COMPLETED,
    TASK_SCHEDULED,
    DurableEngine,
    VirtualClock,
    event,
    flatten,
)
from tests.azure.indexing import user_function

RUN_ID = "3f2a6c1e-0000-4000-8000-000000000001"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def start_input(partitions: int, *, threshold: str = "0.70", delay_s: float = 0.0) -> str:
    start = FanInStart(RUN_ID, "nivoda-natural", "a" * 32, partitions, threshold, 1800.0, delay_s)
    return json.dumps(start.to_json())


@dataclass
class FakeRun:
    """The database as the activities see it; tests move it on like workers would."""

    partitions: dict[str, PartitionState]
    clock: VirtualClock
    status: str = "ingesting"
    forced: bool = False
    last_progress_at: datetime = T0
    applied: list[tuple[str, str]] = field(default_factory=list)
    stalled_for_s: float | None = None

    def finish(
        self, partition_id: str, status: str = "completed", attempt: int = 1, records: int = 10
    ) -> dict[str, Any]:
        self.partitions[partition_id] = PartitionState(attempt, status, records)
        self.last_progress_at = self.clock()
        return {
            "partition_id": partition_id,
            "attempt": attempt,
            "status": "success" if status == "completed" else "failed",
            "records_processed": records,
            "run_id": RUN_ID,
        }

    def view(self) -> dict[str, Any]:
        states = self.partitions.values()
        return RunView(
            status=self.status,
            status_reason=None,
            forced=self.forced,
            expected=len(self.partitions),
            completed=sum(s.status == "completed" for s in states),
            failed=sum(s.status == "failed" for s in states),
            last_progress_at=self.last_progress_at,
            partitions=dict(self.partitions),
            stalled_for_s=self.stalled_for_s,
        ).to_json()


def engine_for(run: FakeRun, clock: VirtualClock) -> DurableEngine:
    async def snapshot(run_id: str) -> dict[str, Any]:
        assert run_id == RUN_ID
        return run.view()

    async def apply(payload: dict[str, Any]) -> bool:
        run.applied.append((payload["action"], payload["reason"]))
        run.status = {"consolidate": "consolidating", "consolidate_partial": "consolidating", "skip": "skipped"}.get(
            payload["action"], "failed"
        )
        return True

    async def resend(run_id: str) -> bool:
        return True

    async def finish(run_id: str) -> dict[str, Any]:
        return {"feed": "nivoda-labgrown", "run_id": "next-run"}

    engine = DurableEngine(
        {ORCHESTRATOR: user_function(ORCHESTRATOR)},
        {SNAPSHOT: snapshot, APPLY: apply, RESEND: resend, FINISH: finish},
    )
    engine.now = clock
    return engine


def new_run(partitions: int) -> tuple[FakeRun, VirtualClock]:
    clock = VirtualClock(T0)
    states = {f"p{i:02d}": PartitionState(1, "pending") for i in range(partitions)}
    return FakeRun(states, clock), clock


async def started(run: FakeRun, clock: VirtualClock, **options: Any) -> DurableEngine:
    engine = engine_for(run, clock)
    assert engine.start(ORCHESTRATOR, RUN_ID, start_input(len(run.partitions), **options))
    await engine.drain()
    return engine


def report(engine: DurableEngine, body: dict[str, Any], name: str = PARTITION_DONE) -> None:
    assert engine.raise_event(RUN_ID, name, json.dumps(body)) == 202


async def test_all_partitions_done_requests_consolidation_then_ends_with_the_outcome() -> None:
    run, clock = new_run(3)
    engine = await started(run, clock)
    instance = engine.instances[RUN_ID]
    assert instance.custom_status["phase"] == "ingesting"
    for pid in list(run.partitions):
        clock.advance(timedelta(seconds=5))
        report(engine, run.finish(pid, records=100))
        await engine.drain()
    assert run.applied == [("consolidate", "all 3 partitions completed")]
    assert instance.custom_status == {
        "phase": "consolidating",
        "expected": 3,
        "completed": 3,
        "failed": 0,
        "stones": 300,
        "decision": "all 3 partitions completed",
    }
    run.status = "completed"
    report(engine, {"outcome": "completed"}, RUN_FINISHED)
    await engine.drain()
    assert instance.runtime_status == "Completed"
    assert instance.output["status"] == "completed"
    assert instance.output["next_feed"] == "nivoda-labgrown"
    # Snapshots: the first, one after the last report, one after applying, one after RunFinished.
    assert [name for name, _ in engine.activity_calls].count(SNAPSHOT) == 4


async def test_a_consolidation_that_stalls_is_requested_again() -> None:
    run, clock = new_run(2)
    engine = await started(run, clock)
    for pid in list(run.partitions):
        report(engine, run.finish(pid))
        await engine.drain()
    assert run.status == "consolidating"
    run.stalled_for_s = 60.0  # started and progressing: nothing to do
    clock.advance(timedelta(minutes=2))
    await engine.drain()
    assert RESEND not in [name for name, _ in engine.activity_calls]
    run.stalled_for_s = 1801.0  # no progress for longer than the run's stall window (1800 s)
    clock.advance(timedelta(minutes=5))
    await engine.drain()
    assert [name for name, _ in engine.activity_calls].count(RESEND) == 1


async def test_some_failed_below_the_threshold_is_skipped() -> None:
    run, clock = new_run(3)
    engine = await started(run, clock, threshold="1.0")
    report(engine, run.finish("p00"))
    report(engine, run.finish("p01", status="failed"))
    report(engine, run.finish("p02"))
    await engine.drain()
    assert run.applied == [("skip", "1 of 3 partitions failed; consolidation skipped")]
    instance = engine.instances[RUN_ID]
    assert instance.runtime_status == "Completed"
    assert instance.output["status"] == "skipped"
    assert instance.output["failed"] == 1


async def test_a_forced_run_consolidates_partially() -> None:
    run, clock = new_run(2)
    run.forced = True
    engine = await started(run, clock, threshold="1.0")
    report(engine, run.finish("p00", status="failed"))
    report(engine, run.finish("p01"))
    await engine.drain()
    assert [action for action, _ in run.applied] == ["consolidate_partial"]


async def test_a_partial_run_above_the_threshold_waits_for_its_delay_then_consolidates() -> None:
    run, clock = new_run(4)
    engine = await started(run, clock, threshold="0.70", delay_s=300)
    for pid in ("p00", "p01", "p02"):
        report(engine, run.finish(pid))
    report(engine, run.finish("p03", status="failed"))
    await engine.drain()
    assert run.applied == [], "75% completed waits AUTO_CONSOLIDATION_DELAY before consolidating"
    clock.advance(timedelta(seconds=301))
    await engine.drain()
    assert [action for action, _ in run.applied] == ["consolidate_partial"]


async def test_no_progress_before_the_deadline_stalls_the_run() -> None:
    run, clock = new_run(2)
    engine = await started(run, clock)
    report(engine, run.finish("p00"))
    await engine.drain()
    clock.advance(timedelta(minutes=29))
    await engine.drain()
    assert run.applied == []
    clock.advance(timedelta(minutes=2))
    await engine.drain()
    assert len(run.applied) == 1
    action, reason = run.applied[0]
    assert action == "stall"
    assert "1 partitions open" in reason
    assert engine.instances[RUN_ID].output["status"] == "failed"


async def test_duplicate_and_stale_reports_are_counted_once() -> None:
    run, clock = new_run(3)
    engine = await started(run, clock)
    first = run.finish("p00", status="failed", attempt=1)
    report(engine, first)
    report(engine, first)  # a redelivered WORK_DONE
    retried = run.finish("p00", status="completed", attempt=2, records=30)
    report(engine, retried)
    report(engine, first)  # the old attempt again, after the retry
    report(engine, run.finish("p01"))
    report(engine, run.finish("p01"))
    await engine.drain()
    instance = engine.instances[RUN_ID]
    assert instance.custom_status["completed"] == 2
    assert instance.custom_status["failed"] == 0
    assert instance.custom_status["stones"] == 40
    assert run.applied == []
    assert [name for name, _ in engine.activity_calls].count(SNAPSHOT) == 1, "no evaluation before all reported"
    report(engine, run.finish("p02"))
    await engine.drain()
    assert run.applied == [("consolidate", "all 3 partitions completed")]


async def test_events_raised_while_an_activity_runs_are_neither_lost_nor_repeated() -> None:
    """The SDK keeps only the last event raised while nothing waits for it (upstream #507): here a wait
    is outstanding at every yield, so reports arriving during the first snapshot all count, once."""
    run, clock = new_run(3)
    engine = engine_for(run, clock)
    engine.start(ORCHESTRATOR, RUN_ID, start_input(3))
    instance = engine.instances[RUN_ID]
    engine.episode(instance)  # scheduled the first snapshot; it has not run yet
    view_before = run.view()  # what the snapshot will read: nothing finished
    bodies = [run.finish(pid) for pid in ("p00", "p01", "p02")]
    for body in bodies:
        report(engine, body)
    # Deliver the three events BEFORE the snapshot's (stale) result, in one episode.
    instance.activities.clear()
    instance.inbox.append(event(TASK_COMPLETED, clock(), TaskScheduledId=0, Result=json.dumps(view_before)))
    engine.episode(instance)
    assert instance.custom_status["completed"] == 3, instance.custom_status
    await engine.drain()
    assert run.applied == [("consolidate", "all 3 partitions completed")]


async def test_replaying_the_same_history_gives_the_same_actions() -> None:
    run, clock = new_run(2)
    engine = await started(run, clock)
    report(engine, run.finish("p00"))
    report(engine, run.finish("p01"))
    await engine.drain()
    instance = engine.instances[RUN_ID]
    handle = user_function(ORCHESTRATOR)
    context = engine.context_json(instance, instance.history)
    first, second = json.loads(handle(context)), json.loads(handle(context))
    assert first == second
    assert flatten(first["actions"])[: instance.handled_actions] == flatten(instance.states[-1]["actions"])


def test_a_hand_built_history_with_every_partition_completed_schedules_the_consolidation() -> None:
    view = RunView(
        status="ingesting",
        status_reason=None,
        forced=False,
        expected=2,
        completed=2,
        failed=0,
        last_progress_at=T0,
        partitions={"p00": PartitionState(1, "completed", 5), "p01": PartitionState(1, "completed", 7)},
    )
    history = [
        event(ORCHESTRATOR_STARTED, T0),
        event(
            EXECUTION_STARTED,
            T0,
            Name=ORCHESTRATOR,
            Input=start_input(2),
            OrchestrationInstance={"InstanceId": RUN_ID},
            Version="",
        ),
        event(TASK_SCHEDULED, T0, 0, Name=SNAPSHOT),
        event(ORCHESTRATOR_COMPLETED, T0),
        event(ORCHESTRATOR_STARTED, T0 + timedelta(seconds=1)),
        event(TASK_COMPLETED, T0 + timedelta(seconds=1), TaskScheduledId=0, Result=json.dumps(view.to_json())),
    ]
    context = {
        "history": history,
        "instanceId": RUN_ID,
        "isReplaying": False,
        "parentInstanceId": None,
        "input": start_input(2),
        "upperSchemaVersion": 1,
    }
    state = json.loads(user_function(ORCHESTRATOR)(json.dumps(context)))
    assert not state["isDone"]
    calls = [a for a in flatten(state["actions"]) if a["actionType"] == CALL_ACTIVITY]
    assert [c["functionName"] for c in calls] == [SNAPSHOT, APPLY]
    assert json.loads(calls[1]["input"]) == {
        "run_id": RUN_ID,
        "action": "consolidate",
        "reason": "all 2 partitions completed",
    }
    assert state["customStatus"]["stones"] == 12


@pytest.mark.parametrize("name", [PARTITION_DONE, RUN_FINISHED])
def test_the_first_episode_waits_for_both_events(name: str) -> None:
    history = [
        event(ORCHESTRATOR_STARTED, T0),
        event(
            EXECUTION_STARTED,
            T0,
            Name=ORCHESTRATOR,
            Input=start_input(1),
            OrchestrationInstance={"InstanceId": RUN_ID},
            Version="",
        ),
    ]
    context = {
        "history": history,
        "instanceId": RUN_ID,
        "isReplaying": False,
        "parentInstanceId": None,
        "input": start_input(1),
        "upperSchemaVersion": 1,
    }
    state = json.loads(user_function(ORCHESTRATOR)(json.dumps(context)))
    waits = [a for a in flatten(state["actions"]) if a["actionType"] == 6]
    assert name in {w["externalEventName"] for w in waits}
    assert EVENT_RAISED == 15


async def test_a_replay_visits_each_partition_state_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event of the history re-counted every partition (progress, all_finished): one replay was
    quadratic in the partitions, and a run of them cubic (1,000 partitions: ~3 s episodes, ~6 min of
    replays). The bookkeeping now keeps its tallies as it merges."""
    partitions = 200
    run, clock = new_run(partitions)
    engine = await started(run, clock)
    for pid in list(run.partitions)[:-1]:
        clock.advance(timedelta(seconds=1))
        report(engine, run.finish(pid))
    await engine.drain()
    instance = engine.instances[RUN_ID]
    assert instance.custom_status["completed"] == partitions - 1
    visits = 0
    finished = PartitionState.finished

    def counted(state: PartitionState) -> bool:
        nonlocal visits
        visits += 1
        return bool(finished.fget(state))  # type: ignore[attr-defined]

    monkeypatch.setattr(PartitionState, "finished", property(counted))
    user_function(ORCHESTRATOR)(engine.context_json(instance, instance.history))
    assert visits <= 10 * partitions, visits  # a few per event; it was ~partitions² / 2


async def test_a_failing_activity_is_retried_with_backoff_while_reports_keep_arriving() -> None:
    run, clock = new_run(2)
    engine = engine_for(run, clock)
    failures = 2
    snapshot = engine.activities[SNAPSHOT]

    async def flaky(run_id: str) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("the database is failing over")
        return await snapshot(run_id)

    engine.activities[SNAPSHOT] = flaky
    engine.start(ORCHESTRATOR, RUN_ID, start_input(2))
    await engine.drain()
    report(engine, run.finish("p00"))  # arrives while the first retry waits
    await engine.drain()
    clock.advance(timedelta(seconds=10))
    await engine.drain()
    report(engine, run.finish("p01"))
    clock.advance(timedelta(seconds=20))
    await engine.drain()
    instance = engine.instances[RUN_ID]
    assert instance.runtime_status == "Running"
    assert [name for name, _ in engine.activity_calls].count(SNAPSHOT) >= 3
    assert run.applied == [("consolidate", "all 2 partitions completed")]
