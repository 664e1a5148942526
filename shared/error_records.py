"""Error records: every failure an operator should see, with its run, partition and stone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb

from shared.runs import Conn

Source = Literal["scheduler", "worker", "consolidator", "fanin", "api", "bus"]
MAX_MESSAGE = 2000


@dataclass(frozen=True)
class ErrorRecord:
    source: Source
    code: str
    message: str
    run_id: UUID | None = None
    partition_id: str | None = None
    feed: str | None = None
    supplier_stone_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


async def record_errors(conn: Conn, records: Sequence[ErrorRecord]) -> None:
    if not records:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO error_records (source, code, message, run_id, partition_id, feed, supplier_stone_id, context)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    r.source,
                    r.code,
                    r.message[:MAX_MESSAGE],
                    r.run_id,
                    r.partition_id,
                    r.feed,
                    r.supplier_stone_id,
                    Jsonb(dict(r.context)),
                )
                for r in records
            ],
        )
