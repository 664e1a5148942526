"""NCRONTAB schedules: what the Functions host accepts is what the local scheduler accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.cron import CronExpression


@pytest.mark.parametrize(
    ("expression", "after", "fires"),
    [
        ("0 0 */6 * * *", datetime(2026, 1, 1, 5, 59, tzinfo=UTC), datetime(2026, 1, 1, 6, 0, tzinfo=UTC)),
        ("30 15 9 * * MON-FRI", datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 30, 9, 15, 30, tzinfo=UTC)),
        ("0 0 0 1 jan,Jul *", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)),
        ("0 0 12 * * 0", datetime(2026, 11, 29, 12, 0, tzinfo=UTC), datetime(2026, 12, 6, 12, 0, tzinfo=UTC)),
        ("0 5-10/5 * * * *", datetime(2026, 1, 1, 0, 6, tzinfo=UTC), datetime(2026, 1, 1, 0, 10, tzinfo=UTC)),
    ],
)
def test_ncrontab_expressions_fire_when_the_host_would(expression: str, after: datetime, fires: datetime) -> None:
    assert CronExpression.parse(expression).next_after(after) == fires


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 12 L * *", "'L' is not a number"),
        ("0 0 12 15W * *", "'15W' is not a number"),
        ("0 0 12 ? * MON", "'?' is not *, a value, a range or a step"),
        ("0 0 12 * * MON#2", "'MON#2' is not *, a value, a range or a step"),
        ("0 0 12 * * 7", "7 is outside 0-6"),
        ("0 H * * * *", "'H' is not a number"),
        ("0 0 24 * * *", "24 is outside 0-23"),
        ("0 0 0 0 * *", "0 is outside 1-31"),
        ("0 */0 * * * *", "a step must be at least 1"),
        ("0 0 0 * MON *", "'MON' is not a number (names: JAN"),
        ("0 0 0 * * JAN", "'JAN' is not a number (names: SUN"),
        ("0 0 0 * * 1,", "'' is not *, a value, a range or a step"),
    ],
)
def test_what_croniter_allows_beyond_ncrontab_is_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match="not a valid NCRONTAB expression") as refused:
        CronExpression.parse(expression)
    assert reason in str(refused.value)


def test_five_fields_are_refused_naming_the_six_needed() -> None:
    with pytest.raises(ValueError, match="NCRONTAB needs 6"):
        CronExpression.parse("0 */6 * * *")
