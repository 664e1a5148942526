"""Catalogue search parameters: one declarative table drives the parser, the SQL and the OpenAPI.

Grade values are normalised by `shared.grades`, the same functions the mapper stores them with, so
`cut=EX`, `cut=excellent` and `cut=EXCELLENT` all match the stored `EXCELLENT`, and
`fancy_intensity=fancy vivid` matches `Fancy Vivid`. Lists may be repeated (`shape=ROUND&shape=OVAL`)
or comma-separated (`shape=ROUND,OVAL`). Booleans accept true/false, 1/0, yes/no. Every malformed
value raises `ParameterError` naming the parameter (HTTP 422), never a database error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from api.catalogue.fields import Fields
from api.errors import ParameterError
from shared import grades
from shared.settings import FEED_VARIANTS

Order = Literal["asc", "desc"]
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50
# Past this many rows OFFSET paging gets slow; deeper pages use the keyset cursor.
MAX_OFFSET: Final = 2000
# Anything that reads as a number: parsing then says what is wrong with it (range, decimals).
_NUMBER_TEXT: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Every numeric parameter is below 10^9 and needs at most 4 decimals (ratio, carats).
_MAX_DIGITS: Final = 9
_MAX_DECIMALS: Final = 4
_DECIMAL_PATTERN: Final = rf"^[0-9]{{1,{_MAX_DIGITS}}}(\.[0-9]{{1,{_MAX_DECIMALS}}})?$"  # as OpenAPI states it
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class ListSpec:
    """`name=a,b` -> `column IN (a, b)`, each value normalised; unknown values are refused."""

    name: str
    column: str
    normalise: Callable[[object], str | None]
    allowed: tuple[str, ...] | None
    description: str
    default: tuple[str, ...] = ()


@dataclass(frozen=True)
class RangeSpec:
    """`name_min` / `name_max` -> inclusive bounds on `column`."""

    name: str
    column: str
    description: str
    integer: bool = False
    minimum: Decimal = Decimal(0)
    maximum: Decimal = Decimal(999_999_999)


@dataclass(frozen=True)
class FlagSpec:
    name: str
    description: str


def _feed(value: object) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else None
    return text if text in FEED_VARIANTS else None


def _availability(value: object) -> str | None:
    text = value.strip().lower().replace(" ", "_").replace("-", "_") if isinstance(value, str) else None
    return text if text in grades.AVAILABILITIES else None


LIST_SPECS: Final[tuple[ListSpec, ...]] = (
    ListSpec("feed", "feed", _feed, FEED_VARIANTS, "feed variant"),
    ListSpec("shape", "shape", grades.normalise_shape, grades.SHAPES, "shape"),
    ListSpec("color", "color", grades.normalise_color, grades.COLORS, "colour grade (FANCY for fancy colours)"),
    ListSpec("clarity", "clarity", grades.normalise_clarity, grades.CLARITIES, "clarity grade"),
    ListSpec("cut", "cut", grades.normalise_cut_grade, grades.CUT_GRADES, "cut grade (EX, VG... accepted)"),
    ListSpec("polish", "polish", grades.normalise_cut_grade, grades.CUT_GRADES, "polish grade"),
    ListSpec("symmetry", "symmetry", grades.normalise_cut_grade, grades.CUT_GRADES, "symmetry grade"),
    ListSpec(
        "fluorescence_intensity",
        "fluorescence_intensity",
        grades.normalise_fluorescence_intensity,
        grades.FLUORESCENCE_INTENSITIES,
        "fluorescence intensity",
    ),
    ListSpec(
        "fancy_color",
        "fancy_color",
        grades.normalise_fancy_color,
        None,
        "fancy colour, e.g. Yellow, Pink, Brown-Pink, Orangy Brown (spelling normalised as stored)",
    ),
    ListSpec(
        "fancy_intensity",
        "fancy_intensity",
        grades.normalise_fancy_intensity,
        grades.FANCY_INTENSITIES,
        "fancy colour intensity",
    ),
    ListSpec("lab", "certificate_lab", grades.normalise_lab, None, "certificate lab, e.g. GIA, IGI"),
    ListSpec(
        "availability",
        "availability",
        _availability,
        grades.AVAILABILITIES,
        "availability (default: available)",
        default=("available",),
    ),
)

RANGE_SPECS: Final[tuple[RangeSpec, ...]] = (
    RangeSpec("carat", "carats", "carat weight"),
    RangeSpec("price", "retail_price", "retail price in dollars"),
    RangeSpec("price_per_carat", "price_per_carat", "supplier cost per carat in dollars"),
    RangeSpec("ratio", "ratio", "length/width ratio"),
    RangeSpec("table", "table_pct", "table percentage"),
    RangeSpec("depth", "depth_pct", "depth percentage"),
    RangeSpec("rating", "rating", "rating 1-10", integer=True, minimum=Decimal(1), maximum=Decimal(10)),
)

FLAG_SPECS: Final[tuple[FlagSpec, ...]] = (
    FlagSpec("lab_grown", "true: lab-grown only; false: natural only"),
    FlagSpec("fancy", "true: fancy-coloured stones only; false: no fancy colour"),
    FlagSpec("eye_clean", "true: eye-clean stones; false: stones graded not eye-clean"),
    FlagSpec("no_bgm", "true: no brown, green or milky tint; false: no constraint"),
)


@dataclass(frozen=True)
class InFilter:
    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class RangeFilter:
    column: str
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True)
class FlagFilter:
    name: str
    value: bool


Filter = InFilter | RangeFilter | FlagFilter


@dataclass(frozen=True)
class SearchRequest:
    filters: tuple[Filter, ...]
    sort: str
    order: Order
    limit: int
    page: int | None
    cursor: str | None
    fields: Fields
    count: bool

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit if self.page else 0

    def fingerprint(self) -> str:
        """Identifies the filter set, so a cursor cannot be replayed against other filters."""
        return hashlib.sha256(repr(self.filters).encode()).hexdigest()[:12]


def _values(raw: Sequence[str]) -> list[str]:
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


def _single(name: str, raw: Sequence[str]) -> str:
    if len(raw) > 1:
        raise ParameterError(name, "given more than once")
    return raw[0].strip()


def parse_bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ParameterError(name, f"{raw!r} is not a boolean (true or false)")


def parse_int(name: str, raw: str, low: int, high: int) -> int:
    if not _NUMBER_TEXT.fullmatch(raw) or "." in raw:
        raise ParameterError(name, f"{raw!r} is not a whole number")
    # A number too long to be in range is refused before int() reads thousands of digits.
    if len(raw.lstrip("-")) > _MAX_DIGITS or not low <= (value := int(raw)) <= high:
        raise ParameterError(name, f"must be between {low} and {high}")
    return value


def _number(name: str, raw: str, spec: RangeSpec) -> Decimal:
    if not _NUMBER_TEXT.fullmatch(raw) or (spec.integer and "." in raw):
        kind = "a whole number" if spec.integer else "a decimal number such as 1.25"
        raise ParameterError(name, f"{raw!r} is not {kind}")
    whole, _, fraction = raw.lstrip("-").partition(".")
    if len(fraction) > _MAX_DECIMALS:
        raise ParameterError(name, f"{raw!r} has more than {_MAX_DECIMALS} decimal places")
    if len(whole) > _MAX_DIGITS or not spec.minimum <= (value := Decimal(raw)) <= spec.maximum:
        raise ParameterError(name, f"must be between {spec.minimum} and {spec.maximum}")
    return value


def _list_filter(spec: ListSpec, raw: Sequence[str]) -> InFilter:
    values = _values(raw)
    if not values:
        raise ParameterError(spec.name, "needs at least one value")
    normalised = []
    for value in values:
        if "\x00" in value:
            raise ParameterError(spec.name, "contains a NUL character")
        stored = spec.normalise(value)
        if stored is None or (spec.allowed is not None and stored not in spec.allowed):
            hint = f"; allowed: {', '.join(spec.allowed)}" if spec.allowed else ""
            raise ParameterError(spec.name, f"unknown value {value!r}{hint}")
        normalised.append(stored)
    return InFilter(spec.column, tuple(sorted(set(normalised))))


def _range_filter(spec: RangeSpec, params: dict[str, list[str]]) -> RangeFilter | None:
    low_name, high_name = f"{spec.name}_min", f"{spec.name}_max"
    low = _number(low_name, _single(low_name, params[low_name]), spec) if low_name in params else None
    high = _number(high_name, _single(high_name, params[high_name]), spec) if high_name in params else None
    if low is None and high is None:
        return None
    if low is not None and high is not None and low > high:
        raise ParameterError(low_name, f"{low_name} ({low}) is above {high_name} ({high})")
    return RangeFilter(spec.column, low, high)


def parse_filters(params: dict[str, list[str]]) -> tuple[Filter, ...]:
    filters: list[Filter] = []
    for spec in LIST_SPECS:
        if spec.name in params:
            filters.append(_list_filter(spec, params[spec.name]))
        elif spec.default:
            filters.append(InFilter(spec.column, spec.default))
    for range_spec in RANGE_SPECS:
        found = _range_filter(range_spec, params)
        if found is not None:
            filters.append(found)
    for flag in FLAG_SPECS:
        if flag.name in params:
            filters.append(FlagFilter(flag.name, parse_bool(flag.name, _single(flag.name, params[flag.name]))))
    return tuple(filters)


FILTER_NAMES: Final = frozenset(
    [spec.name for spec in LIST_SPECS]
    + [f"{spec.name}_{end}" for spec in RANGE_SPECS for end in ("min", "max")]
    + [spec.name for spec in FLAG_SPECS]
)
CONTROL_NAMES: Final = frozenset({"sort", "order", "limit", "page", "cursor", "fields", "count"})


def group(items: Iterable[tuple[str, str]], known: frozenset[str]) -> dict[str, list[str]]:
    """Query items by name; an unknown name is refused (a typo would otherwise widen the search)."""
    params: dict[str, list[str]] = {}
    for name, value in items:
        if name not in known:
            raise ParameterError(name, "unknown parameter")
        params.setdefault(name, []).append(value)
    return params


def parse_search(items: Iterable[tuple[str, str]], sort_keys: Iterable[str]) -> SearchRequest:
    params = group(items, FILTER_NAMES | CONTROL_NAMES)
    keys = tuple(sort_keys)

    def control(name: str, default: str) -> str:
        return _single(name, params[name]) if name in params else default

    sort = control("sort", "created_at")
    if sort not in keys:
        raise ParameterError("sort", f"unknown sort key {sort!r}; allowed: {', '.join(keys)}")
    order = control("order", "desc")
    if order not in ("asc", "desc"):
        raise ParameterError("order", "must be asc or desc")
    fields = control("fields", "full")
    if fields not in ("slim", "full"):
        raise ParameterError("fields", "must be slim or full")
    limit = parse_int("limit", control("limit", str(DEFAULT_LIMIT)), 1, MAX_LIMIT)
    page = parse_int("page", _single("page", params["page"]), 1, 1 + MAX_OFFSET) if "page" in params else None
    cursor = control("cursor", "") or None
    if page is not None and cursor is not None:
        raise ParameterError("page", "use either page or cursor, not both")
    if page is not None and (page - 1) * limit > MAX_OFFSET:
        raise ParameterError("page", f"pages deeper than {MAX_OFFSET} stones need the cursor (next_cursor)")
    return SearchRequest(
        filters=parse_filters(params),
        sort=sort,
        order="asc" if order == "asc" else "desc",
        limit=limit,
        page=page,
        cursor=cursor,
        fields="slim" if fields == "slim" else "full",
        count=parse_bool("count", control("count", "true")),
    )


def openapi_parameters(sort_keys: Sequence[str]) -> list[dict[str, Any]]:
    """The search parameters for the OpenAPI document (the route parses the query itself)."""

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    out = []
    for spec in LIST_SPECS:
        items: dict[str, Any] = {"type": "string"}
        if spec.allowed:
            items["enum"] = list(spec.allowed)
        out.append(
            {
                **query(spec.name, {"type": "array", "items": items}, f"{spec.description}; repeat or comma-separate"),
                "style": "form",
                "explode": True,
            }
        )
    for range_spec in RANGE_SPECS:
        low, high = range_spec.minimum, range_spec.maximum
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": int(low), "maximum": int(high)}
            if range_spec.integer
            else {"type": "string", "pattern": _DECIMAL_PATTERN}
        )
        for end in ("min", "max"):
            out.append(query(f"{range_spec.name}_{end}", schema, f"{end}imum {range_spec.description} (inclusive)"))
    for flag in FLAG_SPECS:
        out.append(query(flag.name, {"type": "boolean"}, flag.description))
    out += [
        query("sort", {"type": "string", "enum": list(sort_keys), "default": "created_at"}, "sort key (nulls last)"),
        query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "sort direction"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "page size"),
        query(
            "page",
            {"type": "integer", "minimum": 1, "maximum": 1 + MAX_OFFSET},
            f"page number for shallow paging (offset up to {MAX_OFFSET}); deeper pages use cursor",
        ),
        query("cursor", {"type": "string"}, "next_cursor from the previous page (keyset paging)"),
        query("fields", {"type": "string", "enum": ["slim", "full"], "default": "full"}, "field set"),
        query("count", {"type": "boolean", "default": True}, "include the bounded total count"),
    ]
    return out
