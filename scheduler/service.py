"""Plan and start a run: window, density scan, partitions, records, fan-in, THEN the first work items."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final, Literal

import psycopg
from psycopg.types.json import Jsonb

from scheduler.heatmap import DensityMap, scan_density
from scheduler.partitioning import Partition, plan_partitions
from scheduler.planning import RunType, RunWindow, lag_to_cover, lookback, plan_window
from shared.bootstrap import Container
from shared.bus.port import publish
from shared.errors import ConflictError, InvalidRequestError
from shared.feed.query import DiamondQuery, PriceRange
from shared.feed.variants import VARIANTS, base_query
from shared.logs import log_context
from shared.runs import RunRecord, active_run, load_partitions, load_run, load_watermark, work_item_for
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStarted:
    run: RunRecord
    partitions: tuple[Partition, ...]
    density: DensityMap


def run_query(feed: str, window: RunWindow | RunRecord) -> DiamondQuery:
    """The feed query of a run before partitioning; the worker and the scheduler share it."""
    return base_query(
        VARIANTS[feed],
        updated_from=window.updated_from,
        updated_to=window.updated_to,
        only_available=window.run_type == "full",
    )


# Partition bounds sit on a $0.01/ct grid, but a stone's price per carat is exact (cents / carats):
# 746.3095 lies between a partition ending at 746.30 and the next starting at 746.31. Querying up to
# max + 0.0099999 closes that gap without overlapping the next partition: with whole cents and
# carats to 2 decimals (up to 1,000 ct), a price per carat below the next bound is below it by at
# least 1e-6.
_GRID_CLOSE = Decimal("0.0099999")


def partition_query(query: DiamondQuery, min_price: Decimal, max_price: Decimal | None) -> DiamondQuery:
    upper = None if max_price is None else max_price + _GRID_CLOSE
    return query.model_copy(update={"dollar_per_carat": PriceRange(from_=min_price, to=upper)})


def heatmap_summary(density: DensityMap, partitions: list[Partition]) -> dict[str, object]:
    return {
        "count_calls": density.count_calls,
        "duration_s": round(density.duration_s, 3),
        "total": density.total,
        "chunks": [
            {
                "min": str(c.min_price),
                "max": None if c.max_price is None else str(c.max_price),
                "count": c.count,
            }
            for c in density.chunks
        ],
        "partitions": [
            {
                "id": p.partition_id,
                "min": str(p.min_price),
                "max": None if p.max_price is None else str(p.max_price),
                "estimated": p.estimated_records,
            }
            for p in partitions
        ],
    }


def feed_clock_note(window: RunWindow, safety_buffer: timedelta) -> dict[str, object] | None:
    """What the run records of the feed's clock (None when unmeasured), warning when its lag
    exceeds the safety buffer: the buffer alone would then let the next incremental miss stones."""
    lag = window.feed_clock_lag
    if lag is None:
        log.warning(
            "the feed sent no usable Date header: its clock is unmeasured, the window relies on the %.0f s"
            " safety buffer alone",
            safety_buffer.total_seconds(),
        )
        return None
    beyond = lag_to_cover(lag) > safety_buffer
    if beyond:
        widened = window.run_type == "incremental" and window.watermark_before is not None
        log.warning(
            "the feed's clock is %.1f s behind ours, more than the %.0f s safety buffer: %s",
            lag.total_seconds(),
            safety_buffer.total_seconds(),
            f"this incremental window starts {lookback(safety_buffer, lag).total_seconds():.1f} s before the watermark"
            if widened
            else "a full window is not affected; incremental windows start that much further back",
        )
    return {
        "lag_s": round(lag.total_seconds(), 3),
        "beyond_safety_buffer": beyond,
        # Recorded because the setting may change later: "beyond" is judged against this one.
        "safety_buffer_s": safety_buffer.total_seconds(),
    }


async def _record_run(
    container: Container,
    *,
    feed: str,
    window: RunWindow,
    density: DensityMap,
    partitions: list[Partition],
    feed_clock: dict[str, object] | None,
    requested_by: str,
) -> RunRecord:
    summary = heatmap_summary(density, partitions)
    if feed_clock is not None:
        # With the scan: both describe the feed as it was when the run was planned.
        summary["feed_clock"] = feed_clock
    run_id = uuid.uuid4()
    trace_id = uuid.uuid4().hex
    try:
        async with container.pool.connection() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO run_metadata (run_id, feed, run_type, status, trace_id, updated_from, updated_to,
                       watermark_before, expected_partitions, estimated_records, heatmap, requested_by)
                   VALUES (%s, %s, %s, 'planned', %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    run_id,
                    feed,
                    window.run_type,
                    trace_id,
                    window.updated_from,
                    window.updated_to,
                    window.watermark_before,
                    len(partitions),
                    sum(p.estimated_records for p in partitions),
                    Jsonb(summary),
                    requested_by,
                ),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO partition_progress
                           (run_id, partition_id, position, min_price, max_price, estimated_records)
                       VALUES (%s, %s, %s, %s, %s, %s)""",
                    [
                        (run_id, p.partition_id, p.position, p.min_price, p.max_price, p.estimated_records)
                        for p in partitions
                    ],
                )
            return await load_run(conn, run_id)
    except psycopg.errors.UniqueViolation:
        # Another scheduler won the race the check in start_run could not see.
        raise ConflictError(f"feed {feed} already has an active run") from None


