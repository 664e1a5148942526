"""The offset cap: a partition that grew since the scan is counted again and paged to its end; one
whose pages outrun even a fresh count (a runaway) fails instead of claiming to be complete."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson

from shared.db.pool import Pool
from shared.settings import Settings
from tests.worker.test_bad_payloads import ScriptedFeed, container, drive, item, page, start_partition, state
from worker.paging import estimate_at_cap

LISTED = 400  # the partition's estimate is 100, so its cap is 100 * 1.5 + 2 * 50 = 250


def listing(counted: int) -> Any:
    stock = [item(f"s{n:03d}") for n in range(LISTED)]

    def answer(variables: dict[str, Any]) -> httpx.Response:
        if "offset" not in variables:
            body = {"data": {"as": {"diamonds_by_query_count": counted}}}
            return httpx.Response(200, content=orjson.dumps(body))
        return page(stock[variables["offset"] : variables["offset"] + variables["limit"]])

    return answer


async def test_a_partition_that_grew_since_the_scan_is_paged_to_its_end(db: Pool, settings: Settings) -> None:
    async with container(settings, db, ScriptedFeed(listing(counted=LISTED))) as c:
        await drive(c, await start_partition(db))
    after = await state(db)
    assert after["partition"][0] == "completed"
    assert len(after["raw"]) == LISTED, "the stones past the scan's cap were fetched too"
    assert not [e for e in after["errors"] if e[0] == "offset_cap"]


async def test_a_runaway_partition_fails_rather_than_claiming_completion(db: Pool, settings: Settings) -> None:
    async with container(settings, db, ScriptedFeed(listing(counted=100))) as c:
        await drive(c, await start_partition(db))
    after = await state(db)
    status, _, _, _, error = after["partition"]
    assert status == "failed"
    assert "safety cap" in error
    assert [e[0] for e in after["errors"]] == ["offset_cap"]
    assert len(after["raw"]) < LISTED


def test_the_fresh_count_raises_the_cap_only_while_it_is_still_ahead() -> None:
    assert estimate_at_cap(250, 400, Decimal("1.5"), 50) == 400
    assert estimate_at_cap(250, 100, Decimal("1.5"), 50) is None
