"""Retention: operational records older than RETENTION_DAYS are deleted, in bounded batches.

Without it these tables only grow: a full run of 500K stones leaves tens of thousands of error
records (every unmappable stone), a repricing of the catalogue one snapshot row per stone, and
every run its partitions and worker rows (the original had no retention at all).

Deleted once older than the cutoff: error records; finished runs (their partitions, worker rows and
seen-sets go with them) except each feed's latest and any a watermark names; delivered alerts;
resolved dead letters (counted from their replay or dismissal); the snapshots of finished repricing
jobs (their jobs stay). Kept whatever their age: the catalogue and its history (business records,
not operations), active runs, alerts not yet delivered and outstanding dead letters, neither
replayed nor dismissed (nothing is dropped before a human saw it), pricing rule versions and
repricing jobs.

Each batch is its own short transaction, so pruning a large backlog holds no lock for long and
competes with nothing; it runs hourly in the local host and daily in Azure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.db.pool import Pool

log = logging.getLogger(__name__)

BATCH: Final = 5_000


@dataclass(frozen=True)
class Pruned:
    error_records: int = 0
    runs: int = 0
    alerts: int = 0
    dead_letters: int = 0
    repricing_snapshots: int = 0

    @property
    def total(self) -> int:
        return self.error_records + self.runs + self.alerts + self.dead_letters + self.repricing_snapshots


# Each statement deletes at most %(batch)s rows older than %(cutoff)s and is repeated until a batch
# comes back short.
_ERROR_RECORDS = """
DELETE FROM error_records WHERE id = ANY(ARRAY(
    SELECT id FROM error_records WHERE occurred_at < %(cutoff)s LIMIT %(batch)s))
"""
_RUNS = """
DELETE FROM run_metadata WHERE run_id = ANY(ARRAY(
    SELECT r.run_id FROM run_metadata r
    WHERE r.completed_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM watermarks w WHERE w.last_run_id = r.run_id)
      AND EXISTS (SELECT 1 FROM run_metadata later WHERE later.feed = r.feed AND later.started_at > r.started_at)
    LIMIT %(batch)s))
"""
_ALERTS = """
DELETE FROM alerts WHERE id = ANY(ARRAY(
    SELECT id FROM alerts WHERE delivered_at IS NOT NULL AND created_at < %(cutoff)s LIMIT %(batch)s))
"""
_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id = ANY(ARRAY(
    SELECT id FROM dead_letters WHERE coalesce(replayed_at, dismissed_at) < %(cutoff)s LIMIT %(batch)s))
"""
_REPRICING_SNAPSHOTS = """
DELETE FROM repricing_snapshots WHERE ctid = ANY(ARRAY(
    SELECT s.ctid FROM repricing_snapshots s JOIN repricing_jobs j ON j.id = s.job_id
    WHERE j.status IN ('completed', 'failed', 'reverted')
      AND coalesce(j.reverted_at, j.completed_at, j.last_progress_at, j.created_at) < %(cutoff)s
    LIMIT %(batch)s))
"""


async def _delete_in_batches(pool: Pool, statement: str, cutoff: datetime) -> int:
    deleted = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(statement, {"cutoff": cutoff, "batch": BATCH})
        deleted += cur.rowcount
        if cur.rowcount < BATCH:
            return deleted


async def prune(pool: Pool, retention_days: int, now: datetime) -> Pruned:
    """Delete what retention allows (see the module docstring); 0 days keeps everything."""
    if retention_days == 0:
        return Pruned()
    cutoff = now - timedelta(days=retention_days)
    pruned = Pruned(
        error_records=await _delete_in_batches(pool, _ERROR_RECORDS, cutoff),
        runs=await _delete_in_batches(pool, _RUNS, cutoff),
        alerts=await _delete_in_batches(pool, _ALERTS, cutoff),
        dead_letters=await _delete_in_batches(pool, _DEAD_LETTERS, cutoff),
        repricing_snapshots=await _delete_in_batches(pool, _REPRICING_SNAPSHOTS, cutoff),
    )
    if pruned.total:
        log.info("retention (%d days) deleted %s", retention_days, pruned)
    return pruned
