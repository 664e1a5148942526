"""Catalogue search SQL: filters, sort keys with NULLS LAST and an id tiebreak, keyset positions.

Every key orders as `key <dir> NULLS LAST, id <dir>`. A page continues from a position (the last
row's key and id): for a key that is never NULL that is one row comparison `(key, id) > (v, id)`,
which an index on (key, id) serves at any depth. For a nullable key the stones with a value come
first (the same comparison, restricted to `key IS NOT NULL`) and the stones without one after them
(`key IS NULL AND id > last_id`); the position says which of the two parts it is in, and a page
that crosses from one part into the other is filled by a second query.

Grade keys (colour, clarity, cut, fluorescence) sort by rank in their vocabulary (D before E, FL
before IF), not alphabetically; migration 0003 indexes the same rank expressions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import UUID

from api.catalogue.fields import json_expression
from api.catalogue.params import FlagFilter, InFilter, RangeFilter, SearchRequest
from api.errors import ParameterError
from shared import grades

Cast = Literal["numeric", "integer", "timestamptz", "text"]


@dataclass(frozen=True)
class SortKey:
    name: str
    expression: str
    nullable: bool
    cast: Cast


def rank_expression(column: str, vocabulary: Sequence[str]) -> str:
    values = ",".join(f"'{value}'" for value in vocabulary)
    return f"array_position(ARRAY[{values}]::text[], d.{column})"


SORT_KEYS: Final[dict[str, SortKey]] = {
    key.name: key
    for key in (
        SortKey("created_at", "d.created_at", False, "timestamptz"),
        SortKey("price", "d.retail_price", False, "numeric"),
        SortKey("price_per_carat", "d.price_per_carat", False, "numeric"),
        SortKey("carats", "d.carats", False, "numeric"),
        SortKey("color", rank_expression("color", grades.COLORS), True, "integer"),
        SortKey("clarity", rank_expression("clarity", grades.CLARITIES), True, "integer"),
        SortKey("cut", rank_expression("cut", grades.CUT_GRADES), True, "integer"),
        SortKey(
            "fluorescence_intensity",
            rank_expression("fluorescence_intensity", grades.FLUORESCENCE_INTENSITIES),
            True,
            "integer",
        ),
        SortKey("ratio", "d.ratio", True, "numeric"),
        SortKey("rating", "d.rating", True, "integer"),
        SortKey("fancy_color", "d.fancy_color", True, "text"),
        SortKey("certificate_lab", "d.certificate_lab", True, "text"),
    )
}

_NO_TINT: Final = "('', 'NONE', 'N/A', 'NO')"
_FLAG_SQL: Final[dict[tuple[str, bool], str]] = {
    ("lab_grown", True): "d.lab_grown",
    ("lab_grown", False): "NOT d.lab_grown",
    ("fancy", True): "d.fancy_color IS NOT NULL",
    ("fancy", False): "d.fancy_color IS NULL",
    ("eye_clean", True): "d.eye_clean IS TRUE",
    ("eye_clean", False): "d.eye_clean IS FALSE",
    ("no_bgm", True): " AND ".join(
        f"coalesce(upper(btrim(d.{tint})), '') IN {_NO_TINT}" for tint in ("brown", "green", "milky")
    ),
}
_INTEGER_COLUMNS: Final = frozenset({"rating"})


def where_clause(request: SearchRequest) -> tuple[list[str], list[Any]]:
    clauses: list[str] = ["d.status = 'active'"]
    params: list[Any] = []
    for item in request.filters:
        if isinstance(item, InFilter):
            if len(item.values) == 1:
                clauses.append(f"d.{item.column} = %s")
                params.append(item.values[0])
            else:
                clauses.append(f"d.{item.column} = ANY(%s)")
                params.append(list(item.values))
        elif isinstance(item, RangeFilter):
            convert = int if item.column in _INTEGER_COLUMNS else (lambda value: value)
            for bound, operator in ((item.low, ">="), (item.high, "<=")):
                if bound is not None:
                    clauses.append(f"d.{item.column} {operator} %s")
                    params.append(convert(bound))
        elif isinstance(item, FlagFilter):
            sql = _FLAG_SQL.get((item.name, item.value))
            if sql:
                clauses.append(sql)
    return clauses, params


@dataclass(frozen=True)
class Position:
    """Where a page ends: the last row's sort value (None in the NULL part) and id, as text."""

    value: str | None
    id: str


