"""Planner statistics of the tables a consolidation works through in bulk.

PostgreSQL plans from statistics that autovacuum refreshes about a minute after a large change, and
later still while it is busy vacuuming the tables a run just filled. Until then a filled table is
planned as if it were nearly empty, and the plans chosen cost a first load of 500K stones dearly:
- the claim read the whole queue's index into a bitmap (500K entries) for every batch of 2,000;
- the unlisting of a batch's unmappable stones took its `status = 'active'` to the (feed, status)
  index and read every live stone loaded so far (100K+ index entries per batch);
- after the load, searches were counted as "about 10,001" for 14,356 live stones.

What a plan needs is the distribution of values, not the row count: the planner scales its
estimates by the table's current size on disk. So a catalogue is analysed once a drain has put rows
into an empty one (a few milliseconds), not as it grows (~2 s per ANALYZE of 500K stones: it samples
30,000 rows and every column); it is analysed again after a run that changed a tenth of it, and the
queue before a drain when a tenth of it is new.
"""

from __future__ import annotations

from typing import Literal

from shared.runs import Conn

BulkTable = Literal["diamonds", "raw_pending"]
# Share of a table changed since its last ANALYZE that makes its statistics stale: autovacuum's own.
STALE_SHARE = 0.1

_ESTIMATES = """
SELECT c.reltuples, coalesce(s.n_mod_since_analyze, 0)
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = %s::regclass
"""


def statistics_stale(changed: int, estimated_rows: float) -> bool:
    """Whether `changed` rows leave a table's statistics stale: more than a tenth of the rows it had
    when last analysed (estimated_rows is -1 for a table never analysed)."""
    return estimated_rows < 0 or changed > STALE_SHARE * estimated_rows


async def refresh_statistics(conn: Conn, table: BulkTable, changed: int = 0) -> bool:
    """ANALYZE `table` if its statistics are stale; return whether it did.

    `changed` is what the caller knows it changed; the server's own count of rows modified since the
    last ANALYZE covers other processes' changes (such as the workers' queue), though each backend
    reports it up to a second or so late."""
    cur = await conn.execute(_ESTIMATES, (table,))
    row = await cur.fetchone()
    if row is None or not statistics_stale(max(changed, int(row[1])), float(row[0])):
        return False
    await _analyse(conn, table)
    return True


async def analyse_once_filled(conn: Conn, table: BulkTable) -> bool:
    """Give a table that had no rows when last analysed (or was never analysed) the statistics of its
    rows, once it has some; return whether it has them."""
    cur = await conn.execute(_ESTIMATES, (table,))
    row = await cur.fetchone()
    if row is not None and float(row[0]) > 0:
        return True
    cur = await conn.execute(f"SELECT EXISTS (SELECT FROM {table})")  # a Literal: never caller text
    filled = await cur.fetchone()
    if filled is None or not filled[0]:
        return False
    await _analyse(conn, table)
    return True


async def _analyse(conn: Conn, table: BulkTable) -> None:
    await conn.execute(f"ANALYZE {table}")
