"""Nivoda item -> canonical diamond: the `diamonds` columns that come from the feed.

`map_item` never raises. It returns a `MappedDiamond` whose values are exactly what the database
will store (every number already rounded to its column's scale, every grade normalised by
`shared.grades`), or a `MappingFailure` naming the stone and a stable reason code, which the
consolidation writer records and counts without stopping the batch.

Rules (the original's HEAD mapper, with its defects fixed):
- identity: `supplier_stone_id` = diamond.id (dedup key, holds), `offer_id` = item id (orders);
- prices arrive in integer cents: feed_price = price / 100 and diamond_price = diamond_price / 100,
  exactly; price_per_carat = feed_price / carats rounded half-up to cents;
- `lab_grown` comes from the feed variant the caller queried, never from `certificate.labgrown`
  (null or wrong for about half of Nivoda's stones);
- availability by exact match (see `shared.grades.normalise_availability`);
- media: image = diamond.image ?? certificate.image; video = diamond.video ?? certificate.v360.url
  ?? diamond.v360.url ?? diamond.supplier_video_link; a stone without both is not listed;
- colour: a fancy colour makes color "FANCY"; color "FANCY" without a fancy colour gets "Unknown";
- numbers are rounded half-up (as PostgreSQL rounds numeric) to their column's scale; a value that
  does not fit its column, is negative or is not a number is a failure, not a database error later;
- text that PostgreSQL cannot store (NUL characters, lone surrogates) is a failure, and so is an id
  longer than `shared.raw_store.MAX_ID_LENGTH` (no index holds a huge one) or text longer than
  MAX_TEXT_LENGTH.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeGuard

import msgspec

from shared.grades import (
    Availability,
    normalise_availability,
    normalise_clarity,
    normalise_color,
    normalise_cut_grade,
    normalise_fancy_color,
    normalise_fancy_intensity,
    normalise_fluorescence_intensity,
    normalise_lab,
    normalise_shape,
)
from shared.raw_store import MAX_ID_LENGTH

CENT: Final = Decimal("0.01")
_MILLI: Final = Decimal("0.001")
# The dearest diamond ever sold went for about $71M. A higher cost is a feed error; the cap also
# keeps every priced value inside numeric(12, 2) (see consolidator.pricing.MAX_MARKUP_RATIO).
MAX_FEED_PRICE: Final = Decimal("99999999.99")
_MAX_CENTS: Final = 9_999_999_999

FailureCode = Literal[
    "malformed_item",
    "missing_certificate",
    "missing_image",
    "missing_video",
    "unknown_shape",
    "invalid_carats",
    "invalid_price",
    "invalid_measurement",
    "invalid_text",
    "mapper_error",
]


class MappedDiamond(msgspec.Struct, frozen=True, gc=False):
    """The feed-derived columns of one `diamonds` row, in storable form.

    A msgspec Struct rather than a dataclass: built in C (6 µs for the 47 fields instead of 14) and
    encoded by the writer straight from its fields. Not tracked by the garbage collector: it holds
    only values, never a reference back to itself."""

    feed: str
    supplier_stone_id: str
    offer_id: str
    shape: str
    carats: Decimal
    color: str | None
    clarity: str | None
    cut: str | None
    polish: str | None
    symmetry: str | None
    fluorescence: str | None
    fluorescence_intensity: str | None
    fancy_color: str | None
    fancy_intensity: str | None
    fancy_overtone: str | None
    lab_grown: bool
    treated: bool
    feed_price: Decimal
    diamond_price: Decimal | None
    price_per_carat: Decimal
    availability: Availability
    raw_availability: str | None
    hold_id: str | None
    image_url: str
    video_url: str
    meta_images: list[dict[str, Any]] | None
    certificate_lab: str | None
    certificate_number: str | None
    certificate_pdf_url: str | None
    ratio: Decimal | None
    table_pct: Decimal | None
    depth_pct: Decimal | None
    length_mm: Decimal | None
    width_mm: Decimal | None
    depth_mm: Decimal | None
    crown_angle: Decimal | None
    crown_height: Decimal | None
    pavilion_angle: Decimal | None
    pavilion_depth: Decimal | None
    girdle: str | None
    culet_size: str | None
    eye_clean: bool | None
    brown: str | None
    green: str | None
    milky: str | None
    supplier_name: str | None
    supplier_legal_name: str | None


# The writer's column list, in field order.
MAPPED_COLUMNS: Final[tuple[str, ...]] = MappedDiamond.__struct_fields__


@dataclass(frozen=True, slots=True)
class MappingFailure:
    """An item that cannot be listed; ids are None when the item did not carry a usable one."""

    supplier_stone_id: str | None
    offer_id: str | None
    code: FailureCode
    reason: str


class _Reject(Exception):
    def __init__(self, code: FailureCode, reason: str) -> None:
        super().__init__(reason)
        self.code: FailureCode = code
        self.reason = reason


def map_item(item: Mapping[str, Any], *, feed: str, labgrown: bool) -> MappedDiamond | MappingFailure:
    """Map one Nivoda search item (`{id, price, diamond_price, diamond: {..., certificate}}`)."""
    stone_id: str | None = None
    offer_id: str | None = None
    try:
        if not _is_object(item):
            raise _Reject("malformed_item", f"item is not an object: {_show(item)}")
        diamond = item.get("diamond")
        if not _is_object(diamond):
            raise _Reject("malformed_item", f"item.diamond is not an object: {_show(diamond)}")
        stone_id = _id(diamond.get("id"), "diamond.id")
        offer_id = _id(item.get("id"), "item.id")
        if stone_id is None:
            raise _Reject("malformed_item", f"diamond.id is missing or not an id: {_show(diamond.get('id'))}")
        if offer_id is None:
            raise _Reject("malformed_item", f"item id is missing or not an id: {_show(item.get('id'))}")
        return _map(item, diamond, stone_id, offer_id, feed, labgrown)
    except _Reject as reject:
        return MappingFailure(stone_id, offer_id, reject.code, reject.reason)
    except Exception as exc:
        # The contract is "never raise": one stone's surprise must not stop a batch. The distinct
        # code keeps such a bug visible (the property test asserts it never occurs).
        return MappingFailure(stone_id, offer_id, "mapper_error", f"{type(exc).__name__}: {_show(exc)}")


def _map(
    item: Mapping[str, Any],
    diamond: Mapping[str, Any],
    stone_id: str,
    offer_id: str,
    feed: str,
    labgrown: bool,
) -> MappedDiamond:
    cert = diamond.get("certificate")
    if not _is_object(cert):
        raise _Reject("missing_certificate", f"diamond {stone_id} has no certificate")
    image_url = _first_text(
        ("diamond.image", diamond.get("image")),
        ("certificate.image", cert.get("image")),
    )
    if image_url is None:
        raise _Reject("missing_image", f"diamond {stone_id} has no image (diamond.image, certificate.image)")
    video_url = _first_text(
        ("diamond.video", diamond.get("video")),
        ("certificate.v360.url", _child(cert, "v360", "url")),
        ("diamond.v360.url", _child(diamond, "v360", "url")),
        ("diamond.supplier_video_link", diamond.get("supplier_video_link")),
    )
    if video_url is None:
        raise _Reject(
            "missing_video",
            f"diamond {stone_id} has no video (diamond.video, certificate.v360.url, diamond.v360.url, "
            "diamond.supplier_video_link)",
        )

    shape = normalise_shape(cert.get("shape"))
    if shape is None:
        raise _Reject("unknown_shape", f"certificate.shape is not a known shape: {_show(cert.get('shape'))}")
    carats = _decimal(cert, "carats", 4, "invalid_carats")
    if carats is None or not carats:
        raise _Reject("invalid_carats", f"certificate.carats must be positive: {_show(cert.get('carats'))}")

    feed_price = _dollars(item.get("price"), "price")
    if feed_price is None or not feed_price:
        raise _Reject("invalid_price", f"price must be a positive number of cents: {_show(item.get('price'))}")
    diamond_price = _dollars(item.get("diamond_price"), "diamond_price")
    # At most MAX_FEED_PRICE / 0.01 ct < 10^10, so it always fits numeric(12, 2).
    price_per_carat = (feed_price / carats).quantize(CENT, ROUND_HALF_UP)

    length_mm = _decimal(cert, "length", 4)
    width_mm = _decimal(cert, "width", 4)
    ratio = None
    if length_mm is not None and width_mm:
        ratio = _fit((length_mm / width_mm).quantize(_MILLI, ROUND_HALF_UP), 3, "ratio (length/width)")

    fancy_color = normalise_fancy_color(_text(cert.get("f_color"), "certificate.f_color"))
    color = normalise_color(cert.get("color"))
    if fancy_color is not None:
        color = "FANCY"
    elif color == "FANCY":
        fancy_color = "Unknown"

    flo_int = _text(cert.get("floInt"), "certificate.floInt")
    flo_col = _text(cert.get("floCol"), "certificate.floCol")
    raw_availability = _text(diamond.get("availability"), "diamond.availability")
    hold_id = _text(diamond.get("HoldId"), "diamond.HoldId")
    supplier = diamond.get("supplier")
    if not _is_object(supplier):
        supplier = {}

    return MappedDiamond(
        feed=feed,
        supplier_stone_id=stone_id,
        offer_id=offer_id,
        shape=shape,
        carats=carats,
        color=color,
        clarity=normalise_clarity(cert.get("clarity")),
        cut=normalise_cut_grade(cert.get("cut")),
        polish=normalise_cut_grade(cert.get("polish")),
        symmetry=normalise_cut_grade(cert.get("symmetry")),
        fluorescence=None if flo_int is None else f"{flo_int} {flo_col}" if flo_col else flo_int,
        fluorescence_intensity=normalise_fluorescence_intensity(flo_int),
        fancy_color=fancy_color,
        fancy_intensity=normalise_fancy_intensity(cert.get("f_intensity")),
        fancy_overtone=normalise_fancy_color(_text(cert.get("f_overtone"), "certificate.f_overtone")),
        lab_grown=labgrown,
        treated=_flag(cert.get("treated")) is True,
        feed_price=feed_price,
        diamond_price=diamond_price,
        price_per_carat=price_per_carat,
        availability=normalise_availability(raw_availability, hold_id),
        raw_availability=raw_availability,
        hold_id=hold_id,
        image_url=image_url,
        video_url=video_url,
        meta_images=_meta_images(cert.get("product_images")),
        certificate_lab=normalise_lab(_text(cert.get("lab"), "certificate.lab")),
        certificate_number=_text(cert.get("certNumber"), "certificate.certNumber"),
        certificate_pdf_url=_text(cert.get("pdfUrl"), "certificate.pdfUrl"),
        ratio=ratio,
        table_pct=_decimal(cert, "table", 3),
        depth_pct=_decimal(cert, "depthPercentage", 3),
        length_mm=length_mm,
        width_mm=width_mm,
        depth_mm=_decimal(cert, "depth", 4),
        crown_angle=_decimal(cert, "crownAngle", 3),
        crown_height=_decimal(cert, "crownHeight", 3),
        pavilion_angle=_decimal(cert, "pavAngle", 3),
        pavilion_depth=_decimal(cert, "pavDepth", 3),
        girdle=_text(cert.get("girdle"), "certificate.girdle"),
        culet_size=_text(cert.get("culetSize"), "certificate.culetSize"),
        eye_clean=_flag(diamond.get("eyeClean")),
        brown=_text(diamond.get("brown"), "diamond.brown"),
        green=_text(diamond.get("green"), "diamond.green"),
        milky=_text(diamond.get("milky"), "diamond.milky"),
        supplier_name=_text(supplier.get("name"), "diamond.supplier.name"),
        supplier_legal_name=_text(supplier.get("legal_name"), "diamond.supplier.legal_name"),
    )


# --- text ------------------------------------------------------------------------------------

_INT_TEXT_LIMIT: Final = 2**63
# No feed text is this long (signed media URLs run to ~2 KB); a longer value is a feed error that
# would bloat every API answer carrying the stone.
MAX_TEXT_LENGTH: Final = 8192


def _id(value: object, field: str) -> str | None:
    """An identity as text; one longer than MAX_ID_LENGTH (which an index cannot hold) is refused."""
    if isinstance(value, str) and len(text := value.strip()) > MAX_ID_LENGTH:
        raise _Reject("malformed_item", f"{field} is {len(text)} characters long (at most {MAX_ID_LENGTH})")
    return _text(value, field)


def _text(value: object, field: str) -> str | None:
    """Stripped text, None when blank or absent. Integers (ids, certificate numbers) become text;
    other non-text values count as absent."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) > MAX_TEXT_LENGTH:
            raise _Reject("invalid_text", f"{field} is {len(text)} characters long (at most {MAX_TEXT_LENGTH})")
        if "\x00" in text or (not text.isascii() and not _utf8(text)):
            raise _Reject("invalid_text", f"{field} holds text PostgreSQL cannot store: {_show(text)}")
        return text
    if isinstance(value, int) and not isinstance(value, bool) and -_INT_TEXT_LIMIT < value < _INT_TEXT_LIMIT:
        return str(value)
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_text(*candidates: tuple[str, object]) -> str | None:
    """The first present candidate: the feed's `a ?? b ?? c`, where blank text also counts as absent."""
    for field, value in candidates:
        text = _text(value, field)
        if text is not None:
            return text
    return None


