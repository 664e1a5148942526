"""The mapper never raises, and whatever it maps fits the `diamonds` columns as the migration
declares them (types are read from the SQL, so a schema change that breaks the mapper fails here)."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond, MappingFailure, map_item
from shared import grades
from tests.consolidator.items import nivoda_item

MIGRATION = Path(__file__).parents[2] / "shared" / "db" / "migrations" / "0001_initial.sql"


def diamond_columns() -> dict[str, str]:
    """Column name -> declared type (e.g. "numeric(6, 2)", "text", "boolean") of `diamonds`."""
    sql = MIGRATION.read_text()
    body = re.search(r"CREATE TABLE diamonds \((.*?)\n\);", sql, re.S)
    assert body is not None
    columns = {}
    for line in body.group(1).splitlines():
        match = re.match(r"\s+([a-z_]+)\s+(numeric\(\d+, \d+\)|[a-z]+)", line)
        if match and match.group(1) not in {"UNIQUE", "CHECK"}:
            columns[match.group(1)] = match.group(2)
    return columns


COLUMNS = diamond_columns()
NUMERIC = re.compile(r"numeric\((\d+), (\d+)\)")

special_text = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "NaN", "Infinity", "-0", "1e999", "1e-999", "0.005", "9" * 60, "é", "ROUND"]
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**5000), max_value=10**5000),
    st.floats(),
    st.text(max_size=20),
    special_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    return found


PATHS = _paths(nivoda_item())


@st.composite
def mutated_items(draw: st.DrawFn) -> dict[str, Any]:
    """A realistic item with a few fields (at any depth) replaced by arbitrary JSON."""
    item = copy.deepcopy(nivoda_item())
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4)):
        node: Any = item
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.get(key)
        if isinstance(node, dict):
            node[path[-1]] = draw(json_values)
    return item


def assert_storable(diamond: MappedDiamond) -> None:
    for column in MAPPED_COLUMNS:
        value = getattr(diamond, column)
        declared = COLUMNS[column]
        if value is None:
            continue
        if numeric := NUMERIC.fullmatch(declared):
            precision, scale = int(numeric.group(1)), int(numeric.group(2))
            assert isinstance(value, Decimal), column
            assert value.as_tuple().exponent == -scale, (column, value)
            assert abs(value) < Decimal(10) ** (precision - scale), (column, value)
            assert value >= 0, (column, value)
        elif declared == "text":
            assert isinstance(value, str), column
            assert value, column
            assert "\x00" not in value, column
            value.encode("utf-8")
        elif declared == "boolean":
            assert isinstance(value, bool), column
        elif declared == "jsonb":
            assert isinstance(value, list), column
            assert value, column
            for image in value:
                assert set(image) == {"id", "url", "displayIndex"}
                assert "\x00" not in image["url"]
        else:
            raise AssertionError(f"{column}: unexpected declared type {declared}")
    assert diamond.shape in grades.SHAPES
    assert diamond.availability in grades.AVAILABILITIES
    assert diamond.carats > 0
    assert diamond.feed_price > 0
    for column, vocabulary in grades.GRADE_VOCABULARIES.items():
        assert getattr(diamond, column) in (*vocabulary, None), column


def check(item: Any) -> MappedDiamond | MappingFailure:
    result = map_item(item, feed="nivoda-natural", labgrown=False)
    if isinstance(result, MappingFailure):
        assert result.code != "mapper_error", result
        assert result.reason
    else:
        assert isinstance(result, MappedDiamond)
        assert_storable(result)
    return result


def test_every_mapped_column_exists_in_the_table() -> None:
    assert set(MAPPED_COLUMNS) <= set(COLUMNS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(item: Any) -> None:
    check(item)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_items())
def test_realistic_items_with_arbitrary_fields_map_or_fail_cleanly(item: dict[str, Any]) -> None:
    check(item)


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(
            ["carats", "length", "width", "depth", "table", "depthPercentage", "crownAngle", "pavDepth", "pavAngle"]
        ),
        st.one_of(st.floats(), st.decimals(), st.integers(), st.text(max_size=12)),
    ),
    st.one_of(st.integers(), st.floats(), st.text(max_size=12)),
)
def test_numbers_are_stored_exactly_or_refused(certificate: dict[str, Any], price: Any) -> None:
    check(nivoda_item(certificate=certificate, price=price))
