"""Text PostgreSQL can hold: its text and jsonb types refuse U+0000, which Service Bus carries.

NUL is kept as U+FFFD, the replacement character, wherever the bus stores text (the project's rule
for NUL, as in raw rows and dead letters).
"""

from __future__ import annotations

from typing import Any

import orjson

NUL = "\x00"
REPLACEMENT = "\ufffd"
_JSON_NUL = b"\\u0000"


def without_nul(text: str) -> str:
    return text.replace(NUL, REPLACEMENT)


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return without_nul(value)
    if isinstance(value, dict):
        return {without_nul(str(k)): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_nul(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """`value` as JSON text jsonb accepts: strings (and keys) holding NUL have it replaced."""
    encoded = orjson.dumps(value)
    if _JSON_NUL in encoded:  # rare; may also be an escaped backslash followed by "u0000", left as is
        encoded = orjson.dumps(_replace_nul(value))
    return encoded.decode()