_NUMERIC = re.compile(r"^-?[0-9]{1,20}(\.[0-9]{1,10})?$")
_INTEGER = re.compile(r"^-?[0-9]{1,9}$")


def check_position(key: SortKey, position: Position) -> Position:
    """A position comes from a client (inside the cursor): refuse anything the cast would reject,
    and hand PostgreSQL the id and a timestamp in one canonical form. Python reads forms that
    PostgreSQL does not (`urn:uuid:...`, ISO week dates, offsets beyond ±15:59)."""
    try:
        ident = str(UUID(position.id))
    except ValueError:
        raise ParameterError("cursor", "malformed cursor") from None
    value = position.value
    if value is None:
        if not key.nullable:
            raise ParameterError("cursor", "malformed cursor")
        return Position(None, ident)
    canonical = {
        "numeric": lambda: value if _NUMERIC.fullmatch(value) else None,
        "integer": lambda: value if _INTEGER.fullmatch(value) else None,
        "timestamptz": lambda: _utc_timestamp(value),
        "text": lambda: value if "\x00" not in value and len(value) <= 500 else None,
    }[key.cast]()
    if canonical is None:
        raise ParameterError("cursor", "malformed cursor")
    return Position(canonical, ident)


def _utc_timestamp(value: str) -> str | None:
    """The instant in UTC ISO form, or None unless it is an ISO timestamp with an offset."""
    try:
        instant = datetime.fromisoformat(value)
        return instant.astimezone(UTC).isoformat() if instant.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: an offset pushing year 1 or 9999 out of range
        return None


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list[Any]


def page_statement(request: SearchRequest, after: Position | None, *, null_part: bool = False) -> Statement:
    """One page (limit + 1 rows, to learn whether more follow) of `doc, sort value, id` rows.

    Without `null_part` the page walks the stones whose key has a value (all of them for a key
    that is never NULL); with it, the stones whose key is NULL, ordered by id.
    """
    key = SORT_KEYS[request.sort]
    clauses, params = where_clause(request)
    direction = request.order.upper()
    comparison = ">" if request.order == "asc" else "<"
    if null_part:
        clauses.append(f"{key.expression} IS NULL")
        if after is not None:
            clauses.append(f"d.id {comparison} %s::uuid")
            params.append(after.id)
        return _select(request, clauses, params, f"d.id {direction}", f"p.id {direction}", 0)
    if key.nullable:
        clauses.append(f"{key.expression} IS NOT NULL")
    if after is not None:
        clauses.append(f"({key.expression}, d.id) {comparison} (%s::{key.cast}, %s::uuid)")
        params += [after.value, after.id]
    inner = f"{key.expression} {direction}, d.id {direction}"
    return _select(request, clauses, params, inner, f"p.sk {direction}, p.id {direction}", 0)


def offset_statement(request: SearchRequest) -> Statement:
    """A shallow page by OFFSET (page/limit), in the same order as the keyset pages."""
    key = SORT_KEYS[request.sort]
    clauses, params = where_clause(request)
    direction = request.order.upper()
    inner = f"{key.expression} {direction} NULLS LAST, d.id {direction}"
    outer = f"p.sk {direction} NULLS LAST, p.id {direction}"
    return _select(request, clauses, params, inner, outer, request.offset)


# Price order within a carat range: the two are strongly correlated, so walking the price index
# skips most stones (the cheap ones are small) and walking the carat range sorts all of it. Instead
# the range is cut into cells of (origin, 0.1 ct bucket), and of shape too when the search names
# shapes, each read in price order from an index on (origin, bucket, price, id) or (shape, origin,
# bucket, price, id) that also covers the usual filters: at most (limit + 1) index entries per
# cell, merged. Used for ranges up to MAX_CARAT_BUCKETS buckets wide.
CARAT_BUCKET = "floor(d.carats * 10)::int"
MAX_CARAT_BUCKETS: Final = 50


