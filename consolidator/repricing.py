"""Repricing jobs: bring the live catalogue's prices to a pricing rule version, in the background.

A job is created in the transaction that changes the rules (so a rule change and its job commit
together, and a second job while one is pending or running is refused by the database). It then
walks the live stones by id in batches; each batch is ONE transaction that locks the batch's rows,
prices them under the job's version, rewrites only the stones whose price, markup, rule or rating
changes, records old/new values (repricing_snapshots, diamond_history), bumps the catalogue version
of the feeds it touched and advances the job's progress and resume point. A job whose process died
is resumed from that point (`run_job` again), and so is a failed one while its rules are still
current (`resumable_job`); an advisory lock keeps one runner per job.

A consolidation that pinned an older version than the newest (the rules changed during its run)
reprices the stones it wrote when it completes (`catch_up_run`), since the change's job may have
passed them before they were merged.

Reverting a job restores the rules it applied over (its `from_version` snapshot becomes a new
version) and starts a job that reprices the catalogue to it, so stones come back to the prices the
old rules give them even if a consolidation rewrote them in between.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from consolidator.pricing import PriceOutcome, PricingInput, RuleSet, price
from consolidator.rules_store import held_latest_ruleset, newest_version, ruleset_version
from shared.alerts import Alert, record_alert
from shared.db.pool import Pool
from shared.errors import ConflictError, NotFoundError
from shared.runs import Conn

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 1000
_LOCK_NAMESPACE: Final = 0x0D1A_7000
_DEADLOCK_RETRIES: Final = 3


@dataclass(frozen=True)
class RepricingJob:
    id: int
    status: str
    from_version: int | None
    to_version: int
    reason: str
    total: int
    processed: int
    changed: int
    price_delta: Decimal
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    reverted_at: datetime | None
    last_progress_at: datetime | None


_JOB_COLUMNS: Final = """id, status, from_version, to_version, reason, total, processed, changed, price_delta, error,
    created_at, started_at, completed_at, reverted_at, last_progress_at"""


async def check_idle(conn: Conn) -> None:
    """ConflictError while a job is pending or running (call under the rule changes' table lock)."""
    cur = await conn.execute("SELECT id, status FROM repricing_jobs WHERE status IN ('pending', 'running')")
    busy = await cur.fetchone()
    if busy is not None:
        raise ConflictError(f"repricing job {busy[0]} is {busy[1]}; wait for it to finish")


async def create_job(conn: Conn, *, from_version: int | None, to_version: int, reason: str) -> int:
    """Record a pending job (call inside the transaction that changed the rules)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                """INSERT INTO repricing_jobs (from_version, to_version, reason) VALUES (%s, %s, %s)
                   RETURNING id""",
                (from_version, to_version, reason),
            )
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise ConflictError("a repricing job is already pending or running; wait for it to finish") from None
    assert row is not None
    return int(row[0])


async def load_job(conn: Conn, job_id: int) -> RepricingJob:
    cur = conn.cursor(row_factory=class_row(RepricingJob))
    await cur.execute(f"SELECT {_JOB_COLUMNS} FROM repricing_jobs WHERE id = %s", (job_id,))
    job = await cur.fetchone()
    if job is None:
        raise NotFoundError(f"no repricing job {job_id}")
    return job


async def list_jobs(conn: Conn, limit: int) -> list[RepricingJob]:
    cur = conn.cursor(row_factory=class_row(RepricingJob))
    await cur.execute(f"SELECT {_JOB_COLUMNS} FROM repricing_jobs ORDER BY id DESC LIMIT %s", (limit,))
    return await cur.fetchall()


_BATCH = """
SELECT id, supplier_stone_id, feed, shape, carats, color, clarity, cut, lab_grown, fancy_color, feed_price,
       retail_price, markup_ratio, pricing_rule_id, rating
FROM diamonds
WHERE status = 'active' AND id > %(after)s {scope}
ORDER BY id
LIMIT %(limit)s
FOR UPDATE
"""
# A job walks the whole live catalogue; a run's catch-up only the stones the run wrote.
_JOB_BATCH: Final = _BATCH.format(scope="")
_RUN_BATCH: Final = _BATCH.format(scope="AND feed = %(feed)s AND last_run_id = %(run)s")

# Either a job's (snapshots for its revert, history by job) or a run's catch-up (history by run).
_APPLY = """
WITH new (id, retail_price, markup_ratio, pricing_rule_id, rating) AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(prices)s::numeric[], %(ratios)s::numeric[], %(rules)s::int8[],
                         %(ratings)s::int2[])
), old AS (
    SELECT d.id, d.feed_price, d.retail_price, d.markup_ratio, d.pricing_rule_id, d.rating
    FROM diamonds d JOIN new USING (id)
), updated AS (
    UPDATE diamonds d
    SET retail_price = new.retail_price, markup_ratio = new.markup_ratio, pricing_rule_id = new.pricing_rule_id,
        rating = new.rating, updated_at = now()
    FROM new WHERE d.id = new.id
    RETURNING d.id
), snapshots AS (
    INSERT INTO repricing_snapshots (job_id, diamond_id, old_retail_price, old_markup_ratio, old_rating,
                                     old_pricing_rule_id, new_retail_price, new_markup_ratio, new_rating,
                                     new_pricing_rule_id)
    SELECT %(job)s, old.id, old.retail_price, old.markup_ratio, old.rating, old.pricing_rule_id,
           new.retail_price, new.markup_ratio, new.rating, new.pricing_rule_id
    FROM old JOIN new USING (id)
    WHERE %(job)s::int8 IS NOT NULL
    ON CONFLICT (job_id, diamond_id) DO NOTHING
)
INSERT INTO diamond_history (diamond_id, repricing_job_id, run_id, change, old_feed_price, new_feed_price,
                             old_retail_price, new_retail_price)
