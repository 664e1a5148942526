"""Request bodies are bounded: the largest an operation takes (a pricing rule, a preview) is a few
KB, and bodies are read before credentials are checked (an HMAC signature covers the body), so
without a bound anyone could make the process hold any amount.

A body whose Content-Length is over the bound is refused before it is read; one sent without a
length is stopped as it arrives. Both answer 413 `payload_too_large` in the error envelope (FastAPI's
own `max_body_size` answers the first in plain text).
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

MAX_BODY_BYTES: Final = 1024 * 1024
TOO_LARGE: Final = f"the request body is larger than {MAX_BODY_BYTES} bytes"


def declared_length(content_length: str | None) -> int:
    """The Content-Length in bytes; 0 when absent or not a number (the server refuses those)."""
    return int(content_length) if content_length and content_length.isascii() and content_length.isdigit() else 0


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_length(Headers(scope=scope).get("content-length")) > MAX_BODY_BYTES:
            await error_response(413, "payload_too_large", TOO_LARGE)(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise HTTPException(413, TOO_LARGE)  # FastAPI lets it through to the error handlers
            return message

        await self.app(scope, bounded, send)
