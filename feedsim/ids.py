"""Per-stone pseudo-random material and stable, UUID-shaped ids, derived from (seed, row).

`stone_bytes` gives every row 96 pseudo-random bytes (a splitmix64 stream keyed by the seed),
computed for a whole page at once with numpy: bytes 0-47 choose payload attributes, 48-59 and
60-71 are the diamond and offer id tails, 72-95 feed other ids. The first 8 hex digits of an id are
the row, so ids sort in row order (the createdAt tie-break) and the `ids` filter needs no lookup
table; the hashed tail means a forged id with a plausible prefix matches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

BYTES_PER_STONE: Final = 96
_LANES: Final = BYTES_PER_STONE // 8
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)
_ROW_MUL: Final = np.uint64(0xD1342543DE82EF95)
_TAIL_OFFSET: Final = {"diamond": 48, "offer": 60}
_HEX: Final = frozenset("0123456789abcdef")

IdKind = Literal["diamond", "offer"]


def stone_bytes(seed: int, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """An (n, 96) array of the rows' pseudo-random bytes."""
    key = np.uint64(seed & 0xFFFF_FFFF_FFFF_FFFF)
    base = rows.astype(np.uint64) * _ROW_MUL ^ key
    z = base[:, None] + _GOLDEN * np.arange(1, _LANES + 1, dtype=np.uint64)[None, :]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    result: npt.NDArray[np.uint8] = z.view(np.uint8).reshape(len(rows), BYTES_PER_STONE)
    return result


def format_id(row: int, tail_hex: str) -> str:
    """UUID-shaped: the row in the first group, 24 hex digits of hash after it."""
    return f"{row:08x}-{tail_hex[0:4]}-4{tail_hex[5:8]}-{tail_hex[8:12]}-{tail_hex[12:24]}"


def ids_of(seed: int, kind: IdKind, rows: Sequence[int] | npt.NDArray[np.int64]) -> list[str]:
    rows_array = np.asarray(rows, dtype=np.int64)
    start = _TAIL_OFFSET[kind]
    tails = stone_bytes(seed, rows_array)[:, start : start + 12].tobytes().hex()
    return [format_id(row, tails[24 * i : 24 * i + 24]) for i, row in enumerate(rows_array.tolist())]


def diamond_id(seed: int, row: int) -> str:
    return ids_of(seed, "diamond", [row])[0]


def offer_id(seed: int, row: int) -> str:
    return ids_of(seed, "offer", [row])[0]


def rows_of(seed: int, kind: IdKind, values: Iterable[str]) -> set[int]:
    """Rows named by ids this simulator issued; anything else is ignored."""
    parsed = [
        (int(value[:8], 16), value)
        for value in values
        if len(value) == 36 and value[8] == "-" and _HEX.issuperset(value[:8])
    ]
    if not parsed:
        return set()
    expected = ids_of(seed, kind, [row for row, _ in parsed])
    return {row for (row, value), wanted in zip(parsed, expected, strict=True) if value == wanted}
