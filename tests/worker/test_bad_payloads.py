"""The worker against bad feed answers, on the real database: what is stored, refused and recorded.

The feed is scripted (an httpx mock transport answering the client's GraphQL requests), so each
test names exactly what Nivoda sent. A page is either stored whole with its bad items recorded as
error records, or refused whole: raw rows and the partition's offset move together or not at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from shared.bootstrap import Container, local_bus
from shared.clock import SystemClock
from shared.db.pool import Pool
from shared.feed.client import NivodaClient
from shared.feed.ratelimit import TokenBucket
from shared.runs import load_run_and_partition, work_item_for
from shared.settings import Settings
from worker.service import Outcome, process_work_item

FEED = "nivoda-natural"
ENDPOINT = "http://feed.test/api/diamonds"
MEGABYTE = 1 << 20

Answer = Callable[[dict[str, Any]], httpx.Response]


def item(stone: str | None, offer: str | None = "offer", **diamond: Any) -> dict[str, Any]:
    return {
        "id": f"{offer}-{stone}" if offer == "offer" else offer,
        "price": 150_050,
        "diamond_price": 140_000,
        "diamond": {"id": stone, "certificate": {"carats": 1.01, "shape": "ROUND"}, **diamond},
    }


def page(items: list[Any] | None, **extra: Any) -> httpx.Response:
    count = len(items) if isinstance(items, list) else 0
    body = {"data": {"as": {"diamonds_by_query": {"total_count": count, "items": items, **extra}}}}
    return httpx.Response(200, content=orjson.dumps(body))


class ScriptedFeed:
    """Answers authentication itself and every search with `answer`; counts the searches."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.searches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if "authenticate" in body["query"] and "as(token" not in body["query"]:
            token = {"data": {"authenticate": {"username_and_password": {"token": "tok"}}}}
            return httpx.Response(200, content=orjson.dumps(token))
        self.searches += 1
        return self.answer(body["variables"])


@asynccontextmanager
async def container(settings: Settings, pool: Pool, feed: ScriptedFeed) -> AsyncIterator[Container]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(feed))
    client = NivodaClient(
        ENDPOINT,
        "user",
        "password",
        rate_limiter=TokenBucket(10_000, burst=100),
        http=http,
        max_retries=2,
        backoff_initial_s=0.001,
        backoff_max_s=0.002,
        backoff_jitter_s=0.0,
    )
    bus = local_bus(settings, pool)
    try:
        yield Container(settings=settings, pool=pool, clock=SystemClock(), bus=bus, feed=client)
    finally:
        await bus.close()
        await http.aclose()


async def start_partition(pool: Pool) -> Any:
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        cur = await conn.execute(
            """INSERT INTO run_metadata (feed, run_type, status, trace_id, updated_from, updated_to,
                   expected_partitions, estimated_records, started_at, last_progress_at)
               VALUES (%s, 'full', 'ingesting', 'trace', %s, %s, 1, 100, %s, %s) RETURNING run_id""",
            (FEED, now - timedelta(days=30), now, now, now),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            """INSERT INTO partition_progress (run_id, partition_id, position, min_price, max_price,
                   estimated_records, status, next_offset)
               VALUES (%s, 'p0', 0, %s, %s, 100, 'pending', 0)""",
            (row[0], Decimal(0), Decimal(999)),
        )
        run, partition = await load_run_and_partition(conn, row[0], "p0")
    return work_item_for(run, partition, page_size=50)


async def rows(pool: Pool, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params or None)
        return list(await cur.fetchall())


async def state(pool: Pool) -> dict[str, Any]:
    (partition,) = await rows(pool, "SELECT status, next_offset, pages, records_seen, error FROM partition_progress")
    return {
        "partition": partition,
        "raw": sorted(r[0] for r in await rows(pool, "SELECT supplier_stone_id FROM raw_diamonds_nivoda")),
        "errors": await rows(pool, "SELECT code, message, supplier_stone_id FROM error_records ORDER BY id"),
    }


# --- items the worker stores, recording the bad ones --------------------------------------------


