"""The staging row the writer sends for each priced diamond: its columns, its values and the digest
that decides whether a stored stone is rewritten. The digest must not change for an unchanged stone
(else every consolidation after an upgrade rewrites the whole catalogue) and must change with any
column."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from uuid import UUID

import msgspec
import pytest

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond, map_item
from consolidator.pricing import PriceOutcome
from consolidator.writer import DIGESTED_COLUMNS, STAGED_COLUMNS, staged_row
from tests.consolidator.items import nivoda_item

RUN = UUID("8d0b7c1e-7a51-4c57-9d43-1f6d2b0f9a11")
OUTCOME = PriceOutcome(Decimal("2100.70"), Decimal("1.4000"), 3, 7)


def diamond(**changes: object) -> MappedDiamond:
    result = map_item(nivoda_item(), feed="nivoda-natural", labgrown=False)
    assert isinstance(result, MappedDiamond), result
    return msgspec.structs.replace(result, **changes)


def test_a_staged_row_holds_every_column_in_order_with_its_value() -> None:
    stone = diamond()
    row = json.loads(staged_row(stone, OUTCOME, RUN))
    assert tuple(row) == STAGED_COLUMNS
    for column in MAPPED_COLUMNS:
        value = getattr(stone, column)
        assert row[column] == (str(value) if isinstance(value, Decimal) else value), column
    assert row["retail_price"] == "2100.70"
    assert row["markup_ratio"] == "1.4000"  # the scale is kept: "1.4" would digest differently
    assert (row["pricing_rule_id"], row["rating"], row["last_run_id"]) == (3, 7, str(RUN))


def test_the_digest_covers_exactly_the_mapped_and_priced_columns() -> None:
    stone = diamond()
    row = json.loads(staged_row(stone, OUTCOME, RUN))
    # The digest's definition since stones were first stored: blake2b-128 of the compact JSON
    # object of the digested columns, in order, decimals as strings.
    values = [getattr(stone, column) for column in MAPPED_COLUMNS] + [
        OUTCOME.retail_price,
        OUTCOME.markup_ratio,
        OUTCOME.pricing_rule_id,
        OUTCOME.rating,
    ]
    document = dict(zip(DIGESTED_COLUMNS, values, strict=True))
    expected = hashlib.blake2b(msgspec.json.encode(document), digest_size=16).hexdigest()
    assert row["row_hash"] == "\\x" + expected
    # The run that wrote a row is not part of it.
    other_run = json.loads(staged_row(stone, OUTCOME, UUID(int=1)))
    assert other_run["row_hash"] == row["row_hash"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("availability", "on_hold"),
        ("hold_id", "hold-9"),
        ("video_url", "https://v360.nivoda.net/other.html"),
        ("color", "H"),
        ("feed_price", Decimal("1500.51")),
        ("carats", Decimal("1.5")),  # equal as a number, not as a stored value
        ("meta_images", None),
    ],
)
def test_any_changed_column_changes_the_digest(column: str, value: object) -> None:
    before = json.loads(staged_row(diamond(), OUTCOME, RUN))["row_hash"]
    after = json.loads(staged_row(diamond(**{column: value}), OUTCOME, RUN))["row_hash"]
    assert after != before


def test_a_changed_price_changes_the_digest() -> None:
    before = json.loads(staged_row(diamond(), OUTCOME, RUN))["row_hash"]
    repriced = PriceOutcome(Decimal("2100.71"), OUTCOME.markup_ratio, OUTCOME.pricing_rule_id, OUTCOME.rating)
    assert json.loads(staged_row(diamond(), repriced, RUN))["row_hash"] != before
