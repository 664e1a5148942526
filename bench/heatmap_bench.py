"""Heatmap bench: count calls, duration and partition balance of the density scan, vs the original's algorithm.

    .venv/bin/python -m bench.heatmap_bench [--source fake|sim|both] [--stones 500000] [--seed 42]
                                            [--latency-ms 150] [--sizes]

For each feed variant (natural, lab-grown) and run type (full: 30 workers, incremental: 10 workers,
1 000 records per worker at least), it runs `scan_density` + `plan_partitions` with the settings'
defaults (60 count calls, 6 concurrent) and, in the same run, the original's algorithm (reference
section 4.2, HEAD constants: a fixed dense step up to a threshold, adaptive steps above it, real-count
refinement of chunks above 1.5 x target, proportional flattening of what is still too big, greedy
partitioning), implemented here only for comparison.

Sources:
- fake: in-memory inventories shaped like the feeds (tests/scheduler/inventory.py), each count call
  delayed by --latency-ms (about what a Nivoda count call costs);
- sim: the Nivoda simulator as a child process with --stones stones over HTTP, through the real
  NivodaClient rate-limited to the account's 25 requests/s; full runs use the full-run base query,
  incremental runs the last 24 hours.

Afterwards every partition is counted again (not charged to either algorithm) to report its actual
size, whether the partitions together hold every stone, and the deviation from the target. Against the
simulator it also shows what querying the bounds as plain inclusive cents would lose (stones whose
$/ct lies between two partitions, see `scheduler.heatmap.CountFn`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from itertools import pairwise

from scheduler.heatmap import GRANULARITY, CountFn, scan_density
from scheduler.partitioning import max_deviation_pct, plan_partitions, target_size, worker_count
from shared.settings import Settings, load_settings
from tests.scheduler.inventory import LAB_GROWN, NATURAL, mixture

RUN_TYPES = (("full", "max_workers_full"), ("incremental", "max_workers_incremental"))
BELOW_NEXT_CENT = Decimal("0.009999")  # the simulator resolves $/ct bounds to 6 decimals

Bounds = tuple[Decimal, Decimal | None]


@dataclass(frozen=True)
class Outcome:
    algorithm: str
    calls: int
    duration_s: float
    bounds: list[Bounds]
    estimates: list[int]
    target: int


@dataclass(frozen=True)
class Source:
    """A way to count stones for one variant and run type, plus what the partitions really hold."""

    name: str
    variant: str
    run_type: str
    count: CountFn
    count_naive: CountFn | None  # bounds as plain inclusive cents (only where prices are finer)


class CallCounter:
    def __init__(self, count: CountFn) -> None:
        self._count = count
        self.calls = 0

    async def __call__(self, low: Decimal, high: Decimal | None) -> int:
        self.calls += 1
        return await self._count(low, high)


# --- the original's algorithm (reference section 4.2), for comparison only -------------------------


@dataclass(frozen=True)
class OriginalConstants:
    dense_threshold: Decimal
    dense_step: Decimal
    initial_step: Decimal
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(100_000)
    target_per_chunk: int = 500
    concurrency: int = 3


ORIGINAL = {
    "natural": OriginalConstants(Decimal(5000), Decimal(50), Decimal(250)),
    "lab-grown": OriginalConstants(Decimal(1000), Decimal(10), Decimal(2500)),
}


@dataclass
class _Range:
    low: Decimal  # half-open [low, high)
    high: Decimal
    count: int


async def _gather_limited(calls: Sequence[Callable[[], Awaitable[int]]], limit: int) -> list[int]:
    results: list[int] = []
    for start in range(0, len(calls), limit):
        results.extend(await asyncio.gather(*(call() for call in calls[start : start + limit])))
    return results


async def original_scan(count: CountFn, c: OriginalConstants) -> list[_Range]:
    """Steps 1-3: batches of `concurrency` ranges; dense step below the threshold, adaptive above."""
    chunks: list[_Range] = []
    step = c.initial_step if c.min_price >= c.dense_threshold else c.dense_step
    price = c.min_price
    while price < c.max_price:
        batch: list[tuple[Decimal, Decimal]] = []
        while len(batch) < c.concurrency and price < c.max_price:
            width = c.dense_step if price < c.dense_threshold else step
            high = min(price + width, c.max_price)
            batch.append((price, high))
            price = high
        counts = await asyncio.gather(*(count(low, high - GRANULARITY) for low, high in batch))
        for (low, high), found in zip(batch, counts, strict=True):
            if found:
                chunks.append(_Range(low, high, found))
            if low >= c.dense_threshold:  # adaptation lags one batch, as in the original
                if found == 0:
                    step = min(step * 5, Decimal(100_000))
                else:
                    adapted = Decimal(math.floor(step * c.target_per_chunk / found))
                    step = min(max(adapted, 2 * c.dense_step), Decimal(50_000))
    return chunks


async def original_refine(count: CountFn, chunks: list[_Range], target: int, concurrency: int) -> list[_Range]:
    """Step 5: chunks above 1.5 x target re-counted as equal sub-ranges."""
    refined: list[_Range] = []
    for chunk in chunks:
        width = int((chunk.high - chunk.low) / GRANULARITY)
        pieces = min(math.ceil(chunk.count / target), width)
        if chunk.count <= 1.5 * target or pieces < 2:
            refined.append(chunk)
            continue
        size = width // pieces
        edges = [chunk.low + i * size * GRANULARITY for i in range(pieces)] + [chunk.high]
        subranges = list(pairwise(edges))
        counts = await _gather_limited(
            [partial(count, low, high - GRANULARITY) for low, high in subranges], concurrency
        )
        refined.extend(_Range(low, high, found) for (low, high), found in zip(subranges, counts, strict=True) if found)
    return refined


def original_flatten(chunks: list[_Range], target: int) -> list[_Range]:
    """Step 6: what is still above 1.5 x target is split proportionally (guessed counts)."""
    flat: list[_Range] = []
    for chunk in chunks:
        width = int((chunk.high - chunk.low) / GRANULARITY)
        pieces = min(math.ceil(chunk.count / target), width)
        if chunk.count <= 1.5 * target or pieces < 2:
            flat.append(chunk)
            continue
        size, share = width // pieces, chunk.count // pieces
        for i in range(pieces):
            low = chunk.low + i * size * GRANULARITY
            high = chunk.high if i == pieces - 1 else low + size * GRANULARITY
            flat.append(_Range(low, high, chunk.count - share * (pieces - 1) if i == pieces - 1 else share))
    return flat


def original_partitions(chunks: list[_Range], workers: int, target: int) -> tuple[list[Bounds], list[int]]:
    """Step 7: greedy; close at >= target while workers remain; empty gaps between chunks unassigned."""
    bounds: list[Bounds] = []
    estimates: list[int] = []
    first, running = 0, 0
    for index, chunk in enumerate(chunks):
        running += chunk.count
        if (running >= target and len(bounds) < workers - 1) or index == len(chunks) - 1:
            bounds.append((chunks[first].low, chunk.high - GRANULARITY))
            estimates.append(running)
            first, running = index + 1, 0
    return bounds, estimates


async def run_original(count: CountFn, variant: str, max_workers: int, min_records: int) -> Outcome:
    constants = ORIGINAL[variant]
    counter = CallCounter(count)
    started = time.perf_counter()
    chunks = await original_scan(counter, constants)
    total = sum(chunk.count for chunk in chunks)
    workers = worker_count(total, max_workers=max_workers, min_records_per_worker=min_records)
    target = target_size(total, workers)
    if workers:
        chunks = original_flatten(await original_refine(counter, chunks, target, constants.concurrency), target)
    bounds, estimates = original_partitions(chunks, workers, target) if workers else ([], [])
    return Outcome("original", counter.calls, time.perf_counter() - started, bounds, estimates, target)


# --- this system ----------------------------------------------------------------------------------


async def run_ours(count: CountFn, settings: Settings, max_workers: int) -> Outcome:
    counter = CallCounter(count)
    started = time.perf_counter()
    density = await scan_density(
        counter,
        min_price=settings.heatmap_min_price_per_carat,
        max_price=settings.heatmap_max_price_per_carat,
        target_partitions=max_workers,
        max_calls=settings.heatmap_max_count_calls,
        concurrency=settings.heatmap_concurrency,
        min_records_per_partition=settings.min_records_per_worker,
    )
    partitions = plan_partitions(
        density, max_workers=max_workers, min_records_per_worker=settings.min_records_per_worker
    )
    duration = time.perf_counter() - started
    assert counter.calls == density.count_calls
    workers = worker_count(
        density.total, max_workers=max_workers, min_records_per_worker=settings.min_records_per_worker
    )
    return Outcome(
        "heatmap",
        counter.calls,
        duration,
        [(p.min_price, p.max_price) for p in partitions],
        [p.estimated_records for p in partitions],
        target_size(density.total, workers),
    )


# --- reporting ------------------------------------------------------------------------------------


async def report(source: Source, outcome: Outcome, total: int, show_sizes: bool) -> None:
    actual = await asyncio.gather(*(source.count(low, high) for low, high in outcome.bounds))
    missing = total - sum(actual)
    deviation = max_deviation_pct(actual, outcome.target)
    print(
        f"{source.name:<5} {source.variant:<10} {source.run_type:<12} {outcome.algorithm:<9} "
        f"{outcome.calls:>5} {outcome.duration_s:>8.2f} {len(outcome.bounds):>5} {outcome.target:>7} "
        f"{min(actual, default=0):>7} {max(actual, default=0):>7} {deviation:>7}% {missing:>8}"
    )
    if outcome.estimates != actual:
        print(f"{'':<38}estimates differ from actual counts: {outcome.estimates}")
    if show_sizes:
        print(f"{'':<38}sizes {actual}")
    if source.count_naive is not None:
        naive = await asyncio.gather(*(source.count_naive(low, high) for low, high in outcome.bounds))
        print(f"{'':<38}bounds queried as plain inclusive cents would miss {total - sum(naive)} stones")


HEADER = (
    f"{'src':<5} {'variant':<10} {'run':<12} {'algorithm':<9} {'calls':>5} {'time s':>8} {'parts':>5} "
    f"{'target':>7} {'min':>7} {'max':>7} {'max dev':>8} {'missed':>8}"
)


async def compare(source: Source, settings: Settings, max_workers: int, show_sizes: bool) -> None:
    total = await source.count(Decimal(0), None)
    for outcome in (
        await run_ours(source.count, settings, max_workers),
        await run_original(source.count, source.variant, max_workers, settings.min_records_per_worker),
    ):
        await report(source, outcome, total, show_sizes)


async def bench_fake(settings: Settings, stones: int, seed: int, latency_s: float, show_sizes: bool) -> None:
    for variant, shape in (("natural", NATURAL), ("lab-grown", LAB_GROWN)):
        inventory = mixture(shape, stones, seed=seed, latency_s=latency_s)
        for run_type, workers_field in RUN_TYPES:
            source = Source("fake", variant, run_type, inventory.count, None)
            await compare(source, settings, getattr(settings, workers_field), show_sizes)


async def bench_sim(settings: Settings, stones: int, seed: int, show_sizes: bool) -> None:
    from feedsim.embed import start_process
    from feedsim.simulator import InventorySpec
    from shared.feed.client import NivodaClient
    from shared.feed.query import DiamondQuery, PriceRange
    from shared.feed.ratelimit import TokenBucket
    from shared.feed.variants import VARIANTS, base_query

    print(f"starting the simulator with {stones:,} stones (seed {seed}) ...", flush=True)
    simulator = start_process(InventorySpec(seed=seed, stones=stones))
    client = NivodaClient(
        simulator.endpoint,
        settings.nivoda_username,
        settings.nivoda_password.get_secret_value(),
        rate_limiter=TokenBucket(settings.nivoda_rate_limit_per_s),
    )
    try:
        now = datetime.now(UTC)
        windows = {
            "full": (settings.full_run_start_date, True),
            "incremental": (now - timedelta(hours=24), False),
        }
        for variant, name in (("natural", "nivoda-natural"), ("lab-grown", "nivoda-labgrown")):
            for run_type, workers_field in RUN_TYPES:
                since, only_available = windows[run_type]
                base = base_query(VARIANTS[name], updated_from=since, updated_to=now, only_available=only_available)

                def counter(base: DiamondQuery, widen: Decimal) -> CountFn:
                    async def count(low: Decimal, high: Decimal | None) -> int:
                        to = None if high is None else high + widen
                        return await client.count(
                            base.model_copy(update={"dollar_per_carat": PriceRange(from_=low, to=to)})
                        )

                    return count

                source = Source("sim", variant, run_type, counter(base, BELOW_NEXT_CENT), counter(base, Decimal(0)))
                await compare(source, settings, getattr(settings, workers_field), show_sizes)
    finally:
        await client.aclose()
        simulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("fake", "sim", "both"), default="both")
    parser.add_argument("--stones", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="delay of each fake count call")
    parser.add_argument("--sizes", action="store_true", help="print every partition's size")
    args = parser.parse_args()
    settings = load_settings()
    print(
        f"budget {settings.heatmap_max_count_calls} calls, concurrency {settings.heatmap_concurrency} "
        f"(original: concurrency 3); min {settings.min_records_per_worker} records/worker"
    )
    print(HEADER)
    if args.source in ("fake", "both"):
        asyncio.run(bench_fake(settings, args.stones, args.seed, args.latency_ms / 1000, args.sizes))
    if args.source in ("sim", "both"):
        asyncio.run(bench_sim(settings, args.stones, args.seed, args.sizes))


if __name__ == "__main__":
    main()
