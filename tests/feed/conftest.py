"""Fixtures for the feed contract tests: a simulator serving real HTTP on 127.0.0.1 and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec, SimConfig
from shared.feed.client import NivodaClient
from shared.feed.ratelimit import TokenBucket

SEED = 7
STONES = 3_000
# A fixed anchor keeps the inventory identical across runs; it lies in the past, so churn
# timestamps (wall clock) are always later than every generated one.
ANCHOR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ANCHOR_MS = int(ANCHOR.timestamp() * 1000)
FAST_BACKOFF: dict[str, Any] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "backoff_jitter_s": 0.01}


class SimControl:
    """The simulator's control surface over HTTP (what a test of a remote simulator would use)."""

    def __init__(self, running: ThreadedSimulator) -> None:
        self.running = running
        self.url = running.url
        self.endpoint = running.endpoint
        self.http = httpx.Client(base_url=running.url, timeout=30)

    def configure(self, **knobs: Any) -> dict[str, Any]:
        response = self.http.post("/_sim/config", json=knobs)
        response.raise_for_status()
        return dict(response.json())

    def reset(self) -> None:
        self.http.post("/_sim/config", json=SimConfig().model_dump()).raise_for_status()
        self.http.post("/_sim/stats/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sim/stats").json())

    def inventory(self) -> list[dict[str, Any]]:
        body = self.http.get("/_sim/inventory").json()
        assert body["count"] == len(body["stones"])
        return list(body["stones"])

    def churn(self, events: int) -> dict[str, Any]:
        response = self.http.post("/_sim/churn", json={"events": events})
        response.raise_for_status()
        return dict(response.json())

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post("/api/diamonds", json={"query": query, "variables": variables or {}})

    def token(self) -> str:
        from shared.feed import documents

        body = self.graphql(documents.AUTHENTICATE, {"username": "sim-user", "password": "sim-password"}).json()
        return str(body["data"]["authenticate"]["username_and_password"]["token"])

    def close(self) -> None:
        self.http.close()


def start(stones: int = STONES, seed: int = SEED, **knobs: Any) -> SimControl:
    return SimControl(start_in_thread(InventorySpec(seed=seed, stones=stones, anchor_ms=ANCHOR_MS), SimConfig(**knobs)))


@pytest.fixture(scope="session")
def shared_sim() -> Iterator[SimControl]:
    """One simulator per test process; tests must not churn it (use `private_sim` for that)."""
    control = start()
    yield control
    control.close()
    control.running.stop()


@pytest.fixture
def sim(shared_sim: SimControl) -> Iterator[SimControl]:
    shared_sim.reset()
    yield shared_sim
    shared_sim.reset()


@pytest.fixture
def private_sim() -> Iterator[SimControl]:
    """A small simulator of this test's own, free to churn."""
    control = start(stones=2_000, seed=11)
    yield control
    control.close()
    control.running.stop()


@pytest.fixture(scope="session")
def inventory(shared_sim: SimControl) -> list[dict[str, Any]]:
    """Ground truth of the shared simulator (which nobody churns)."""
    return shared_sim.inventory()


ClientFactory = Callable[..., NivodaClient]


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[NivodaClient] = []

    def factory(endpoint: str, **overrides: Any) -> NivodaClient:
        options: dict[str, Any] = {
            "rate_limiter": TokenBucket(10_000, burst=100),
            "connect_timeout_s": 2.0,
            "request_timeout_s": 10.0,
            "max_retries": 3,
            **FAST_BACKOFF,
            **overrides,
        }
        username = options.pop("username", "sim-user")
        password = options.pop("password", "sim-password")
        client = NivodaClient(endpoint, username, password, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


def window_to() -> datetime:
    """An `updated.to` that includes every generated stone."""
    return datetime.now(UTC) + timedelta(minutes=1)
