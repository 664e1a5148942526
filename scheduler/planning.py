"""Which window a run fetches: pure decisions from the watermark, the request and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

RunType = Literal["full", "incremental"]


@dataclass(frozen=True)
class RunWindow:
    run_type: RunType
    updated_from: datetime
    updated_to: datetime
    watermark_before: datetime | None


def truncate_to_millis(moment: datetime) -> datetime:
    # The feed compares timestamps at millisecond resolution; the stored window must match the query.
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def plan_window(
    *,
    requested: RunType | None,
    watermark: datetime | None,
    now: datetime,
    full_run_start: datetime,
    safety_buffer: timedelta,
) -> RunWindow:
    """Incremental when a watermark exists (unless a type is requested); `updated_to` is fixed now.

    An incremental run starts `safety_buffer` before the watermark so that stones updated while the
    previous run was planning are not missed; without a watermark it falls back to a full window.
    """
    run_type: RunType = requested or ("incremental" if watermark is not None else "full")
    updated_to = truncate_to_millis(now)
    if run_type == "incremental" and watermark is not None:
        updated_from = truncate_to_millis(watermark - safety_buffer)
    else:
        updated_from = full_run_start.astimezone(UTC)
    if updated_from >= updated_to:
        raise ValueError(f"empty window: {updated_from.isoformat()} is not before {updated_to.isoformat()}")
    return RunWindow(run_type, updated_from, updated_to, watermark)
