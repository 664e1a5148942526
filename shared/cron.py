"""NCRONTAB schedules (six fields, seconds first), as the Functions timer trigger reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from croniter import croniter


@dataclass(frozen=True)
class CronExpression:
    expression: str

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(
                f"{expression!r} has {len(fields)} fields; NCRONTAB needs 6 "
                "(second minute hour day month weekday), e.g. '0 0 */6 * * *'"
            )
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise ValueError(f"{expression!r} is not a valid NCRONTAB expression")
        return cls(" ".join(fields))

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (timezone-aware, same zone)."""
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        result: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        return result
