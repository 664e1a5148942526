"""Catalogue API benchmark: latency and throughput of a fixed search mix on a 500K-stone catalogue.

    .venv/bin/python -m bench.api_bench [--stones 500000] [--workers 2] [--duration 15]

Builds a catalogue in a throwaway embedded PostgreSQL (or in DATABASE_URL's server; or reuses
--database-url if it already holds --stones stones), generated with SQL (generate_series, seeded
random) to realistic distributions; serves the API with uvicorn (--workers processes) on 127.0.0.1;
drives it from a separate load-generator process (raw HTTP/1.1 keep-alive connections, so the
generator costs little of the machine's two cores) and prints p50/p95/p99 latency and requests/s at
1 and 32 concurrent clients, for a baseline (GET /api/health) measured in the same run and for the
search mix, with the CPU each process used. The mix repeats, so after the warm-up its pages come
from the API's page cache (until the catalogue changes, as in production); it is then run again on
a server without the cache (API_PAGE_CACHE_MB=0), where every request runs its search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psutil
import psycopg

from bench.database import temporary_database
from shared.db.migrate import migrate
from tests.helpers import free_port

SEED_SQL = """

INSERT INTO diamonds (
    feed, supplier_stone_id, offer_id, shape, carats, color, clarity, cut, polish, symmetry,
    fluorescence_intensity, fancy_color, fancy_intensity, lab_grown, feed_price, price_per_carat,
    retail_price, markup_ratio, rating, availability, certificate_lab, certificate_number,
    image_url, video_url, ratio, table_pct, depth_pct, eye_clean, brown, green, milky,
    status, deleted_at, row_hash, created_at, updated_at)
SELECT
    CASE WHEN lab THEN 'nivoda-labgrown' ELSE 'nivoda-natural' END,
    'stone-' || g, 'offer-' || g, shape, carats,
    CASE WHEN fancy THEN 'FANCY' ELSE color END, clarity, cut, polish, symmetry, fluorescence,
    CASE WHEN fancy THEN (ARRAY['Yellow', 'Pink', 'Blue', 'Brown-Yellow', 'Green', 'Orangy Brown'])
                         [1 + (r9 * 6)::int %% 6] END,
    CASE WHEN fancy THEN (ARRAY['Fancy Light', 'Fancy', 'Fancy Intense', 'Fancy Vivid', 'Fancy Deep'])
                         [1 + (r10 * 5)::int %% 5] END,
    lab, cost, round(cost / carats, 2), round(cost * markup, 2), markup,
    CASE WHEN r11 < 0.1 THEN NULL ELSE greatest(1, least(10, round(6 + 2 * z3)))::smallint END,
    CASE WHEN r12 < 0.85 THEN 'available' WHEN r12 < 0.93 THEN 'on_hold' WHEN r12 < 0.97 THEN 'sold'
         ELSE 'unavailable' END,
    CASE WHEN lab THEN (CASE WHEN r13 < 0.7 THEN 'IGI' WHEN r13 < 0.85 THEN 'GCAL' ELSE 'GIA' END)
         ELSE (CASE WHEN r13 < 0.75 THEN 'GIA' WHEN r13 < 0.9 THEN 'IGI' WHEN r13 < 0.95 THEN 'HRD' ELSE 'AGS' END) END,
    'C' || (100000000 + g),
    'https://img.example/' || g || '.jpg', 'https://vid.example/' || g,
    CASE WHEN r14 < 0.05 THEN NULL ELSE round((ratio_base + ratio_span * r15)::numeric, 3) END,
    CASE WHEN r16 < 0.03 THEN NULL ELSE round((53 + 12 * r17)::numeric, 1) END,
    CASE WHEN r16 < 0.03 THEN NULL ELSE round((58 + 14 * r18)::numeric, 1) END,
    CASE WHEN r19 < 0.4 THEN NULL ELSE r19 < 0.85 END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.95 THEN 'NONE' ELSE 'Light' END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.97 THEN 'NONE' ELSE 'Faint' END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.96 THEN 'NONE' ELSE 'Light' END,
    CASE WHEN r21 < 0.03 THEN 'deleted' ELSE 'active' END,
    CASE WHEN r21 < 0.03 THEN now() - interval '1 day' END,
    decode(md5(g::text), 'hex'),
    now() - r22 * interval '120 days', now() - r22 * interval '60 days'
