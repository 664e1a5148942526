"""Run windows: full from the start date, incremental from the watermark minus the safety buffer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.planning import plan_window

NOW = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
START = datetime(2000, 1, 1, tzinfo=UTC)
BUFFER = timedelta(minutes=15)


def test_without_a_watermark_a_run_is_full_from_the_start_date() -> None:
    window = plan_window(requested=None, watermark=None, now=NOW, full_run_start=START, safety_buffer=BUFFER)
    assert window.run_type == "full"
    assert window.updated_from == START
    assert window.updated_to == NOW.replace(microsecond=123000)


def test_with_a_watermark_a_run_is_incremental_from_the_watermark_minus_the_buffer() -> None:
    mark = datetime(2026, 11, 28, 6, tzinfo=UTC)
    window = plan_window(requested=None, watermark=mark, now=NOW, full_run_start=START, safety_buffer=BUFFER)
    assert window.run_type == "incremental"
    assert window.updated_from == mark - BUFFER
    assert window.watermark_before == mark


def test_a_requested_full_run_ignores_the_watermark() -> None:
    mark = datetime(2026, 11, 28, 6, tzinfo=UTC)
    window = plan_window(requested="full", watermark=mark, now=NOW, full_run_start=START, safety_buffer=BUFFER)
    assert window.updated_from == START


def test_an_incremental_request_without_a_watermark_falls_back_to_the_full_window() -> None:
    window = plan_window(requested="incremental", watermark=None, now=NOW, full_run_start=START, safety_buffer=BUFFER)
    assert window.run_type == "incremental"
    assert window.updated_from == START


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty window"):
        plan_window(requested=None, watermark=NOW + BUFFER * 2, now=NOW, full_run_start=START, safety_buffer=BUFFER)
