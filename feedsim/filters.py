"""DiamondQuery semantics: parse the (schema-coerced) variables into exact integer bounds and
evaluate them over the inventory columns.

Semantics, as a Nivoda client expects them:
- `dollar_per_carat {from,to}`: inclusive on price per carat in dollars (price_cents / 100 / carats),
  compared exactly in integers (bounds are taken at 6 decimal places).
- `dollar_value {from,to}`: inclusive on the total price in dollars. `sizes`: inclusive carats.
- `updated {from,to}`: inclusive on updatedAt; ISO-8601 strings (a bad one is a query error).
- `shapes`, `availability`: exact matches on Nivoda's spellings; an empty list is no constraint.
- `labgrown`: the stone's true nature (not the unreliable certificate flag in the payload).
- `has_image` / `has_v360`: true keeps stones Nivoda's index says have one; false is no constraint.
- `excludeFairPoorCuts`: drops stones whose cut grade is Fair or Poor. `hide_memo`: drops MEMO.
- `ids`: diamond ids (`diamond.id`), not offer ids; unknown ids match nothing.
A range whose `from` exceeds its `to` matches nothing. Removed stones never match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from feedsim import ids, vocab
from feedsim.inventory import Inventory

_MAX_DOLLARS: Final = Fraction(10**9)
_BOUND_SCALE: Final = 10**6
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SHAPE_CODES: Final = {name: code for code, name in enumerate(vocab.SHAPES)}
_AVAILABILITY_CODES: Final = {name: code for code, name in enumerate(vocab.AVAILABILITIES)}


class QueryInputError(ValueError):
    """A DiamondQuery value the server refuses (reported as a GraphQL error, code BAD_USER_INPUT)."""


@dataclass(frozen=True)
class Filter:
    """A parsed DiamondQuery; hashable so that match results can be cached per distinct filter.

    Price-per-carat bounds are fractions n/d (ppc >= n/d  <=>  price_cents * d >= n * ct100).
    """

    ppc_from: tuple[int, int] | None = None
    ppc_to: tuple[int, int] | None = None
    value_from_cents: int | None = None
    value_to_cents: int | None = None
    ct100_from: int | None = None
    ct100_to: int | None = None
    updated_from_ms: int | None = None
    updated_to_ms: int | None = None
    shapes: frozenset[int] | None = None
    availability: frozenset[int] | None = None
    labgrown: bool | None = None
    has_image: bool = False
    has_v360: bool = False
    exclude_fair_poor: bool = False
    hide_memo: bool = False
    rows: frozenset[int] | None = None  # from `ids`

    def mask(self, inventory: Inventory, rows: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.bool_]:
        """Which stones match: all live rows, or just `rows` (for incremental cache updates)."""

        def col(name: str) -> npt.NDArray[Any]:
            column = inventory.column(name)
            return column if rows is None else column[rows]

        keep: npt.NDArray[np.bool_] = col("alive").copy()
        if self.rows is not None:
            subject = np.arange(inventory.size) if rows is None else rows
            keep &= np.isin(subject, np.fromiter(self.rows, dtype=np.int64, count=len(self.rows)))
        if self.labgrown is not None:
            keep &= col("labgrown") == self.labgrown
        if self.shapes is not None:
            keep &= _lookup(self.shapes, len(vocab.SHAPES))[col("shape")]
        if self.availability is not None:
            keep &= _lookup(self.availability, len(vocab.AVAILABILITIES))[col("availability")]
        if self.hide_memo:
            keep &= col("availability") != vocab.MEMO
        if self.exclude_fair_poor:
            cut = col("cut")
            keep &= (cut != vocab.FAIR) & (cut != vocab.POOR)
        if self.has_image:
            keep &= col("has_image")
        if self.has_v360:
            keep &= col("has_v360")
        for name, low, high in (
            ("ct100", self.ct100_from, self.ct100_to),
            ("price_cents", self.value_from_cents, self.value_to_cents),
            ("updated_ms", self.updated_from_ms, self.updated_to_ms),
        ):
            if low is not None:
                keep &= col(name) >= low
            if high is not None:
                keep &= col(name) <= high
        if self.ppc_from is not None or self.ppc_to is not None:
            price, ct100 = col("price_cents"), col("ct100").astype(np.int64)
            if self.ppc_from is not None:
                num, den = self.ppc_from
                keep &= price * den >= num * ct100
            if self.ppc_to is not None:
                num, den = self.ppc_to
                keep &= price * den <= num * ct100
        return keep


def _lookup(codes: frozenset[int], size: int) -> npt.NDArray[np.bool_]:
    table = np.zeros(size, dtype=np.bool_)
    table[list(codes)] = True
    return table


def _fraction(value: Any, field: str) -> Fraction:
    try:
        result = Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError, TypeError):
        raise QueryInputError(f"{field}: expected a number, got {value!r}") from None
    return result


def _range(raw: Mapping[str, Any] | None, field: str) -> tuple[Fraction | None, Fraction | None]:
    if not raw:
        return None, None
    low, high = raw.get("from"), raw.get("to")
    return (
        None if low is None else _fraction(low, f"{field}.from"),
        None if high is None else _fraction(high, f"{field}.to"),
    )


def _scaled_ceil(value: Fraction, scale: int) -> int:
    return math.ceil(value * scale)


def _scaled_floor(value: Fraction, scale: int) -> int:
    return math.floor(value * scale)


def _ppc_bound(value: Fraction | None, *, lower: bool) -> tuple[int, int] | None:
    if value is None:
        return None
    value = min(max(value, Fraction(-1)), _MAX_DOLLARS)
    # Dollars per carat = price_cents / ct100, so compare price_cents * den with num * ct100.
    scaled = _scaled_ceil(value, _BOUND_SCALE) if lower else _scaled_floor(value, _BOUND_SCALE)
    return scaled, _BOUND_SCALE


def _timestamp_ms(value: Any, field: str, *, lower: bool) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise QueryInputError(f"{field}: expected an ISO-8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise QueryInputError(f"{field}: {value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return -(-micros // 1000) if lower else micros // 1000


def _codes(values: Sequence[Any] | None, table: Mapping[str, int]) -> frozenset[int] | None:
    if not values:
        return None
    return frozenset(table[value] for value in values if value in table)


def parse_query(raw: Mapping[str, Any] | None, seed: int) -> Filter:
    """Build a Filter from a coerced `DiamondQuery` value; raise QueryInputError on bad values."""
    raw = raw or {}
    ppc_low, ppc_high = _range(raw.get("dollar_per_carat"), "dollar_per_carat")
    value_low, value_high = _range(raw.get("dollar_value"), "dollar_value")
    size_low, size_high = _range(raw.get("sizes"), "sizes")
    updated = raw.get("updated") or {}
    id_values = raw.get("ids")
    rows = None
    if id_values:
        rows = frozenset(ids.rows_of(seed, "diamond", (v for v in id_values if isinstance(v, str))))
    return Filter(
        ppc_from=_ppc_bound(ppc_low, lower=True),
        ppc_to=_ppc_bound(ppc_high, lower=False),
        value_from_cents=None if value_low is None else _scaled_ceil(min(value_low, _MAX_DOLLARS), 100),
        value_to_cents=None if value_high is None else _scaled_floor(min(value_high, _MAX_DOLLARS), 100),
        ct100_from=None if size_low is None else _scaled_ceil(min(size_low, _MAX_DOLLARS), 100),
        ct100_to=None if size_high is None else _scaled_floor(min(size_high, _MAX_DOLLARS), 100),
        updated_from_ms=_timestamp_ms(updated.get("from"), "updated.from", lower=True),
        updated_to_ms=_timestamp_ms(updated.get("to"), "updated.to", lower=False),
        shapes=_codes(raw.get("shapes"), _SHAPE_CODES),
        availability=_codes(raw.get("availability"), _AVAILABILITY_CODES),
        labgrown=raw.get("labgrown"),
        has_image=raw.get("has_image") is True,
        has_v360=raw.get("has_v360") is True,
        exclude_fair_poor=raw.get("excludeFairPoorCuts") is True,
        hide_memo=raw.get("hide_memo") is True,
        rows=rows,
    )