FROM (
    SELECT g, lab, fancy, shape, carats, color, clarity, cut, polish, symmetry, fluorescence,
           ratio_base, ratio_span, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18, r19, r20, r21, r22, z3,
           round(greatest(carats * price_base * exp(0.8 * ln(carats))
                 * (1.25 - 0.04 * color_rank) * (1.3 - 0.05 * clarity_rank) * exp(0.25 * z2)::numeric, 20), 2) AS cost,
           CASE WHEN lab THEN 1.79 ELSE 1.40 END + (CASE WHEN r23 < 0.5 THEN 0.06 ELSE -0.04 END) AS markup
    FROM (
        SELECT g, lab, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18, r19, r20, r21, r22, r23, z2, z3,
               r2 < 0.02 AS fancy,
               CASE WHEN lab THEN 300 ELSE 3500 END AS price_base,
               shape, round(least(10, greatest(0.18, exp(-0.25 + 0.6 * z1)))::numeric, 2) AS carats,
               color_rank, clarity_rank,
               (ARRAY['D','E','F','G','H','I','J','K','L','M'])[color_rank] AS color,
               (ARRAY['FL','IF','VVS1','VVS2','VS1','VS2','SI1','SI2','I1','I2'])[clarity_rank] AS clarity,
               CASE WHEN shape = 'ROUND' OR r5 < 0.5 THEN
                   (CASE WHEN r6 < 0.6 THEN 'EXCELLENT' WHEN r6 < 0.85 THEN 'VERY_GOOD' WHEN r6 < 0.95 THEN 'GOOD'
                         ELSE 'FAIR' END) END AS cut,
               CASE WHEN r7 < 0.55 THEN 'EXCELLENT' WHEN r7 < 0.9 THEN 'VERY_GOOD' ELSE 'GOOD' END AS polish,
               CASE WHEN r8 < 0.5 THEN 'EXCELLENT' WHEN r8 < 0.88 THEN 'VERY_GOOD' ELSE 'GOOD' END AS symmetry,
               CASE WHEN r5 < 0.6 THEN 'NONE' WHEN r5 < 0.8 THEN 'FAINT' WHEN r5 < 0.92 THEN 'MEDIUM'
                    WHEN r5 < 0.98 THEN 'STRONG' ELSE 'VERY_STRONG' END AS fluorescence,
               CASE shape WHEN 'ROUND' THEN 0.99 WHEN 'OVAL' THEN 1.30 WHEN 'EMERALD' THEN 1.30 WHEN 'PEAR' THEN 1.50
                          WHEN 'MARQUISE' THEN 1.80 WHEN 'CUSHION' THEN 1.00 ELSE 1.00 END AS ratio_base,
               CASE shape WHEN 'ROUND' THEN 0.02 ELSE 0.25 END AS ratio_span
        FROM (
            SELECT g, r1 < 0.55 AS lab, r2, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18,
                   r19, r20, r21, r22, r23, z1, z2, z3,
                   CASE WHEN r3 < 0.45 THEN 'ROUND' WHEN r3 < 0.57 THEN 'OVAL' WHEN r3 < 0.65 THEN 'EMERALD'
                        WHEN r3 < 0.72 THEN 'CUSHION' WHEN r3 < 0.78 THEN 'PRINCESS' WHEN r3 < 0.84 THEN 'PEAR'
                        WHEN r3 < 0.89 THEN 'RADIANT' WHEN r3 < 0.92 THEN 'MARQUISE' WHEN r3 < 0.95 THEN 'ASSCHER'
                        WHEN r3 < 0.98 THEN 'HEART' ELSE 'CUSHION MODIFIED' END AS shape,
                   CASE WHEN r4 < 0.08 THEN 1 WHEN r4 < 0.20 THEN 2 WHEN r4 < 0.35 THEN 3 WHEN r4 < 0.52 THEN 4
                        WHEN r4 < 0.67 THEN 5 WHEN r4 < 0.79 THEN 6 WHEN r4 < 0.88 THEN 7 WHEN r4 < 0.94 THEN 8
                        WHEN r4 < 0.98 THEN 9 ELSE 10 END AS color_rank,
                   CASE WHEN r24 < 0.01 THEN 1 WHEN r24 < 0.04 THEN 2 WHEN r24 < 0.12 THEN 3 WHEN r24 < 0.23 THEN 4
                        WHEN r24 < 0.40 THEN 5 WHEN r24 < 0.59 THEN 6 WHEN r24 < 0.79 THEN 7 WHEN r24 < 0.93 THEN 8
                        WHEN r24 < 0.98 THEN 9 ELSE 10 END AS clarity_rank
            FROM (
                SELECT g, random() r1, random() r2, random() r3, random() r4, random() r5, random() r6,
                       random() r7, random() r8, random() r9, random() r10, random() r11, random() r12,
                       random() r13, random() r14, random() r15, random() r16, random() r17, random() r18,
                       random() r19, random() r20, random() r21, random() r22, random() r23, random() r24,
                       random_normal() z1, random_normal() z2, random_normal() z3
                FROM generate_series(1, %(stones)s) g
            ) raw
        ) picked
    ) graded
) priced
"""


# --- the catalogue -----------------------------------------------------------------------------


def ensure_catalogue(url: str, stones: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM diamonds").fetchone()
        if row and row[0] == stones:
            print(f"catalogue: reusing {stones:,} stones")
            return
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("TRUNCATE diamonds CASCADE")
            conn.execute("SELECT setseed(0.42)")
            conn.execute(SEED_SQL, {"stones": stones})
        conn.execute("VACUUM (ANALYZE) diamonds")
        print(f"catalogue: generated {stones:,} stones in {time.perf_counter() - started:.0f} s")


def create_read_key(url: str) -> str:
    from api.keys import generate_key, hash_key

    key = generate_key()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_keys (key_hash, key_prefix, client_name, scopes) VALUES (%s, %s, 'bench', '{read}')",
            (hash_key(key), key[:12]),
        )
    return key


# --- the request mix ---------------------------------------------------------------------------

SHAPES = ["ROUND"] * 9 + ["OVAL"] * 3 + ["EMERALD", "CUSHION", "PRINCESS", "PEAR", "RADIANT"] * 2
COLOR_SETS = [["D", "E", "F"], ["E", "F", "G", "H"], ["G", "H", "I"], ["F", "G"]]
CLARITY_SETS = [["VVS1", "VVS2", "VS1"], ["VS1", "VS2"], ["VS2", "SI1", "SI2"], ["IF", "VVS1"]]


def _carats(rnd: random.Random) -> tuple[str, str]:
    low = rnd.choice([0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 2.0])
    return f"{low:.2f}", f"{low + rnd.choice([0.1, 0.2, 0.3, 0.5]):.2f}"


def mix(rnd: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    """(category, path) pairs in a fixed, weighted, shuffled order."""
    out: list[tuple[str, str]] = []

    def search(category: str, params: dict[str, Any]) -> None:
        out.append((category, "/api/v2/diamonds?" + urlencode(params, doseq=True)))

    for _ in range(25):
        low, high = _carats(rnd)
        search(
            "shape+lab+carats by price",
            {
                "lab_grown": rnd.choice(["true", "false"]),
                "shape": rnd.choice(SHAPES),
                "carat_min": low,
                "carat_max": high,
                "sort": "price",
                "order": "asc",
                "fields": "slim",
                "limit": 24,
            },
        )
    for _ in range(15):
        low, high = _carats(rnd)
        floor = rnd.choice([500, 1000, 2000, 4000])
        search(
            "grades+carats+price",
            {
                "shape": rnd.choice(SHAPES),
                "carat_min": low,
                "carat_max": high,
                "price_min": floor,
                "price_max": floor * rnd.choice([2, 3, 5]),
                "color": rnd.choice(COLOR_SETS),
                "clarity": rnd.choice(CLARITY_SETS),
                "sort": "price",
                "order": rnd.choice(["asc", "desc"]),
                "fields": "slim",
                "limit": 24,
            },
        )
    for _ in range(10):
        search(
            "browse",
            {
                "lab_grown": rnd.choice(["true", "false"]),
                "sort": rnd.choice(["price", "created_at"]),
                "order": rnd.choice(["asc", "desc"]),
                "fields": "slim",
                "limit": 48,
            },
        )
    for _ in range(10):
        search(
            "shape+grades by carats",
            {
                "lab_grown": rnd.choice(["true", "false"]),
                "shape": rnd.choice(SHAPES),
                "color": rnd.choice(COLOR_SETS),
                "clarity": rnd.choice(CLARITY_SETS),
                "cut": "EX",
                "sort": "carats",
                "order": "desc",
                "limit": 24,
            },
        )
    for _ in range(5):
        search("fancy", {"fancy": "true", "sort": "price", "order": "desc", "fields": "slim", "limit": 24})
    for _ in range(5):
        low, high = _carats(rnd)
        search(
            "by colour",
            {
                "shape": rnd.choice(SHAPES),
                "carat_min": low,
                "carat_max": high,
                "sort": "color",
                "order": "asc",
                "fields": "slim",
                "limit": 24,
            },
        )
    for _ in range(20):
        out.append(("detail", f"/api/v2/diamonds/{rnd.choice(ids)}"))
    rnd.shuffle(out)
    return out


def deep_pages(base: str, key: str, rnd: random.Random) -> list[tuple[str, str]]:
    """Keyset pages 5 to 40 deep of a few searches (cursor paging, count off), found by walking them."""
    pages: list[tuple[str, str]] = []
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=base, timeout=60) as client:
        for sort in ("price", "carats", "created_at", "clarity"):
            params = {
                "lab_grown": rnd.choice(["true", "false"]),
                "shape": rnd.choice(SHAPES),
                "sort": sort,
                "fields": "slim",
                "limit": 24,
                "count": "false",
            }
            cursor = None
            for depth in range(40):
                page = client.get(
                    "/api/v2/diamonds", params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
                ).json()
                cursor = page["pagination"]["next_cursor"]
                if cursor is None:
                    break
                if depth >= 4 and depth % 3 == 0:
                    pages.append(("deep keyset page", "/api/v2/diamonds?" + urlencode({**params, "cursor": cursor})))
    return pages


def request_bytes(path: str, port: int, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n"
        "Accept-Encoding: gzip\r\nUser-Agent: api-bench\r\n\r\n"
    ).encode()


# --- the load generator (a separate process) ------------------------------------------------------


async def _client(
    port: int, requests: list[tuple[str, bytes]], offset: int, stop_at: float, samples: list[tuple[str, float, int]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = offset
    while time.perf_counter() < stop_at:
        category, raw = requests[index % len(requests)]
        index += 1
        started = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
        if chunked:
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        elif length:
            await reader.readexactly(length)
        samples.append((category, time.perf_counter() - started, status))
    writer.close()


async def _load(port: int, requests: list[tuple[str, bytes]], clients: int, seconds: float) -> list[Any]:
    samples: list[tuple[str, float, int]] = []
    stop_at = time.perf_counter() + seconds
    step = max(1, len(requests) // clients)
    await asyncio.gather(*(_client(port, requests, i * step, stop_at, samples) for i in range(clients)))
    return samples


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    requests = [(category, raw.encode("latin-1")) for category, raw in spec["requests"]]
    started = time.perf_counter()
    samples = asyncio.run(_load(spec["port"], requests, spec["clients"], spec["seconds"]))
    elapsed = time.perf_counter() - started
    json.dump({"elapsed": elapsed, "samples": samples}, sys.stdout)


# --- orchestration ------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    clients: int
    requests: int
    rps: float
    p50: float
    p95: float
    p99: float
    statuses: Counter[int]
    by_category: dict[str, list[float]]
    cpu: dict[str, float]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def _children_cpu() -> float:
    # Exited, waited-for children only: the load generator (the API server is still running).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds used during a scenario by the API workers, by the PostgreSQL backends serving the
    benchmark database (other databases on the machine are not counted) and by the load generator."""

    def __init__(self, server: psutil.Process, url: str) -> None:
        self.server = server
        self.url = url

    def _backends(self) -> dict[int, float]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            ]
        return {pid: _cpu(psutil.Process(pid)) for pid in pids if psutil.pid_exists(pid)}

    def _api(self) -> float:
        return sum(_cpu(p) for p in [self.server, *self.server.children(recursive=True)])

    @contextmanager
    def measure(self, out: dict[str, float]) -> Iterator[None]:
        api, backends, children = self._api(), self._backends(), _children_cpu()
        yield
        after = self._backends()
        out["api"] = self._api() - api
        out["postgres"] = sum(cpu - backends.get(pid, 0.0) for pid, cpu in after.items())
        out["loadgen"] = _children_cpu() - children


