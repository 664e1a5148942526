"""Pricing engine: stone types, base margins, rule matching and order, exact rounding, snapshots."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consolidator.mapper import MappedDiamond, map_item
from consolidator.pricing import (
    DEFAULT_BASE_MARGINS,
    MAX_MARKUP_RATIO,
    PriceOutcome,
    PricingInput,
    PricingRule,
    RuleError,
    RuleSet,
    default_rules,
    price,
    rules_snapshot,
    ruleset_from_snapshot,
    stone_type,
)
from shared import grades
from tests.consolidator.items import nivoda_item

D = Decimal


def stone(**overrides: Any) -> PricingInput:
    values: dict[str, Any] = {
        "supplier_stone_id": "s-1",
        "feed": "nivoda-natural",
        "shape": "ROUND",
        "carats": D("1.00"),
        "color": "G",
        "clarity": "VS1",
        "cut": "EXCELLENT",
        "lab_grown": False,
        "fancy_color": None,
        "feed_price": D("1000.00"),
    }
    values.update(overrides)
    return PricingInput(**values)


def rule(rule_id: int | None = 1, priority: int = 100, **fields: Any) -> PricingRule:
    if "markup_multiplier" not in fields and "margin_modifier" not in fields:
        fields["margin_modifier"] = D("0")
    return PricingRule(id=rule_id, priority=priority, **fields)


def ruleset(*rules: PricingRule, margins: Any = DEFAULT_BASE_MARGINS, version: int = 1) -> RuleSet:
    return RuleSet(version, tuple(rules), margins)


NO_RULES = ruleset()


# --- stone type and base margins --------------------------------------------------------------


@pytest.mark.parametrize(
    ("lab_grown", "fancy_color", "expected"),
    [(False, None, "natural"), (True, None, "lab"), (False, "Pink", "fancy"), (True, "Pink", "fancy")],
)
def test_stone_type_precedence_fancy_then_lab_then_natural(
    lab_grown: bool, fancy_color: str | None, expected: str
) -> None:
    assert stone_type(stone(lab_grown=lab_grown, fancy_color=fancy_color)) == expected


@pytest.mark.parametrize(
    ("diamond", "retail", "ratio"),
    [
        (stone(), D("1400.00"), D("1.4000")),
        (stone(lab_grown=True), D("1790.00"), D("1.7900")),
        (stone(fancy_color="Blue"), D("1400.00"), D("1.4000")),
        (stone(lab_grown=True, fancy_color="Blue"), D("1400.00"), D("1.4000")),
    ],
)
def test_base_margins_40_79_40_when_no_rule_matches(diamond: PricingInput, retail: Decimal, ratio: Decimal) -> None:
    assert price(diamond, NO_RULES) == PriceOutcome(retail, ratio, None, None)


def test_base_margins_come_from_the_rule_set() -> None:
    rules = ruleset(margins={"natural": D("50"), "lab": D("100"), "fancy": D("-20.5")})
    assert price(stone(), rules).retail_price == D("1500.00")
    assert price(stone(lab_grown=True), rules).retail_price == D("2000.00")
    assert price(stone(fancy_color="Pink"), rules).retail_price == D("795.00")


# --- matching ---------------------------------------------------------------------------------


def test_catch_all_rule_matches_every_stone() -> None:
    rules = ruleset(rule(7, margin_modifier=D("5"), rating=6))
    for diamond in (stone(), stone(lab_grown=True), stone(fancy_color="Pink", color="FANCY", cut=None)):
        outcome = price(diamond, rules)
        assert (outcome.pricing_rule_id, outcome.rating) == (7, 6)
    assert price(stone(), rules).markup_ratio == D("1.4500")
    assert price(stone(lab_grown=True), rules).markup_ratio == D("1.8400")


@pytest.mark.parametrize(
    ("criterion", "matching", "not_matching"),
    [
        ({"feed": "nivoda-labgrown"}, {"feed": "nivoda-labgrown"}, {"feed": "nivoda-natural"}),
        ({"stone_type": "lab"}, {"lab_grown": True}, {"lab_grown": False}),
        ({"stone_type": "fancy"}, {"lab_grown": True, "fancy_color": "Pink"}, {"lab_grown": True}),
        ({"stone_type": "natural"}, {}, {"fancy_color": "Yellow"}),
        ({"shapes": ["OVAL", "PEAR"]}, {"shape": "PEAR"}, {"shape": "ROUND"}),
        ({"colors": ["D", "E"]}, {"color": "E"}, {"color": "F"}),
        ({"colors": ["D"]}, {"color": "D"}, {"color": None}),
        ({"clarities": ["IF", "VVS1"]}, {"clarity": "VVS1"}, {"clarity": "VVS2"}),
        ({"cuts": ["EXCELLENT"]}, {"cut": "EXCELLENT"}, {"cut": "VERY_GOOD"}),
        ({"cuts": ["EXCELLENT"]}, {"cut": "EXCELLENT"}, {"cut": None}),
        ({"carat_min": D("1.00")}, {"carats": D("1.00")}, {"carats": D("0.99")}),
        ({"carat_max": D("1.99")}, {"carats": D("1.99")}, {"carats": D("2.00")}),
        ({"cost_min": D("500.00")}, {"feed_price": D("500.00")}, {"feed_price": D("499.99")}),
        ({"cost_max": D("999.99")}, {"feed_price": D("999.99")}, {"feed_price": D("1000.00")}),
    ],
)
def test_each_criterion(criterion: dict[str, Any], matching: dict[str, Any], not_matching: dict[str, Any]) -> None:
    rules = ruleset(rule(3, **criterion))
    assert price(stone(**matching), rules).pricing_rule_id == 3
    assert price(stone(**not_matching), rules).pricing_rule_id is None


def test_cost_range_is_on_total_cost_not_per_carat() -> None:
    rules = ruleset(rule(1, cost_min=D("1000.00"), cost_max=D("2999.99")))
    # 2 ct at $1,000 total = $500/ct: the total is in the bracket
    assert price(stone(carats=D("2.00"), feed_price=D("1000.00")), rules).pricing_rule_id == 1


def test_every_criterion_must_match() -> None:
    rules = ruleset(rule(1, stone_type="natural", shapes=["ROUND"], colors=["G"], cost_max=D("2000")))
    assert price(stone(), rules).pricing_rule_id == 1
    assert price(stone(shape="OVAL"), rules).pricing_rule_id is None
    assert price(stone(feed_price=D("2000.01")), rules).pricing_rule_id is None


def test_rule_criteria_are_normalised_like_the_stored_grades() -> None:
    loose = rule(1, shapes=["cushion modified"], colors=["fancy", "d"], clarities=["vvs 1"], cuts=["Excellent", "VG"])
    assert loose.shapes == ("CUSHION MODIFIED",)
    assert loose.colors == ("FANCY", "D")
    assert loose.clarities == ("VVS1",)
    assert loose.cuts == ("EXCELLENT", "VERY_GOOD")
    diamond = map_item(
        nivoda_item(certificate={"shape": "Cushion_Modified", "color": "Fancy", "f_color": "PINK", "clarity": "VVS1"}),
        feed="nivoda-natural",
        labgrown=False,
    )
    assert isinstance(diamond, MappedDiamond)
    assert price(diamond, ruleset(loose)).pricing_rule_id == 1


def test_duplicate_and_empty_criteria() -> None:
    assert rule(shapes=["ROUND", "round", "Round"]).shapes == ("ROUND",)
    assert rule(shapes=[]).shapes is None  # the database forbids empty arrays: empty means "any"


# --- order ------------------------------------------------------------------------------------


def test_first_match_by_ascending_priority_whatever_the_input_order() -> None:
    rules = ruleset(
        rule(1, priority=50, margin_modifier=D("1")),
        rule(2, priority=10, stone_type="lab", margin_modifier=D("2")),
        rule(3, priority=20, margin_modifier=D("3")),
    )
    assert [r.id for r in rules.rules] == [2, 3, 1]
    assert price(stone(lab_grown=True), rules).pricing_rule_id == 2
    assert price(stone(), rules).pricing_rule_id == 3


def test_equal_priorities_fall_back_to_id() -> None:
    rules = ruleset(rule(9, priority=10), rule(4, priority=10), rule(None, priority=10))
    assert [r.id for r in rules.rules] == [4, 9, None]
    assert price(stone(), rules).pricing_rule_id == 4


def test_inactive_rules_are_left_out() -> None:
    rules = ruleset(rule(1, priority=1, active=False, markup_multiplier=D("9")), rule(2, priority=2))
    assert [r.id for r in rules.rules] == [2]
    assert price(stone(), rules).pricing_rule_id == 2


def test_feed_specific_rules_with_one_rule_set_for_several_feeds() -> None:
    rules = ruleset(
        rule(1, priority=1, feed="nivoda-labgrown", markup_multiplier=D("2")),
        rule(2, priority=2, feed="nivoda-natural", markup_multiplier=D("3")),
    )
    for _ in range(2):  # the per-feed candidate lists are cached: alternate to make sure
        assert price(stone(feed="nivoda-labgrown", lab_grown=True), rules).pricing_rule_id == 1
        assert price(stone(feed="nivoda-natural"), rules).pricing_rule_id == 2
        assert price(stone(feed="demo"), rules).pricing_rule_id is None


# --- outcomes ---------------------------------------------------------------------------------


def test_no_match_uses_modifier_zero_and_gives_no_rating() -> None:
    rules = ruleset(rule(1, stone_type="fancy", rating=9))
    assert price(stone(), rules) == PriceOutcome(D("1400.00"), D("1.4000"), None, None)


def test_negative_modifier() -> None:
    rules = ruleset(rule(1, margin_modifier=D("-14")))
    assert price(stone(feed_price=D("25000.00")), rules) == PriceOutcome(D("31500.00"), D("1.2600"), 1, None)


def test_fractional_modifier() -> None:
    outcome = price(stone(lab_grown=True), ruleset(rule(1, margin_modifier=D("2.35"))))
    assert outcome.markup_ratio == D("1.8135")
    assert outcome.retail_price == D("1813.50")


def test_multiplier_rule_ignores_base_margins() -> None:
    rules = ruleset(rule(5, markup_multiplier=D("1.15"), rating=5))
    assert price(stone(), rules) == PriceOutcome(D("1150.00"), D("1.1500"), 5, 5)
    assert price(stone(lab_grown=True), rules) == PriceOutcome(D("1150.00"), D("1.1500"), 5, 5)


@pytest.mark.parametrize(
    ("cost", "multiplier", "retail"),
    [
        (D("10.01"), D("1.5"), D("15.02")),  # 15.015 -> half up (banker's rounding would give 15.01)
        (D("10.03"), D("1.5"), D("15.05")),  # 15.045 -> .05 (a float gives 15.044999... -> .04)
        (D("1.10"), D("1.05"), D("1.16")),  # 1.155 -> 1.16 (float: 1.15)
        (D("0.01"), D("1.5"), D("0.02")),  # 0.015
        (D("0.01"), D("1.4999"), D("0.01")),  # 0.014999
        (D("333.33"), D("1.0001"), D("333.36")),  # 333.363333
        (D("99999999.99"), MAX_MARKUP_RATIO, D("9999999999.00")),  # the largest retail price: fits numeric(12, 2)
    ],
)
def test_retail_price_rounds_half_up_to_cents(cost: Decimal, multiplier: Decimal, retail: Decimal) -> None:
    outcome = price(stone(feed_price=cost), ruleset(rule(1, markup_multiplier=multiplier)))
    assert outcome.retail_price == retail
    assert outcome.retail_price.as_tuple().exponent == -2
    assert outcome.markup_ratio.as_tuple().exponent == -4


@given(
    cost_cents=st.integers(min_value=1, max_value=9_999_999_999),
    ratio_ten_thousandths=st.integers(min_value=1, max_value=1_000_000),
)
def test_retail_price_equals_exact_integer_arithmetic(cost_cents: int, ratio_ten_thousandths: int) -> None:
    cost = D(cost_cents).scaleb(-2)
    multiplier = D(ratio_ten_thousandths).scaleb(-4)
    outcome = price(stone(feed_price=cost), ruleset(rule(1, markup_multiplier=multiplier)))
    # half-up rounding of cost_cents * ratio / 10^4 done in integers
    expected_cents = (cost_cents * ratio_ten_thousandths + 5_000) // 10_000
    assert outcome.retail_price == D(expected_cents).scaleb(-2)
    assert outcome.markup_ratio == multiplier


def test_mapped_diamond_is_priced_directly() -> None:
    diamond = map_item(nivoda_item(), feed="nivoda-natural", labgrown=False)
    assert isinstance(diamond, MappedDiamond)
    # 1500.50 x 1.40 = 2100.70
    assert price(diamond, NO_RULES) == PriceOutcome(D("2100.70"), D("1.4000"), None, None)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"margin_modifier": None}, "exactly one"),
        ({"margin_modifier": D("1"), "markup_multiplier": D("1.2")}, "exactly one"),
        ({"markup_multiplier": D("0"), "margin_modifier": None}, "positive"),
        ({"markup_multiplier": D("1.23456"), "margin_modifier": None}, "4 after"),
        ({"margin_modifier": 1.5}, "not float"),
        ({"margin_modifier": "lots"}, "not a number"),
        ({"margin_modifier": "NaN"}, "finite"),
        ({"cost_min": D("10"), "cost_max": D("5")}, "must not exceed"),
        ({"carat_min": D("-1")}, "negative"),
        ({"carat_max": D("10000")}, "4 digits before"),
        ({"cost_max": D("0.001")}, "2 after"),
        ({"rating": 11}, "rating"),
        ({"rating": True}, "rating"),
        ({"priority": -1}, "priority"),
        ({"stone_type": "synthetic"}, "stone_type"),
        ({"shapes": ["ROUND", "BLOB"]}, "unknown value 'BLOB'"),
        ({"colors": "D"}, "list"),
        ({"cuts": ["SUPERB"]}, "allowed: IDEAL"),
        ({"feed": "  "}, "feed"),
        ({"active": "yes"}, "active"),
    ],
)
def test_invalid_rules_are_refused_with_a_reason(fields: dict[str, Any], words: str) -> None:
    values: dict[str, Any] = {"id": 1, "priority": 10, "margin_modifier": D("0"), **fields}
    with pytest.raises(RuleError, match=words):
        PricingRule(**values)


def test_numbers_are_stored_at_their_column_scale() -> None:
    built = rule(cost_min="500", carat_max=2, markup_multiplier="1.5", margin_modifier=None)
    assert (str(built.cost_min), str(built.carat_max), str(built.markup_multiplier)) == ("500.00", "2.00", "1.5000")


@pytest.mark.parametrize(
    ("rules", "margins", "words"),
    [
        ((rule(1, markup_multiplier=D("100.0001")),), DEFAULT_BASE_MARGINS, "at most 100"),
        ((rule(1, stone_type="natural", margin_modifier=D("-140")),), DEFAULT_BASE_MARGINS, "above 0"),
        # a modifier of -120 is fine for lab stones (79 - 120 > -100) but not for natural ones
        ((rule(1, margin_modifier=D("-140")),), DEFAULT_BASE_MARGINS, "above 0"),
        ((), {"natural": D("40"), "lab": D("79")}, "exactly natural, lab, fancy"),
        ((), {"natural": D("-100"), "lab": D("79"), "fancy": D("40")}, "above -100"),
        ((), {"natural": 40.0, "lab": D("79"), "fancy": D("40")}, "not float"),
    ],
)
def test_rule_sets_that_would_price_absurdly_are_refused(
    rules: tuple[PricingRule, ...], margins: Any, words: str
) -> None:
    with pytest.raises(RuleError, match=words):
        RuleSet(1, rules, margins)


def test_a_modifier_only_valid_for_the_rules_own_stone_type_is_accepted() -> None:
    rules = ruleset(rule(1, stone_type="lab", margin_modifier=D("-120")))
    assert price(stone(lab_grown=True), rules).markup_ratio == D("0.5900")


# --- seed brackets ----------------------------------------------------------------------------


def test_default_rules_are_the_original_cost_brackets() -> None:
    rows = default_rules()
    assert [row["priority"] for row in rows] == [*range(10, 17), *range(20, 27), *range(30, 37)]
    rules = ruleset(*(PricingRule(id=index + 1, **row) for index, row in enumerate(rows)))
    expected_natural = [
        (D("0.01"), D("1.4600")),
        (D("499.99"), D("1.4600")),
        (D("500.00"), D("1.4600")),
        (D("999.99"), D("1.4600")),
        (D("1000.00"), D("1.4300")),
        (D("2999.99"), D("1.4300")),
        (D("3000.00"), D("1.4000")),
        (D("5999.99"), D("1.4000")),
        (D("6000.00"), D("1.3600")),
        (D("9999.99"), D("1.3600")),
        (D("10000.00"), D("1.3100")),
        (D("19999.99"), D("1.3100")),
        (D("20000.00"), D("1.2600")),
        (D("99999999.99"), D("1.2600")),
    ]
    for cost, ratio in expected_natural:
        assert price(stone(feed_price=cost), rules).markup_ratio == ratio, cost
        assert price(stone(feed_price=cost, fancy_color="Pink"), rules).markup_ratio == ratio, cost
        assert price(stone(feed_price=cost, lab_grown=True), rules).markup_ratio == ratio + D("0.39"), cost
    assert price(stone(feed_price=D("400"), lab_grown=True), rules).markup_ratio == D("1.8500")
    # the brackets leave no gap: every stone is priced by a rule
    assert price(stone(feed_price=D("499.99")), rules).pricing_rule_id == 1
    assert price(stone(feed_price=D("500.00")), rules).pricing_rule_id == 2
    assert price(stone(fancy_color="Pink", lab_grown=True, feed_price=D("25000")), rules).pricing_rule_id == 21


def test_default_rules_hold_every_rule_column() -> None:
    for row in default_rules():
        assert set(row) == {field for field in PricingRule.__dataclass_fields__ if field != "id"}


# --- snapshots --------------------------------------------------------------------------------

decimals_2dp = st.decimals(min_value=0, max_value=D("99999.99"), places=2)


@st.composite
def rules_strategy(draw: st.DrawFn) -> PricingRule:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    carat_min, carat_max = sorted(draw(st.lists(st.decimals(0, D("9999.99"), places=2), min_size=2, max_size=2)))
    cost_min, cost_max = sorted(draw(st.lists(decimals_2dp, min_size=2, max_size=2)))
    use_multiplier = draw(st.booleans())
    return PricingRule(
        id=maybe(st.integers(1, 10**12)),
        priority=draw(st.integers(0, 10**6)),
        feed=maybe(st.sampled_from(["nivoda-natural", "nivoda-labgrown"])),
        stone_type=maybe(st.sampled_from(["natural", "lab", "fancy"])),
        shapes=maybe(st.lists(st.sampled_from(grades.SHAPES), min_size=1, max_size=3)),
        colors=maybe(st.lists(st.sampled_from(grades.COLORS), min_size=1, max_size=3)),
        clarities=maybe(st.lists(st.sampled_from(grades.CLARITIES), min_size=1, max_size=3)),
        cuts=maybe(st.lists(st.sampled_from(grades.CUT_GRADES), min_size=1, max_size=3)),
        carat_min=maybe(st.just(carat_min)),
        carat_max=maybe(st.just(carat_max)),
        cost_min=maybe(st.just(cost_min)),
        cost_max=maybe(st.just(cost_max)),
        markup_multiplier=draw(st.decimals(D("0.0001"), D("99.9999"), places=4)) if use_multiplier else None,
        margin_modifier=None if use_multiplier else draw(st.decimals(D("-50"), D("50"), places=2)),
        rating=maybe(st.integers(1, 10)),
        active=draw(st.booleans()),
        description=maybe(st.text(max_size=20)),
    )


@given(
    st.lists(rules_strategy(), max_size=6),
    st.fixed_dictionaries({kind: st.decimals(D("-50"), D("500"), places=2) for kind in ("natural", "lab", "fancy")}),
    st.integers(0, 10**9),
)
def test_snapshot_round_trip(rules: list[PricingRule], margins: dict[str, Decimal], version: int) -> None:
    original = RuleSet(version, tuple(rules), margins)
    stored = json.loads(json.dumps(rules_snapshot(original)))  # what jsonb gives back
    restored = ruleset_from_snapshot(version, stored)
    assert restored == original
    assert rules_snapshot(restored) == rules_snapshot(original)
    for diamond in (stone(), stone(lab_grown=True, feed="nivoda-labgrown"), stone(fancy_color="Pink")):
        assert price(diamond, restored) == price(diamond, original)


def test_snapshot_is_plain_json_with_decimals_as_text() -> None:
    snapshot = rules_snapshot(ruleset(rule(1, shapes=["OVAL"], cost_max=D("499.99"), margin_modifier=D("-4"))))
    assert snapshot == {
        "format": 1,
        "base_margins": {"natural": "40.00", "lab": "79.00", "fancy": "40.00"},
        "rules": [
            {
                "id": 1,
                "priority": 100,
                "feed": None,
                "stone_type": None,
                "shapes": ["OVAL"],
                "colors": None,
                "clarities": None,
                "cuts": None,
                "carat_min": None,
                "carat_max": None,
                "cost_min": None,
                "cost_max": "499.99",
                "markup_multiplier": None,
                "margin_modifier": "-4.00",
                "rating": None,
                "active": True,
                "description": None,
            }
        ],
    }


@pytest.mark.parametrize(
    ("snapshot", "words"),
    [
        ({}, "format"),
        ({"format": 2, "rules": [], "base_margins": {}}, "format"),
        ({"format": 1, "rules": {}, "base_margins": {}}, "list of objects"),
        ({"format": 1, "rules": [{"priority": 1, "margin_modifier": "0", "colour": ["D"]}]}, "unknown fields"),
        ({"format": 1, "rules": [{"margin_modifier": "0"}]}, "no priority"),
        ({"format": 1, "rules": []}, "base_margins"),
        ({"format": 1, "rules": [{"priority": 1}], "base_margins": {}}, "exactly one"),
    ],
)
def test_malformed_snapshots_are_refused(snapshot: dict[str, Any], words: str) -> None:
    with pytest.raises(RuleError, match=words):
        ruleset_from_snapshot(3, snapshot)


def test_rule_sets_are_immutable() -> None:
    rules = ruleset(rule(1))
    with pytest.raises(AttributeError):
        rules.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        rules.base_margins["natural"] = D("0")  # type: ignore[index]
    assert replace(rules.rules[0], priority=5).priority == 5
