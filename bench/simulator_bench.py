"""Feed simulator benchmark: pages/s, server CPU per 50-item page and RSS, at 500K stones vs a 50K baseline.

    .venv/bin/python -m bench.simulator_bench [--stones 500000] [--baseline 50000] [--pages 2000]
                                              [--concurrency 4] [--seed 42]

Each size runs the simulator as a child process (as `opus run` does) and drives it with the real
NivodaClient over HTTP the way an ingestion run does: for both feed variants, the full-run base
query cut into price-per-carat partitions; each partition is counted, then paged in createdAt order
(50 items a page) by `--concurrency` concurrent callers. Server CPU comes from the simulator's own
counters: the process CPU consumed during the paging phase divided by the pages served (HTTP
included), and the per-request CPU inside the handler (p50/p95; the first page of a partition pays
the partition's scan). Goals: <= 5 ms CPU per page and <= 600 MB RSS at 500K stones.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from feedsim.embed import start_process
from feedsim.simulator import InventorySpec
from shared.feed.client import NivodaClient
from shared.feed.query import DiamondQuery
from shared.feed.ratelimit import TokenBucket
from shared.feed.variants import VARIANTS, base_query, with_price_range

# $/ct partition edges: dense where the stones are (lab-grown below $250, natural $500-1,500).
EDGES = (0, 60, 90, 120, 150, 200, 250, 350, 500, 700, 900, 1200, 1500, 2000, 3000, 5000, 10_000, 1_000_000)
PAGE = 50


@dataclass
class Result:
    stones: int
    startup_s: float
    partitions: int
    pages: int
    wall_s: float
    cpu_ms_per_page: float
    handler_p50_ms: float
    handler_p95_ms: float
    count_cpu_ms: float
    rss_mb: float
    peak_rss_mb: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.wall_s


def partitions() -> list[DiamondQuery]:
    now = datetime.now(UTC) + timedelta(minutes=1)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    queries = []
    for variant in VARIANTS.values():
        base = base_query(variant, updated_from=start, updated_to=now, only_available=True)
        for low, high in itertools.pairwise(EDGES):
            queries.append(with_price_range(base, Decimal(low), Decimal(high) - Decimal("0.01")))
    return queries


@dataclass
class Drive:
    pages: int
    wall_s: float
    paging_cpu_s: float  # simulator process CPU during the paging phase
    count_cpu_ms: float  # simulator CPU per count call (each one a cold scan)


async def _cpu_s(control: httpx.AsyncClient, stats_url: str) -> float:
    return float((await control.get(stats_url)).json()["cpu"]["process_s"])


async def drive(endpoint: str, pages_budget: int, concurrency: int, stats_url: str) -> Drive:
    """Count every partition, then page through them."""
    client = NivodaClient(endpoint, "sim-user", "sim-password", rate_limiter=TokenBucket(100_000, burst=1000))
    async with httpx.AsyncClient() as control:
        try:
            await client.count(DiamondQuery(ids=("warm-up",)))  # authenticate, parse the documents once
            cpu_before = await _cpu_s(control, stats_url)
            queries = partitions()
            counts = [await client.count(query) for query in queries]
            count_cpu_ms = (await _cpu_s(control, stats_url) - cpu_before) * 1000 / len(queries)
            await control.post(stats_url + "/reset")
            share = pages_budget / max(1, sum(counts) / PAGE)
            work = [
                (query, offset)
                for query, count in zip(queries, counts, strict=True)
                for offset in range(0, min(count, max(PAGE, int(count * share))), PAGE)
            ][:pages_budget]
            queue: asyncio.Queue[tuple[DiamondQuery, int]] = asyncio.Queue()
            for job in work:
                queue.put_nowait(job)

            async def worker() -> int:
                served = 0
                while not queue.empty():
                    query, offset = queue.get_nowait()
                    served += bool(await client.search(query, offset=offset, limit=PAGE))
                return served

            cpu_before = await _cpu_s(control, stats_url)
            started = time.monotonic()
            pages = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
            wall_s = time.monotonic() - started
            return Drive(pages, wall_s, await _cpu_s(control, stats_url) - cpu_before, count_cpu_ms)
        finally:
            await client.aclose()


def measure(stones: int, seed: int, pages_budget: int, concurrency: int) -> Result:
    started = time.monotonic()
    simulator = start_process(InventorySpec(seed=seed, stones=stones))
    startup_s = time.monotonic() - started
    stats_url = simulator.url + "/_sim/stats"
    try:
        run = asyncio.run(drive(simulator.endpoint, pages_budget, concurrency, stats_url))
        stats = httpx.get(stats_url).json()
    finally:
        simulator.stop()
    cpu = stats["cpu"]
    return Result(
        stones=stones,
        startup_s=startup_s,
        partitions=len(partitions()),
        pages=run.pages,
        wall_s=run.wall_s,
        cpu_ms_per_page=run.paging_cpu_s * 1000 / max(1, stats["requests"].get("diamonds_by_query", 0)),
        handler_p50_ms=cpu["search_ms_p50"],
        handler_p95_ms=cpu["search_ms_p95"],
        count_cpu_ms=run.count_cpu_ms,
        rss_mb=stats["rss_bytes"] / 2**20,
        peak_rss_mb=max(stats["rss_bytes"], stats["max_rss_bytes"]) / 2**20,
    )


def report(results: list[Result]) -> None:
    header = (
        f"{'stones':>9} {'startup s':>9} {'pages':>6} {'pages/s':>8} {'CPU ms/page':>11} "
        f"{'handler p50':>11} {'handler p95':>11} {'count CPU ms':>12} {'RSS MB':>7} {'peak MB':>7}"
    )
    print(header)
    for r in results:
        print(
            f"{r.stones:>9,} {r.startup_s:>9.2f} {r.pages:>6} {r.pages_per_s:>8.1f} {r.cpu_ms_per_page:>11.2f} "
            f"{r.handler_p50_ms:>11.2f} {r.handler_p95_ms:>11.2f} {r.count_cpu_ms:>12.2f} "
            f"{r.rss_mb:>7.0f} {r.peak_rss_mb:>7.0f}"
        )
    main = results[-1]
    verdict_cpu = "OK" if main.cpu_ms_per_page <= 5 else "OVER"
    verdict_rss = "OK" if main.peak_rss_mb <= 600 else "OVER"
    print(
        f"goal at {main.stones:,} stones: CPU/page {main.cpu_ms_per_page:.2f} ms <= 5 ms: {verdict_cpu}; "
        f"peak RSS {main.peak_rss_mb:.0f} MB <= 600 MB: {verdict_rss}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stones", type=int, default=500_000)
    parser.add_argument("--baseline", type=int, default=50_000)
    parser.add_argument("--pages", type=int, default=2_000, help="pages to fetch per size")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sizes = [args.baseline, args.stones] if args.baseline else [args.stones]
    results = []
    for stones in sizes:
        print(f"measuring {stones:,} stones ...", flush=True)
        results.append(measure(stones, args.seed, args.pages, args.concurrency))
    report(results)


if __name__ == "__main__":
    main()
