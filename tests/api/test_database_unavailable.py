"""Every operation declares 503 for an unavailable database: a request that cannot get a connection
(or loses it) is answered 503 `database_unavailable`, retryable, and not 500."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.app import create_app
from api.errors import database_unavailable
from api.keys import create_key
from shared.bootstrap import open_container
from shared.db.pool import Pool
from shared.errors import DatabaseUnavailableError
from shared.settings import Settings


@pytest_asyncio.fixture(loop_scope="session")
async def unreachable(db: Pool, settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app over a pool whose server refuses connections (port 1), a connection wait of 0.5 s."""
    dead: Pool = AsyncConnectionPool(
        "postgresql://opus@127.0.0.1:1/opus", min_size=0, max_size=1, timeout=0.5, open=False
    )
    await dead.open(wait=False)
    try:
        async with open_container(settings, database_url, name="unreachable") as container:
            app = create_app(dataclasses.replace(container, pool=dead))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://opus") as client:
                yield client
    finally:
        await dead.close()


@pytest.mark.parametrize("path", ["/api/v2/diamonds", "/api/v2/runs", "/api/v2/pricing/rules"])
async def test_no_database_connection_is_503(db: Pool, unreachable: httpx.AsyncClient, path: str) -> None:
    key = (await create_key(db, name="unreachable", scopes=["admin"])).key
    response = await unreachable.get(path, headers={"X-API-Key": key})
    assert response.status_code == 503, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in response.text, "the driver's message (host, port, user) is logged, not answered"


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (PoolTimeout("couldn't get a connection after 30.00 sec"), True),
        (psycopg.OperationalError("connection to server at 10.0.0.5, port 5432 failed"), True),
        (psycopg.errors.ConnectionFailure(), True),
        (psycopg.errors.AdminShutdown(), True),
        (DatabaseUnavailableError("cannot connect to the database at postgresql://opus@10.0.0.5/opus"), True),
        (psycopg.errors.QueryCanceled(), False),  # a statement timeout: this service's query, a 500
        (psycopg.errors.UniqueViolation(), False),
        (ValueError("x"), False),
    ],
)
def test_what_counts_as_the_database_being_unavailable(exc: Exception, unavailable: bool) -> None:
    assert database_unavailable(exc) is unavailable
