"""The typed DiamondQuery/Order model and the feed variants' base queries (pure, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.feed.query import CREATED_AT_ASC, DateRange, DiamondQuery, Order, PriceRange, SizeRange
from shared.feed.variants import ALL_SHAPES, VARIANTS, base_query, with_price_range
from shared.settings import FEED_VARIANTS

FROM = datetime(2026, 1, 1, tzinfo=UTC)
TO = datetime(2026, 1, 2, 6, 30, 15, 123456, tzinfo=UTC)


def test_price_range_serialises_from_key_and_numbers() -> None:
    wire = DiamondQuery(dollar_per_carat=PriceRange(from_=Decimal("500"), to=Decimal("1499.99"))).to_variables()
    assert wire == {"dollar_per_carat": {"from": 500, "to": 1499.99}}
    assert isinstance(wire["dollar_per_carat"]["from"], int)


def test_dates_travel_as_utc_iso_strings_with_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    wire = DateRange(from_=FROM.astimezone(plus_two), to=TO).model_dump(mode="json", by_alias=True)
    assert wire == {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T06:30:15.123Z"}


@pytest.mark.parametrize(
    "build",
    [
        lambda: DateRange(from_=datetime(2026, 1, 1)),  # naive
        lambda: DateRange(from_=TO, to=FROM),  # inverted
        lambda: PriceRange(from_=Decimal(10), to=Decimal(5)),
        lambda: PriceRange(from_=Decimal(-1)),
        lambda: SizeRange(to=Decimal("NaN")),
        lambda: DiamondQuery.model_validate({"has_video": True}),  # not a field we send
        lambda: Order.model_validate({"type": "cheapest", "direction": "ASC"}),
    ],
)
def test_invalid_values_are_refused(build) -> None:
    with pytest.raises(ValidationError):
        build()


def test_wire_names_are_nivodas() -> None:
    query = DiamondQuery(
        dollar_value=PriceRange(from_=Decimal(1)),
        sizes=SizeRange(from_=Decimal("0.4"), to=Decimal("15.01")),
        shapes=("ROUND",),
        labgrown=False,
        updated=DateRange(from_=FROM),
        availability=("AVAILABLE", "On Hold"),
        has_image=True,
        has_v360=True,
        exclude_fair_poor_cuts=True,
        hide_memo=True,
        ids=("a", "b"),
    )
    assert query.to_variables() == {
        "dollar_value": {"from": 1},
        "sizes": {"from": 0.4, "to": 15.01},
        "shapes": ["ROUND"],
        "labgrown": False,
        "updated": {"from": "2026-01-01T00:00:00.000Z"},
        "availability": ["AVAILABLE", "On Hold"],
        "has_image": True,
        "has_v360": True,
        "excludeFairPoorCuts": True,
        "hide_memo": True,
        "ids": ["a", "b"],
    }


def test_created_at_asc_order() -> None:
    assert CREATED_AT_ASC.to_variables() == {"type": "createdAt", "direction": "ASC"}


prices = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
)


def _ordered_range(model: Any, values: tuple[Any, Any]) -> Any:
    low, high = sorted(values)
    return model(from_=low, to=high)


queries = st.builds(
    DiamondQuery,
    dollar_per_carat=st.none() | st.tuples(prices, prices).map(lambda v: _ordered_range(PriceRange, v)),
    dollar_value=st.none() | st.builds(PriceRange, from_=st.none() | prices),
    sizes=st.none() | st.tuples(prices, prices).map(lambda v: _ordered_range(SizeRange, v)),
    shapes=st.none() | st.lists(st.sampled_from(ALL_SHAPES), max_size=17).map(tuple),
    labgrown=st.none() | st.booleans(),
    updated=st.none() | st.tuples(moments, moments).map(lambda v: _ordered_range(DateRange, v)),
    availability=st.none() | st.lists(st.sampled_from(["AVAILABLE", "On Hold", "Sold", "MEMO"])).map(tuple),
    has_image=st.none() | st.booleans(),
    has_v360=st.none() | st.booleans(),
    exclude_fair_poor_cuts=st.none() | st.booleans(),
    hide_memo=st.none() | st.booleans(),
    ids=st.none() | st.lists(st.uuids().map(str), max_size=5).map(tuple),
)


@given(queries)
def test_query_round_trips_through_its_wire_form(query: DiamondQuery) -> None:
    wire = query.to_variables()
    assert DiamondQuery.from_variables(wire) == query
    assert DiamondQuery.from_variables(wire).to_variables() == wire


def test_variants_match_the_settings_vocabulary() -> None:
    assert set(VARIANTS) == set(FEED_VARIANTS)
    assert VARIANTS["nivoda-natural"].labgrown is False
    assert VARIANTS["nivoda-labgrown"].labgrown is True
    assert len(ALL_SHAPES) == len(set(ALL_SHAPES)) == 17


@pytest.mark.parametrize("only_available", [True, False])
@pytest.mark.parametrize("variant", list(VARIANTS.values()))
def test_base_query(variant, only_available: bool) -> None:
    wire = base_query(variant, updated_from=FROM, updated_to=TO, only_available=only_available).to_variables()
    expected = {
        "shapes": list(ALL_SHAPES),
        "sizes": {"from": 0.4, "to": 15.01},
        "updated": {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T06:30:15.123Z"},
        "labgrown": variant.labgrown,
        "has_image": True,
        "has_v360": True,
        "excludeFairPoorCuts": True,
        "hide_memo": True,
    }
    if only_available:
        expected["availability"] = ["AVAILABLE"]
    assert wire == expected


def test_with_price_range_adds_inclusive_per_carat_bounds_only() -> None:
    query = base_query(VARIANTS["nivoda-natural"], updated_from=FROM, updated_to=TO, only_available=True)
    banded = with_price_range(query, Decimal("500"), Decimal("749.5"))
    assert banded.dollar_per_carat == PriceRange(from_=Decimal(500), to=Decimal("749.5"))
    assert banded.model_copy(update={"dollar_per_carat": None}) == query
    with pytest.raises(ValidationError):
        with_price_range(query, Decimal(10), Decimal(5))
