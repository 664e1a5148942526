"""Opaque keyset cursors: base64url JSON of the sort, direction, filter fingerprint and position."""

from __future__ import annotations

import base64
import binascii

import orjson

from api.catalogue.params import SearchRequest
from api.catalogue.query import SORT_KEYS, Position, check_position
from api.errors import ParameterError

_VERSION = 1


def encode_cursor(request: SearchRequest, position: Position) -> str:
    body = {
        "c": _VERSION,
        "s": request.sort,
        "o": request.order,
        "f": request.fingerprint(),
        "v": position.value,
        "i": position.id,
    }
    return base64.urlsafe_b64encode(orjson.dumps(body)).rstrip(b"=").decode()


def decode_cursor(request: SearchRequest, token: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise ParameterError("cursor", "malformed cursor") from None
    if not isinstance(body, dict) or body.get("c") != _VERSION:
        raise ParameterError("cursor", "malformed cursor")
    value, ident = body.get("v"), body.get("i")
    if not isinstance(ident, str) or not (value is None or isinstance(value, str)):
        raise ParameterError("cursor", "malformed cursor")
    if body.get("s") != request.sort or body.get("o") != request.order:
        raise ParameterError("cursor", "the cursor belongs to another sort; keep sort and order unchanged")
    if body.get("f") != request.fingerprint():
        raise ParameterError("cursor", "the cursor belongs to other filters; keep the filters unchanged")
    return check_position(SORT_KEYS[request.sort], Position(value, ident))
