"""Building small catalogues for API tests, and an independent Python oracle of the search semantics."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from shared import grades

COLUMNS = (
    "id",
    "feed",
    "supplier_stone_id",
    "offer_id",
    "shape",
    "carats",
    "color",
    "clarity",
    "cut",
    "polish",
    "symmetry",
    "fluorescence_intensity",
    "fancy_color",
    "fancy_intensity",
    "lab_grown",
    "feed_price",
    "price_per_carat",
    "retail_price",
    "markup_ratio",
    "rating",
    "availability",
    "certificate_lab",
    "ratio",
    "table_pct",
    "depth_pct",
    "eye_clean",
    "brown",
    "green",
    "milky",
    "status",
    "deleted_at",
    "row_hash",
    "created_at",
)


def stone(**values: Any) -> dict[str, Any]:
    """One diamonds row with plausible defaults; `values` override any column."""
    ident = values.get("id") or str(uuid.uuid4())
    lab = values.get("lab_grown", False)
    feed_price = Decimal(values.get("feed_price", "1000.00"))
    carats = Decimal(values.get("carats", "1.00"))
    row: dict[str, Any] = {
        "id": ident,
        "feed": "nivoda-labgrown" if lab else "nivoda-natural",
        "supplier_stone_id": f"s-{ident}",
        "offer_id": f"o-{ident}",
        "shape": "ROUND",
        "carats": carats,
        "color": "G",
        "clarity": "VS1",
        "cut": "EXCELLENT",
        "polish": "EXCELLENT",
        "symmetry": "EXCELLENT",
        "fluorescence_intensity": "NONE",
        "fancy_color": None,
        "fancy_intensity": None,
        "lab_grown": lab,
        "feed_price": feed_price,
        "price_per_carat": (feed_price / carats).quantize(Decimal("0.01")),
        "retail_price": (feed_price * Decimal("1.4")).quantize(Decimal("0.01")),
        "markup_ratio": Decimal("1.4000"),
        "rating": 5,
        "availability": "available",
        "certificate_lab": "GIA",
        "ratio": Decimal("1.000"),
        "table_pct": Decimal("57.00"),
        "depth_pct": Decimal("62.00"),
        "eye_clean": True,
        "brown": None,
        "green": None,
        "milky": None,
        "status": "active",
        "deleted_at": None,
        "row_hash": uuid.UUID(ident).bytes,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    row.update(values)
    if row["status"] == "deleted" and row["deleted_at"] is None:
        row["deleted_at"] = datetime(2026, 2, 1, tzinfo=UTC)
    return row


def insert(conn: psycopg.Connection[Any], stones: Iterable[dict[str, Any]]) -> None:
    columns = ", ".join(COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO diamonds ({columns}) VALUES ({marks})", [[s[c] for c in COLUMNS] for s in stones])
    bump_version(conn)


def bump_version(conn: psycopg.Connection[Any], feed: str = "nivoda-natural") -> None:
    conn.execute("UPDATE dataset_versions SET version = version + 1, updated_at = now() WHERE feed = %s", (feed,))


# --- a random catalogue with many ties and NULLs ----------------------------------------------------

_FANCY = ("Yellow", "Pink", "Brown-Pink", "Orangy Brown", "Blue")
_LABS = ("GIA", "IGI", "HRD", None)
_MONEY = Decimal("0.01")


def random_catalogue(seed: int, size: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)

    def maybe(value: Any, none_share: float = 0.2) -> Any:
        return None if rnd.random() < none_share else value

    stones = []
    for _ in range(size):
        fancy = rnd.random() < 0.2
        carats = Decimal(rnd.choice(["0.50", "0.75", "1.00", "1.01", "1.50", "2.00", "3.10"]))
        cost = Decimal(rnd.choice([300, 950, 1000, 2500, 7000])) + Decimal(rnd.choice([0, 0, 25])) / 100
        stones.append(
            stone(
                id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                lab_grown=rnd.random() < 0.4,
                shape=rnd.choice(["ROUND", "OVAL", "PEAR", "CUSHION MODIFIED"]),
                carats=carats,
                color="FANCY" if fancy else maybe(rnd.choice(grades.COLORS[:8]), 0.1),
                clarity=maybe(rnd.choice(grades.CLARITIES[:8]), 0.1),
                cut=maybe(rnd.choice(grades.CUT_GRADES[:4])),
                fluorescence_intensity=maybe(rnd.choice(grades.FLUORESCENCE_INTENSITIES[:4])),
                fancy_color=rnd.choice(_FANCY) if fancy else None,
                fancy_intensity=rnd.choice(grades.FANCY_INTENSITIES[4:7]) if fancy else None,
                feed_price=cost,
                price_per_carat=(cost / carats).quantize(_MONEY),
                retail_price=(cost * Decimal(rnd.choice(["1.4", "1.79"]))).quantize(_MONEY),
                rating=maybe(rnd.randint(1, 10)),
                availability=rnd.choice(["available"] * 6 + ["on_hold", "sold", "unavailable"]),
                certificate_lab=rnd.choice(_LABS),
                ratio=maybe(Decimal(rnd.choice(["1.000", "1.350", "1.500"]))),
                table_pct=maybe(Decimal(rnd.choice(["55.00", "57.00", "60.50"]))),
                depth_pct=maybe(Decimal(rnd.choice(["60.00", "62.00", "64.00"]))),
                eye_clean=rnd.choice([True, False, None]),
                brown=rnd.choice([None, "NONE", "Light"]),
                green=rnd.choice([None, "NONE", "N/A"]),
                milky=rnd.choice([None, "NONE", "", "Faint"]),
                status="deleted" if rnd.random() < 0.05 else "active",
                created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rnd.randint(0, 40)),
            )
        )
    return stones


# --- the oracle ------------------------------------------------------------------------------------

RANGE_COLUMNS = {
    "carat": "carats",
    "price": "retail_price",
    "price_per_carat": "price_per_carat",
    "ratio": "ratio",
    "table": "table_pct",
    "depth": "depth_pct",
    "rating": "rating",
}
LIST_COLUMNS = {
    "feed": "feed",
    "shape": "shape",
    "color": "color",
    "clarity": "clarity",
    "cut": "cut",
    "polish": "polish",
    "symmetry": "symmetry",
    "fluorescence_intensity": "fluorescence_intensity",
    "fancy_color": "fancy_color",
    "fancy_intensity": "fancy_intensity",
    "lab": "certificate_lab",
    "availability": "availability",
}
RANKS = {
    "color": grades.COLORS,
    "clarity": grades.CLARITIES,
    "cut": grades.CUT_GRADES,
    "fluorescence_intensity": grades.FLUORESCENCE_INTENSITIES,
}
SORT_COLUMNS = {
    "created_at": "created_at",
    "price": "retail_price",
    "price_per_carat": "price_per_carat",
    "carats": "carats",
    "ratio": "ratio",
    "rating": "rating",
    "fancy_color": "fancy_color",
    "certificate_lab": "certificate_lab",
}
_NO_TINT = {"", "NONE", "N/A", "NO"}


def matches(row: dict[str, Any], params: dict[str, Any]) -> bool:
    """The documented search semantics, written independently of the SQL."""
    if row["status"] != "active":
        return False
    lists = {name: params[name] for name in LIST_COLUMNS if name in params}
    lists.setdefault("availability", ["available"])
    for name, values in lists.items():
        if row[LIST_COLUMNS[name]] not in values:
            return False
    for name, column in RANGE_COLUMNS.items():
        value = row[column]
        low, high = params.get(f"{name}_min"), params.get(f"{name}_max")
        if low is not None and (value is None or value < Decimal(str(low))):
            return False
        if high is not None and (value is None or value > Decimal(str(high))):
            return False
    if "lab_grown" in params and row["lab_grown"] != params["lab_grown"]:
        return False
    if "fancy" in params and (row["fancy_color"] is not None) != params["fancy"]:
        return False
    if "eye_clean" in params and row["eye_clean"] is not params["eye_clean"]:
        return False
    if params.get("no_bgm"):
        return all((row[c] or "").strip().upper() in _NO_TINT for c in ("brown", "green", "milky"))
    return True


def sort_value(row: dict[str, Any], sort: str) -> Any:
    if sort in RANKS:
        value = row[sort]
        return RANKS[sort].index(value) + 1 if value in RANKS[sort] else None
    return row[SORT_COLUMNS[sort]]


def expected_order(rows: Sequence[dict[str, Any]], params: dict[str, Any], sort: str, order: str) -> list[str]:
    """Ids of the matching stones in `sort order NULLS LAST, id order`."""
    found = [row for row in rows if matches(row, params)]
    reverse = order == "desc"
    with_value = sorted(
        (r for r in found if sort_value(r, sort) is not None),
        key=lambda r: (sort_value(r, sort), r["id"]),
        reverse=reverse,
    )
    without = sorted((r for r in found if sort_value(r, sort) is None), key=lambda r: r["id"], reverse=reverse)
    return [r["id"] for r in with_value + without]
