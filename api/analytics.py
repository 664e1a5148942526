"""Dashboard figures: inventory breakdowns, the price-per-carat heatmap, runs over time, consolidation.

Inventory and heatmap scan the live catalogue, so their results are cached per catalogue version
(the same version the ETag uses): a new consolidation or repricing makes them recompute.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from psycopg.rows import dict_row

from shared.runs import Conn

PRICE_PER_CARAT_EDGES: Final = tuple(
    Decimal(edge)
    for edge in (0, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000)
)
CARAT_EDGES: Final = tuple(Decimal(edge) for edge in ("0", "0.5", "1", "1.5", "2", "3", "5"))


def _feed_clause(feed: str | None) -> tuple[str, list[Any]]:
    return (" AND feed = %s", [feed]) if feed else ("", [])


async def inventory(conn: Conn, feed: str | None) -> dict[str, Any]:
    where, params = _feed_clause(feed)
    cur = await conn.execute(
        f"""SELECT availability, shape, lab_grown, count(*) FROM diamonds WHERE status = 'active'{where}
            GROUP BY GROUPING SETS ((availability), (shape, availability), (lab_grown, availability))""",
        params,
    )
    by_availability = dict.fromkeys(("available", "on_hold", "sold", "unavailable"), 0)
    shapes: dict[str, dict[str, int]] = {}
    kinds = {"natural": {"total": 0, "available": 0}, "lab_grown": {"total": 0, "available": 0}}
    for availability, shape, lab_grown, count in await cur.fetchall():
        if shape is not None:
            entry = shapes.setdefault(shape, {"total": 0, "available": 0})
        elif lab_grown is not None:
            entry = kinds["lab_grown" if lab_grown else "natural"]
        else:
            by_availability[availability] = count
            continue
        entry["total"] += count
        if availability == "available":
            entry["available"] += count
    return {
        "feed": feed,
        "total": sum(by_availability.values()),
        "by_availability": by_availability,
        "by_shape": [
            {"shape": shape, **counts} for shape, counts in sorted(shapes.items(), key=lambda item: -item[1]["total"])
        ],
        "by_origin": kinds,
    }


@dataclass(frozen=True)
class HeatmapQuery:
    feed: str | None
    lab_grown: bool | None
    availability: str | None


async def price_per_carat_heatmap(conn: Conn, query: HeatmapQuery) -> dict[str, Any]:
    """Stones per (price-per-carat bucket, carat band): the density the scheduler partitions by."""
    clauses, params = ["status = 'active'"], []
    for column, value in (("feed", query.feed), ("lab_grown", query.lab_grown), ("availability", query.availability)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    cur = await conn.execute(
        f"""SELECT width_bucket(price_per_carat, %s::numeric[]), width_bucket(carats, %s::numeric[]), count(*)
            FROM diamonds WHERE {" AND ".join(clauses)} GROUP BY 1, 2""",
        [list(PRICE_PER_CARAT_EDGES), list(CARAT_EDGES), *params],
    )
    cells = [[0] * len(CARAT_EDGES) for _ in PRICE_PER_CARAT_EDGES]
    for price_bucket, carat_bucket, count in await cur.fetchall():
        # width_bucket numbers the buckets from 1; values below the first edge cannot occur (>= 0).
        cells[price_bucket - 1][carat_bucket - 1] += count
    buckets = []
    for index, low in enumerate(PRICE_PER_CARAT_EDGES):
        high = PRICE_PER_CARAT_EDGES[index + 1] if index + 1 < len(PRICE_PER_CARAT_EDGES) else None
        buckets.append({"min_price_per_carat": low, "max_price_per_carat": high, "count": sum(cells[index])})
    carat_bands = [
        {"min_carats": low, "max_carats": CARAT_EDGES[i + 1] if i + 1 < len(CARAT_EDGES) else None}
        for i, low in enumerate(CARAT_EDGES)
    ]
    return {"buckets": buckets, "carat_bands": carat_bands, "cells": cells, "total": sum(map(sum, cells))}


_RUNS = """
SELECT r.run_id, r.feed, r.run_type, r.status, r.status_reason, r.forced, r.started_at, r.ingestion_completed_at,
       r.consolidation_started_at, r.consolidation_completed_at, r.completed_at, r.estimated_records,
       r.expected_partitions, coalesce(p.records, 0) AS records_fetched, r.consolidation_processed,
       r.diamonds_inserted, r.diamonds_updated, r.diamonds_unchanged, r.diamonds_deleted,
       extract(epoch FROM coalesce(r.completed_at, now()) - r.started_at) AS duration_s,
       extract(epoch FROM r.consolidation_completed_at - r.consolidation_started_at) AS consolidation_s
FROM run_metadata r
LEFT JOIN LATERAL (SELECT sum(records_seen) AS records FROM partition_progress WHERE run_id = r.run_id) p ON true
WHERE r.started_at >= now() - make_interval(days => %s){feed}
ORDER BY r.started_at DESC
LIMIT %s
"""


async def runs_over_time(conn: Conn, feed: str | None, days: int, limit: int) -> list[dict[str, Any]]:
    where, params = _feed_clause(feed)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_RUNS.format(feed=where.replace("feed", "r.feed")), [days, *params, limit])
    rows = await cur.fetchall()
    for row in rows:
        duration = row["duration_s"]
        row["duration_s"] = float(duration) if duration is not None else None
        consolidation = row.pop("consolidation_s")
        row["consolidation_duration_s"] = float(consolidation) if consolidation is not None else None
        row["throughput_per_s"] = (
            round(row["records_fetched"] / float(duration), 2) if duration and row["records_fetched"] else None
        )
    return rows


_CONSOLIDATION = """
SELECT f.feed,
       (SELECT count(*) FROM raw_pending rp WHERE rp.feed = f.feed) AS pending,
       (SELECT count(*) FROM raw_diamonds_nivoda rd WHERE rd.feed = f.feed) AS raw_total,
       (SELECT count(*) FROM diamonds d WHERE d.feed = f.feed AND d.status = 'active') AS live,
       r.run_id, r.status, r.estimated_records, r.consolidation_processed, r.consolidation_errors,
       r.consolidation_started_at, r.consolidation_completed_at
FROM feeds f
LEFT JOIN LATERAL (
    SELECT * FROM run_metadata m WHERE m.feed = f.feed AND m.consolidation_started_at IS NOT NULL
    ORDER BY m.consolidation_started_at DESC LIMIT 1
) r ON true
ORDER BY f.feed
"""


async def consolidation_progress(conn: Conn) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_CONSOLIDATION)
    out = []
    for row in await cur.fetchall():
        run = None
        if row["run_id"] is not None:
            pending, processed = row["pending"], row["consolidation_processed"]
            done = (
                processed / (processed + pending) if row["status"] == "consolidating" and processed + pending else None
            )
            run = {
                "run_id": row["run_id"],
                "status": row["status"],
                "processed": processed,
                "errors": row["consolidation_errors"],
                "started_at": row["consolidation_started_at"],
                "completed_at": row["consolidation_completed_at"],
                "progress": 1.0 if row["consolidation_completed_at"] else done,
            }
        out.append(
            {
                "feed": row["feed"],
                "pending": row["pending"],
                "raw_total": row["raw_total"],
                "live_diamonds": row["live"],
                "last_consolidation": run,
            }
        )
    return out