def _is_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    # The exact-type test first: isinstance against an ABC is several times slower.
    return type(value) is dict or isinstance(value, Mapping)


def _child(parent: Mapping[str, Any], key: str, child: str) -> object:
    node = parent.get(key)
    return node.get(child) if _is_object(node) else None


_TRUE: Final = frozenset({"true", "yes", "1", "t", "y"})
_FALSE: Final = frozenset({"false", "no", "0", "f", "n", "none", "n/a"})


def _flag(value: object) -> bool | None:
    """The original's eyeClean parsing: absent -> None, blank -> False, yes/no words -> bool,
    anything else ("100%") -> None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    if not word:
        return False
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def _meta_images(value: object) -> list[dict[str, Any]] | None:
    """certificate.product_images -> [{id, url, displayIndex}] ordered by displayIndex (stable);
    entries without a url are dropped; no images -> None."""
    if not isinstance(value, list):
        return None
    images: list[dict[str, Any]] = []
    for entry in value:
        if not _is_object(entry):
            continue
        url = _text(entry.get("url"), "certificate.product_images.url")
        if url is None:
            continue
        index = entry.get("display_index")
        if not isinstance(index, int) or isinstance(index, bool) or not -(2**31) <= index < 2**31:
            index = 0
        images.append(
            {"id": _text(entry.get("id"), "certificate.product_images.id"), "url": url, "displayIndex": index}
        )
    images.sort(key=lambda image: image["displayIndex"])
    return images or None


# --- numbers ---------------------------------------------------------------------------------


def _to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric text; None when the value is not a number.
    Floats go through their shortest repr, so 1.1 is 1.1 and not 1.100000000000000088817..."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None
            number = Decimal(repr(value))
        elif isinstance(value, Decimal):
            number = value
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _fit(number: Decimal, integer_digits: int, field: str, code: FailureCode = "invalid_measurement") -> Decimal:
    """`number` (already at its column's scale) if it fits numeric(p, s) with p - s = integer_digits."""
    if number.adjusted() >= integer_digits:
        raise _Reject(code, f"{field} = {number} does not fit the column (below 10^{integer_digits})")
    return number


# Measurements repeat endlessly across a catalogue (table 57.0, depth 61.7, ...): float -> cents
# is memoised, up to a bound, because Decimal(repr(x)).quantize(...) dominated mapping time.
_CENTS_MEMO: Final[dict[float, Decimal]] = {}
_CENTS_MEMO_SIZE: Final = 1 << 16
_FLOAT_CEILING: Final = 1e4  # the widest numeric(6, 2) column


def _cents_of_float(value: float) -> Decimal | None:
    """A non-negative float below 10^4 rounded half-up to cents; None for anything else."""
    rounded = _CENTS_MEMO.get(value)
    if rounded is None and 0.0 <= value < _FLOAT_CEILING:
        # `+ 0.0` turns -0.0 into 0.0, as PostgreSQL would store it.
        rounded = Decimal(repr(value + 0.0)).quantize(CENT, ROUND_HALF_UP)
        if len(_CENTS_MEMO) < _CENTS_MEMO_SIZE:
            _CENTS_MEMO[value] = rounded
    return rounded


def _decimal(
    cert: Mapping[str, Any], key: str, integer_digits: int, code: FailureCode = "invalid_measurement"
) -> Decimal | None:
    """certificate[key]: an optional non-negative number rounded half-up to cents that fits a
    column with `integer_digits` digits before the point."""
    value = cert.get(key)
    if type(value) is float:
        rounded = _cents_of_float(value)
        if rounded is not None and rounded.adjusted() < integer_digits:
            return rounded
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    field = f"certificate.{key}"
    number = _to_decimal(value)
    if number is None:
        raise _Reject(code, f"{field} is not a number: {_show(value)}")
    if number < 0:
        raise _Reject(code, f"{field} is negative: {_show(value)}")
    # Checked before rounding too: quantize cannot represent huge values at cent scale.
    _fit(number, integer_digits, field, code)
    return _fit(number.quantize(CENT, ROUND_HALF_UP).copy_abs(), integer_digits, field, code)


def _dollars(value: object, field: str) -> Decimal | None:
    """Integer cents -> exact dollars (150050 -> 1500.50), at most MAX_FEED_PRICE."""
    if type(value) is int and 0 <= value <= _MAX_CENTS:
        return Decimal(value).scaleb(-2)  # the feed's form, fast: exact, and already at cent scale
    if value is None:
        return None
    cents = _to_decimal(value)
    if cents is None or cents < 0 or cents != cents.to_integral_value():
        raise _Reject("invalid_price", f"{field} is not a whole, non-negative number of cents: {_show(value)}")
    if cents.adjusted() > 10 or (dollars := cents.scaleb(-2).quantize(CENT)) > MAX_FEED_PRICE:
        raise _Reject("invalid_price", f"{field} = {_show(value)} cents exceeds ${MAX_FEED_PRICE}")
    return dollars.copy_abs()


def _show(value: object) -> str:
    """A short, safe rendering of a bad value for a failure reason."""
    try:
        text = repr(value)
    except Exception:  # an integer beyond Python's digit limit, a structure nested too deep
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:77]}..."
