"""The two Nivoda feed variants and the base queries a run sends for them.

Both variants use the same endpoint and differ only in `labgrown`. A stone's lab-grown flag comes
from the variant that fetched it: Nivoda's own `certificate.labgrown` is null or wrong for a large
share of stones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from shared.feed.query import DateRange, DiamondQuery, PriceRange, SizeRange
from shared.grades import SHAPES


@dataclass(frozen=True)
class FeedVariant:
    name: str
    labgrown: bool


VARIANTS: Final[dict[str, FeedVariant]] = {
    variant.name: variant
    for variant in (
        FeedVariant("nivoda-natural", labgrown=False),
        FeedVariant("nivoda-labgrown", labgrown=True),
    )
}

# Nivoda spells its 17 shapes exactly as the catalogue stores them (shared.grades).
ALL_SHAPES: Final[tuple[str, ...]] = SHAPES

BASE_SIZES: Final = SizeRange(from_=Decimal("0.4"), to=Decimal("15.01"))
AVAILABLE: Final = "AVAILABLE"


def base_query(
    variant: FeedVariant, *, updated_from: datetime, updated_to: datetime, only_available: bool
) -> DiamondQuery:
    """The query of a run before partitioning by price.

    Full runs fetch only available stones; incremental runs fetch every availability so that holds
    and sales arrive as updates.
    """
    return DiamondQuery(
        shapes=ALL_SHAPES,
        sizes=BASE_SIZES,
        updated=DateRange(from_=updated_from, to=updated_to),
        labgrown=variant.labgrown,
        availability=(AVAILABLE,) if only_available else None,
        has_image=True,
        has_v360=True,
        exclude_fair_poor_cuts=True,
        hide_memo=True,
    )


def with_price_range(query: DiamondQuery, min_price: Decimal, max_price: Decimal) -> DiamondQuery:
    """Restrict `query` to an inclusive price-per-carat band in dollars."""
    return query.model_copy(update={"dollar_per_carat": PriceRange(from_=min_price, to=max_price)})
