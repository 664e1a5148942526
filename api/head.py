"""HEAD wherever GET is (RFC 9110 §9.3.2: the same status and headers, no body).

FastAPI routes answer only the methods they declare, so a HEAD to a catalogue page was a 405. The
request goes through as a GET and its body is dropped here, whichever server carries the response;
the method the client sent stays readable (`sent_method`), which an HMAC signature covers.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SENT_METHOD: Final = "opus.sent_method"


def sent_method(scope: Scope) -> str:
    method: Any = scope.get(_SENT_METHOD, scope["method"])
    return str(method)


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", _SENT_METHOD: "HEAD"}, receive, without_body)
