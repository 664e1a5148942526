"""argparse types for the command lines (opus, python -m feedsim): a bad value is argparse's usual
one-line error with exit status 2, never a traceback from deeper down (PostgreSQL, bind, dates)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high` inclusive."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {low}-{high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer {low}-{high}")
        return value

    return parse