@dataclass(frozen=True)
class ScanLimits:
    """How a density scan and its partitioning are bounded (settings, or a preview's overrides)."""

    max_workers: int
    min_records_per_worker: int
    max_records: int
    max_calls: int

    @classmethod
    def from_settings(cls, settings: Settings, run_type: RunType) -> ScanLimits:
        return cls(
            max_workers=settings.max_workers_full if run_type == "full" else settings.max_workers_incremental,
            min_records_per_worker=settings.min_records_per_worker,
            max_records=settings.max_records_per_run,
            max_calls=settings.heatmap_max_count_calls,
        )


# A reading of the feed's clock older than this (or none: a fresh process) is taken again before
# planning. Clocks drift by seconds a day; ten minutes bounds the extra requests to one count per
# ten idle minutes, and a fresh process's reading comes free with its authentication.
FEED_CLOCK_MAX_AGE_S: Final = 600.0


async def feed_clock_lag(container: Container, feed: str) -> timedelta | None:
    """The feed's clock behind ours (negative: ahead), as measured within FEED_CLOCK_MAX_AGE_S."""
    now = container.clock.now()
    # If a request is needed: a count of one millisecond of updatedAt, the scan's own query shape
    # (so the feed accepts it) matching next to nothing (so it costs the feed next to nothing).
    probe = base_query(VARIANTS[feed], updated_from=now, updated_to=now, only_available=False)
    reading = await container.feed.recent_clock_reading(probe, max_age_s=FEED_CLOCK_MAX_AGE_S)
    return None if reading is None else reading.lag


async def next_window(container: Container, feed: str, run_type: RunType | None) -> RunWindow:
    """The window a run of `feed` started now would fetch (ValueError when it would be empty)."""
    settings = container.settings
    async with container.pool.connection() as conn:
        watermark = await load_watermark(conn, feed)
    lag = await feed_clock_lag(container, feed)
    return plan_window(
        requested=run_type,
        watermark=watermark,
        now=container.clock.now(),
        full_run_start=settings.full_run_start_date,
        safety_buffer=timedelta(minutes=settings.incremental_safety_buffer_minutes),
        feed_clock_lag=lag,
    )


async def scan_and_partition(
    container: Container, feed: str, window: RunWindow, limits: ScanLimits
) -> tuple[DensityMap, list[Partition]]:
    """Scan the window's price-per-carat density with count calls, then cut balanced partitions."""
    settings = container.settings
    query = run_query(feed, window)

    async def count(low: Decimal, high: Decimal | None) -> int:
        return await container.feed.count(partition_query(query, low, high))

    density = await scan_density(
        count,
        min_price=settings.heatmap_min_price_per_carat,
        max_price=settings.heatmap_max_price_per_carat,
        max_calls=limits.max_calls,
        concurrency=settings.heatmap_concurrency,
        min_records_per_partition=limits.min_records_per_worker,
        target_partitions=limits.max_workers,
        max_records=limits.max_records,
    )
    partitions = plan_partitions(
        density,
        max_workers=limits.max_workers,
        min_records_per_worker=limits.min_records_per_worker,
        max_records=limits.max_records,
    )
    return density, partitions


