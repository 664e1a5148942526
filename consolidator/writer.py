"""Set-based writes of the consolidation: claim pending raw rows, stage mapped diamonds, merge.

One batch is one transaction: the claim (a DELETE of narrow `raw_pending` rows, SKIP LOCKED so
several consolidators share the work), the merge into `diamonds` and the history rows commit
together or not at all, so a consolidator killed mid-batch leaves its rows pending.

The merge is guarded by `row_hash` (a digest of every mapped and priced column): a stone whose
columns are all unchanged is not rewritten, and ANY changed column (availability, hold, media,
grading, price) is applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any
from uuid import UUID

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond
from consolidator.pricing import PriceOutcome
from shared.runs import Conn

PRICED_COLUMNS = ("retail_price", "markup_ratio", "pricing_rule_id", "rating")
STAGED_COLUMNS = (*MAPPED_COLUMNS, *PRICED_COLUMNS, "row_hash", "last_run_id")
_mapped_values = attrgetter(*MAPPED_COLUMNS)

_COLUMN_TYPES = {
    "carats": "numeric",
    "feed_price": "numeric",
    "diamond_price": "numeric",
    "price_per_carat": "numeric",
    "ratio": "numeric",
    "table_pct": "numeric",
    "depth_pct": "numeric",
    "length_mm": "numeric",
    "width_mm": "numeric",
    "depth_mm": "numeric",
    "crown_angle": "numeric",
    "crown_height": "numeric",
    "pavilion_angle": "numeric",
    "pavilion_depth": "numeric",
    "retail_price": "numeric",
    "markup_ratio": "numeric",
    "lab_grown": "bool",
    "treated": "bool",
    "eye_clean": "bool",
    "meta_images": "jsonb",
    "pricing_rule_id": "int8",
    "rating": "int2",
    "row_hash": "bytea",
    "last_run_id": "uuid",
}
STAGED_TYPES = [_COLUMN_TYPES.get(column, "text") for column in STAGED_COLUMNS]


def staged_row(diamond: MappedDiamond, outcome: PriceOutcome, run_id: UUID) -> tuple[Any, ...]:
    """The staging row of a priced diamond, with the digest that decides whether it is rewritten."""
    values = (
        *_mapped_values(diamond),
        outcome.retail_price,
        outcome.markup_ratio,
        outcome.pricing_rule_id,
        outcome.rating,
    )
    digest = hashlib.blake2b(repr(values).encode(), digest_size=16).digest()
    return (*values, digest, run_id)


@dataclass(frozen=True)
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    restored: int = 0


_CLAIM = """
WITH claimed AS (
    DELETE FROM raw_pending
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM raw_pending WHERE feed = %(feed)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    ))
    RETURNING supplier_stone_id, run_id
)
SELECT r.supplier_stone_id, r.payload::text, c.run_id
FROM claimed c JOIN raw_diamonds_nivoda r ON r.feed = %(feed)s AND r.supplier_stone_id = c.supplier_stone_id
"""


async def claim_pending(conn: Conn, feed: str, limit: int) -> list[tuple[str, str, UUID]]:
    """Claim up to `limit` pending raw rows of a feed (in the caller's transaction)."""
    cur = await conn.execute(_CLAIM, {"feed": feed, "limit": limit}, prepare=True)
    return list(await cur.fetchall())


_STAGE_TABLE = "CREATE TEMP TABLE IF NOT EXISTS diamond_stage (LIKE diamonds INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"

_UPDATE_SET = ",\n        ".join(
    f"{c} = EXCLUDED.{c}" for c in STAGED_COLUMNS if c not in ("feed", "supplier_stone_id")
)
_COLUMNS = ", ".join(STAGED_COLUMNS)

_MERGE = f"""
WITH before AS (
    SELECT d.supplier_stone_id, d.availability, d.feed_price, d.retail_price, d.status
    FROM diamonds d JOIN diamond_stage s ON d.feed = s.feed AND d.supplier_stone_id = s.supplier_stone_id
), merged AS (
    INSERT INTO diamonds AS d ({_COLUMNS})
    SELECT {_COLUMNS} FROM diamond_stage
    ON CONFLICT (feed, supplier_stone_id) DO UPDATE SET
        {_UPDATE_SET},
        status = 'active', deleted_at = NULL, updated_at = now()
    WHERE d.row_hash IS DISTINCT FROM EXCLUDED.row_hash OR d.status = 'deleted'
    RETURNING d.id, d.supplier_stone_id, d.availability, d.feed_price, d.retail_price, (d.xmax = 0) AS inserted
), history AS (
    INSERT INTO diamond_history (diamond_id, run_id, change, old_availability, new_availability,
                                 old_feed_price, new_feed_price, old_retail_price, new_retail_price)
    SELECT m.id, %(run)s,
           CASE WHEN b.status = 'deleted' THEN 'restored'
                WHEN b.availability IS DISTINCT FROM m.availability THEN 'availability'
                ELSE 'price' END,
           b.availability, m.availability, b.feed_price, m.feed_price, b.retail_price, m.retail_price
    FROM merged m JOIN before b USING (supplier_stone_id)
    WHERE NOT m.inserted
      AND (b.status = 'deleted' OR b.availability IS DISTINCT FROM m.availability
           OR b.feed_price IS DISTINCT FROM m.feed_price OR b.retail_price IS DISTINCT FROM m.retail_price)
)
SELECT count(*) FILTER (WHERE m.inserted),
       count(*) FILTER (WHERE NOT m.inserted),
       count(*) FILTER (WHERE b.status = 'deleted')
FROM merged m LEFT JOIN before b USING (supplier_stone_id)
"""


async def merge_rows(conn: Conn, rows: Sequence[tuple[Any, ...]], run_id: UUID) -> MergeCounts:
    """COPY rows into the staging table and merge them into `diamonds` (caller's transaction)."""
    if not rows:
        return MergeCounts()
    await conn.execute(_STAGE_TABLE)
    async with conn.cursor().copy(f"COPY diamond_stage ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(STAGED_TYPES)
        for row in rows:
            await copy.write_row(row)
    cur = await conn.execute(_MERGE, {"run": run_id})
    result = await cur.fetchone()
    assert result is not None
    inserted, updated, restored = result
    await conn.execute("TRUNCATE diamond_stage")
    return MergeCounts(inserted, updated, len(rows) - inserted - updated, restored)


async def soft_delete(conn: Conn, feed: str, supplier_stone_ids: Sequence[str], run_id: UUID) -> int:
    """Mark live stones deleted (confirmed gone from the feed), with history rows."""
    if not supplier_stone_ids:
        return 0
    cur = await conn.execute(
        """WITH gone AS (
               UPDATE diamonds SET status = 'deleted', deleted_at = now(), updated_at = now(), last_run_id = %(run)s
               WHERE feed = %(feed)s AND status = 'active' AND supplier_stone_id = ANY(%(ids)s)
               RETURNING id, availability, feed_price, retail_price
           )
           INSERT INTO diamond_history (diamond_id, run_id, change, old_availability, old_feed_price, old_retail_price)
           SELECT id, %(run)s, 'deleted', availability, feed_price, retail_price FROM gone""",
        {"feed": feed, "ids": list(supplier_stone_ids), "run": run_id},
    )
    return cur.rowcount
