"""Throughput of the pure consolidation steps in one process: map_item, price, preview.

    .venv/bin/python -m bench.consolidation_pure [--stones 20000] [--runs 5]

Items come from the feed simulator's payload builder (the same shape the pipeline ingests). Prints
the median and best of several runs, in CPU time of this process (wall time is also shown; other
work on the machine moves both).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from consolidator.mapper import MappedDiamond, map_item
from consolidator.preview import preview
from consolidator.pricing import DEFAULT_BASE_MARGINS, PricingRule, RuleSet, default_rules, price
from feedsim.inventory import Inventory
from feedsim.payload import build_items


def measure(label: str, count: int, runs: int, work: Callable[[], object]) -> None:
    cpu_rates, wall_rates = [], []
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        work()
        cpu_rates.append(count / (time.process_time() - cpu))
        wall_rates.append(count / (time.perf_counter() - wall))
    print(
        f"{label:<34} median {statistics.median(cpu_rates):>10,.0f}/s  best {max(cpu_rates):>10,.0f}/s (cpu)"
        f"   median {statistics.median(wall_rates):>10,.0f}/s (wall)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stones", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    items = build_items(Inventory.generate(7, args.stones, int(time.time() * 1000)), list(range(args.stones)))
    mapped = [
        m for m in (map_item(i, feed="nivoda-natural", labgrown=False) for i in items) if isinstance(m, MappedDiamond)
    ]
    seed = RuleSet(
        1, tuple(PricingRule(id=n + 1, **row) for n, row in enumerate(default_rules())), DEFAULT_BASE_MARGINS
    )
    catalogue = [(diamond, price(diamond, seed).retail_price + Decimal("0.01")) for diamond in mapped]
    print(f"{len(items):,} simulator items, {len(mapped):,} mappable; {len(seed.rules)} seed pricing rules")

    measure(
        "map_item (all items)",
        len(items),
        args.runs,
        lambda: [map_item(i, feed="nivoda-natural", labgrown=False) for i in items],
    )
    measure("price (seed rules)", len(mapped), args.runs, lambda: [price(d, seed) for d in mapped])
    measure("preview (every stone changes)", len(catalogue), args.runs, lambda: preview(catalogue, seed))


if __name__ == "__main__":
    main()
