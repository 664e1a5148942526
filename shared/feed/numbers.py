"""Numbers in a feed response that no double can hold: 1e400, -1e400, and the NaN and Infinity
constants some JSON writers emit.

The rule, defined here and applied when a page is stored (`shared.raw_store.to_raw_items`): an
item holding such a number ANYWHERE is refused whole and recorded, and the rest of its page is
stored. Asking again returns the same page, so refusing the page would block its partition, and the
feed's watermark, for as long as that one stone stays in the feed.

Why the whole item, even when the number sits in a field nothing reads: the raw row is the item
re-serialised as JSON, and JSON (PostgreSQL's json types too) has no infinity or NaN. orjson writes
them as null, which a reader takes for "no value": a price that silently became null. Keeping the
item would mean rewriting the number, and which fields are read changes with the mapper
(consolidator/payload.py), so a rule tied to them would store payloads that a later mapper misreads.

orjson parses every page; only a page it refuses is parsed again by `loads`, which marks each such
number as an `Unrepresentable` holding its text and reads every other number as orjson does, so the
page's other items are stored exactly as they would be from a clean page (same payload, same hash).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

# orjson reads integers within these bounds as int and any other integer as a (rounded) float.
_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
_INT_DIGITS: Final = len(str(_UINT_MAX))


class Unrepresentable:
    """A number of the feed's JSON that no double holds, as the feed wrote it.

    Deliberately not a dataclass nor a str: orjson encodes those, so an item holding one would be
    stored with the number silently turned into an object or a string. orjson refuses this type."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Unrepresentable({self.text!r})"


def _float(text: str) -> float | Unrepresentable:
    value = float(text)
    return value if math.isfinite(value) else Unrepresentable(text)


def _int(text: str) -> int | float | Unrepresentable:
    # A long digit string is no int orjson keeps (and int() refuses beyond 4,300 digits).
    if len(text.lstrip("-")) <= _INT_DIGITS and _INT_MIN <= (value := int(text)) <= _UINT_MAX:
        return value
    return _float(text)


def loads(body: bytes) -> Any:
    """Parse JSON as orjson does, but with each number no double holds as an `Unrepresentable`.

    Raises ValueError (or RecursionError) for a body that is not JSON."""
    return json.loads(body, parse_float=_float, parse_int=_int, parse_constant=Unrepresentable)


def unrepresentable_in(value: object, path: str = "") -> list[tuple[str, Unrepresentable]]:
    """Every `Unrepresentable` inside `value` with its path (`diamond.certificate.carats`,
    `diamond.certificate.product_images[2].display_index`), in document order."""
    if isinstance(value, Unrepresentable):
        return [(path or "(the item)", value)]
    if isinstance(value, Mapping):
        return [
            found
            for key, inner in value.items()
            for found in unrepresentable_in(inner, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, list):
        return [found for index, inner in enumerate(value) for found in unrepresentable_in(inner, f"{path}[{index}]")]
    return []