async def start_run(
    container: Container,
    *,
    feed: str,
    run_type: Literal["full", "incremental"] | None = None,
    requested_by: str = "schedule",
) -> RunStarted | None:
    """Plan a run of `feed` and send its first work items; None when there is nothing to fetch.

    Raises ConflictError when the feed already has an active run (runs of a feed never overlap).
    """
    if feed not in VARIANTS:
        raise InvalidRequestError(f"unknown feed {feed!r}; expected one of {', '.join(VARIANTS)}")
    async with container.pool.connection() as conn:
        current = await active_run(conn, feed)
        if current is not None:
            raise ConflictError(f"feed {feed} already has an active run {current.run_id} ({current.status})")
    window = await next_window(container, feed, run_type)
    with log_context(feed=feed):
        feed_clock = feed_clock_note(window, timedelta(minutes=container.settings.incremental_safety_buffer_minutes))
        density, partitions = await scan_and_partition(
            container, feed, window, ScanLimits.from_settings(container.settings, window.run_type)
        )
        if not partitions:
            log.info("nothing to fetch: no stones in the %s window", window.run_type)
            return None
        run = await _record_run(
            container,
            feed=feed,
            window=window,
            density=density,
            partitions=partitions,
            feed_clock=feed_clock,
            requested_by=requested_by,
        )
    with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=feed):
        run = await launch_run(container, run)
        log.info(
            "run started: %s, %d partitions, ~%d stones, %d count calls",
            run.run_type,
            len(partitions),
            run.estimated_records,
            density.count_calls,
        )
    return RunStarted(run=run, partitions=tuple(partitions), density=density)


async def launch_run(container: Container, run: RunRecord) -> RunRecord:
    """Start the run's fan-in, mark the run ingesting, then send its first pages.

    Every step is idempotent (the fan-in start checks for a running instance, the status change is
    conditional, page message ids derive from recorded state), so a run a crash left `planned` is
    launched again by `launch_abandoned_runs` without doubling anything.
    """
    await container.fanin.start(run)
    async with container.pool.connection() as conn:
        await conn.execute(
            "UPDATE run_metadata SET status = 'ingesting', updated_at = now() WHERE run_id = %s AND status = 'planned'",
            (run.run_id,),
        )
        run = await load_run(conn, run.run_id)
    if run.status == "ingesting":
        await send_pending_pages(container, run)
    return run


# A run is planned for the moment between recording it and launching it; one planned for longer
# was left by a process that died in between.
ABANDONED_PLAN_AFTER = timedelta(minutes=2)


async def launch_abandoned_runs(container: Container) -> list[RunRecord]:
    """Launch the runs a crash left planned (recorded, never handed to the fan-in or never marked
    ingesting): they would otherwise hold their feed's one active slot for good."""
    async with container.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT run_id FROM run_metadata WHERE status = 'planned' AND updated_at < now() - %s ORDER BY started_at",
            (ABANDONED_PLAN_AFTER,),
        )
        run_ids = [row[0] for row in await cur.fetchall()]
    launched = []
    for run_id in run_ids:
        async with container.pool.connection() as conn:
            run = await load_run(conn, run_id)
        with log_context(run_id=run.run_id, trace_id=run.trace_id, feed=run.feed):
            log.warning("run was left planned by a stopped process: launching it now")
            launched.append(await launch_run(container, run))
    return launched


async def send_pending_pages(container: Container, run: RunRecord) -> int:
    """(Re)send the next page of every open partition of a run, from its recorded state.

    Message ids are derived from that state, so a page already in flight is dropped as a duplicate;
    this is how a run resumes after a crash between recording progress and sending.
    """
    async with container.pool.connection() as conn:
        partitions = await load_partitions(conn, run.run_id, statuses=("pending", "running"))
    items = [work_item_for(run, p, page_size=container.settings.worker_page_size) for p in partitions]
    if items:
        await publish(container.bus, *items)
    return len(items)
