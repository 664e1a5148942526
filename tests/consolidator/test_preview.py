"""Preview: how a candidate rule set would change catalogue prices, computed in mergeable parts."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consolidator.preview import PreviewReport, PriceChange, preview
from consolidator.pricing import DEFAULT_BASE_MARGINS, PricingInput, PricingRule, RuleSet, price
from tests.consolidator.test_pricing import stone

D = Decimal

CANDIDATE = RuleSet(
    2,
    (
        PricingRule(id=1, priority=10, stone_type="natural", shapes=["ROUND"], markup_multiplier=D("1.5")),
        PricingRule(id=2, priority=20, stone_type="fancy", markup_multiplier=D("1.5")),
    ),
    DEFAULT_BASE_MARGINS,
)

# (stone, current retail price) and, worked by hand, the candidate price:
A = (stone(supplier_stone_id="A", feed_price=D("1000.00")), D("1400.00"))  # rule 1: 1500.00, +100.00
B = (stone(supplier_stone_id="B", shape="OVAL", feed_price=D("2000.00")), D("2800.00"))  # base 1.40: 2800.00, =
C = (stone(supplier_stone_id="C", lab_grown=True, feed_price=D("500.00")), D("1000.00"))  # base 1.79: 895.00, -105.00
E = (stone(supplier_stone_id="E", fancy_color="Pink", feed_price=D("10.01")), D("14.01"))  # rule 2: 15.015 -> 15.02
CATALOGUE = [A, B, C, E]


def test_hand_computed_example() -> None:
    report = preview(iter(CATALOGUE), CANDIDATE, max_examples=2)
    assert (report.stones, report.changed, report.increased, report.decreased) == (4, 3, 2, 1)
    assert report.total_delta == D("-3.99")  # +100.00 - 105.00 + 1.01
    assert report.total_current == D("5214.01")
    assert report.total_candidate == D("5210.02")
    assert report.examples == (
        PriceChange("C", "nivoda-natural", D("1000.00"), D("895.00"), None),
        PriceChange("A", "nivoda-natural", D("1400.00"), D("1500.00"), 1),
    )
    assert [change.delta for change in report.examples] == [D("-105.00"), D("100.00")]


def test_unchanged_catalogue() -> None:
    report = preview([B], CANDIDATE)
    assert (report.stones, report.changed, report.total_delta, report.examples) == (1, 0, D("0.00"), ())


def test_empty_input() -> None:
    assert preview([], CANDIDATE) == PreviewReport.empty()


def test_batches_merge_to_the_whole() -> None:
    whole = preview(CATALOGUE, CANDIDATE, max_examples=3)
    first, second = preview(CATALOGUE[:2], CANDIDATE, max_examples=3), preview(CATALOGUE[2:], CANDIDATE, max_examples=3)
    assert first.merge(second) == whole
    assert second.merge(first) == whole
    assert PreviewReport.empty(3).merge(whole) == whole


def test_examples_are_bounded() -> None:
    many = [(stone(supplier_stone_id=f"s{i}", feed_price=D(1000 + i)), D("1.00")) for i in range(100)]
    report = preview(many, CANDIDATE, max_examples=5)
    assert report.changed == 100
    assert [change.supplier_stone_id for change in report.examples] == ["s99", "s98", "s97", "s96", "s95"]
    assert preview(many, CANDIDATE, max_examples=0).examples == ()
    with pytest.raises(ValueError, match="negative"):
        preview(many, CANDIDATE, max_examples=-1)


@st.composite
def catalogue(draw: st.DrawFn) -> list[tuple[PricingInput, Decimal]]:
    size = draw(st.integers(0, 30))
    return [
        (
            stone(
                supplier_stone_id=f"s{index}",
                shape=draw(st.sampled_from(["ROUND", "OVAL"])),
                lab_grown=draw(st.booleans()),
                fancy_color=draw(st.none() | st.just("Blue")),
                feed_price=draw(st.decimals(D("0.01"), D("50000"), places=2)),
            ),
            draw(st.decimals(D("0.00"), D("90000"), places=2)),
        )
        for index in range(size)
    ]


@given(catalogue(), st.lists(st.integers(0, 30), max_size=4), st.integers(0, 6))
def test_any_split_merges_to_the_whole(
    stones: list[tuple[PricingInput, Decimal]], cuts: list[int], max_examples: int
) -> None:
    bounds = sorted({0, len(stones), *(min(cut, len(stones)) for cut in cuts)})
    parts = [preview(stones[lo:hi], CANDIDATE, max_examples=max_examples) for lo, hi in pairwise(bounds)]
    whole = preview(stones, CANDIDATE, max_examples=max_examples)
    assert reduce(PreviewReport.merge, parts, PreviewReport.empty(max_examples)) == whole
    assert whole.changed == whole.increased + whole.decreased
    assert whole.total_candidate - whole.total_current == whole.total_delta
    # the examples are the largest changes, found here by brute force
    changes = [
        PriceChange(diamond.supplier_stone_id, diamond.feed, current, new, rule_id)
        for diamond, current in stones
        if (new := price(diamond, CANDIDATE).retail_price) != current
        for rule_id in [price(diamond, CANDIDATE).pricing_rule_id]
    ]
    changes.sort(key=lambda change: (abs(change.delta), change.feed, change.supplier_stone_id), reverse=True)
    assert whole.examples == tuple(changes[:max_examples])
    assert whole.changed == len(changes)
    assert whole.total_delta == sum((change.delta for change in changes), D("0.00"))
