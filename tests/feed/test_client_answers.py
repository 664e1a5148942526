"""The client against answers the simulator never gives: scripted over httpx's mock transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from shared.feed.client import NivodaClient
from shared.feed.errors import FeedQueryError
from shared.feed.query import DiamondQuery
from shared.feed.ratelimit import TokenBucket
from tests.feed.conftest import FAST_BACKOFF

Scope = Callable[[], dict[str, Any]]


def scripted(scope: Scope) -> httpx.MockTransport:
    """Authentication succeeds; every other request gets `{"data": {"as": scope()}}`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if "as(token" not in orjson.loads(request.content)["query"]:
            token = {"authenticate": {"username_and_password": {"token": "tok"}}}
            return httpx.Response(200, content=orjson.dumps({"data": token}))
        return httpx.Response(200, content=orjson.dumps({"data": {"as": scope()}}))

    return httpx.MockTransport(answer)


@pytest_asyncio.fixture
async def client_for() -> AsyncIterator[Callable[[Scope], NivodaClient]]:
    https: list[httpx.AsyncClient] = []

    def make(scope: Scope) -> NivodaClient:
        http = httpx.AsyncClient(transport=scripted(scope))
        https.append(http)
        return NivodaClient(
            "http://feed.test/api", "u", "p", rate_limiter=TokenBucket(10_000, burst=100), http=http, **FAST_BACKOFF
        )

    yield make
    for http in https:
        await http.aclose()


@pytest.mark.parametrize("count", [-1, "12", None, 1.5, True])
async def test_a_count_that_is_not_a_natural_number_is_refused(
    client_for: Callable[[Scope], NivodaClient], count: object
) -> None:
    client = client_for(lambda: {"diamonds_by_query_count": count})
    with pytest.raises(FeedQueryError, match=r"diamonds_by_query_count returned .*, expected a non-negative integer"):
        await client.count(DiamondQuery())


@pytest.mark.parametrize("total_count", [-3, "12", None, "absent"])
async def test_search_does_not_depend_on_total_count(
    client_for: Callable[[Scope], NivodaClient], total_count: object
) -> None:
    # total_count describes the returned window only (never a total); the items are the answer.
    page: dict[str, Any] = {"items": [{"id": "o1", "diamond": {"id": "d1"}}]}
    if total_count != "absent":
        page["total_count"] = total_count
    client = client_for(lambda: {"diamonds_by_query": page})
    assert await client.search(DiamondQuery(), offset=0, limit=50) == page["items"]
