"""API test fixtures: the app served by uvicorn on 127.0.0.1 in a thread of its own, over the
session database, so both async tests and synchronous ones (hypothesis, schemathesis) call it over
real HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from api.app import create_app
from api.keys import create_key
from shared.bootstrap import Container, open_container
from shared.db.pool import Pool
from shared.settings import Settings, get_settings
from tests.conftest import make_settings


@dataclass
class ServedApi:
    url: str
    container: Container
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (services that take the server's container)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)


@contextmanager
def serve(settings: Settings, database_url: str) -> Iterator[ServedApi]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with open_container(settings, database_url, name="api-tests") as container:
            config = uvicorn.Config(create_app(container), host="127.0.0.1", port=0, log_config=None, lifespan="off")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            state.update(server=server, api=ServedApi(f"http://127.0.0.1:{port}", container, loop))
            ready.set()
            await task

    def run() -> None:
        try:
            loop.run_until_complete(main())
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="api-under-test", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if "api" not in state:
        raise RuntimeError("the API did not start")
    try:
        yield state["api"]
    finally:
        state["server"].should_exit = True
        thread.join(timeout=30)


@contextmanager
def served_client(
    settings: Settings, database_url: str, *, name: str, scope: str
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """The app served with `settings`, a client of it, and the headers of a new key `name` of `scope`."""
    with serve(settings, database_url) as served, httpx.Client(base_url=served.url, timeout=60) as client:
        key = served.call(create_key(served.container.pool, name=name, scopes=[scope])).key
        yield client, {"X-API-Key": key}


# HMAC clients of the served API: `ops` has read and admin, `shop` read only (the ":read" rule).
HMAC_SECRETS = {"ops": "ops-secret", "shop:read": "shop-secret"}


@pytest.fixture(scope="session")
def api_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("api-data"), hmac_secrets=json.dumps(HMAC_SECRETS))


@pytest.fixture(scope="session")
def api(api_settings: Settings, database_url: str) -> Iterator[ServedApi]:
    with serve(api_settings, database_url) as served:
        yield served


@dataclass(frozen=True)
class Keys:
    read: str
    admin: str


@pytest.fixture
async def keys(db: Pool) -> Keys:
    read = await create_key(db, name="test-read", scopes=["read"])
    admin = await create_key(db, name="test-admin", scopes=["admin"])
    return Keys(read=read.key, admin=admin.key)


@pytest.fixture
def http(api: ServedApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture
async def ahttp(api: ServedApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture
def sync_db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Any) -> Iterator[None]:
    """`opus` commands run in-process (`cli.main`) against the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OPUS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
