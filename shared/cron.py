"""NCRONTAB schedules (six fields, seconds first), as the Functions timer trigger reads them.

croniter computes the fire times locally, but it accepts more than NCRONTAB does (`L`, `W`, `#`, `?`,
`H`, weekday 7, ...): a schedule that runs under `opus run` could then stop the Functions host from
indexing the timer. So the grammar is NCRONTAB's, checked here, and croniter only does the arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

# (name, lowest, highest, names allowed in place of numbers)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("weekday", 0, 6, _WEEKDAYS),
)
# One item of a comma list: `*`, a value or a range, with an optional step.
_ITEM = re.compile(r"(?P<span>\*|(?P<low>[0-9A-Za-z]+)(?:-(?P<high>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?")


def _field_problem(text: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> str | None:
    """Why one field is not NCRONTAB, or None."""
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            return f"{name} field {text!r}: {item!r} is not *, a value, a range or a step"
        if match["step"] is not None and int(match["step"]) == 0:
            return f"{name} field {text!r}: a step must be at least 1"
        bounds = [value for value in (match["low"], match["high"]) if value is not None]
        for value in bounds:
            if value.isdigit():
                if not lowest <= int(value) <= highest:
                    return f"{name} field {text!r}: {value} is outside {lowest}-{highest}"
            elif value.upper() not in names:
                allowed = f" (names: {', '.join(names)})" if names else ""
                return f"{name} field {text!r}: {value!r} is not a number{allowed}"
    return None


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
        for text, (name, lowest, highest, names) in zip(fields, _FIELDS, strict=True):
            problem = _field_problem(text, name, lowest, highest, names)
            if problem:
                raise ValueError(f"{expression!r} is not a valid NCRONTAB expression: {problem}")
        if not croniter.is_valid(expression, second_at_beginning=True):
            raise ValueError(f"{expression!r} is not a valid NCRONTAB expression")
        return cls(" ".join(fields))

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (timezone-aware, same zone)."""
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        result: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        return result
