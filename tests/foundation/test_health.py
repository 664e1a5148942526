"""/api/health over real HTTP (uvicorn on 127.0.0.1) against the session database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
import uvicorn
from starlette.types import ASGIApp

from api.app import create_app
from shared.bootstrap import open_container
from shared.db.pool import Pool
from shared.settings import Settings


@pytest_asyncio.fixture(loop_scope="session")
async def api_url(db: Pool, settings: Settings, database_url: str) -> AsyncIterator[str]:
    async with open_container(settings, database_url, name="health-test") as container:
        async for url in serve(create_app(container)):
            yield url


async def serve(app: ASGIApp) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_health_reports_database_and_migrations(api_url: str, db: Pool) -> None:
    async with db.connection() as conn:
        await conn.execute(
            """INSERT INTO run_metadata (feed, run_type, status, trace_id, updated_from, updated_to,
               expected_partitions, estimated_records)
               VALUES ('nivoda-natural', 'full', 'ingesting', 't', '2000-01-01', now(), 1, 10)"""
        )
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{api_url}/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["migrations"] == "current"
    assert body["last_runs"]["nivoda-natural"]["status"] == "ingesting"
    assert body["last_runs"]["nivoda-labgrown"] is None
    async with httpx.AsyncClient() as client:
        probe = await client.head(f"{api_url}/api/health")
    assert (probe.status_code, probe.content) == (200, b"")


async def test_health_is_503_when_migrations_are_pending(api_url: str, db: Pool) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE schema_migrations SET version = version + 1000 WHERE version = 1")
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{api_url}/api/health")
        assert response.status_code == 503
        assert response.json()["migrations"] == "invalid"
    finally:
        async with db.connection() as conn:
            await conn.execute("UPDATE schema_migrations SET version = version - 1000 WHERE version > 1000")


async def test_unknown_route_answers_the_error_envelope(api_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{api_url}/api/v2/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "details": None}}
