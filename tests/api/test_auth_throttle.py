"""Failed-authentication throttling (api/auth_throttle.py) over the real app and PostgreSQL: a source's
budget of failures, 429 with Retry-After, the budget coming back, sources kept apart (IPv6 by /64),
X-Forwarded-For with and without trusted proxies, the bound on remembered sources, public routes.

Most tests drive the ASGI app through httpx's ASGITransport, which sets the peer address, with a
clock of the test's own; one serves it with uvicorn and calls from two loopback addresses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import api.auth_throttle
from api.app import create_app
from api.auth import sign
from api.keys import create_key, hash_key
from shared.bootstrap import Container, open_container
from shared.db.pool import Pool
from shared.settings import Settings
from tests.api.conftest import HMAC_SECRETS, serve
from tests.conftest import make_settings

SEARCH = "/api/v2/diamonds"
LIMIT = 5
WINDOW_S = 60
# A burst of LIMIT failures leaves the source out for one refill: WINDOW_S / LIMIT seconds.
REFILL_S = WINDOW_S // LIMIT
BAD_KEY = {"X-API-Key": "opus_guess"}


class StepClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def throttle_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("throttle"),
        hmac_secrets=json.dumps(HMAC_SECRETS),
        api_auth_failure_limit=LIMIT,
        api_auth_failure_window_s=WINDOW_S,
    )


@pytest.fixture(scope="module")
async def base_container(throttle_settings: Settings, database_url: str) -> AsyncIterator[Container]:
    async with open_container(throttle_settings, database_url, name="throttle-tests") as container:
        yield container


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def make_app(base: Container, clock: StepClock, **settings: Any) -> FastAPI:
    """A fresh app (so a fresh throttle) over the shared pool, with `clock` and `settings` changed."""
    changed = base.settings.model_copy(update=settings)
    return create_app(dataclasses.replace(base, clock=clock, settings=changed))


@pytest.fixture
def app(base_container: Container, clock: StepClock) -> FastAPI:
    return make_app(base_container, clock)


def client(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client of `app` whose connection comes from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
async def key(db: Pool) -> str:
    return (await create_key(db, name="throttle-read", scopes=["read"])).key


async def fail(http: httpx.AsyncClient, times: int = LIMIT, headers: dict[str, str] | None = None) -> None:
    """`times` failed authentications, each answered 401 (none throttled yet)."""
    for _ in range(times):
        response = await http.get(SEARCH, headers=headers or BAD_KEY)
        assert response.status_code == 401, response.text


def assert_throttled(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(retry_after)
    assert response.json() == {
        "error": {
            "code": "too_many_failed_authentications",
            "message": f"too many failed authentications from this address; retry in {retry_after} s",
            "details": None,
        }
    }


async def last_used(db: Pool, key: str) -> datetime | None:
    async with db.connection() as conn:
        row = await (
            await conn.execute("SELECT last_used_at FROM api_keys WHERE key_hash = %s", (hash_key(key),))
        ).fetchone()
    assert row is not None
    value: datetime | None = row[0]
    return value


def signed(clock: StepClock, client_id: str = "shop", secret: str = "shop-secret") -> dict[str, str]:
    timestamp = str(int(clock.now().timestamp()))
    return {"X-Client-Id": client_id, "X-Timestamp": timestamp, "X-Signature": sign(secret, "GET", SEARCH, timestamp)}


async def test_failures_beyond_the_budget_answer_429_before_any_credential_is_checked(
    app: FastAPI, clock: StepClock, db: Pool, key: str
) -> None:
    async with client(app, "198.51.100.1") as http:
        await fail(http, LIMIT - 2)
        await fail(http, 1, signed(clock, secret="wrong"))
        await fail(http, 1, {"X-Client-Id": "nobody", "X-Timestamp": "1", "X-Signature": "00"})
        assert_throttled(await http.get(SEARCH, headers=BAD_KEY), REFILL_S)
        # A correct key and a correct signature are refused too, and neither is looked at: the key's
        # last use is not written and the signature's nonce is not spent.
        assert_throttled(await http.get(SEARCH, headers={"X-API-Key": key}), REFILL_S)
        assert await last_used(db, key) is None
        hmac_headers = signed(clock)
        assert_throttled(await http.get(SEARCH, headers=hmac_headers), REFILL_S)
        clock.advance(REFILL_S)
        assert (await http.get(SEARCH, headers=hmac_headers)).status_code == 200


async def test_the_budget_comes_back_as_the_window_passes(app: FastAPI, clock: StepClock, key: str) -> None:
    async with client(app, "198.51.100.2") as http:
        await fail(http)
        clock.advance(REFILL_S - 1)
        assert_throttled(await http.get(SEARCH, headers=BAD_KEY), 1)
        clock.advance(1)
        await fail(http, 1)  # one refill: one more attempt
        assert_throttled(await http.get(SEARCH, headers=BAD_KEY), REFILL_S)
        clock.advance(WINDOW_S)  # a whole window without failures: the whole budget
        await fail(http)
        assert_throttled(await http.get(SEARCH, headers={"X-API-Key": key}), REFILL_S)
        clock.advance(REFILL_S)
        assert (await http.get(SEARCH, headers={"X-API-Key": key})).status_code == 200


async def test_another_source_is_not_affected(app: FastAPI, key: str) -> None:
    async with client(app, "198.51.100.3") as attacker, client(app, "198.51.100.4") as other:
        await fail(attacker)
        assert (await attacker.get(SEARCH, headers={"X-API-Key": key})).status_code == 429
        assert (await other.get(SEARCH, headers={"X-API-Key": key})).status_code == 200
        await fail(other)
        assert (await other.get(SEARCH, headers=BAD_KEY)).status_code == 429


async def test_ipv6_sources_are_their_64_prefix(app: FastAPI) -> None:
    async with (
        client(app, "2001:db8:1:1::1") as first,
        client(app, "2001:db8:1:1::ffff") as same_prefix,
        client(app, "2001:db8:1:2::1") as next_prefix,
    ):
        await fail(first)
        assert (await same_prefix.get(SEARCH, headers=BAD_KEY)).status_code == 429
        await fail(next_prefix, 1)


async def test_successes_neither_count_nor_reset_the_budget(app: FastAPI, key: str) -> None:
    async with client(app, "198.51.100.5") as http:
        for _ in range(3 * LIMIT):
            assert (await http.get(SEARCH, headers={"X-API-Key": key})).status_code == 200
        await fail(http, LIMIT - 1)
        assert (await http.get(SEARCH, headers={"X-API-Key": key})).status_code == 200
        await fail(http, 1)
        assert (await http.get(SEARCH, headers={"X-API-Key": key})).status_code == 429


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(app: FastAPI, key: str) -> None:
    async with client(app, "198.51.100.6") as http:
        for n in range(LIMIT):
            response = await http.get(SEARCH, headers={**BAD_KEY, "X-Forwarded-For": f"203.0.113.{n}"})
            assert response.status_code == 401
        response = await http.get(SEARCH, headers={"X-API-Key": key, "X-Forwarded-For": "203.0.113.99"})
        assert response.status_code == 429


async def test_behind_trusted_proxies_the_client_is_the_entry_they_appended(
    base_container: Container, clock: StepClock, key: str
) -> None:
    app = make_app(base_container, clock, api_trusted_proxy_hops=2)
    # Every request comes from the same proxy; the left-most entries are whatever the client sent.
    async with client(app, "10.0.0.1") as proxy:
        for n in range(LIMIT):
            # Azure's front end writes address:port; the client rotates its own entry.
            forwarded = f"192.0.2.{n}, 203.0.113.7:{5000 + n}, 10.0.0.9"
            assert (await proxy.get(SEARCH, headers={**BAD_KEY, "X-Forwarded-For": forwarded})).status_code == 401
        forwarded = "192.0.2.200, 203.0.113.7, 10.0.0.9"
        assert (await proxy.get(SEARCH, headers={"X-API-Key": key, "X-Forwarded-For": forwarded})).status_code == 429
        # Another client behind the same proxies keeps its budget.
        forwarded = "203.0.113.7, 203.0.113.8, 10.0.0.9"
        assert (await proxy.get(SEARCH, headers={"X-API-Key": key, "X-Forwarded-For": forwarded})).status_code == 200
        # Fewer entries than proxies: the left-most, which a proxy wrote.
        response = await proxy.get(SEARCH, headers={"X-API-Key": key, "X-Forwarded-For": "203.0.113.7"})
        assert response.status_code == 429


async def test_at_the_bound_the_source_that_failed_longest_ago_is_forgotten(
    base_container: Container, clock: StepClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.auth_throttle, "MAX_SOURCES", 3)
    app = make_app(base_container, clock)
    async with client(app, "198.51.100.7") as oldest:
        await fail(oldest)
        assert (await oldest.get(SEARCH, headers=BAD_KEY)).status_code == 429
        for n in range(2):
            async with client(app, f"198.51.100.{10 + n}") as newer:
                await fail(newer)
        assert len(app.state.auth_throttle) == 3
        assert (await oldest.get(SEARCH, headers=BAD_KEY)).status_code == 429, "still within the bound"
        async with client(app, "198.51.100.20") as fourth:
            await fail(fourth, 1)
        assert len(app.state.auth_throttle) == 3
        await fail(oldest, 1)  # forgotten: a fresh budget (and 198.51.100.10 is now the one to go)
        async with client(app, "198.51.100.11") as newer:
            assert (await newer.get(SEARCH, headers=BAD_KEY)).status_code == 429, "newer sources are kept"


async def test_public_routes_are_not_throttled(app: FastAPI) -> None:
    async with client(app, "198.51.100.8") as http:
        await fail(http)
        assert (await http.get(SEARCH, headers=BAD_KEY)).status_code == 429
        for path in ("/api/health", "/api/v2/openapi.json", "/api/v2/docs", "/", "/api/dashboard/"):
            assert (await http.get(path)).status_code == 200, path


def test_over_http_the_connection_address_is_the_source(throttle_settings: Settings, database_url: str) -> None:
    with (
        serve(throttle_settings, database_url) as served,
        httpx.Client(base_url=served.url, timeout=30) as first,
        httpx.Client(
            base_url=served.url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        ) as other,
    ):
        for _ in range(LIMIT):
            assert first.get(SEARCH, headers=BAD_KEY).status_code == 401
        throttled = first.get(SEARCH, headers=BAD_KEY)
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= REFILL_S
        assert other.get(SEARCH, headers=BAD_KEY).status_code == 401


async def test_the_openapi_document_declares_the_429_and_its_retry_after_with_every_401(app: FastAPI) -> None:
    async with client(app, "198.51.100.9") as http:
        document = (await http.get("/api/v2/openapi.json")).json()
    operations = [op for path in document["paths"].values() for op in path.values() if "responses" in op]
    authenticating = [op for op in operations if "401" in op["responses"]]
    assert authenticating
    for op in operations:
        assert ("429" in op["responses"]) == ("401" in op["responses"]), op["operationId"]
    for op in authenticating:
        throttled = op["responses"]["429"]
        assert throttled["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}, op["operationId"]
