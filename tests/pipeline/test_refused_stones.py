"""A live stone whose item the workers refuse leaves the live catalogue, and comes back once it is good.

The feed is the simulator over real HTTP; what a real feed might send (a price no double holds) is
written into its responses in transit, as a misbehaving supplier or proxy would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from shared.db.pool import Pool
from tests.pipeline.conftest import ground_truth, pipeline, pipeline_settings, sim_control
from tests.pipeline.test_consolidation import catalogue, run_feed, seed_rules

_MARK = "__unrepresentable__"


def _corrupt(value: Any, stone: str) -> int:
    """Give each item of `stone` in a response a price no double holds (marked); return how many."""
    if isinstance(value, dict):
        diamond = value.get("diamond")
        if isinstance(diamond, dict) and diamond.get("id") == stone:
            value["price"] = _MARK
            return 1
        return sum(_corrupt(inner, stone) for inner in value.values())
    if isinstance(value, list):
        return sum(_corrupt(inner, stone) for inner in value)
    return 0


class PriceCorruptingTransport(httpx.AsyncBaseTransport):
    """Passes requests to the real transport; responses holding `stone` give it the price 1e400."""

    def __init__(self, inner: httpx.AsyncBaseTransport, stone: str) -> None:
        self.inner, self.stone, self.corrupted = inner, stone, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if self.stone.encode() not in body:
            return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
        parsed = orjson.loads(body)
        if corrupted := _corrupt(parsed, self.stone):
            self.corrupted += corrupted
            body = orjson.dumps(parsed).replace(f'"{_MARK}"'.encode(), b"1e400")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)


@pytest.fixture
def small_sim() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=31, stones=3_000))
    yield sim
    sim.stop()


async def test_a_live_stone_the_workers_refuse_is_unlisted_by_an_incremental_run_and_restored_when_good(
    db: Pool, database_url: str, tmp_path: Path, small_sim: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_rules(db)
    settings = pipeline_settings(database_url, tmp_path, small_sim.endpoint, max_workers_incremental=2)
    async with pipeline(settings) as host:
        first = await run_feed(host, "full")
        assert first.status == "completed"
        listed = {sid for sid, entry in (await catalogue(db)).items() if entry["status"] == "active"}

        # Churn, so that the incremental run fetches some listed stones again; one of them arrives broken.
        await sim_control(small_sim, "churn", {"events": 300})
        truth = await ground_truth(small_sim)
        refetched = sorted(
            s["supplier_stone_id"]
            for s in truth
            if s["supplier_stone_id"] in listed
            and s["availability"] == "AVAILABLE"  # so that the next full run fetches it
            and datetime.fromisoformat(s["updated_at"].replace("Z", "+00:00")) > first.updated_to
        )
        assert refetched, "the churn repriced listed stones"
        stone = refetched[0]
        http = host.container.feed._http
        corrupting = PriceCorruptingTransport(http._transport, stone)
        monkeypatch.setattr(http, "_transport", corrupting)

        incremental = await run_feed(host, "incremental")
        assert incremental.status == "completed"
        assert corrupting.corrupted, "the stone's item was fetched, and broken in transit"
        async with db.connection() as conn:
            cur = await conn.execute(
                "SELECT code FROM error_records WHERE source = 'worker' AND run_id = %s AND supplier_stone_id = %s",
                (incremental.run_id, stone),
            )
            assert {row[0] for row in await cur.fetchall()} == {"unrepresentable_number"}
        stored = await catalogue(db)
        assert stored[stone]["status"] == "deleted", "a stone whose item was refused was left listed, gone stale"
        others = {sid for sid in listed if sid != stone and sid in stored}
        assert all(stored[sid]["status"] == "active" for sid in others), "an incremental run unlists nothing else"

        # The feed sends it properly again: the next full run lists it again.
        monkeypatch.setattr(http, "_transport", corrupting.inner)
        again = await run_feed(host, "full")
        assert again.status == "completed"
        assert (await catalogue(db))[stone]["status"] == "active"
