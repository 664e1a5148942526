"""The HTTP transport under the feed client: httpx's API over aiohttp's connection handling.

Measured here on 130 KB search responses, httpx's own transport (pure-Python h11 parsing) cost
3.0 ms of CPU per request against 1.2 ms through aiohttp's C parser — a fifth of a worker's CPU
per page. The adapter also gives refused or dropped connections their proper httpx error: the
library maps every aiohttp connection error to a ConnectTimeout.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class FeedTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            if isinstance(exc.__cause__, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
                raise httpx.ConnectError(str(exc), request=request) from exc.__cause__
            raise


def feed_http_client(timeout: httpx.Timeout, max_connections: int = 100) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=30
    )
    return httpx.AsyncClient(timeout=timeout, transport=FeedTransport(limits=limits))
