"""The catalogue version: the ETag and the per-version caches are keyed by it.

It combines every feed's `dataset_versions.version` (bumped by each consolidation and repricing)
with the time of the latest bump, which also tells apart a version number reset by a restore.
Authenticating an API key reads it in the same round trip (`VERSION_SQL` as a sub-select) and
leaves it on the request, so a catalogue request does not pay a second one.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request
from psycopg import AsyncConnection

from shared.db.pool import Pool

VERSION_SQL: Final = """
SELECT string_agg(version::text, '.' ORDER BY feed) || '-' || floor(extract(epoch FROM max(updated_at)) * 1000)
FROM dataset_versions
"""


async def catalogue_version(conn: AsyncConnection[Any], request: Request | None = None) -> str:
    known = _known(request)
    if known:
        return known
    row = await (await conn.execute(VERSION_SQL)).fetchone()
    return str(row[0]) if row and row[0] else "0"


async def request_version(pool: Pool, request: Request) -> str:
    """The version for this request, without a connection when authenticating already read it."""
    known = _known(request)
    if known:
        return known
    async with pool.connection() as conn:
        return await catalogue_version(conn)


def _known(request: Request | None) -> str | None:
    known = getattr(request.state, "catalogue_version", None) if request is not None else None
    return str(known) if known else None


def remember(request: Request, version: str | None) -> None:
    request.state.catalogue_version = version
