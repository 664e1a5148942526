"""A feed page holding a number no double can hold (1e400), served over real HTTP on 127.0.0.1 to
the worker on the real database: only the item holding it is refused and recorded (the rule is in
shared/feed/numbers.py), and the partition goes on to the end with every other stone stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web

from consolidator.payload import decode_item
from shared.bootstrap import Container, local_bus
from shared.clock import SystemClock
from shared.db.pool import Pool
from shared.feed.client import NivodaClient
from shared.feed.ratelimit import TokenBucket
from shared.feed.responses import interpret
from shared.raw_store import to_raw_items
from shared.settings import Settings
from tests.worker.test_bad_payloads import drive, item, start_partition, state

_BAD = "@bad@"  # stands for the literal number in an item until its page is written out


def with_literal(stone: str, literal: str, *path: str) -> dict[str, Any]:
    """An item whose field at `path` is the JSON number `literal`, written verbatim."""
    built = item(stone)
    target = built
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = f"{_BAD}{literal}{_BAD}"
    return built


def written(stock_item: dict[str, Any]) -> bytes:
    """The item as the feed writes it: a marked string becomes the bare number it stands for."""
    text = orjson.dumps(stock_item)
    if _BAD.encode() not in text:
        return text
    head, literal, tail = text.split(_BAD.encode())
    return head[:-1] + literal + tail[1:]


def search_page(items: list[bytes]) -> bytes:
    total = str(len(items)).encode()
    return b'{"data":{"as":{"diamonds_by_query":{"total_count":' + total + b',"items":[' + b",".join(items) + b"]}}}}"


@asynccontextmanager
async def served(stock: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A Nivoda stand-in on 127.0.0.1: a token for anyone, and `stock` paged by offset and limit."""
    pages = [written(i) for i in stock]

    async def graphql(request: web.Request) -> web.Response:
        body = await request.json()
        if "as(token" not in body["query"]:
            return web.json_response({"data": {"authenticate": {"username_and_password": {"token": "tok"}}}})
        offset, limit = body["variables"]["offset"], body["variables"]["limit"]
        return web.Response(body=search_page(pages[offset : offset + limit]), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/diamonds", graphql)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/api/diamonds"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def worker(settings: Settings, pool: Pool, stock: list[dict[str, Any]]) -> AsyncIterator[Container]:
    async with served(stock) as endpoint:
        client = NivodaClient(endpoint, "user", "password", rate_limiter=TokenBucket(10_000, burst=100), max_retries=0)
        bus = local_bus(settings, pool)
        try:
            yield Container(settings=settings, pool=pool, clock=SystemClock(), bus=bus, feed=client)
        finally:
            await bus.close()
            await client.aclose()


STONES = 60  # two pages of 50 overlapping by one (the anchor), and the page that ends the partition


@pytest.mark.parametrize(
    ("position", "literal"),
    [
        pytest.param(10, "1e400", id="inside-a-page"),
        pytest.param(49, "-1e400", id="the-anchor-of-the-next-page"),
    ],
)
async def test_the_partition_completes_without_the_one_stone_whose_price_no_double_holds(
    db: Pool, settings: Settings, position: int, literal: str
) -> None:
    stock = [item(f"s{n:02}") for n in range(STONES)]
    stock[position] = with_literal(f"s{position:02}", literal, "price")
    async with worker(settings, db, stock) as c:
        await drive(c, await start_partition(db))
    after = await state(db)
    bad = f"s{position:02}"
    assert after["raw"] == [f"s{n:02}" for n in range(STONES) if n != position]
    status, next_offset, pages, seen, error = after["partition"]
    # As for a clean stock: the refused stone keeps its place in the feed's order.
    assert (status, next_offset, pages, error) == ("completed", STONES - 1, 3, None)
    assert seen == STONES - 1, "records_seen counts the stones stored"
    ((code, message, stone),) = after["errors"]  # once, though the anchor is on two pages
    assert (code, stone) == ("unrepresentable_number", bad)
    assert f"diamond {bad}: price = {literal}: a number no double can hold" in message


async def test_a_number_no_double_holds_in_a_field_nothing_reads_refuses_its_item_too(
    db: Pool, settings: Settings
) -> None:
    stock = [item(f"s{n:02}") for n in range(5)]
    stock[2] = with_literal("s02", "1e999", "diamond", "certificate", "pavHeight")
    probe = item("x")
    probe["diamond"]["certificate"]["pavHeight"] = 1.5
    assert "pavHeight" not in decode_item(orjson.dumps(probe))["diamond"]["certificate"], "a field nothing reads"
    async with worker(settings, db, stock) as c:
        await drive(c, await start_partition(db))
    after = await state(db)
    assert after["raw"] == ["s00", "s01", "s03", "s04"]
    assert after["partition"][0] == "completed"
    ((code, message, stone),) = after["errors"]
    assert (code, stone) == ("unrepresentable_number", "s02")
    assert "diamond.certificate.pavHeight = 1e999" in message


def test_the_reason_names_each_bad_number_briefly() -> None:
    body = (
        b'{"id": "o1", "price": 1e400, "discount": NaN, "diamond_price": %s, "markup_price": -Infinity,' % (b"1" * 500)
        + b' "diamond": {"id": "d1"}}'
    )
    data = interpret("diamonds_by_query", 200, {}, search_page([body]))
    stored, (reject,) = to_raw_items(data["as"]["diamonds_by_query"]["items"])
    assert stored == []
    assert (reject.code, reject.supplier_stone_id) == ("unrepresentable_number", "d1")
    assert reject.reason.startswith("diamond d1: price = 1e400, discount = NaN, diamond_price = 1111")
    assert "(and 1 more)" in reject.reason
    assert len(reject.reason) < 300


def test_text_python_reads_but_json_cannot_store_refuses_its_item_not_the_page() -> None:
    bad = b'{"id": "o1", "price": 1e400, "diamond": {"id": "d1", "girdle": "\\ud800"}}'
    lone = b'{"id": "o2", "price": 1, "diamond": {"id": "d2", "girdle": "\\ud800"}}'
    data = interpret("diamonds_by_query", 200, {}, search_page([bad, lone, orjson.dumps(item("d3"))]))
    stored, rejects = to_raw_items(data["as"]["diamonds_by_query"]["items"])
    assert [raw.supplier_stone_id for raw in stored] == ["d3"]
    assert [(r.code, r.supplier_stone_id) for r in rejects] == [
        ("unrepresentable_number", "d1"),
        ("malformed_item", "d2"),
    ]
    assert "cannot be stored as JSON" in rejects[1].reason
