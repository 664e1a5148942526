"""Runs catalogue searches against PostgreSQL: one page (keyset or shallow offset) and a bounded count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from api.catalogue.cursor import decode_cursor
from api.catalogue.fields import Fields, json_expression
from api.catalogue.params import SearchRequest
from api.catalogue.query import (
    SORT_KEYS,
    Position,
    Statement,
    count_statement,
    offset_statement,
    page_statement,
)

Row = tuple[str, str | None, str]


@dataclass(frozen=True)
class SearchResult:
    docs: list[str]
    next_position: Position | None
    total: int | None
    estimated: bool


async def catalogue_version(conn: AsyncConnection[Any]) -> str:
    """The composite of every feed's dataset version: it changes whenever the catalogue may have."""
    row = await (
        await conn.execute("SELECT string_agg(version::text, '.' ORDER BY feed) FROM dataset_versions")
    ).fetchone()
    return str(row[0]) if row and row[0] else "0"


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


async def search(conn: AsyncConnection[Any], request: SearchRequest, count_cap: int) -> SearchResult:
    after = decode_cursor(request, request.cursor) if request.cursor else None
    if request.page is not None:
        rows = await _rows(conn, offset_statement(request))
    else:
        rows = await _keyset_rows(conn, request, after)
    total = None
    if request.count:
        statement = count_statement(request, count_cap)
        row = await (await conn.execute(statement.sql, statement.params)).fetchone()
        total = int(row[0]) if row else 0
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    next_position = Position(rows[-1][1], rows[-1][2]) if more else None
    if total is None:
        return SearchResult([row[0] for row in rows], next_position, None, False)
    return SearchResult([row[0] for row in rows], next_position, min(total, count_cap), total > count_cap)


async def get_diamond(conn: AsyncConnection[Any], diamond_id: UUID, fields: Fields = "full") -> str | None:
    row = await (
        await conn.execute(
            f"SELECT {json_expression(fields)} FROM diamonds d WHERE d.id = %s AND d.status = 'active'",
            (diamond_id,),
        )
    ).fetchone()
    return str(row[0]) if row else None
