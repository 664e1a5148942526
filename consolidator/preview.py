"""What a candidate rule set would do to the catalogue, before anyone saves it.

`preview` prices stones under a candidate `RuleSet` and compares with their current retail price.
It is pure: the caller streams catalogue rows in batches, previews each batch and merges the
reports (`PreviewReport.merge` is associative and commutative), so the whole catalogue is previewed
in bounded memory. A stone "changes" when its retail price changes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from consolidator.pricing import Priceable, RuleSet, price

DEFAULT_EXAMPLES: Final = 10
_ZERO: Final = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class PriceChange:
    supplier_stone_id: str
    feed: str
    current_price: Decimal
    candidate_price: Decimal
    pricing_rule_id: int | None

    @property
    def delta(self) -> Decimal:
        return self.candidate_price - self.current_price


def _size(change: PriceChange) -> tuple[Decimal, str, str]:
    # Biggest absolute change first; ties broken by identity so merged reports are deterministic.
    return abs(change.delta), change.feed, change.supplier_stone_id


@dataclass(frozen=True, slots=True)
class PreviewReport:
    """Counts and money over the stones previewed; `examples` are the largest changes, biggest
    first, at most `max_examples` of them."""

    stones: int
    changed: int
    increased: int
    decreased: int
    total_delta: Decimal
    total_current: Decimal
    total_candidate: Decimal
    examples: tuple[PriceChange, ...]
    max_examples: int = DEFAULT_EXAMPLES

    @classmethod
    def empty(cls, max_examples: int = DEFAULT_EXAMPLES) -> PreviewReport:
        return cls(0, 0, 0, 0, _ZERO, _ZERO, _ZERO, (), max_examples)

    def merge(self, other: PreviewReport) -> PreviewReport:
        """The report over both sets of stones (which must not overlap)."""
        limit = max(self.max_examples, other.max_examples)
        return PreviewReport(
            stones=self.stones + other.stones,
            changed=self.changed + other.changed,
            increased=self.increased + other.increased,
            decreased=self.decreased + other.decreased,
            total_delta=self.total_delta + other.total_delta,
            total_current=self.total_current + other.total_current,
            total_candidate=self.total_candidate + other.total_candidate,
            examples=tuple(heapq.nlargest(limit, self.examples + other.examples, key=_size)),
            max_examples=limit,
        )


def preview(
    diamonds: Iterable[tuple[Priceable, Decimal]],
    candidate: RuleSet,
    *,
    max_examples: int = DEFAULT_EXAMPLES,
) -> PreviewReport:
    """Price each (diamond, current retail price) under `candidate` and summarise the differences."""
    if max_examples < 0:
        raise ValueError(f"max_examples must not be negative: {max_examples}")
    stones = increased = decreased = 0
    total_current = total_candidate = _ZERO
    changes: list[PriceChange] = []
    for diamond, current in diamonds:
        new = price(diamond, candidate)
        stones += 1
        total_current += current
        total_candidate += new.retail_price
        if new.retail_price == current:
            continue
        if new.retail_price > current:
            increased += 1
        else:
            decreased += 1
        if max_examples:
            changes.append(
                PriceChange(diamond.supplier_stone_id, diamond.feed, current, new.retail_price, new.pricing_rule_id)
            )
            # Bounded memory: trim back to the largest changes whenever the list doubles.
            if len(changes) >= 2 * max_examples:
                changes = heapq.nlargest(max_examples, changes, key=_size)
    examples = tuple(heapq.nlargest(max_examples, changes, key=_size))
    return PreviewReport(
        stones=stones,
        changed=increased + decreased,
        increased=increased,
        decreased=decreased,
        total_delta=total_candidate - total_current,
        total_current=total_current,
        total_candidate=total_candidate,
        examples=examples,
        max_examples=max_examples,
    )
