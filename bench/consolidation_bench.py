"""Consolidation benchmark: 500K raw rows -> the catalogue, in one process.

    .venv/bin/python -m bench.consolidation_bench [--stones 500000] [--changed 0.01] [--baseline 20000]

Loads simulator payloads (built from the simulator's generator, not fetched) into the raw table
through the workers' own upsert (in a child process, so its memory does not count), then:
1. first load: consolidates every pending row of a full run — prints stones/s and peak RSS
   (goal >= 15,000 stones/s, <= 400 MB), and the CPU per raw row of this process and of the
   PostgreSQL server, with the throughput ceiling they imply on 2 cores;
2. re-consolidation: changes 1% of the raw payloads (price) and consolidates an incremental run —
   prints seconds (goal <= 3 s) and confirms unchanged stones were not rewritten;
3. baseline in the same run: the original's write path (one INSERT ... ON CONFLICT per stone via
   executemany, batches of 100) on `--baseline` of the same mapped stones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psutil

from bench.database import temporary_database
from consolidator.mapper import MappedDiamond, map_item
from consolidator.pricing import price
from consolidator.rules_store import latest_ruleset
from consolidator.service import consolidate
from consolidator.writer import STAGED_COLUMNS, staged_row
from shared.bootstrap import open_container
from shared.messages import Consolidate
from shared.settings import load_settings

FEED = "nivoda-natural"
LOAD_BATCH = 5000


async def _load(url: str, stones: int) -> None:
    """Child process: generate payloads and store them as a run's raw rows (all pending)."""
    import psycopg

    from feedsim.inventory import Inventory
    from feedsim.payload import build_items
    from shared.raw_store import to_raw_items, upsert_raw

    inventory = Inventory.generate(42, stones, int(time.time() * 1000))
    run_id = uuid.UUID(os.environ["BENCH_RUN_ID"])
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for start in range(0, stones, LOAD_BATCH):
            items, _ = to_raw_items(build_items(inventory, range(start, min(stones, start + LOAD_BATCH))))
            async with conn.transaction():
                await upsert_raw(conn, feed=FEED, run_id=run_id, items=items)


async def create_run(url: str, run_type: str) -> uuid.UUID:
    import psycopg

    run_id = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO run_metadata (run_id, feed, run_type, status, trace_id, updated_from, updated_to,
                   expected_partitions, estimated_records)
               VALUES (%s, %s, %s, 'consolidating', 'bench', '2000-01-01', %s, 1, 0)""",
            (run_id, FEED, run_type, datetime.now(UTC)),
        )
        await conn.execute(
            """INSERT INTO partition_progress (run_id, partition_id, position, min_price, estimated_records,
                   status, completed_at) VALUES (%s, 'partition-0', 0, 0, 0, 'completed', now())""",
            (run_id,),
        )
    return run_id


class Sampler:
    """Measures a phase: this process's peak RSS (the load happened in a child process), sampled by a
    thread, and the CPU time of this process and of the PostgreSQL server.

    The server's CPU is read twice, before and after: its live processes' CPU plus the CPU of the
    children the postmaster has reaped (backends that exited). Listing the server's processes while
    the phase runs (reading every /proc entry 20 times a second) took a fifth of this process's CPU
    and competed with the consolidator for the GIL."""

    def __init__(self, url: str) -> None:
        self.peak = 0
        self._server = _postmaster(url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_rss, daemon=True)

    def _sample_rss(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)

    def _server_cpu(self) -> float:
        reaped = self._server.cpu_times()
        used = reaped.children_user + reaped.children_system
        for process in [self._server, *self._server.children()]:
            try:
                used += sum(process.cpu_times()[:2])
            except psutil.Error:
                continue  # exited meanwhile: counted with the reaped children once the postmaster waits
        return used

    def __enter__(self) -> Sampler:
        self._own_cpu = time.process_time()
        self._server_cpu_before = self._server_cpu()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.own_cpu = time.process_time() - self._own_cpu
        time.sleep(0.2)  # the phase's connections are closed; let the postmaster reap their backends
        self.server_cpu = self._server_cpu() - self._server_cpu_before


def _postmaster(url: str) -> psutil.Process:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        parent = psutil.Process(row[0]).parent()  # while the backend is alive
    assert parent is not None
    return parent


async def consolidate_run(url: str, run_id: uuid.UUID) -> tuple[float, Any]:
    settings = load_settings(database_url=url, nivoda_endpoint="http://127.0.0.1:9/unused", log_level="WARNING")
    async with open_container(settings, url, name="bench") as container:
        message = Consolidate(feed=FEED, run_id=run_id, trace_id="bench", requested_by="bench")
        started = time.monotonic()
        result = await consolidate(container, message)
        return time.monotonic() - started, result


async def change_payloads(url: str, share: float) -> int:
    """Reprice a share of the raw rows as a feed update would, and queue them for consolidation."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn, conn.transaction():
        cur = await conn.execute(
            """WITH picked AS (
                   SELECT supplier_stone_id FROM raw_diamonds_nivoda TABLESAMPLE BERNOULLI (%s) REPEATABLE (7)
               ), changed AS (
                   UPDATE raw_diamonds_nivoda r
                   SET payload = jsonb_set(r.payload::jsonb, '{price}',
                                           to_jsonb((r.payload::jsonb->>'price')::bigint + 100))::text,
                       payload_hash = sha256(convert_to(r.payload || 'changed', 'UTF8'))
                   FROM picked p WHERE r.feed = %s AND r.supplier_stone_id = p.supplier_stone_id
                   RETURNING r.supplier_stone_id
               )
               INSERT INTO raw_pending (feed, supplier_stone_id, run_id)
               SELECT %s, supplier_stone_id, (SELECT run_id FROM run_metadata LIMIT 1) FROM changed""",
            (share * 100, FEED, FEED),
        )
        return cur.rowcount


