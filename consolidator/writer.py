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
from uuid import UUID

import msgspec

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond
from consolidator.pricing import PriceOutcome
from shared.runs import Conn

PRICED_COLUMNS = ("retail_price", "markup_ratio", "pricing_rule_id", "rating")
# The columns a row's digest covers: everything mapped and priced (not the run that wrote it).
DIGESTED_COLUMNS = (*MAPPED_COLUMNS, *PRICED_COLUMNS)
STAGED_COLUMNS = (*DIGESTED_COLUMNS, "row_hash", "last_run_id")

# Encodes Decimals natively as strings that keep their scale ("1.50"), so equal columns always give
# equal digests; orjson called back into Python for each of a row's 14 decimals.
_ENCODER = msgspec.json.Encoder()


def staged_row(diamond: MappedDiamond, outcome: PriceOutcome, run_id: UUID) -> bytes:
    """The staging row of a priced diamond as a JSON object, with the digest that decides whether
    it is rewritten. The diamond and its price are encoded straight from their fields and joined
    into one object; the digest is taken over it and the two undigested columns are appended."""
    mapped, priced = _ENCODER.encode(diamond), _ENCODER.encode(outcome)
    encoded = b"%b,%b" % (mapped[:-1], priced[1:])
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    # bytea input syntax (\x...), JSON-escaped; the encoded object always ends with its closing brace.
    return b'%b,"row_hash":"\\\\x%b","last_run_id":"%b"}' % (encoded[:-1], digest.encode(), str(run_id).encode())


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
    RETURNING supplier_stone_id
)
SELECT r.supplier_stone_id, r.payload
FROM claimed c JOIN raw_diamonds_nivoda r ON r.feed = %(feed)s AND r.supplier_stone_id = c.supplier_stone_id
"""


async def claim_pending(conn: Conn, feed: str, limit: int) -> list[tuple[str, str]]:
    """Claim up to `limit` pending raw rows of a feed (in the caller's transaction)."""
    cur = await conn.execute(_CLAIM, {"feed": feed, "limit": limit}, prepare=True)
    return list(await cur.fetchall())


_UPDATE_SET = ",\n        ".join(
    f"{c} = EXCLUDED.{c}" for c in STAGED_COLUMNS if c not in ("feed", "supplier_stone_id")
)
_COLUMNS = ", ".join(STAGED_COLUMNS)

# The batch arrives as one JSON array of row objects that PostgreSQL unpacks into the diamonds row
# type: one parameter, parsed in C on the server, instead of 60 values dumped one by one in Python.
_MERGE = f"""
WITH staged AS (
    SELECT * FROM json_populate_recordset(NULL::diamonds, %(rows)s::json)
), before AS (
    SELECT d.supplier_stone_id, d.availability, d.feed_price, d.retail_price, d.status
    FROM diamonds d JOIN staged s ON d.feed = s.feed AND d.supplier_stone_id = s.supplier_stone_id
), merged AS (
    INSERT INTO diamonds AS d ({_COLUMNS})
    SELECT {_COLUMNS} FROM staged
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


async def merge_rows(conn: Conn, rows: Sequence[bytes], run_id: UUID) -> MergeCounts:
    """Merge staged rows (`staged_row`) into `diamonds` in one statement (caller's transaction)."""
    if not rows:
        return MergeCounts()
    payload = (b"[" + b",".join(rows) + b"]").decode()
    cur = await conn.execute(_MERGE, {"rows": payload, "run": run_id})
    result = await cur.fetchone()
    assert result is not None
    inserted, updated, restored = result
    return MergeCounts(inserted, updated, len(rows) - inserted - updated, restored)


# A stone re-listed with the very payload it had is not queued by the raw upsert (its hash has not
# changed), so a deleted stone the run saw in the feed is queued here; the merge restores it.
_REQUEUE_RETURNED = """
INSERT INTO raw_pending (feed, supplier_stone_id, run_id)
SELECT d.feed, d.supplier_stone_id, %(run)s FROM diamonds d
WHERE d.feed = %(feed)s AND d.status = 'deleted'
  AND EXISTS (SELECT 1 FROM run_seen_stones s WHERE s.run_id = %(run)s AND s.supplier_stone_id = d.supplier_stone_id)
ON CONFLICT (feed, supplier_stone_id) DO NOTHING
"""


async def requeue_returned(conn: Conn, feed: str, run_id: UUID) -> int:
    """Queue for consolidation the deleted stones of a feed that the run saw in it; return how many."""
    cur = await conn.execute(_REQUEUE_RETURNED, {"feed": feed, "run": run_id})
    return cur.rowcount


# A stone whose item the run's workers refused (a number no double holds, see shared.feed.numbers) is
# in the feed, but nothing it sent can be listed: like an unmappable one it is unlisted rather than
# left with a price and availability gone stale, unless the run also stored a good copy of it.
_REFUSED_BY_WORKERS = """
SELECT DISTINCT e.supplier_stone_id FROM error_records e
WHERE e.run_id = %(run)s AND e.source = 'worker' AND e.code = 'unrepresentable_number'
  AND e.supplier_stone_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM run_seen_stones s
                  WHERE s.run_id = %(run)s AND s.supplier_stone_id = e.supplier_stone_id)
"""


async def unlist_refused(conn: Conn, feed: str, run_id: UUID) -> int:
    """Unlist the live stones whose items the run's workers refused; return how many."""
    cur = await conn.execute(_REFUSED_BY_WORKERS, {"run": run_id})
    return await soft_delete(conn, feed, [row[0] for row in await cur.fetchall()], run_id)


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