@dataclass(frozen=True)
class Buckets:
    origins: list[bool]
    low: int
    high: int
    shapes: list[str] | None


def carat_buckets(request: SearchRequest) -> Buckets | None:
    if request.sort != "price":
        return None
    origins = [False, True]
    shapes: list[str] | None = None
    span: tuple[int, int] | None = None
    for item in request.filters:
        if isinstance(item, FlagFilter) and item.name == "lab_grown":
            origins = [item.value]
        if isinstance(item, InFilter) and item.column == "shape":
            shapes = list(item.values)
        if isinstance(item, RangeFilter) and item.column == "carats" and item.low is not None and item.high is not None:
            low, high = int(item.low * 10), int(item.high * 10)
            if high - low < MAX_CARAT_BUCKETS:
                span = (low, high)
    return Buckets(origins, span[0], span[1], shapes) if span else None


def _cells(buckets: Buckets) -> tuple[str, str, list[Any]]:
    """The cells' FROM items, their join to the row alias `d`, and their parameters."""
    sources = ["unnest(%s::bool[]) AS o(lab_grown)", "generate_series(%s::int, %s::int) AS b(bucket)"]
    match = f"d.lab_grown = o.lab_grown AND {CARAT_BUCKET} = b.bucket"
    params: list[Any] = [buckets.origins, buckets.low, buckets.high]
    if buckets.shapes is not None:
        sources.insert(0, "unnest(%s::text[]) AS s(shape)")
        match = f"d.shape = s.shape AND {match}"
        params.insert(0, buckets.shapes)
    return ", ".join(sources), match, params


def _select(
    request: SearchRequest, clauses: list[str], params: list[Any], inner_order: str, outer_order: str, offset: int
) -> Statement:
    # Two steps: the inner query finds the page's ids reading only indexed columns (an index-only
    # scan when the filters allow), the outer one fetches and renders just those rows.
    key = SORT_KEYS[request.sort]
    where = " AND ".join(clauses)
    rows = request.limit + 1
    buckets = carat_buckets(request)
    if buckets is None:
        inner = (
            f"SELECT d.id, {key.expression} AS sk FROM diamonds d WHERE {where} "
            f"ORDER BY {inner_order} LIMIT %s{' OFFSET %s' if offset else ''}"
        )
        inner_params = [*params, rows, *([offset] if offset else [])]
    else:
        sources, match, cell_params = _cells(buckets)
        inner = (
            f"SELECT x.id, x.sk FROM {sources}, LATERAL ("
            f"SELECT d.id, {key.expression} AS sk FROM diamonds d WHERE {match} AND {where} "
            f"ORDER BY {inner_order} LIMIT %s) x "
            f"ORDER BY {outer_order.replace('p.', 'x.')} LIMIT %s{' OFFSET %s' if offset else ''}"
        )
        inner_params = [*cell_params, *params, offset + rows, rows]
        inner_params += [offset] if offset else []
    sql = (
        f"SELECT {json_expression(request.fields)}, p.sk::text, p.id::text FROM ({inner}) p "
        f"JOIN diamonds d ON d.id = p.id ORDER BY {outer_order}"
    )
    return Statement(sql, inner_params)


def estimate_statement(request: SearchRequest) -> Statement:
    """The planner's view of the matches: its row estimate and the cost of visiting them all."""
    clauses, params = where_clause(request)
    return Statement(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM diamonds d WHERE {' AND '.join(clauses)}", params)


def count_statement(request: SearchRequest, cap: int) -> Statement:
    """Count matches up to cap + 1: more than cap is reported as `cap`, estimated."""
    clauses, params = where_clause(request)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM diamonds d WHERE {' AND '.join(clauses)} LIMIT %s) s"
    return Statement(sql, [*params, cap + 1])