async def test_items_without_a_usable_stone_id_are_recorded_and_the_rest_stored(db: Pool, settings: Settings) -> None:
    items: list[Any] = [
        item("a"),
        item(None),  # diamond.id null
        {"id": "offer-x", "price": 1, "diamond": {"certificate": {}}},  # diamond.id absent
        {"id": "offer-y", "price": 1, "diamond": None},  # no diamond object
        None,  # not an object at all
        "junk",
        item("b"),
    ]
    async with container(settings, db, ScriptedFeed(lambda _: page(items))) as c:
        result = await process_work_item(c, await start_partition(db))
    assert result.outcome is Outcome.PAGE
    after = await state(db)
    assert after["raw"] == ["a", "b"]
    assert after["partition"][:4] == ("running", 6, 1, 2)
    codes = [e[0] for e in after["errors"]]
    assert codes == ["malformed_item"] * 5
    messages = [e[1] for e in after["errors"]]
    # Each record says what was wrong with which item (its offer id when it has one).
    assert any("offer-x" in m and "diamond.id" in m for m in messages), messages
    assert any("offer-y" in m and "diamond" in m for m in messages), messages
    assert any("not an object" in m for m in messages), messages


async def test_a_stone_id_repeated_within_a_page_counts_once_and_is_recorded(db: Pool, settings: Settings) -> None:
    items = [item("a"), item("b", offer="first-b"), item("c"), item("b", offer="second-b"), item("d")]
    async with container(settings, db, ScriptedFeed(lambda _: page(items))) as c:
        result = await process_work_item(c, await start_partition(db))
    assert result.outcome is Outcome.PAGE
    after = await state(db)
    assert after["raw"] == ["a", "b", "c", "d"]
    assert after["partition"][3] == 4, "records_seen counts distinct stones"
    assert [(e[0], e[2]) for e in after["errors"]] == [("duplicate_item", "b")]


async def test_a_huge_stone_id_is_recorded_not_a_database_error(db: Pool, settings: Settings) -> None:
    huge = "x" * MEGABYTE
    # The offer id is no key here (the mapper judges it, tests/consolidator/test_mapper.py).
    items = [item("a"), item(huge), item("c", offer=huge), item("d")]
    async with container(settings, db, ScriptedFeed(lambda _: page(items))) as c:
        result = await process_work_item(c, await start_partition(db))
    assert result.outcome is Outcome.PAGE
    after = await state(db)
    assert after["raw"] == ["a", "c", "d"]
    ((code, message, _),) = after["errors"]
    assert code == "malformed_item"
    assert "diamond.id is 1048576 characters long" in message
    assert len(message) < 500, "the reason quotes a bad value, never all of it"


async def test_ids_postgresql_cannot_store_are_recorded_not_a_database_error(db: Pool, settings: Settings) -> None:
    items = [item("a"), item("bad\x00id"), item("c", offer="offer\x00c"), item("d")]
    async with container(settings, db, ScriptedFeed(lambda _: page(items))) as c:
        result = await process_work_item(c, await start_partition(db))
    assert result.outcome is Outcome.PAGE
    after = await state(db)
    # The offer id is no key: its row is stored and the mapper refuses the item (test_mapper.py).
    assert after["raw"] == ["a", "c", "d"]
    ((code, message, stone),) = after["errors"]
    assert (code, stone) == ("malformed_item", None)
    assert "diamond.id holds a NUL character" in message


async def test_a_huge_string_in_another_field_is_stored_for_the_mapper_to_judge(db: Pool, settings: Settings) -> None:
    items = [item("a", girdle="g" * MEGABYTE), item("b")]
    async with container(settings, db, ScriptedFeed(lambda _: page(items))) as c:
        assert (await process_work_item(c, await start_partition(db))).outcome is Outcome.PAGE
    assert (await state(db))["raw"] == ["a", "b"]


# --- pages the worker refuses: nothing written, the partition fails clearly ------------------------


def graphql_errors(*errors: dict[str, Any], data: Any = None) -> Answer:
    return lambda _: httpx.Response(200, content=orjson.dumps({"errors": list(errors), "data": data}))


