"""An incremental window reaches back by the safety buffer plus the feed clock's lag behind ours."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.planning import plan_window
from scheduler.service import feed_clock_note

NOW = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)
MARK = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)
START = datetime(2000, 1, 1, tzinfo=UTC)
BUFFER = timedelta(minutes=1)


def incremental_from(lag: timedelta | None) -> datetime:
    window = plan_window(
        requested=None, watermark=MARK, now=NOW, full_run_start=START, safety_buffer=BUFFER, feed_clock_lag=lag
    )
    assert window.run_type == "incremental"
    assert window.feed_clock_lag == lag
    return window.updated_from


@pytest.mark.parametrize(
    ("lag", "start"),
    [
        (None, MARK - BUFFER),  # unmeasured: the buffer alone
        (timedelta(0), MARK - BUFFER),
        (timedelta(minutes=10), MARK - BUFFER - timedelta(minutes=10)),  # behind: that much further back
        (timedelta(seconds=30), MARK - BUFFER - timedelta(seconds=30)),  # behind, within the buffer: still added
        (timedelta(seconds=2), MARK - BUFFER - timedelta(seconds=2)),  # measurably behind
        (timedelta(seconds=1, microseconds=999_999), MARK - BUFFER),  # what Date makes of clocks in step
        (timedelta(minutes=-10), MARK - BUFFER),  # ahead: changes land after the window's end
    ],
)
def test_an_incremental_window_starts_the_feed_clocks_lag_further_back(lag: timedelta | None, start: datetime) -> None:
    assert incremental_from(lag) == start


def test_the_start_is_cut_to_the_feeds_milliseconds_never_later_than_asked() -> None:
    # 11:00 - 60 s - 2.999999 s = 10:58:57.000001: cut down to the millisecond, not rounded up.
    assert incremental_from(timedelta(seconds=2, microseconds=999_999)) == datetime(
        2026, 11, 29, 10, 58, 57, tzinfo=UTC
    )


def test_a_full_window_ignores_the_lag() -> None:
    window = plan_window(
        requested="full",
        watermark=MARK,
        now=NOW,
        full_run_start=START,
        safety_buffer=BUFFER,
        feed_clock_lag=timedelta(hours=2),
    )
    assert (window.updated_from, window.feed_clock_lag) == (START, timedelta(hours=2))


def test_with_no_buffer_clocks_in_step_start_exactly_at_the_watermark(caplog: pytest.LogCaptureFixture) -> None:
    window = plan_window(
        requested=None,
        watermark=MARK,
        now=NOW,
        full_run_start=START,
        safety_buffer=timedelta(0),
        feed_clock_lag=timedelta(milliseconds=1_300),  # Date's whole seconds plus the response's travel
    )
    assert window.updated_from == MARK
    with caplog.at_level(logging.WARNING, logger="scheduler.service"):
        assert feed_clock_note(window, timedelta(0)) == {
            "lag_s": 1.3,
            "beyond_safety_buffer": False,
            "safety_buffer_s": 0.0,
        }
    assert not caplog.records


def test_a_lag_reaching_past_now_is_still_a_window() -> None:
    window = plan_window(
        requested=None,
        watermark=NOW,
        now=NOW,
        full_run_start=START,
        safety_buffer=timedelta(0),
        feed_clock_lag=timedelta(minutes=5),
    )
    assert window.updated_from == NOW.replace(microsecond=123000) - timedelta(minutes=5)


def test_a_lag_beyond_the_buffer_is_warned_about_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    window = plan_window(
        requested=None,
        watermark=MARK,
        now=NOW,
        full_run_start=START,
        safety_buffer=BUFFER,
        feed_clock_lag=timedelta(minutes=10, milliseconds=400),
    )
    with caplog.at_level(logging.WARNING, logger="scheduler.service"):
        note = feed_clock_note(window, BUFFER)
    assert note == {"lag_s": 600.4, "beyond_safety_buffer": True, "safety_buffer_s": 60.0}
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "600.4 s behind ours, more than the 60 s safety buffer" in record.getMessage()
    assert "starts 660.4 s before the watermark" in record.getMessage()


@pytest.mark.parametrize("lag", [timedelta(seconds=59), timedelta(minutes=-30)])
def test_a_lag_within_the_buffer_is_recorded_without_a_warning(
    lag: timedelta, caplog: pytest.LogCaptureFixture
) -> None:
    window = plan_window(
        requested=None, watermark=MARK, now=NOW, full_run_start=START, safety_buffer=BUFFER, feed_clock_lag=lag
    )
    with caplog.at_level(logging.WARNING, logger="scheduler.service"):
        note = feed_clock_note(window, BUFFER)
    assert note == {"lag_s": lag.total_seconds(), "beyond_safety_buffer": False, "safety_buffer_s": 60.0}
    assert not caplog.records


def test_an_unmeasured_clock_is_warned_about_and_not_recorded(caplog: pytest.LogCaptureFixture) -> None:
    window = plan_window(requested=None, watermark=MARK, now=NOW, full_run_start=START, safety_buffer=BUFFER)
    with caplog.at_level(logging.WARNING, logger="scheduler.service"):
        assert feed_clock_note(window, BUFFER) is None
    (record,) = caplog.records
    assert "no usable Date header" in record.getMessage()
