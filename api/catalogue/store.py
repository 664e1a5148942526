"""Runs catalogue searches against PostgreSQL: one page (keyset or shallow offset) and a bounded count.

The count is bounded in work, not only in value. Counting exactly costs time in proportion to the
index entries visited, which for selective filters over a wide index range is far more than the
matches (measured: 1,000 matches of a colour/clarity/cut filter cost 22 ms, 313 matches of
colour D + FL 150 ms). So:
- a first page that holds every match counts itself (exact, free);
- otherwise the planner's estimate of the count and of the cost to count up to the cap decides:
  within COUNT_COST_BUDGET the bounded count runs (exact up to `cap`; beyond it, the planner's
  estimate, at least cap + 1, flagged estimated), above it the planner's estimate is returned,
  flagged estimated (and never below the matches already seen);
- results are remembered per catalogue version and filter set, so later pages and other sorts of
  the same search cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from psycopg import AsyncConnection

from api.catalogue.fields import Fields, json_expression
from api.catalogue.params import SearchRequest
from api.catalogue.query import (
    SORT_KEYS,
    Position,
    Statement,
    count_statement,
    estimate_statement,
    offset_statement,
    page_statement,
)
from api.lru import Lru

Row = tuple[str, str | None, str]
# Page queries are prepared once psycopg has seen the same SQL (the same filter set and sort; values
# are parameters) prepare_threshold times on a connection: every execution is still planned for its
# values (custom plans), but parsing and analysing the statement, measured at 0.3 of ~2 ms of server
# CPU per search, is done once. Its per-connection LRU bounds the statements kept.
# Planner cost units; measured on the 500K catalogue one unit of a bounded count is 10-30 µs, so
# 150 keeps an exact count near 3 ms at most.
COUNT_COST_BUDGET: Final = 150.0


@dataclass(frozen=True)
class SearchResult:
    docs: list[str]
    next_position: Position | None
    total: int | None
    estimated: bool


async def _rows(conn: AsyncConnection[Any], statement: Statement) -> list[Row]:
    return await (await conn.execute(statement.sql, statement.params)).fetchall()


async def _keyset_rows(conn: AsyncConnection[Any], request: SearchRequest, after: Position | None) -> list[Row]:
    key = SORT_KEYS[request.sort]
    if after is not None and after.value is None:
        return await _rows(conn, page_statement(request, after, null_part=True))
    rows = await _rows(conn, page_statement(request, after))
    if key.nullable and len(rows) <= request.limit:
        # The stones with a value are exhausted: the page continues into those without one.
        rows += await _rows(conn, page_statement(request, None, null_part=True))
    return rows


@dataclass(frozen=True)
class Count:
    total: int
    estimated: bool


def bounded_count_cost(estimated_rows: float, total_cost: float, cap: int) -> float:
    """The planner's cost of counting up to cap + 1 matches (a LIMIT stops the scan early)."""
    return total_cost * min(1.0, (cap + 1) / max(estimated_rows, 1.0))


async def _count(conn: AsyncConnection[Any], request: SearchRequest, cap: int, seen: int) -> Count:
    estimate = estimate_statement(request)
    explained = await (await conn.execute(estimate.sql, estimate.params, prepare=False)).fetchone()
    plan = explained[0][0]["Plan"] if explained else {"Plan Rows": 0, "Total Cost": 0}
    rows, cost = float(plan["Plan Rows"]), float(plan["Total Cost"])
    if bounded_count_cost(rows, cost, cap) > COUNT_COST_BUDGET:
        return Count(max(int(rows), seen), True)
    statement = count_statement(request, cap)
    row = await (await conn.execute(statement.sql, statement.params, prepare=False)).fetchone()
    counted = int(row[0]) if row else 0
    if counted > cap:
        # More than the cap match: the planner's estimate, which cannot be below what was counted.
        return Count(max(int(rows), counted), True)
    return Count(counted, False)


async def search(
    conn: AsyncConnection[Any],
    request: SearchRequest,
    after: Position | None,
    count_cap: int,
    counts: Lru[tuple[str, str], Count],
    version: str,
) -> SearchResult:
    """One page of `request`, continuing after `after` (its decoded cursor) when given."""
    if request.page is not None:
        rows = await _rows(conn, offset_statement(request))
    else:
        rows = await _keyset_rows(conn, request, after)
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    next_position = Position(rows[-1][1], rows[-1][2]) if more else None
    docs = [row[0] for row in rows]
    if not request.count:
        return SearchResult(docs, next_position, None, False)
    if after is None and not more and (rows or not request.offset):
        count = Count(request.offset + len(rows), False)
    else:
        key = (version, request.fingerprint())
        cached = counts.get(key)
        count = cached or await _count(conn, request, count_cap, request.offset + len(rows) + int(more))
        counts.put(key, count)
    return SearchResult(docs, next_position, count.total, count.estimated)


async def get_diamond(conn: AsyncConnection[Any], diamond_id: UUID, fields: Fields = "full") -> str | None:
    row = await (
        await conn.execute(
            f"SELECT {json_expression(fields)} FROM diamonds d WHERE d.id = %s AND d.status = 'active'",
            (diamond_id,),
        )
    ).fetchone()
    return str(row[0]) if row else None
