"""Ingestion benchmark: full runs of a 500K-stone simulator through the real local host.

    .venv/bin/python -m bench.ingestion_bench [--stones 500000] [--latency-ms 50] [--rate-window-s 60]

Two scenarios, each against the simulator in its own process (as `opus run` starts it):
(a) rate-bound: the simulator enforces 25 requests/s (excess answered 429) and the pipeline's
    global token bucket is set to 25/s; prints the request rate sustained over a window, against
    the allowed rate (the physical limit against real Nivoda) — goal >= 95%.
(b) throughput: no rate limit, 50 ms latency per request; a full run of both feeds; prints
    stones/s of the ingestion phase (planning + paging; consolidation is reported apart), requests
    by kind, the search-request budget (<= 1.05 x ceil(stones/50) + partitions) and peak RSS.
    Baseline in the same run: one sequential pager (the original's one-worker loop) on the same
    simulator for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx

from bench.database import peak_rss_mb, temporary_database
from fanin.operations import cancel_run
from feedsim.embed import SimulatorProcess, start_process
from feedsim.simulator import InventorySpec, SimConfig
from localhost.host import running_host
from scheduler.service import start_run
from shared.feed.client import NivodaClient
from shared.feed.ratelimit import TokenBucket
from shared.feed.variants import VARIANTS, base_query
from shared.settings import Settings, load_settings

FEEDS = ("nivoda-natural", "nivoda-labgrown")


def settings_for(database_url: str, endpoint: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "opus_data_dir": mkdtemp(prefix="opus-bench-"),
        "nivoda_endpoint": endpoint,
        "api_port": 0,
        "run_on_startup": False,
        "schedule_cron": "0 0 0 1 1 *",
        "log_level": "WARNING",
        "worker_concurrency": 24,
        "max_workers_full": 30,
        "db_pool_max_size": 40,
        **overrides,
    }
    return load_settings(**values)


async def sim_stats(sim: SimulatorProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.url}/_sim/stats")
        stats: dict[str, Any] = response.json()
        return stats


async def partitions_state(container: Any, run_id: Any) -> tuple[int, int, int]:
    async with container.pool.connection() as conn:
        cur = await conn.execute(
            """SELECT count(*) FILTER (WHERE status IN ('completed', 'failed')), count(*),
                      coalesce(sum(records_seen), 0)
               FROM partition_progress WHERE run_id = %s""",
            (run_id,),
        )
        finished, total, stones = await cur.fetchone() or (0, 0, 0)
    return finished, total, stones


@dataclass
class FeedResult:
    feed: str
    stones: int
    partitions: int
    count_calls: int
    plan_s: float
    fetch_s: float
    consolidate_s: float


async def full_run(container: Any, feed: str) -> FeedResult:
    t0 = time.monotonic()
    started = await start_run(container, feed=feed, run_type="full", requested_by="bench")
    assert started is not None
    t1 = time.monotonic()
    run_id = started.run.run_id
    while True:
        finished, total, stones = await partitions_state(container, run_id)
        if finished == total:
            break
        await asyncio.sleep(0.1)
    t2 = time.monotonic()
    while True:
        async with container.pool.connection() as conn:
            cur = await conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,))
            (status,) = await cur.fetchone() or ("?",)
        if status not in ("ingesting", "consolidating"):
            break
        await asyncio.sleep(0.1)
    t3 = time.monotonic()
    assert status == "completed", f"run {run_id} ended {status}"
    return FeedResult(feed, stones, total, started.density.count_calls, t1 - t0, t2 - t1, t3 - t2)


async def sequential_baseline(endpoint: str, seconds: float) -> float:
    """The original's shape: one worker paging one query sequentially (no partitions)."""
    client = NivodaClient(
        endpoint,
        "sim-user",
        "sim-password",
        rate_limiter=TokenBucket(10_000),
        connect_timeout_s=10,
        request_timeout_s=30,
        max_retries=3,
        token_lifetime_s=3600,
    )
    now = datetime.now(UTC)
    query = base_query(
        VARIANTS["nivoda-natural"], updated_from=datetime(2000, 1, 1, tzinfo=UTC), updated_to=now, only_available=True
    )
    stones, offset, deadline = 0, 0, time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < deadline:
        items = await client.search(query, offset=offset, limit=50)
        if not items:
            break
        stones += len(items)
        offset += len(items)
    await client.aclose()
    return stones / (time.monotonic() - start)


