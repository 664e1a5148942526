"""What the mapper and the pricing engine produce is stored by the real schema exactly as produced:
no overflow, no rounding by PostgreSQL, no type surprises (the writer relies on this to compare
rows without rewriting them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond, map_item
from consolidator.pricing import (
    DEFAULT_BASE_MARGINS,
    MAX_MARKUP_RATIO,
    PriceOutcome,
    PricingRule,
    RuleSet,
    default_rules,
    price,
    rules_snapshot,
    ruleset_from_snapshot,
)
from shared.db.pool import Pool
from tests.consolidator.items import DROP, nivoda_item

PRICED_COLUMNS = ("retail_price", "markup_ratio", "pricing_rule_id", "rating")
LARGEST = {
    "carats": 9999.99,
    "length": 9999.99,
    "width": 10.0,
    "depth": 9999.99,
    "table": 999.99,
    "depthPercentage": 999.99,
    "crownAngle": 999.99,
    "crownHeight": 999.99,
    "pavAngle": 999.99,
    "pavDepth": 999.99,
}


def mapped(item: dict[str, Any], feed: str = "nivoda-natural", labgrown: bool = False) -> MappedDiamond:
    result = map_item(item, feed=feed, labgrown=labgrown)
    assert isinstance(result, MappedDiamond), result
    return result


def boundary_stones() -> list[MappedDiamond]:
    return [
        mapped(nivoda_item()),
        mapped(nivoda_item(id="o-max", diamond={"id": "s-max"}, price=9_999_999_999, certificate=LARGEST)),
        mapped(
            nivoda_item(id="o-min", diamond={"id": "s-min"}, price=1, diamond_price=0, certificate={"carats": 0.005})
        ),
        mapped(
            nivoda_item(
                id="o-fancy",
                diamond={"id": "s-fancy", "availability": "On Hold", "HoldId": "h-1", "eyeClean": "100%"},
                certificate={"f_color": "PINK BROWN", "f_intensity": "FANCY_DEEP", "f_overtone": "ORANGY BROWN"},
                supplier={"name": "Diamants Élégants 株式会社 💎"},
            ),
            feed="nivoda-labgrown",
            labgrown=True,
        ),
        mapped(
            nivoda_item(
                id="o-bare",
                diamond={"id": "s-bare", "availability": None, "supplier": None, "eyeClean": None},
                diamond_price=DROP,
                certificate=dict.fromkeys(
                    ("color", "clarity", "cut", "length", "width", "table", "product_images", "lab")
                ),
            )
        ),
    ]


async def test_mapped_and_priced_rows_are_stored_exactly(db: Pool) -> None:
    seed = RuleSet(
        1, tuple(PricingRule(id=i + 1, **row) for i, row in enumerate(default_rules())), DEFAULT_BASE_MARGINS
    )
    dearest = RuleSet(
        1,
        (PricingRule(id=99, priority=1, markup_multiplier=MAX_MARKUP_RATIO, rating=10),),
        {
            "natural": Decimal("40"),
            "lab": Decimal("79"),
            "fancy": Decimal("40"),
        },
    )
    rows: dict[str, tuple[MappedDiamond, PriceOutcome]] = {}
    for diamond in boundary_stones():
        rules = dearest if diamond.supplier_stone_id == "s-max" else seed
        rows[diamond.supplier_stone_id] = (diamond, price(diamond, rules))
    assert rows["s-max"][1].retail_price == Decimal("9999999999.00")

    columns = (*MAPPED_COLUMNS, *PRICED_COLUMNS)
    insert = sql.SQL("INSERT INTO diamonds ({}, row_hash) VALUES ({}, '\\x00')").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
    )
    async with db.connection() as conn:
        for diamond, outcome in rows.values():
            values = [getattr(diamond, column) for column in MAPPED_COLUMNS]
            values[MAPPED_COLUMNS.index("meta_images")] = (
                None if diamond.meta_images is None else Jsonb(diamond.meta_images)
            )
            await conn.execute(insert, [*values, *(getattr(outcome, column) for column in PRICED_COLUMNS)])
        select = sql.SQL("SELECT supplier_stone_id, {} FROM diamonds").format(
            sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        stored = await (await conn.execute(select)).fetchall()

    assert len(stored) == len(rows)
    for stone_id, *values in stored:
        diamond, outcome = rows[stone_id]
        expected = [*(getattr(diamond, c) for c in MAPPED_COLUMNS), *(getattr(outcome, c) for c in PRICED_COLUMNS)]
        for column, got, want in zip(columns, values, expected, strict=True):
            assert got == want, (stone_id, column)
            if isinstance(want, Decimal):
                assert str(got) == str(want), (stone_id, column)  # same scale: no rounding by PostgreSQL


async def test_seed_rules_and_snapshots_fit_their_tables(db: Pool) -> None:
    rule_columns = list(default_rules()[0])
    insert = sql.SQL("INSERT INTO pricing_rules ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, rule_columns)), sql.SQL(", ").join(sql.Placeholder() * len(rule_columns))
    )
    async with db.connection() as conn:
        for row in default_rules():
            await conn.execute(insert, [row[column] for column in rule_columns])
        cur = await conn.execute(
            sql.SQL("SELECT id, {} FROM pricing_rules ORDER BY priority").format(
                sql.SQL(", ").join(map(sql.Identifier, rule_columns))
            )
        )
        loaded = [
            PricingRule(id=row[0], **dict(zip(rule_columns, row[1:], strict=True))) for row in await cur.fetchall()
        ]
        margins = dict(await (await conn.execute("SELECT stone_type, margin_pct FROM pricing_base_margins")).fetchall())
        rules = RuleSet(0, tuple(loaded), margins)
        assert [(r.priority, r.cost_min, r.cost_max, r.margin_modifier) for r in rules.rules] == [
            (row["priority"], row["cost_min"], row["cost_max"], row["margin_modifier"]) for row in default_rules()
        ]

        cur = await conn.execute(
            "INSERT INTO pricing_rule_versions (snapshot, reason) VALUES (%s, 'test') RETURNING version, snapshot",
            (Jsonb(rules_snapshot(rules)),),
        )
        stored = await cur.fetchone()
    assert stored is not None
    version, snapshot = stored
    restored = ruleset_from_snapshot(version, snapshot)
    assert restored.version == version
    assert restored.rules == rules.rules
    assert restored.base_margins == rules.base_margins
