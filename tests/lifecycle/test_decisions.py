"""The run lifecycle decisions (seed diagram 10) as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanin.lifecycle import Action, LifecyclePolicy, PartitionCounts, RunSnapshot, decide

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
POLICY = LifecyclePolicy(Decimal("0.70"), timedelta(minutes=30), timedelta(minutes=5))


def run(
    completed: int,
    failed: int,
    expected: int = 10,
    *,
    idle_min: float = 0,
    forced: bool = False,
    status: str = "ingesting",
) -> RunSnapshot:
    return RunSnapshot(status, PartitionCounts(expected, completed, failed), NOW - timedelta(minutes=idle_min), forced)


def test_all_completed_consolidates_and_advances_the_watermark() -> None:
    decision = decide(run(10, 0), POLICY, NOW)
    assert decision.action is Action.CONSOLIDATE
    assert decision.advances_watermark


def test_open_partitions_wait() -> None:
    assert decide(run(5, 1), POLICY, NOW).action is Action.WAIT


def test_failures_below_the_threshold_skip() -> None:
    decision = decide(run(6, 4), POLICY, NOW)
    assert decision.action is Action.SKIP
    assert "4 of 10 partitions failed" in decision.reason


def test_exactly_the_threshold_auto_consolidates_partially_after_the_delay() -> None:
    assert decide(run(7, 3, idle_min=1), POLICY, NOW).action is Action.WAIT
    decision = decide(run(7, 3, idle_min=6), POLICY, NOW)
    assert decision.action is Action.CONSOLIDATE_PARTIAL
    assert not decision.advances_watermark


def test_forcing_consolidates_partially_at_once() -> None:
    assert decide(run(2, 8, forced=True), POLICY, NOW).action is Action.CONSOLIDATE_PARTIAL


def test_nothing_completed_is_never_consolidated() -> None:
    assert decide(run(0, 10, forced=True), POLICY, NOW).action is Action.SKIP


def test_no_progress_past_the_deadline_stalls() -> None:
    decision = decide(run(3, 0, idle_min=31), POLICY, NOW)
    assert decision.action is Action.STALL
    assert "no progress for 31 min" in decision.reason


def test_runs_not_ingesting_need_nothing() -> None:
    for status in ("planned", "consolidating", "completed", "skipped", "failed", "cancelled"):
        assert decide(run(10, 0, status=status), POLICY, NOW).action is Action.NONE


def test_a_threshold_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="within"):
        LifecyclePolicy(Decimal("1.5"), timedelta(minutes=1))


@given(
    expected=st.integers(1, 50),
    data=st.data(),
    idle=st.floats(0, 120),
    forced=st.booleans(),
)
def test_decisions_are_total_and_consistent(expected: int, data: st.DataObject, idle: float, forced: bool) -> None:
    completed = data.draw(st.integers(0, expected))
    failed = data.draw(st.integers(0, expected - completed))
    decision = decide(run(completed, failed, expected, idle_min=idle, forced=forced), POLICY, NOW)
    open_partitions = expected - completed - failed
    if decision.action is Action.CONSOLIDATE:
        assert completed == expected
    if decision.action in (Action.SKIP, Action.CONSOLIDATE_PARTIAL):
        assert open_partitions == 0
        assert failed > 0
    if decision.action is Action.STALL:
        assert open_partitions > 0
    if decision.action is Action.CONSOLIDATE_PARTIAL:
        assert completed > 0
