"""Pricing engine: a diamond's retail price, markup and rating from a versioned rule set.

Rules (the `pricing_rules` table) are tried in ascending priority (then id); the first rule whose
every criterion matches wins. A NULL criterion matches anything: feed, stone type, shapes, colours,
clarities, cuts (matched against the normalised grades of `shared.grades`, and the rules' own lists
are normalised the same way, so a rule written with "Excellent" matches EXCELLENT), carat range and
cost range (both inclusive; cost is `feed_price`, the stone's total cost, not per carat).

Stone type: "fancy" if the stone has a fancy colour (lab-grown or not), else "lab" if lab-grown,
else "natural". Each type has a base margin in percent (`pricing_base_margins`: 40 / 79 / 40).

Markup ratio:
- a rule with `markup_multiplier` m: ratio = m;
- a rule with `margin_modifier` d (percentage points): ratio = 1 + (base_margin[type] + d) / 100;
- no matching rule: ratio = 1 + base_margin[type] / 100, no rule id, no rating.

Rounding, all in exact decimal arithmetic:
- markup_ratio is kept to 4 decimal places (numeric(8, 4)). Multipliers have at most 4 places and
  margins/modifiers at most 2, so the ratio is always exact; nothing is rounded here.
- retail_price = feed_price × markup_ratio, rounded HALF_UP (a half cent goes up, as PostgreSQL
  rounds numeric) to cents. A 2-place cost times a 4-place ratio has at most 6 places, so this is
  the only rounding: 10.01 × 1.5 = 15.015 -> 15.02.

Bounds: a rule set whose ratio for some stone type is not in (0, MAX_MARKUP_RATIO] is refused when
it is built, so a retail price always fits numeric(12, 2) (feed prices are at most
`consolidator.mapper.MAX_FEED_PRICE`, and MAX_FEED_PRICE × MAX_MARKUP_RATIO < 10^10).

A consolidation loads ONE rule set (a `pricing_rule_versions` snapshot, see `rules_snapshot` and
`ruleset_from_snapshot`) and records its version on the run, so editing rules mid-run cannot split
a run's pricing; when the run completes, the stones it wrote are brought to the newest version
(`consolidator.repricing.catch_up_run`), so the catalogue still ends priced by the current rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, get_args

from shared.grades import (
    CLARITIES,
    COLORS,
    CUT_GRADES,
    SHAPES,
    normalise_clarity,
    normalise_color,
    normalise_cut_grade,
    normalise_shape,
)

StoneType = Literal["natural", "lab", "fancy"]
STONE_TYPES: Final[tuple[StoneType, ...]] = get_args(StoneType)
DEFAULT_BASE_MARGINS: Final[Mapping[str, Decimal]] = MappingProxyType(
    {"natural": Decimal("40.00"), "lab": Decimal("79.00"), "fancy": Decimal("40.00")}
)
MAX_MARKUP_RATIO: Final = Decimal(100)
SNAPSHOT_FORMAT: Final = 1

_CENT: Final = Decimal("0.01")
_RATIO_PLACES: Final = Decimal("0.0001")
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)


class RuleError(ValueError):
    """A rule or rule set is invalid; the message names the field and what would be valid."""


class Priceable(Protocol):
    """What pricing reads from a diamond: a `MappedDiamond`, or a catalogue row (`PricingInput`)."""

    @property
    def supplier_stone_id(self) -> str: ...
    @property
    def feed(self) -> str: ...
    @property
    def shape(self) -> str: ...
    @property
    def carats(self) -> Decimal: ...
    @property
    def color(self) -> str | None: ...
    @property
    def clarity(self) -> str | None: ...
    @property
    def cut(self) -> str | None: ...
    @property
    def lab_grown(self) -> bool: ...
    @property
    def fancy_color(self) -> str | None: ...
    @property
    def feed_price(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class PricingInput:
    """The stored columns pricing needs, for repricing and previews that read the catalogue."""

    supplier_stone_id: str
    feed: str
    shape: str
    carats: Decimal
    color: str | None
    clarity: str | None
    cut: str | None
    lab_grown: bool
    fancy_color: str | None
    feed_price: Decimal


@dataclass(frozen=True, slots=True)
class PriceOutcome:
    retail_price: Decimal
    markup_ratio: Decimal
    pricing_rule_id: int | None
    rating: int | None


def _decimal(name: str, value: object, places: int, integer_digits: int) -> Decimal | None:
    """A rule's numeric field: Decimal, int or numeric text (JSON snapshots), never a float, with at
    most `places` decimals, fitting numeric(integer_digits + places, places)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise RuleError(f"{name} must be a decimal number (not {type(value).__name__})")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise RuleError(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise RuleError(f"{name} must be finite: {value!r}")
    scale = Decimal(1).scaleb(-places)
    if number.adjusted() >= integer_digits or number != number.quantize(scale, ROUND_HALF_UP):
        raise RuleError(
            f"{name} must have at most {integer_digits} digits before and {places} after the point: {value!r}"
        )
    # copy_abs of a zero only: "-0.00" and "0.00" are the same bound and must snapshot the same.
    quantized = number.quantize(scale)
    return quantized if quantized else quantized.copy_abs()


def _grades(
    name: str, values: object, normalise: Callable[[object], str | None], allowed: tuple[str, ...]
) -> tuple[str, ...] | None:
    """A rule's list criterion, normalised and de-duplicated; an empty list means "any"."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise RuleError(f"{name} must be a list of values")
    normalised: list[str] = []
    for value in values:
        grade = normalise(value)
        if grade is None:
            raise RuleError(f"{name}: unknown value {value!r} (allowed: {', '.join(allowed)})")
        if grade not in normalised:
            normalised.append(grade)
    return tuple(normalised) or None


def _integer(name: str, value: object, low: int, high: int, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(f"{name} must be an integer from {low} to {high}: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PricingRule:
    """One `pricing_rules` row. Criteria left None match anything. Exactly one of
    `markup_multiplier` and `margin_modifier` is set. Constructing a rule validates and normalises
    it (grade lists via shared.grades, numbers to their column scale) or raises RuleError."""

    id: int | None
    priority: int
    feed: str | None = None
    stone_type: StoneType | None = None
    # Any sequence is accepted; a de-duplicated tuple of normalised grades is stored.
    shapes: Sequence[str] | None = None
    colors: Sequence[str] | None = None
    clarities: Sequence[str] | None = None
    cuts: Sequence[str] | None = None
    carat_min: Decimal | None = None
    carat_max: Decimal | None = None
    cost_min: Decimal | None = None
    cost_max: Decimal | None = None
    markup_multiplier: Decimal | None = None
    margin_modifier: Decimal | None = None
    rating: int | None = None
    active: bool = True
    description: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("id", _integer("id", self.id, 1, 2**63 - 1, optional=True))
        put("priority", _integer("priority", self.priority, 0, 2**31 - 1, optional=False))
        if self.feed is not None and (not isinstance(self.feed, str) or not self.feed.strip()):
            raise RuleError(f"feed must be a feed name or null: {self.feed!r}")
        if self.stone_type is not None and self.stone_type not in STONE_TYPES:
            raise RuleError(f"stone_type must be one of {', '.join(STONE_TYPES)} or null: {self.stone_type!r}")
        put("shapes", _grades("shapes", self.shapes, normalise_shape, SHAPES))
        put("colors", _grades("colors", self.colors, normalise_color, COLORS))
        put("clarities", _grades("clarities", self.clarities, normalise_clarity, CLARITIES))
        put("cuts", _grades("cuts", self.cuts, normalise_cut_grade, CUT_GRADES))
        for name in ("carat_min", "carat_max"):
            put(name, _decimal(name, getattr(self, name), 2, 4))
        for name in ("cost_min", "cost_max"):
            put(name, _decimal(name, getattr(self, name), 2, 10))
        put("markup_multiplier", _decimal("markup_multiplier", self.markup_multiplier, 4, 4))
        put("margin_modifier", _decimal("margin_modifier", self.margin_modifier, 2, 4))
        put("rating", _integer("rating", self.rating, 1, 10, optional=True))
        if not isinstance(self.active, bool):
            raise RuleError(f"active must be true or false: {self.active!r}")
        if self.description is not None and not isinstance(self.description, str):
            raise RuleError("description must be text or null")
        self._check_ranges()

    def _check_ranges(self) -> None:
        for low, high in (("carat_min", "carat_max"), ("cost_min", "cost_max")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and low_value < 0:
                raise RuleError(f"{low} must not be negative: {low_value}")
            if low_value is not None and high_value is not None and low_value > high_value:
                raise RuleError(f"{low} ({low_value}) must not exceed {high} ({high_value})")
        if (self.markup_multiplier is None) == (self.margin_modifier is None):
            raise RuleError("exactly one of markup_multiplier and margin_modifier must be set")
        if self.markup_multiplier is not None and self.markup_multiplier <= 0:
            raise RuleError(f"markup_multiplier must be positive: {self.markup_multiplier}")

    def matches(self, diamond: Priceable) -> bool:
        """Every criterion except stone type and feed (which `RuleSet` pre-selects by)."""
        return (
            (self.shapes is None or diamond.shape in self.shapes)
            and (self.colors is None or diamond.color in self.colors)
            and (self.clarities is None or diamond.clarity in self.clarities)
            and (self.cuts is None or diamond.cut in self.cuts)
            and (self.carat_min is None or diamond.carats >= self.carat_min)
            and (self.carat_max is None or diamond.carats <= self.carat_max)
            and (self.cost_min is None or diamond.feed_price >= self.cost_min)
            and (self.cost_max is None or diamond.feed_price <= self.cost_max)
        )


RULE_FIELDS: Final = tuple(rule_field.name for rule_field in fields(PricingRule))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One version of the pricing rules: the active rules in evaluation order (priority, then id)
    and the base margin of each stone type. Validated when built (RuleError)."""

    version: int
    rules: tuple[PricingRule, ...]
    base_margins: Mapping[str, Decimal]
    # (stone type, feed) -> the rules that can apply, with their ratio: built lazily, per feed.
    _candidates: dict[tuple[StoneType, str], tuple[tuple[PricingRule, Decimal], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _default_ratios: dict[str, Decimal] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise RuleError(f"version must be a non-negative integer: {self.version!r}")
        active = [rule for rule in self.rules if rule.active]
        active.sort(key=lambda rule: (rule.priority, rule.id is None, rule.id or 0))
        object.__setattr__(self, "rules", tuple(active))
        object.__setattr__(self, "base_margins", MappingProxyType(_base_margins(self.base_margins)))
        for kind in STONE_TYPES:
            self._default_ratios[kind] = _margin_ratio(self.base_margins[kind])
            _check_ratio(self._default_ratios[kind], f"base_margins.{kind}", kind)
        for rule in self.rules:
            # The field first: the API names the first field a message mentions.
            outcome = "markup_multiplier" if rule.markup_multiplier is not None else "margin_modifier"
            for kind in (rule.stone_type,) if rule.stone_type else STONE_TYPES:
                what = f"{outcome} of rule {rule.id or '(new)'} (priority {rule.priority})"
                _check_ratio(self._ratio(rule, kind), what, kind)

    def default_ratio(self, kind: StoneType) -> Decimal:
        """The markup when no rule matches: 1 + base margin / 100."""
        return self._default_ratios[kind]

    def _ratio(self, rule: PricingRule, kind: StoneType) -> Decimal:
        if rule.markup_multiplier is not None:
            return rule.markup_multiplier
        return _margin_ratio(self.base_margins[kind] + (rule.margin_modifier or _ZERO))

    def candidates(self, kind: StoneType, feed: str) -> tuple[tuple[PricingRule, Decimal], ...]:
        """The rules that can apply to stones of this type and feed, in order, with their ratio."""
        key = (kind, feed)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(
                (rule, self._ratio(rule, kind))
                for rule in self.rules
                if rule.stone_type in (None, kind) and rule.feed in (None, feed)
            )
            self._candidates[key] = found
        return found


def _base_margins(margins: Mapping[str, object]) -> dict[str, Decimal]:
    if not isinstance(margins, Mapping) or set(margins) != set(STONE_TYPES):
        raise RuleError(f"base_margins must give exactly {', '.join(STONE_TYPES)}")
    checked: dict[str, Decimal] = {}
    for kind in STONE_TYPES:
        margin = _decimal(f"base_margins.{kind}", margins[kind], 2, 4)
        if margin is None or margin <= -100:
            raise RuleError(f"base_margins.{kind} must be above -100: {margins[kind]!r}")
        checked[kind] = margin
    return checked


def _margin_ratio(margin_pct: Decimal) -> Decimal:
    """1 + margin / 100, at the 4 places of markup_ratio (exact: margins have 2 places)."""
    return (1 + margin_pct / _HUNDRED).quantize(_RATIO_PLACES)


def _check_ratio(ratio: Decimal, what: str, kind: StoneType) -> None:
    if not 0 < ratio <= MAX_MARKUP_RATIO:
        raise RuleError(
            f"{what} gives {kind} stones a markup ratio of {ratio}; it must be above 0 and at most {MAX_MARKUP_RATIO}"
        )


def stone_type(diamond: Priceable) -> StoneType:
    """fancy > lab > natural: a lab-grown fancy stone is priced as fancy."""
    if diamond.fancy_color:
        return "fancy"
    return "lab" if diamond.lab_grown else "natural"


def price(diamond: Priceable, rules: RuleSet) -> PriceOutcome:
    """Price one diamond under `rules` (see the module docstring for the arithmetic)."""
    kind = stone_type(diamond)
    for rule, ratio in rules.candidates(kind, diamond.feed):
        if rule.matches(diamond):
            return PriceOutcome(_retail(diamond.feed_price, ratio), ratio, rule.id, rule.rating)
    ratio = rules.default_ratio(kind)
    return PriceOutcome(_retail(diamond.feed_price, ratio), ratio, None, None)


def _retail(feed_price: Decimal, ratio: Decimal) -> Decimal:
    return (feed_price * ratio).quantize(_CENT, ROUND_HALF_UP)


# --- snapshots (pricing_rule_versions.snapshot) ----------------------------------------------


def rules_snapshot(rules: RuleSet) -> dict[str, Any]:
    """The JSON-safe form of a rule set (Decimals as strings, lists for tuples), as stored in
    `pricing_rule_versions.snapshot`. The version itself is the row's key, not part of the snapshot."""
    return {
        "format": SNAPSHOT_FORMAT,
        "base_margins": {kind: str(margin) for kind, margin in rules.base_margins.items()},
        "rules": [{name: _json_value(getattr(rule, name)) for name in RULE_FIELDS} for rule in rules.rules],
    }


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def ruleset_from_snapshot(version: int, snapshot: Mapping[str, Any]) -> RuleSet:
    """The rule set a snapshot describes; RuleError if the snapshot is malformed."""
    if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
        raise RuleError(f"pricing snapshot {version}: unknown format (expected format {SNAPSHOT_FORMAT})")
    rules = snapshot.get("rules")
    if not isinstance(rules, list) or not all(isinstance(rule, Mapping) for rule in rules):
        raise RuleError(f"pricing snapshot {version}: rules must be a list of objects")
    built = []
    for position, rule in enumerate(rules):
        unknown = set(rule) - set(RULE_FIELDS)
        if unknown or "priority" not in rule:
            raise RuleError(
                f"pricing snapshot {version}: rule {position} has unknown fields {sorted(unknown)} or no priority"
            )
        built.append(PricingRule(**{"id": None, **rule}))
    base_margins = snapshot.get("base_margins")
    if not isinstance(base_margins, Mapping):
        raise RuleError(f"pricing snapshot {version}: base_margins must be an object")
    return RuleSet(version, tuple(built), base_margins)


# --- seed ------------------------------------------------------------------------------------

# The original's HEAD seed (migration 003): per stone type, cost brackets with margin modifiers.
_SEED_BRACKETS: Final = (
    (Decimal("0.00"), Decimal("499.99"), Decimal("6.00")),
    (Decimal("500.00"), Decimal("999.99"), Decimal("6.00")),
    (Decimal("1000.00"), Decimal("2999.99"), Decimal("3.00")),
    (Decimal("3000.00"), Decimal("5999.99"), Decimal("0.00")),
    (Decimal("6000.00"), Decimal("9999.99"), Decimal("-4.00")),
    (Decimal("10000.00"), Decimal("19999.99"), Decimal("-9.00")),
    (Decimal("20000.00"), None, Decimal("-14.00")),
)
_SEED_FIRST_PRIORITY: Final[Mapping[StoneType, int]] = {"natural": 10, "lab": 20, "fancy": 30}


def default_rules() -> list[dict[str, Any]]:
    """The seed rules as `pricing_rules` column values (every criterion column present), for a
    migration or seed to insert; `PricingRule(id=None, **row)` builds the rule itself."""
    rows = []
    for kind, first_priority in _SEED_FIRST_PRIORITY.items():
        for offset, (cost_min, cost_max, modifier) in enumerate(_SEED_BRACKETS):
            upper = f"to ${cost_max}" if cost_max is not None else "and above"
            rows.append(
                {
                    "priority": first_priority + offset,
                    "description": f"{kind} stones costing ${cost_min} {upper}",
                    "feed": None,
                    "stone_type": kind,
                    "shapes": None,
                    "colors": None,
                    "clarities": None,
                    "cuts": None,
                    "carat_min": None,
                    "carat_max": None,
                    "cost_min": cost_min,
                    "cost_max": cost_max,
                    "markup_multiplier": None,
                    "margin_modifier": modifier,
                    "rating": None,
                    "active": True,
                }
            )
    return rows