async def throughput(database_url: str, sim: SimulatorProcess) -> None:
    settings = settings_for(
        database_url, sim.endpoint, nivoda_rate_limit_scope="process", nivoda_rate_limit_per_s=10_000
    )
    baseline = await sequential_baseline(sim.endpoint, 8)
    before = await sim_stats(sim)
    stop = asyncio.Event()
    results = []
    async with running_host(settings, stop) as host:
        for feed in FEEDS:
            results.append(await full_run(host.container, feed))
    after = await sim_stats(sim)
    requests = {k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in after["requests"]}
    stones = sum(r.stones for r in results)
    fetch_s = sum(r.plan_s + r.fetch_s for r in results)
    partitions = sum(r.partitions for r in results)
    budget = 1.05 * -(-stones // 50) + partitions
    print("\n(b) throughput: no rate limit, simulator latency per request as configured")
    for r in results:
        print(
            f"  {r.feed:16} {r.stones:>8,} stones  {r.partitions:>3} partitions  {r.count_calls:>3} count calls  "
            f"plan {r.plan_s:5.1f} s  fetch {r.fetch_s:6.1f} s ({r.stones / r.fetch_s:,.0f} stones/s)  "
            f"consolidate {r.consolidate_s:5.1f} s ({r.stones / max(r.consolidate_s, 1e-9):,.0f} stones/s)"
        )
    print(f"  ingestion: {stones:,} stones in {fetch_s:.1f} s = {stones / fetch_s:,.0f} stones/s (goal >= 5,000)")
    print(f"  baseline (one sequential pager, same simulator): {baseline:,.0f} stones/s")
    print(f"  requests by kind: {requests}")
    search = requests.get("diamonds_by_query", 0)
    print(f"  search requests {search:,} vs budget {budget:,.0f} (1.05 x ceil(stones/50) + partitions)")
    print(f"  peak RSS: pipeline {peak_rss_mb():.0f} MB, simulator {after.get('peak_rss_mb', after.get('rss_mb'))} MB")


async def rate_bound(database_url: str, sim: SimulatorProcess, window_s: float, rate: float) -> None:
    settings = settings_for(
        database_url,
        sim.endpoint,
        nivoda_rate_limit_scope="global",
        nivoda_rate_limit_per_s=rate,
        worker_concurrency=16,
    )
    stop = asyncio.Event()
    async with running_host(settings, stop) as host:
        started = await start_run(host.container, feed="nivoda-natural", run_type="full", requested_by="bench")
        assert started is not None
        await asyncio.sleep(3)  # warm up: token bucket, connections
        first = await sim_stats(sim)
        t0 = time.monotonic()
        await asyncio.sleep(window_s)
        last = await sim_stats(sim)
        elapsed = time.monotonic() - t0
        await cancel_run(host.container, started.run.run_id, "benchmark window over")
    served = last["http_requests"] - first["http_requests"]
    limited = last["faults"].get("rate_limited", 0) - first["faults"].get("rate_limited", 0)
    accepted = served - limited
    print(f"\n(a) rate-bound: simulator limit {rate:g} requests/s, pipeline token bucket {rate:g}/s (global)")
    print(
        f"  {accepted / elapsed:.2f} accepted requests/s over {elapsed:.0f} s = {accepted / elapsed / rate:.1%} "
        f"of the allowed rate (goal >= 95%); {limited} answered 429"
    )


def run_scenarios(args: argparse.Namespace) -> None:
    if not args.skip_rate:
        with temporary_database() as database_url:
            sim = start_process(InventorySpec(seed=42, stones=args.stones), SimConfig(rate_limit=args.rate))
            try:
                asyncio.run(rate_bound(database_url, sim, args.rate_window_s, args.rate))
            finally:
                sim.stop()
    if not args.skip_throughput:
        with temporary_database() as database_url:
            sim = start_process(InventorySpec(seed=42, stones=args.stones), SimConfig(latency_ms=args.latency_ms))
            try:
                asyncio.run(throughput(database_url, sim))
            finally:
                sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stones", type=int, default=500_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--rate-window-s", type=float, default=60.0)
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"ingestion benchmark: {args.stones:,} simulator stones, {Path.cwd()}")
    run_scenarios(args)


if __name__ == "__main__":
    main()
