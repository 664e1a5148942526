"""The feed's clock as seen from ours, measured from the HTTP `Date` header of its responses.

Stones are selected by the feed's `updatedAt`, stamped by the feed's clock, while a run's window
ends at OUR now: a feed clock behind ours puts changes made during a run inside that run's window
but behind its cursor, where only a window reaching further back finds them again.

`Date` has one-second resolution and is stamped before the response travels, so the measured lag
errs towards the feed looking further behind than it is: the safe direction for widening a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class ClockReading:
    """One measurement: `lag` = our time - the feed's (positive = the feed is behind)."""

    lag: timedelta
    measured_at: float  # the client's monotonic clock, to judge how recent the reading is


def clock_lag(date_header: str | None, now: datetime) -> timedelta | None:
    """Our `now` minus the feed's time as its `Date` header gives it; None if absent or malformed."""
    if not date_header:
        return None
    try:
        feed_now = parsedate_to_datetime(date_header.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if feed_now.tzinfo is None:  # "-0000": UTC of unknown origin, which an HTTP date always is
        feed_now = feed_now.replace(tzinfo=UTC)
    return now - feed_now