@pytest.mark.parametrize(
    ("answer", "reason", "searches"),
    [
        pytest.param(
            graphql_errors(
                {"message": 'Cannot query field "nope"', "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
            ),
            "FeedQueryError",
            1,
            id="permanent-query-error-not-retried",
        ),
        pytest.param(
            graphql_errors(
                {"message": "Internal server error", "path": ["as", "diamonds_by_query", "items", 3]},
                data={"as": {"diamonds_by_query": {"total_count": 2, "items": [item("a"), item("b")]}}},
            ),
            "graphql_error",
            3,
            id="200-with-errors-and-partial-data",
        ),
        pytest.param(
            lambda _: httpx.Response(200, content=b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body></html>"),
            "bad_response",
            3,
            id="html-error-page-with-200",
        ),
        pytest.param(
            lambda _: httpx.Response(200, content=orjson.dumps({"data": {"as": {}}})[:-3]),
            "bad_response",
            3,
            id="truncated-json",
        ),
        pytest.param(lambda _: page(None), "no item list", 1, id="items-null"),
        pytest.param(
            graphql_errors("boom", "bang"),  # type: ignore[arg-type]
            "boom",
            3,
            id="errors-that-are-not-objects",
        ),
    ],
)
async def test_a_refused_page_writes_nothing_and_fails_the_partition_in_one_line(
    db: Pool, settings: Settings, caplog: pytest.LogCaptureFixture, answer: Answer, reason: str, searches: int
) -> None:
    caplog.set_level("INFO")
    feed = ScriptedFeed(answer)
    async with container(settings, db, feed) as c:
        result = await process_work_item(c, await start_partition(db))
    assert result.outcome is Outcome.FAILED
    assert feed.searches == searches, "transient causes are retried, permanent ones are not"
    after = await state(db)
    assert after["raw"] == []
    status, next_offset, pages, seen, error = after["partition"]
    assert (status, next_offset, pages, seen) == ("failed", 0, 0, 0)
    assert reason in error
    assert "\n" not in error
    assert [e[0] for e in after["errors"]] == ["feed_failed"]
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1
    assert "\n" not in failures[0].getMessage()
    assert reason in failures[0].getMessage()


async def test_a_token_expired_error_reauthenticates_and_the_page_is_stored(db: Pool, settings: Settings) -> None:
    answers = iter(
        [
            httpx.Response(
                200, content=orjson.dumps({"errors": [{"message": "Unauthorized: token expired"}], "data": None})
            ),
            page([item("a"), item("b")]),
        ]
    )
    feed = ScriptedFeed(lambda _: next(answers))
    async with container(settings, db, feed) as c:
        result = await process_work_item(c, await start_partition(db))
        assert c.feed.stats.reauths == 1
    assert result.outcome is Outcome.PAGE
    assert (await state(db))["raw"] == ["a", "b"]


# --- paging over pages with bad items: the partition still ends, skipping nothing ------------------


async def drive(c: Container, first: Any) -> list[Outcome]:
    """Send the partition's first message, then process the work-items queue until it is empty."""
    from shared.bus.port import publish
    from shared.messages import WorkItem, decode

    await publish(c.bus, first)
    outcomes: list[Outcome] = []
    while received := await c.bus.receive(c.queues.work_items):  # type: ignore[attr-defined]
        (message,) = received
        outcomes.append((await process_work_item(c, decode(message.body, WorkItem))).outcome)
        await c.bus.complete(message)  # type: ignore[attr-defined]
        assert len(outcomes) < 50, f"runaway partition: {outcomes}"
    return outcomes


def window(stock: list[Any]) -> Answer:
    return lambda variables: page(stock[variables["offset"] : variables["offset"] + variables["limit"]])


@pytest.mark.parametrize(
    "stock",
    [
        pytest.param([item("a")], id="one-stone"),
        pytest.param([item("a"), item(None), item(None)], id="unkeyed-after-the-only-stone"),
        pytest.param(
            [item(f"s{n}") for n in range(49)] + [item(None)] + [item(f"t{n}") for n in range(30)],
            id="page-ends-unkeyed",
        ),
        pytest.param([item(None)] * 50 + [item("late")], id="a-whole-page-unkeyed"),
    ],
)
async def test_the_partition_completes_with_every_keyed_stone(db: Pool, settings: Settings, stock: list[Any]) -> None:
    async with container(settings, db, ScriptedFeed(window(stock))) as c:
        outcomes = await drive(c, await start_partition(db))
    after = await state(db)
    keyed = sorted(i["diamond"]["id"] for i in stock if i["diamond"]["id"] is not None)
    assert after["raw"] == keyed
    assert after["partition"][0] == "completed", outcomes
    assert after["partition"][3] == len(keyed)