def run_load(
    port: int, requests: list[tuple[str, bytes]], clients: int, seconds: float, meter: CpuMeter, label: str
) -> Result:
    spec = Path(tempfile.gettempdir()) / f"api-bench-{os.getpid()}.json"
    rotation = [(category, raw.decode("latin-1")) for category, raw in requests]
    spec.write_text(json.dumps({"port": port, "clients": clients, "seconds": seconds, "requests": rotation}))
    cpu: dict[str, float] = {}
    with meter.measure(cpu):
        process = subprocess.run(
            [sys.executable, "-m", "bench.api_bench", "--loadgen", str(spec)],
            capture_output=True,
            text=True,
            check=True,
        )
    spec.unlink()
    data = json.loads(process.stdout)
    samples = data["samples"]
    latencies = [sample[1] for sample in samples]
    by_category: dict[str, list[float]] = defaultdict(list)
    for category, latency, _status in samples:
        by_category[category].append(latency)
    return Result(
        label,
        clients,
        len(samples),
        len(samples) / data["elapsed"],
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.95),
        _percentile(latencies, 0.99),
        Counter(sample[2] for sample in samples),
        by_category,
        {name: used / data["elapsed"] for name, used in cpu.items()},
    )


@contextmanager
def api_server(url: str, workers: int, pool_size: int, **settings: str) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MAX_SIZE": str(pool_size),
        "DB_POOL_MIN_SIZE": "2",
        **settings,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        yield port, psutil.Process(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def report(result: Result) -> None:
    errors = {code: n for code, n in result.statuses.items() if code >= 400}
    cpu = "  ".join(f"{name} {share * 100:.0f}%" for name, share in result.cpu.items())
    print(
        f"{result.label:<30} clients {result.clients:>2}  {result.rps:>7.0f} req/s  p50 {result.p50:6.2f} ms  "
        f"p95 {result.p95:6.2f} ms  p99 {result.p99:6.2f} ms  n={result.requests:<6} "
        f"{'errors ' + str(errors) if errors else ''}  cpu: {cpu}"
    )


def report_categories(result: Result) -> None:
    for category, values in sorted(result.by_category.items()):
        print(
            f"    {category:<28} n={len(values):<5} p50 {_percentile(values, 0.5):6.2f} ms  "
            f"p99 {_percentile(values, 0.99):6.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stones", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured scenario")
    parser.add_argument("--database-url", default=None, help="reuse this database (seeded if needed)")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args.loadgen)
        return
    with _database(args.database_url) as url:
        ensure_catalogue(url, args.stones)
        key = create_read_key(url)
        with psycopg.connect(url) as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id::text FROM diamonds WHERE status = 'active' ORDER BY md5(id::text) LIMIT 2000"
                ).fetchall()
            ]
        print(f"api: uvicorn, {args.workers} worker process(es); load generator: 1 process, asyncio, keep-alive")
        with api_server(url, args.workers, pool_size=16) as (port, server):
            rnd = random.Random(7)
            paths = mix(rnd, ids) + deep_pages(f"http://127.0.0.1:{port}", key, rnd)
            requests = [(category, request_bytes(path, port, key)) for category, path in paths]
            health = [("health", request_bytes("/api/health", port, key))]
            meter = CpuMeter(server, url)
            run_load(port, requests, 8, 3.0, meter, "warm-up")
            print(
                f"mix: {len(requests)} requests in rotation; "
                + ", ".join(f"{c} {n}" for c, n in Counter(c for c, _ in requests).most_common())
            )
            for label, rotation in (("baseline GET /api/health", health), ("search mix", requests)):
                measure(port, rotation, meter, label, args.duration)
        with api_server(url, args.workers, pool_size=16, API_PAGE_CACHE_MB="0") as (port, server):
            requests = [(category, request_bytes(path, port, key)) for category, path in paths]
            meter = CpuMeter(server, url)
            run_load(port, requests, 8, 3.0, meter, "warm-up")
            measure(port, requests, meter, "search mix, no page cache", args.duration)


def measure(port: int, rotation: list[tuple[str, bytes]], meter: CpuMeter, label: str, seconds: float) -> None:
    for clients in (1, 32):
        result = run_load(port, rotation, clients, seconds, meter, label)
        report(result)
        if clients == 1 and len(rotation) > 1:
            report_categories(result)


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        asyncio.run(migrate(url))
        yield url
        return
    with temporary_database() as created:
        yield created


if __name__ == "__main__":
    main()
