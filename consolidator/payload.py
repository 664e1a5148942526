"""Decode a stored raw payload into what the mapper reads, and nothing else.

A Nivoda item carries about 80 fields, of which the mapper reads 47. Decoding it with a typed
decoder that names only those skips the rest without building Python objects for them: 15 µs per
2.6 KB item instead of 37 µs for a full parse, the largest single cost of a consolidation in Python.

The result is the same plain dicts a full parse gives, minus unread keys, and every value stays
`Any`: judging values is the mapper's job (`consolidator.mapper`), with its precise failure
reasons. A payload whose SHAPE the typed decoder refuses (a certificate that is a list, an item that
is not an object) is parsed whole instead, so the mapper sees it exactly as before.

Keep these field lists in step with the mapper: tests/consolidator/test_payload.py maps generated
and mutated items both ways and requires identical results.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
import orjson


class _Certificate(TypedDict, total=False):
    carats: Any
    certNumber: Any
    clarity: Any
    color: Any
    crownAngle: Any
    crownHeight: Any
    culetSize: Any
    cut: Any
    depth: Any
    depthPercentage: Any
    f_color: Any
    f_intensity: Any
    f_overtone: Any
    floCol: Any
    floInt: Any
    girdle: Any
    image: Any
    lab: Any
    length: Any
    pavAngle: Any
    pavDepth: Any
    pdfUrl: Any
    polish: Any
    product_images: Any
    shape: Any
    symmetry: Any
    table: Any
    treated: Any
    v360: Any
    width: Any


class _Diamond(TypedDict, total=False):
    HoldId: Any
    availability: Any
    brown: Any
    certificate: _Certificate | None
    eyeClean: Any
    green: Any
    id: Any
    image: Any
    milky: Any
    supplier: Any
    supplier_video_link: Any
    v360: Any
    video: Any


class _Item(TypedDict, total=False):
    diamond: _Diamond | None
    diamond_price: Any
    id: Any
    price: Any


_DECODER = msgspec.json.Decoder(_Item)


def decode_item(payload: str | bytes) -> Any:
    """The item's mapped fields as plain JSON values (see the module docstring)."""
    try:
        return _DECODER.decode(payload)
    except msgspec.DecodeError:
        return orjson.loads(payload)
