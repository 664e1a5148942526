"""Contract tests: the Nivoda client against the simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.feed import client as client_module
from shared.feed import documents
from shared.feed.client import NivodaClient
from shared.feed.errors import FeedAuthError, FeedQueryError, FeedTransientError
from shared.feed.query import DateRange, DiamondQuery, PriceRange, SizeRange
from shared.feed.ratelimit import TokenBucket
from shared.feed.variants import VARIANTS, base_query, with_price_range
from tests.feed.conftest import ANCHOR, ClientFactory, SimControl, window_to
from tests.feed.truth import matching_ids
from tests.helpers import free_port

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def fetch_all(client: NivodaClient, query: DiamondQuery, page: int = 50) -> list[dict[str, Any]]:
    """Page in createdAt order until an empty page (a short page is not the end)."""
    items: list[dict[str, Any]] = []
    offset = 0
    while batch := await client.search(query, offset=offset, limit=page):
        items.extend(batch)
        offset += len(batch)
    return items


def diamond_ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["diamond"]["id"] for item in items]


# --- counting and paging ------------------------------------------------------------------------


async def test_paging_in_created_order_returns_every_stone_exactly_once(
    sim: SimControl, inventory: list[dict[str, Any]], make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint)
    natural = base_query(VARIANTS["nivoda-natural"], updated_from=EPOCH, updated_to=window_to(), only_available=True)
    query = with_price_range(natural, Decimal(300), Decimal(2500))
    expected = matching_ids(inventory, query)
    assert len(expected) > 500  # several dozen pages

    count = await client.count(query)
    got = diamond_ids(await fetch_all(client, query, page=37))

    assert count == len(expected)
    assert len(got) == len(set(got))
    assert got == expected  # createdAt ASC, ties by id: the same order as the ground truth


FILTERS: dict[str, DiamondQuery] = {
    "dollar_per_carat": DiamondQuery(dollar_per_carat=PriceRange(from_=Decimal(500), to=Decimal(1500))),
    "dollar_per_carat cents": DiamondQuery(dollar_per_carat=PriceRange(from_=Decimal("99.99"), to=Decimal("250.01"))),
    "dollar_value": DiamondQuery(dollar_value=PriceRange(from_=Decimal(1000), to=Decimal(5000))),
    "sizes": DiamondQuery(sizes=SizeRange(from_=Decimal("0.4"), to=Decimal("1.01"))),
    "shapes": DiamondQuery(shapes=("OVAL", "PEAR", "OLD MINER")),
    "labgrown true": DiamondQuery(labgrown=True, sizes=SizeRange(from_=Decimal(2))),
    "labgrown false": DiamondQuery(labgrown=False, sizes=SizeRange(from_=Decimal(1))),
    "updated": DiamondQuery(
        updated=DateRange(from_=ANCHOR - timedelta(days=3), to=ANCHOR - timedelta(hours=12, milliseconds=1))
    ),
    "availability": DiamondQuery(availability=("On Hold", "Sold", "NOT AVAILABLE")),
    "has_image": DiamondQuery(has_image=True, shapes=("ROUND",)),
    "has_v360": DiamondQuery(has_v360=True, shapes=("EMERALD",)),
    "excludeFairPoorCuts": DiamondQuery(exclude_fair_poor_cuts=True, shapes=("ROUND", "OVAL")),
    "hide_memo": DiamondQuery(hide_memo=True, labgrown=False),
    "unknown shape": DiamondQuery(shapes=("TRIANGLE",)),
    "inverted window": DiamondQuery(dollar_value=PriceRange(from_=Decimal(10**9))),
}


@pytest.mark.parametrize("name", list(FILTERS))
async def test_every_filter_matches_ground_truth(
    name: str, sim: SimControl, inventory: list[dict[str, Any]], make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint)
    query = FILTERS[name]
    expected = matching_ids(inventory, query)
    assert len(expected) < len(inventory)  # the filter filters

    assert await client.count(query) == len(expected)
    assert diamond_ids(await fetch_all(client, query)) == expected


async def test_ids_filter_and_by_ids_confirm_existence_in_any_state(
    sim: SimControl, inventory: list[dict[str, Any]], make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint)
    wanted = [s for s in inventory if s["availability"] != "AVAILABLE" or not s["has_image"]][:70]
    wanted += inventory[:50]
    forged = wanted[0]["supplier_stone_id"][:9] + "0000-4000-8000-000000000000"
    asked = [s["supplier_stone_id"] for s in wanted] + [forged]

    found = await client.by_ids(asked)

    assert sorted(diamond_ids(found)) == sorted({s["supplier_stone_id"] for s in wanted})
    by_id = {s["supplier_stone_id"]: s for s in wanted}
    for item in found:
        truth = by_id[item["diamond"]["id"]]
        assert item["diamond"]["availability"] == truth["availability"]
        assert item["id"] == truth["offer_id"]
        assert item["price"] == truth["price_cents"]
    assert client.stats.requests["diamonds_by_query"] == 3  # 121 ids, 50 per request
    labgrown_only = await client.by_ids(asked, labgrown=True)
    assert {item["diamond"]["id"] for item in labgrown_only} == {
        s["supplier_stone_id"] for s in wanted if s["labgrown"]
    }


async def test_labgrown_comes_from_the_variant_not_the_certificate(
    sim: SimControl, inventory: list[dict[str, Any]], make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint)
    query = base_query(VARIANTS["nivoda-labgrown"], updated_from=EPOCH, updated_to=window_to(), only_available=False)
    items = await fetch_all(client, with_price_range(query, Decimal(0), Decimal(150)))
    truth = {s["supplier_stone_id"]: s["labgrown"] for s in inventory}
    assert items
    assert all(truth[item["diamond"]["id"]] for item in items)
    certified = [item["diamond"]["certificate"] for item in items if item["diamond"]["certificate"]]
    unreliable = sum(1 for certificate in certified if certificate["labgrown"] is not True)
    assert 0.3 < unreliable / len(certified) < 0.7


# --- authentication ---------------------------------------------------------------------------


async def test_one_authentication_serves_many_calls(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint)
    await asyncio.gather(*(client.count(DiamondQuery(labgrown=flag)) for flag in (True, False) * 10))
    assert client.stats.authentications == 1
    assert sim.stats()["requests"]["authenticate"] == 1


async def test_token_refreshed_before_assumed_expiry_one_refresh_at_a_time(
    sim: SimControl, make_client: ClientFactory
) -> None:
    now = [1000.0]
    client = make_client(sim.endpoint, token_lifetime_s=3600, clock=lambda: now[0])
    await client.count(DiamondQuery())
    now[0] += 3600 - 299  # inside the 5-minute refresh margin
    await asyncio.gather(*(client.count(DiamondQuery(labgrown=True)) for _ in range(20)))
    assert client.stats.authentications == 2
    assert client.stats.reauths == 0
    assert sim.stats()["requests"]["authenticate"] == 2


async def test_revoked_token_is_replaced_once_and_the_call_repeated(
    sim: SimControl, make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint)
    before = await client.count(DiamondQuery())
    sim.http.post("/_sim/tokens/revoke").raise_for_status()
    assert await client.count(DiamondQuery()) == before
    assert client.stats.reauths == 1
    assert sim.stats()["rejections"] == {"invalid_token": 1}


async def test_expired_token_is_replaced(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint)
    await client.count(DiamondQuery())
    sim.http.post("/_sim/tokens/expire").raise_for_status()
    await client.count(DiamondQuery())
    assert client.stats.reauths == 1
    assert sim.stats()["rejections"] == {"expired_token": 1}


async def test_a_fresh_token_rejected_again_is_an_auth_error(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint)
    sim.configure(token_ttl_s=1e-6)  # every token is expired by the time it is used
    with pytest.raises(FeedAuthError, match="freshly issued token"):
        await client.count(DiamondQuery())
    assert sim.stats()["requests"]["authenticate"] == 2


async def test_bad_credentials_fail_fast(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint, password="wrong")
    with pytest.raises(FeedAuthError, match="refused the credentials"):
        await client.count(DiamondQuery())
    assert sim.stats()["requests"] == {"authenticate": 1}
    assert client.stats.retries == {}


@pytest.mark.parametrize("fault", ["graphql_error", "cdn_403"])
async def test_callers_waiting_for_a_refresh_that_fails_share_its_failure(
    fault: str, sim: SimControl, make_client: ClientFactory
) -> None:
    # Each caller retrying the refresh in turn behind a lock made the last of N wait N times the
    # whole retry schedule (minutes while the feed failed; the local host's messages outlived their locks).
    client = make_client(sim.endpoint, max_retries=2)
    sim.configure(**FAULTS[fault])

    outcomes = await asyncio.gather(*(client.count(DiamondQuery()) for _ in range(8)), return_exceptions=True)

    assert all(isinstance(o, FeedTransientError) and "authenticate" in str(o) for o in outcomes), outcomes
    assert sim.stats()["faults"] == {fault: 3}, "one refresh, with its retries, for all eight callers"
    assert client.stats.retries == {fault: 2}
    sim.configure(**dict.fromkeys(FAULTS[fault], 0.0))
    assert await client.count(DiamondQuery()) > 0, "a refresh after a failed one starts afresh"
    assert client.stats.authentications == 1


async def test_a_refresh_failing_after_its_only_caller_was_cancelled_is_not_reported_unretrieved(
    sim: SimControl, make_client: ClientFactory
) -> None:
    # The local host cancels handlers at shutdown: one waiting for a refresh leaves the refresh to run
    # on, and its failure must not end up as asyncio's "Task exception was never retrieved".
    client = make_client(sim.endpoint, max_retries=2)
    sim.configure(**FAULTS["graphql_error"])
    loop = asyncio.get_running_loop()
    reports: list[str] = []

    def report(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Only the refresh's own: collecting garbage may report other tests' leftovers on this loop.
        task = context.get("future")
        if isinstance(task, asyncio.Task) and task.get_name() == "nivoda-authenticate":
            reports.append(str(context.get("message")))

    previous = loop.get_exception_handler()
    loop.set_exception_handler(report)
    try:
        caller = asyncio.create_task(client.count(DiamondQuery()))
        while not sim.stats()["faults"]:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        while sim.stats()["faults"] != {"graphql_error": 3}:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for _ in range(3):  # the refresh task's end, then its release
            await asyncio.sleep(0.01)
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reports == []


# --- failures ----------------------------------------------------------------------------------

FAULTS = {
    "server_error": {"error_rate": 1.0},
    "cdn_403": {"cdn_block_rate": 1.0},
    "graphql_error": {"graphql_error_rate": 1.0},
    "timeout": {"timeout_rate": 1.0, "hang_s": 5.0},
}


@pytest.mark.parametrize("cause", list(FAULTS))
async def test_persistent_transient_fault_is_retried_then_raised(
    cause: str, sim: SimControl, make_client: ClientFactory
) -> None:
    client = make_client(sim.endpoint, max_retries=2, request_timeout_s=0.3)
    await client.count(DiamondQuery())  # authenticated before the fault starts
    sim.configure(**FAULTS[cause])

    with pytest.raises(FeedTransientError) as raised:
        await client.search(DiamondQuery(), offset=0, limit=10)

    assert raised.value.cause == cause
    assert raised.value.attempts == 3
    assert client.stats.retries == {cause: 2}
    assert client.stats.requests["diamonds_by_query"] == 3
    assert sim.stats()["faults"] == {cause: 3}


@pytest.mark.parametrize("cause", list(FAULTS))
async def test_intermittent_transient_fault_is_absorbed(
    cause: str, sim: SimControl, inventory: list[dict[str, Any]], make_client: ClientFactory
) -> None:
    # A short client timeout only where the fault is a hang: elsewhere a slow, loaded machine would
    # turn ordinary responses into timeouts that this test does not count.
    client = make_client(sim.endpoint, max_retries=12, request_timeout_s=0.3 if cause == "timeout" else 10)
    knobs = {name: (value if name == "hang_s" else 0.3) for name, value in FAULTS[cause].items()}
    sim.configure(**knobs)
    query = DiamondQuery(labgrown=False)  # about 25 pages: faults are all but certain

    items = await fetch_all(client, query)

    assert diamond_ids(items) == matching_ids(inventory, query)
    faults = sim.stats()["faults"][cause]
    assert faults > 0
    retried = sum(client.stats.retries.values())
    if cause == "timeout":
        # Every hang was retried; a response slowed past 0.3 s by a loaded machine is a timeout too.
        assert retried >= faults
        assert set(client.stats.retries) == {"timeout"}
    else:
        assert retried == faults  # every fault seen was retried, and nothing else


async def test_rate_limited_requests_wait_for_retry_after(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint, max_retries=5)
    await client.count(DiamondQuery())
    sim.configure(rate_limit=2)
    await asyncio.sleep(1.0)  # start in a fresh window
    started = time.monotonic()

    # Concurrent, so that more than 2 land in one 1-second window however slow the machine is.
    counts = await asyncio.gather(*(client.count(DiamondQuery(labgrown=flag)) for flag in (True, False) * 3))

    assert all(count > 0 for count in counts)
    rejected = sim.stats()["faults"]["rate_limited"]
    assert rejected >= 1
    assert client.stats.retries == {"rate_limited": rejected}
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured


async def test_connection_failures_are_transient(make_client: ClientFactory) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}/api/diamonds", max_retries=1)
    with pytest.raises(FeedTransientError) as raised:
        await client.count(DiamondQuery())
    assert raised.value.cause == "connection"
    assert client.stats.requests["authenticate"] == 2


async def test_query_rejected_by_validation_is_fatal(
    sim: SimControl, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(sim.endpoint)
    broken = documents.COUNT.replace("diamonds_by_query_count(query: $query)", "diamonds_by_query_total")
    monkeypatch.setattr(documents, "COUNT", broken)
    with pytest.raises(FeedQueryError, match="diamonds_by_query_total"):
        await client.count(DiamondQuery())
    assert client.stats.requests["diamonds_by_query_count"] == 1
    assert sim.stats()["rejections"] == {"validation": 1}


async def test_bad_input_reported_inside_a_200_is_fatal(
    sim: SimControl, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(sim.endpoint)
    monkeypatch.setattr(client_module, "MAX_PAGE_SIZE", 100)  # as if the client forgot Nivoda's cap
    with pytest.raises(FeedQueryError, match="limit must be between 0 and 50"):
        await client.search(DiamondQuery(), offset=0, limit=100)
    assert client.stats.requests["diamonds_by_query"] == 1


async def test_search_caps_the_page_at_fifty(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint)
    assert len(await client.search(DiamondQuery(), offset=0, limit=500)) == 50
    with pytest.raises(ValueError, match="limit"):
        await client.search(DiamondQuery(), offset=0, limit=0)
    with pytest.raises(ValueError, match="offset"):
        await client.search(DiamondQuery(), offset=-1, limit=10)


# --- rate limiting -------------------------------------------------------------------------------


class RecordingLimiter:
    """Wraps a limiter and records when each request was let through."""

    def __init__(self, inner: TokenBucket) -> None:
        self.inner = inner
        self.granted: list[float] = []

    async def acquire(self) -> None:
        await self.inner.acquire()
        self.granted.append(time.monotonic())


async def test_shared_limiter_holds_fifty_callers_to_the_rate(sim: SimControl, make_client: ClientFactory) -> None:
    rate = 40.0
    limiter = RecordingLimiter(TokenBucket(rate, burst=1))
    client = make_client(sim.endpoint, rate_limiter=limiter)
    deadline = time.monotonic() + 3.0
    query = DiamondQuery(labgrown=True)

    async def caller() -> None:
        while time.monotonic() < deadline:
            await client.count(query)

    await asyncio.gather(*(caller() for _ in range(50)))

    granted = limiter.granted
    measured = (len(granted) - 1) / (granted[-1] - granted[0])
    assert measured <= rate * 1.05, "the limiter let callers exceed the rate"
    # Only a loose floor: on a loaded machine the fifty callers cannot always keep the bucket busy.
    assert measured >= rate * 0.5, "the limiter held callers far below the rate"
    stats = sim.stats()
    assert sum(stats["requests"].values()) == len(granted)
    assert stats["faults"] == {}


async def test_built_from_settings(sim: SimControl) -> None:
    from shared.settings import load_settings

    settings = load_settings(nivoda_endpoint=sim.endpoint, nivoda_max_retries=0, nivoda_request_timeout_s=7)
    client = NivodaClient.from_settings(settings, TokenBucket(settings.nivoda_rate_limit_per_s))
    try:
        assert client.endpoint == sim.endpoint
        assert await client.count(DiamondQuery(labgrown=True)) > 0
    finally:
        await client.aclose()
    unset = load_settings()
    with pytest.raises(ValueError, match="NIVODA_ENDPOINT"):
        NivodaClient.from_settings(unset.model_copy(update={"nivoda_endpoint": None}), TokenBucket(1))
    other = NivodaClient.from_settings(unset, TokenBucket(1), endpoint="http://127.0.0.1:1/api/diamonds")
    assert other.endpoint == "http://127.0.0.1:1/api/diamonds"
    await other.aclose()
