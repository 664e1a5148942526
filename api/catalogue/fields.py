"""The diamond fields the API returns, rendered to JSON by PostgreSQL itself.

One table drives three things: the SQL that builds each stone's JSON (row_to_json over these
expressions, so Python never touches a field), the `slim` and `full` field sets, and the OpenAPI
models. Money is text with exactly two decimals (numeric(12,2)::text), never a float; measurements
are JSON numbers printed from numeric (exact); timestamps are ISO-8601 in UTC (the connections run
with timezone=UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, create_model

Fields = Literal["slim", "full"]
MONEY_PATTERN: Final = r"^-?[0-9]+\.[0-9]{2}$"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    annotation: Any
    slim: bool
    sql: str | None = None  # defaults to the column of the same name
    money: bool = False

    @property
    def expression(self) -> str:
        if self.money:
            return f"d.{self.name}::text"
        return self.sql or f"d.{self.name}"


_Money = str
FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("id", str, True, "d.id"),
    FieldSpec("feed", str, True),
    FieldSpec("supplier_stone_id", str, False),
    FieldSpec("offer_id", str, False),
    FieldSpec("shape", str, True),
    FieldSpec("carats", float, True),
    FieldSpec("color", str | None, True),
    FieldSpec("clarity", str | None, True),
    FieldSpec("cut", str | None, True),
    FieldSpec("polish", str | None, True),
    FieldSpec("symmetry", str | None, True),
    FieldSpec("fluorescence", str | None, False),
    FieldSpec("fluorescence_intensity", str | None, True),
    FieldSpec("fancy_color", str | None, True),
    FieldSpec("fancy_intensity", str | None, True),
    FieldSpec("fancy_overtone", str | None, False),
    FieldSpec("lab_grown", bool, True),
    FieldSpec("treated", bool, False),
    FieldSpec("retail_price", _Money, True, money=True),
    FieldSpec("feed_price", _Money, True, money=True),
    FieldSpec("diamond_price", _Money | None, False, money=True),
    FieldSpec("price_per_carat", _Money, True, money=True),
    FieldSpec("markup_ratio", str, True, "d.markup_ratio::text"),
    FieldSpec("pricing_rule_id", int | None, False),
    FieldSpec("rating", int | None, True),
    FieldSpec("availability", str, True),
    FieldSpec("raw_availability", str | None, False),
    FieldSpec("hold_id", str | None, False),
    FieldSpec("certificate_lab", str | None, True),
    FieldSpec("certificate_number", str | None, False),
    FieldSpec("certificate_pdf_url", str | None, False),
    FieldSpec("image_url", str | None, True),
    FieldSpec("video_url", str | None, True),
    FieldSpec("meta_images", list[dict[str, Any]] | None, False),
    FieldSpec("ratio", float | None, True),
    FieldSpec("table_pct", float | None, False),
    FieldSpec("depth_pct", float | None, False),
    FieldSpec("length_mm", float | None, False),
    FieldSpec("width_mm", float | None, False),
    FieldSpec("depth_mm", float | None, False),
    FieldSpec("crown_angle", float | None, False),
    FieldSpec("crown_height", float | None, False),
    FieldSpec("pavilion_angle", float | None, False),
    FieldSpec("pavilion_depth", float | None, False),
    FieldSpec("girdle", str | None, False),
    FieldSpec("culet_size", str | None, False),
    FieldSpec("eye_clean", bool | None, True),
    FieldSpec("brown", str | None, False),
    FieldSpec("green", str | None, False),
    FieldSpec("milky", str | None, False),
    FieldSpec("supplier_name", str | None, False),
    FieldSpec("supplier_legal_name", str | None, False),
    FieldSpec("source_updated_at", datetime | None, False),
    FieldSpec("created_at", datetime, True),
    FieldSpec("updated_at", datetime, False),
)


def selected(fields: Fields) -> tuple[FieldSpec, ...]:
    return FIELDS if fields == "full" else tuple(spec for spec in FIELDS if spec.slim)


# json_build_object takes at most 100 arguments (50 fields); measured on the 500K catalogue it plans
# and runs faster than row_to_json over a sub-select, which the full field set still needs.
_MAX_BUILD_FIELDS: Final = 50


@cache
def json_expression(fields: Fields) -> str:
    """A scalar SQL expression over the row alias `d` that yields the stone's JSON text."""
    specs = selected(fields)
    if len(specs) <= _MAX_BUILD_FIELDS:
        return "json_build_object(" + ", ".join(f"'{spec.name}', {spec.expression}" for spec in specs) + ")::text"
    columns = ", ".join(f"{spec.expression} AS {spec.name}" for spec in specs)
    return f"(SELECT row_to_json(f) FROM (SELECT {columns}) f)::text"


def _model(name: str, fields: Fields) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for spec in selected(fields):
        if spec.money:
            optional = spec.annotation is not _Money
            field = Field(pattern=MONEY_PATTERN, description="money: a decimal string, 2 places")
            definitions[spec.name] = (str | None if optional else str, field)
        else:
            definitions[spec.name] = (spec.annotation, ...)
    return create_model(name, **definitions)


DiamondSlim = _model("DiamondSlim", "slim")
DiamondFull = _model("DiamondFull", "full")