async def baseline(url: str, count: int) -> float:
    """The original's write path: one upsert statement per stone (executemany, batches of 100)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        rules = await latest_ruleset(conn)
        cur = await conn.execute("SELECT payload FROM raw_diamonds_nivoda WHERE feed = %s LIMIT %s", (FEED, count))
        import orjson

        mapped = [map_item(orjson.loads(row[0]), feed=FEED, labgrown=False) for row in await cur.fetchall()]
        rows = [staged_row(d, price(d, rules), uuid.uuid4()) for d in mapped if isinstance(d, MappedDiamond)]
        await conn.execute("CREATE TABLE baseline_diamonds (LIKE diamonds INCLUDING ALL)")
        columns = ", ".join(STAGED_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in STAGED_COLUMNS[2:])
        statement = (
            f"INSERT INTO baseline_diamonds ({columns}) VALUES ({', '.join(['%s'] * len(STAGED_COLUMNS))}) "
            f"ON CONFLICT (feed, supplier_stone_id) DO UPDATE SET {updates}"
        )
        from psycopg.types.json import Jsonb

        def values(staged: bytes) -> tuple[Any, ...]:
            row = orjson.loads(staged)
            row["row_hash"] = bytes.fromhex(row["row_hash"][2:])
            if row["meta_images"] is not None:
                row["meta_images"] = Jsonb(row["meta_images"])
            return tuple(row[c] for c in STAGED_COLUMNS)

        prepared = [values(r) for r in rows]
        started = time.monotonic()
        for offset in range(0, len(prepared), 100):
            async with conn.transaction(), conn.cursor() as c:
                await c.executemany(statement, prepared[offset : offset + 100])
        elapsed = time.monotonic() - started
        await conn.execute("DROP TABLE baseline_diamonds")
        return len(prepared) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stones", type=int, default=500_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--baseline", type=int, default=20_000)
    parser.add_argument("--load", help=argparse.SUPPRESS)  # child process: load raw rows into this URL
    args = parser.parse_args()
    if args.load:
        asyncio.run(_load(args.load, args.stones))
        return
    with temporary_database() as url:
        run_id = asyncio.run(create_run(url, "full"))
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "bench.consolidation_bench", "--load", url, "--stones", str(args.stones)],
            check=True,
            env={**os.environ, "BENCH_RUN_ID": str(run_id)},
        )
        print(f"loaded {args.stones:,} raw rows through the workers' upsert in {time.monotonic() - started:.1f} s")

        with Sampler(url) as rss:
            seconds, result = asyncio.run(consolidate_run(url, run_id))
        stats = result.stats
        print(
            f"first load: {stats.processed:,} raw rows in {seconds:.1f} s = {stats.processed / seconds:,.0f} stones/s "
            f"(goal >= 15,000); {stats.merged.inserted:,} inserted, {stats.errors:,} unmappable; "
            f"peak RSS {rss.peak / 2**20:.0f} MB (goal <= 400 MB)"
        )
        own, server = (rss.own_cpu / stats.processed * 1e6, rss.server_cpu / stats.processed * 1e6)
        print(
            f"    CPU per raw row: consolidator {own:.0f} us, PostgreSQL {server:.0f} us; on 2 cores "
            f"at most {2e6 / (own + server):,.0f} stones/s"
        )

        changed = asyncio.run(change_payloads(url, args.changed))
        rerun = asyncio.run(create_run(url, "incremental"))
        with Sampler(url) as rss:
            seconds, result = asyncio.run(consolidate_run(url, rerun))
        merged = result.stats.merged
        print(
            f"re-consolidation: {changed:,} changed raw rows ({args.changed:.0%}) in {seconds:.2f} s (goal <= 3 s); "
            f"{merged.updated:,} rewritten, {merged.unchanged:,} unchanged; peak RSS {rss.peak / 2**20:.0f} MB"
        )
        rate = asyncio.run(baseline(url, args.baseline))
        print(f"baseline (the original's per-stone upsert, {args.baseline:,} stones): {rate:,.0f} stones/s")


if __name__ == "__main__":
    main()
