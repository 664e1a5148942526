"""Which window a run fetches: pure decisions from the watermark, the request and the clocks (ours
and, as far as it was measured, the feed's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

RunType = Literal["full", "incremental"]

# The feed's Date has whole seconds and is read when its response arrives, so clocks in step measure a
# lag of up to a second and the response's travel: below this, a lag cannot be told from none.
LAG_RESOLUTION: Final = timedelta(seconds=2)


@dataclass(frozen=True)
class RunWindow:
    run_type: RunType
    updated_from: datetime
    updated_to: datetime
    watermark_before: datetime | None
    feed_clock_lag: timedelta | None = None  # our clock minus the feed's when planned; None = unmeasured


def truncate_to_millis(moment: datetime) -> datetime:
    # The feed compares timestamps at millisecond resolution; the stored window must match the query.
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def lag_to_cover(feed_clock_lag: timedelta | None) -> timedelta:
    """How much of the feed clock's lag behind ours a window must allow for.

    The watermark is the previous run's `updated_to`, read on OUR clock, but stones are selected by
    the feed's updatedAt. With the feed's clock behind ours by `lag`, a stone the previous run missed
    because it changed while that run paged got a stamp after `updated_to - lag`, not after
    `updated_to`: the window must reach back that much further. A feed clock ahead of ours stamps
    changes after the window's end, where the next window finds them: nothing to cover. Nor when the
    lag is unmeasured or under LAG_RESOLUTION (the safety buffer covers that much).
    """
    if feed_clock_lag is None or feed_clock_lag < LAG_RESOLUTION:
        return timedelta(0)
    return feed_clock_lag


def lookback(safety_buffer: timedelta, feed_clock_lag: timedelta | None) -> timedelta:
    """How far before the watermark an incremental window starts."""
    return safety_buffer + lag_to_cover(feed_clock_lag)


def plan_window(
    *,
    requested: RunType | None,
    watermark: datetime | None,
    now: datetime,
    full_run_start: datetime,
    safety_buffer: timedelta,
    feed_clock_lag: timedelta | None = None,
) -> RunWindow:
    """Incremental when a watermark exists (unless a type is requested); `updated_to` is fixed now.

    An incremental run starts `safety_buffer` (plus the feed clock's lag behind ours, when it is
    measurable: see `lag_to_cover`) before the watermark, so that stones updated while the previous run was
    planning or paging are not missed; without a watermark it falls back to a full window.
    """
    run_type: RunType = requested or ("incremental" if watermark is not None else "full")
    updated_to = truncate_to_millis(now)
    if run_type == "incremental" and watermark is not None:
        updated_from = truncate_to_millis(watermark - lookback(safety_buffer, feed_clock_lag))
    else:
        updated_from = full_run_start.astimezone(UTC)
    if updated_from >= updated_to:
        raise ValueError(f"empty window: {updated_from.isoformat()} is not before {updated_to.isoformat()}")
    return RunWindow(run_type, updated_from, updated_to, watermark, feed_clock_lag)
