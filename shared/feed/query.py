"""The typed Nivoda `DiamondQuery` filter and `DiamondOrder`, and their GraphQL wire form.

Python attributes are snake_case where the wire name is not (`from_` -> "from",
`exclude_fair_poor_cuts` -> "excludeFairPoorCuts"); `to_variables()` returns exactly what Nivoda
expects. Money in a query is in DOLLARS (`dollar_per_carat`, `dollar_value`), whereas the prices of
the items that come back are in CENTS. Timestamps travel as ISO-8601 UTC strings with millisecond
precision (the server's resolution; finer digits are truncated).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator


def _decimal_to_number(value: Decimal) -> int | float:
    # JSON has no decimal type; the shortest float repr reproduces the decimal digits exactly.
    return int(value) if value == value.to_integral_value() else float(value)


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must include a time zone")
    return value.astimezone(UTC)


def _iso_millis(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


WireDecimal = Annotated[Decimal, Field(ge=0), PlainSerializer(_decimal_to_number)]
WireDateTime = Annotated[datetime, AfterValidator(_require_aware), PlainSerializer(_iso_millis)]


class _WireModel(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class _DecimalRange(_WireModel):
    from_: WireDecimal | None = Field(None, alias="from")
    to: WireDecimal | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError(f"'from' ({self.from_}) is above 'to' ({self.to})")
        return self


class PriceRange(_DecimalRange):
    """Inclusive bounds in dollars (per carat for `dollar_per_carat`, total for `dollar_value`)."""


class SizeRange(_DecimalRange):
    """Inclusive bounds in carats."""


class DateRange(_WireModel):
    """Inclusive bounds on the stone's `updatedAt`; time-zone aware datetimes only."""

    from_: WireDateTime | None = Field(None, alias="from")
    to: WireDateTime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError(f"'from' ({self.from_.isoformat()}) is after 'to' ({self.to.isoformat()})")
        return self


class DiamondQuery(_WireModel):
    """The DiamondQuery fields this system sends. None means "not sent" (no constraint)."""

    dollar_per_carat: PriceRange | None = None
    dollar_value: PriceRange | None = None
    sizes: SizeRange | None = None
    shapes: tuple[str, ...] | None = None
    labgrown: bool | None = None
    updated: DateRange | None = None
    availability: tuple[str, ...] | None = None
    has_image: bool | None = None
    has_v360: bool | None = None
    exclude_fair_poor_cuts: bool | None = Field(None, alias="excludeFairPoorCuts")
    hide_memo: bool | None = None
    ids: tuple[str, ...] | None = None

    def to_variables(self) -> dict[str, Any]:
        """The value of the GraphQL `$query: DiamondQuery!` variable."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_variables(cls, wire: Mapping[str, Any]) -> DiamondQuery:
        """Parse the wire form (the inverse of `to_variables`)."""
        return cls.model_validate(dict(wire))


OrderType = Literal[
    "createdAt",
    "price",
    "discount",
    "color",
    "clarity",
    "cut",
    "size",
    "none",
    "insert",
    "price_per_carat",
    "popular",
]


class Order(_WireModel):
    """Nivoda's `DiamondOrder`."""

    type: OrderType
    direction: Literal["ASC", "DESC"]

    def to_variables(self) -> dict[str, str]:
        return {"type": self.type, "direction": self.direction}


# Oldest first: stones added during a run land after every offset already read.
CREATED_AT_ASC: Final = Order(type="createdAt", direction="ASC")
