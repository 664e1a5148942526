"""Fixtures for end-to-end pipeline tests: the simulator over real HTTP, a local host in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from localhost.host import Host, running_host
from shared.feed.variants import ALL_SHAPES, VARIANTS
from shared.settings import Settings
from tests.conftest import make_settings

SIM_STONES = 20_000
SIM_SEED = 7
EXCLUDED_CUTS = {"FAIR", "POOR", "F", "P"}


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=SIM_SEED, stones=SIM_STONES))
    yield sim
    sim.stop()


def pipeline_settings(database_url: str, data_dir: Path, endpoint: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "nivoda_endpoint": endpoint,
        "nivoda_rate_limit_scope": "process",
        "nivoda_rate_limit_per_s": 10_000,
        "nivoda_request_timeout_s": 5,
        "api_port": 0,
        "run_on_startup": False,
        "schedule_cron": "0 0 0 1 1 *",
        "worker_concurrency": 6,
        "max_workers_full": 8,
        "bus_lock_duration_s": 10,
        **overrides,
    }
    return make_settings(database_url, data_dir, **values)


@asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[Host]:
    stop = asyncio.Event()
    async with running_host(settings, stop) as host:
        yield host


async def ground_truth(sim: ThreadedSimulator) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(f"{sim.url}/_sim/inventory")
    response.raise_for_status()
    stones: list[dict[str, Any]] = response.json()["stones"]
    return stones


async def sim_stats(sim: ThreadedSimulator) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.url}/_sim/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def sim_control(sim: ThreadedSimulator, path: str, body: dict[str, Any] | None = None) -> None:
    """POST to the simulator's control surface (`config`, `stats/reset`, `churn`)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/_sim/{path}", json=body)
    response.raise_for_status()


def in_default_query(stone: dict[str, Any], feed: str, updated_to: datetime, *, only_available: bool = True) -> bool:
    """The run's base query, evaluated on ground truth (an oracle independent of the pipeline)."""
    updated = datetime.fromisoformat(stone["updated_at"].replace("Z", "+00:00"))
    carats = Decimal(str(stone["carats"]))
    return (
        stone["labgrown"] == VARIANTS[feed].labgrown
        and (not only_available or stone["availability"] == "AVAILABLE")
        and stone["availability"] != "MEMO"
        and stone["has_image"]
        and stone["has_v360"]
        and (stone["cut"] or "").upper() not in EXCLUDED_CUTS
        and stone["shape"] in ALL_SHAPES
        and Decimal("0.4") <= carats <= Decimal("15.01")
        and updated <= updated_to
    )


def expected_ids(truth: list[dict[str, Any]], feed: str, updated_to: datetime) -> set[str]:
    return {s["supplier_stone_id"] for s in truth if in_default_query(s, feed, updated_to)}
