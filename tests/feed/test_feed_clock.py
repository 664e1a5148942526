"""The feed's clock measured from the `Date` of its responses: the pure reading, then the client
against the simulator (whose `Date` follows its own clock) over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.feed.clock import clock_lag
from shared.feed.errors import FeedTransientError
from shared.feed.query import DiamondQuery
from tests.feed.conftest import ClientFactory, SimControl

OURS = datetime(2026, 11, 29, 12, 0, 30, 250_000, tzinfo=UTC)
TEN_MINUTES_MS = 600_000


@pytest.mark.parametrize(
    ("header", "lag"),
    [
        ("Sun, 29 Nov 2026 11:50:30 GMT", timedelta(minutes=10, microseconds=250_000)),  # feed behind
        ("Sun, 29 Nov 2026 12:05:00 GMT", -timedelta(minutes=4, seconds=29, microseconds=750_000)),  # ahead
        ("Sun, 29 Nov 2026 12:00:30 GMT", timedelta(microseconds=250_000)),
        ("Sun, 29 Nov 2026 13:00:30 +0100", timedelta(microseconds=250_000)),  # an offset is honoured
        ("Sun, 29 Nov 2026 12:00:30 -0000", timedelta(microseconds=250_000)),  # UTC of unknown origin
        ("  Sun, 29 Nov 2026 12:00:30 GMT ", timedelta(microseconds=250_000)),
    ],
)
def test_a_date_header_gives_our_time_minus_the_feeds(header: str, lag: timedelta) -> None:
    assert clock_lag(header, OURS) == lag


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "yesterday", "Sun, 32 Nov 2026 12:00:30 GMT", "Sun, 29 Nov 2026 25:00:30 GMT", "Sun, 29 Nov"],
)
def test_an_absent_or_malformed_date_gives_no_lag(header: str | None) -> None:
    assert clock_lag(header, OURS) is None


async def test_the_simulator_sends_one_date_that_follows_its_own_clock(sim: SimControl) -> None:
    sim.configure(clock_offset_ms=-TEN_MINUTES_MS)
    async with httpx.AsyncClient() as http:
        before = datetime.now(UTC)
        response = await http.post(sim.endpoint, json={"query": "{ __typename }"})
        after = datetime.now(UTC)
    (date,) = response.headers.get_list("date")  # the server's own Date would make two
    lag = clock_lag(date, before)
    assert lag is not None
    feed_now = before - lag
    ten = timedelta(milliseconds=TEN_MINUTES_MS)
    # Date is whole seconds, truncated.
    assert before - ten - timedelta(seconds=1) < feed_now <= after - ten


async def test_the_client_keeps_the_latest_lag_of_any_response(sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(sim.endpoint, max_retries=0)
    assert client.clock_reading is None
    await client.count(DiamondQuery())
    assert client.clock_reading is not None
    assert timedelta(0) <= client.clock_reading.lag < timedelta(seconds=10)

    sim.configure(clock_offset_ms=-TEN_MINUTES_MS, error_rate=1.0)
    with pytest.raises(FeedTransientError):
        await client.count(DiamondQuery())
    ten = timedelta(milliseconds=TEN_MINUTES_MS)
    assert ten <= client.clock_reading.lag < ten + timedelta(seconds=10), "a 5xx carries the feed's Date too"

    sim.configure(clock_offset_ms=TEN_MINUTES_MS, error_rate=0.0)
    await client.count(DiamondQuery())
    assert -ten <= client.clock_reading.lag < -ten + timedelta(seconds=10), "a feed ahead of us gives a negative lag"


async def test_a_recent_reading_costs_no_request_and_a_fresh_client_only_its_authentication(
    sim: SimControl, make_client: ClientFactory
) -> None:
    now = [1000.0]
    client = make_client(sim.endpoint, clock=lambda: now[0])
    probe = DiamondQuery(labgrown=True)

    first = await client.recent_clock_reading(probe, max_age_s=600)
    assert first is not None
    assert sim.stats()["requests"] == {"authenticate": 1}, "the authentication the next call needs measured it"

    now[0] += 600
    assert await client.recent_clock_reading(probe, max_age_s=600) == first
    assert sim.stats()["requests"] == {"authenticate": 1}, "a reading 10 minutes old is recent enough"

    now[0] += 1  # the token (6 h) is still good: one count measures the clock
    second = await client.recent_clock_reading(probe, max_age_s=600)
    assert second is not None
    assert second.measured_at == now[0]
    assert sim.stats()["requests"] == {"authenticate": 1, "diamonds_by_query_count": 1}


async def test_a_feed_without_a_date_header_gives_no_reading(make_client: ClientFactory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if b"authenticate" in request.content and b"as(token" not in request.content:
            return httpx.Response(200, json={"data": {"authenticate": {"username_and_password": {"token": "t"}}}})
        return httpx.Response(200, json={"data": {"as": {"diamonds_by_query_count": 0}}})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    client = make_client("http://feed.invalid/api/diamonds", http=http)
    try:
        assert await client.recent_clock_reading(DiamondQuery(), max_age_s=600) is None
    finally:
        await http.aclose()
    assert client.stats.requests == {"authenticate": 1, "diamonds_by_query_count": 1}