SELECT old.id, %(job)s::int8, %(run)s::uuid, 'repriced', old.feed_price, old.feed_price, old.retail_price,
       new.retail_price
FROM old JOIN new USING (id)
"""

_PROGRESS = """
UPDATE repricing_jobs
SET processed = processed + %s, changed = changed + %s, price_delta = price_delta + %s,
    resume_after = %s, last_progress_at = now()
WHERE id = %s
"""


def _input(row: Sequence[Any]) -> PricingInput:
    return PricingInput(
        supplier_stone_id=row[1],
        feed=row[2],
        shape=row[3],
        carats=row[4],
        color=row[5],
        clarity=row[6],
        cut=row[7],
        lab_grown=row[8],
        fancy_color=row[9],
        feed_price=row[10],
    )


def _changed(row: Sequence[Any], outcome: PriceOutcome) -> bool:
    return (row[11], row[12], row[13], row[14]) != (
        outcome.retail_price,
        outcome.markup_ratio,
        outcome.pricing_rule_id,
        outcome.rating,
    )


async def _reprice_rows(
    conn: Conn, rows: Sequence[Sequence[Any]], rules: RuleSet, *, job_id: int | None, run_id: UUID | None
) -> tuple[int, Decimal, list[str]]:
    """Rewrite the locked rows whose pricing under `rules` differs; return (changed, price delta,
    the feeds whose catalogue version the caller must bump)."""
    changes = [(row, outcome) for row in rows if _changed(row, outcome := price(_input(row), rules))]
    delta = sum((outcome.retail_price - row[11] for row, outcome in changes), Decimal("0.00"))
    if changes:
        await conn.execute(
            _APPLY,
            {
                "job": job_id,
                "run": run_id,
                "ids": [row[0] for row, _ in changes],
                "prices": [o.retail_price for _, o in changes],
                "ratios": [o.markup_ratio for _, o in changes],
                "rules": [o.pricing_rule_id for _, o in changes],
                "ratings": [o.rating for _, o in changes],
            },
        )
    return len(changes), delta, sorted({row[2] for row, _ in changes})


async def _reprice_batch(conn: Conn, job_id: int, rules: RuleSet, after: UUID, size: int) -> UUID | None:
    """Reprice the next batch after `after`; return the new resume point (None when done)."""
    async with conn.transaction():
        rows = await (await conn.execute(_JOB_BATCH, {"after": after, "limit": size})).fetchall()
        if not rows:
            return None
        changed, delta, feeds = await _reprice_rows(conn, rows, rules, job_id=job_id, run_id=None)
        if feeds:
            await conn.execute(
                "UPDATE dataset_versions SET version = version + 1, updated_at = now() WHERE feed = ANY(%s)", (feeds,)
            )
        last: UUID = rows[-1][0]
        await conn.execute(_PROGRESS, (len(rows), changed, delta, last, job_id))
        return last if len(rows) == size else None


async def catch_up_run(conn: Conn, feed: str, run_id: UUID, pinned: RuleSet, *, batch_size: int = BATCH_SIZE) -> int:
    """Reprice the live stones a run wrote to the newest rule version if the rules changed since the
    run pinned `pinned`; return how many changed. Call in the transaction that completes the run,
    which bumps the feed's catalogue version (here, holding that row while locking stone after
    stone, it would deadlock with a job's batch, which locks its stones first and that row last).

    A run prices every stone with the version it pinned, so a rule change during the run cannot split
    its pricing; but the change's repricing job may already have passed the stones the run merged
    after it, which would keep the old rules' prices for good. Rule changes are held off until the
    caller commits, so no newer version's job can be overtaken by this one.
    """
    if await newest_version(conn) == pinned.version:
        return 0
    rules = await held_latest_ruleset(conn)
    changed = 0
    after = UUID(int=0)
    while True:
        params = {"after": after, "limit": batch_size, "feed": feed, "run": run_id}
        rows = await (await conn.execute(_RUN_BATCH, params)).fetchall()
        if not rows:
            break
        changed += (await _reprice_rows(conn, rows, rules, job_id=None, run_id=run_id))[0]
        after = rows[-1][0]
    log.info(
        "rules changed during the run (version %s to %s): %d stones repriced", pinned.version, rules.version, changed
    )
    return changed


async def _start(conn: Conn, job_id: int) -> tuple[RepricingJob, UUID]:
    async with conn.transaction():
        row = await (
            await conn.execute("SELECT status, resume_after FROM repricing_jobs WHERE id = %s FOR UPDATE", (job_id,))
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no repricing job {job_id}")
        if row[0] not in ("pending", "running"):
            raise ConflictError(f"repricing job {job_id} is {row[0]}")
        if row[0] == "pending":
            await conn.execute(
                """UPDATE repricing_jobs SET status = 'running', started_at = now(), last_progress_at = now(),
                       total = (SELECT count(*) FROM diamonds WHERE status = 'active')
                   WHERE id = %s""",
                (job_id,),
            )
        job = await load_job(conn, job_id)
    return job, row[1] or UUID(int=0)


async def run_job(pool: Pool, job_id: int, *, batch_size: int = BATCH_SIZE) -> RepricingJob:
    """Run (or resume) a job to completion; a second runner of the same job returns at once."""
    async with pool.connection() as conn:
        locked = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_NAMESPACE, job_id))).fetchone()
        if not locked or not locked[0]:
            return await load_job(conn, job_id)
        try:
            job, after = await _start(conn, job_id)
            rules = await ruleset_version(conn, job.to_version)
            position: UUID | None = after
            while position is not None:
                position = await _with_deadlock_retry(conn, job_id, rules, position, batch_size)
            # `total` was the live stones when the job started; stones added or deleted since make the
            # walk longer or shorter, and a completed job reports what it walked (progress 1).
            await conn.execute(
                """UPDATE repricing_jobs SET status = 'completed', total = processed, completed_at = now(),
                       last_progress_at = now()
                   WHERE id = %s""",
                (job_id,),
            )
        except (psycopg.Error, LookupError, ValueError) as exc:
            log.exception("repricing job %s failed", job_id)
            error = str(exc)[:1000] or type(exc).__name__
            async with conn.transaction():
                await conn.execute(
                    "UPDATE repricing_jobs SET status = 'failed', error = %s, completed_at = now() WHERE id = %s",
                    (error, job_id),
                )
                await record_alert(
                    conn,
                    Alert(
                        "repricing_failed",
                        "critical",
                        f"Repricing job {job_id} failed",
                        f"{error}. The catalogue is partly repriced: resume the job "
                        f"(POST /api/v2/pricing/jobs/{job_id}/resume) while its rules are current.",
                    ),
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NAMESPACE, job_id))
        return await load_job(conn, job_id)


async def _with_deadlock_retry(conn: Conn, job_id: int, rules: RuleSet, after: UUID, size: int) -> UUID | None:
    # A consolidation merging the same stones may lock them in another order; the database then
    # aborts one of the two transactions, and this batch is simply done again.
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return await _reprice_batch(conn, job_id, rules, after, size)
        except psycopg.errors.DeadlockDetected:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
            log.warning("repricing job %s: deadlock with another writer, retrying the batch", job_id)
    return None


async def resumable_job(conn: Conn, job_id: int) -> RepricingJob:
    """The job, ready for `run_job` to continue from its last committed batch: a pending or running
    one as it is; a failed one (a deadlock or timeout that outlasted its retries, say) reopened, if
    the rules are still the version it applies. ConflictError for any other job: its prices would
    be outdated, or it is over."""
    async with conn.transaction():
        job = await load_job(conn, job_id)
        if job.status in ("pending", "running"):
            return job
        if job.status != "failed":
            raise ConflictError(f"repricing job {job_id} is {job.status}; nothing to resume")
        current = await held_latest_ruleset(conn)
        if current.version != job.to_version:
            raise ConflictError(
                f"repricing job {job_id} failed and the rules changed since (version {current.version} is current, "
                f"it applies version {job.to_version}); the newer change's job reprices the catalogue"
            )
        try:
            async with conn.transaction():
                await conn.execute(
                    """UPDATE repricing_jobs SET status = 'running', error = NULL, completed_at = NULL,
                           last_progress_at = now()
                       WHERE id = %s""",
                    (job_id,),
                )
        except psycopg.errors.UniqueViolation:
            raise ConflictError("another repricing job is pending or running; wait for it to finish") from None
        return await load_job(conn, job_id)


async def stalled_jobs(conn: Conn, stall_seconds: int) -> list[int]:
    """Running jobs without progress for `stall_seconds` (their runner died): resume with run_job."""
    cur = await conn.execute(
        """SELECT id FROM repricing_jobs
           WHERE status = 'running' AND last_progress_at < now() - make_interval(secs => %s)
              OR status = 'pending' AND created_at < now() - make_interval(secs => %s)""",
        (stall_seconds, stall_seconds),
    )
    return [int(row[0]) for row in await cur.fetchall()]


async def resume_stalled_jobs(pool: Pool, stall_seconds: int = 120) -> list[int]:
    """Finish jobs whose runner died (a restarted host, a recycled Functions instance)."""
    async with pool.connection() as conn:
        job_ids = await stalled_jobs(conn, stall_seconds)
    for job_id in job_ids:
        log.warning("resuming stalled repricing job %s", job_id)
        await run_job(pool, job_id)
    return job_ids
