"""The dashboard on a 500K-stone catalogue: the catalogue's first page is in the browser within a
second (the issue's bound), for the default listing and two filtered, sorted searches; the
overview and heatmap render too. The catalogue is generated with SQL once per session (the same
generator as bench/api_bench.py, bulk-loaded) in a database of its own, served by `opus run`. Timings are
printed and written to test-artifacts/dashboard/timings.json."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from bench.api_bench import SEED_SQL
from feedsim.embed import start_in_thread
from feedsim.simulator import InventorySpec
from shared.db.migrate import migrate
from shared.settings import Settings
from tests.conftest import DatabaseFactory
from tests.dashboard.conftest import ARTIFACTS, Dashboard, Keys, create_keys, open_dashboard
from tests.dashboard.server import OpusServer, opus_run

pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.browser, pytest.mark.slow]

STONES = 500_000
FIRST_PAGE_BUDGET_S = 1.0


# The diamonds indexes that no constraint owns: dropped for the bulk load, then built again.
_SECONDARY_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = 'diamonds'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


def bulk_load(url: str, stones: int) -> None:
    """Generate the catalogue with the benchmark's SQL; building the indexes afterwards takes about
    a third less time than maintaining them row by row. The schema ends exactly as migrated."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = conn.execute(_SECONDARY_INDEXES).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("SELECT setseed(0.42)")
        conn.execute(SEED_SQL, {"stones": stones})
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM (ANALYZE) diamonds")


@pytest.fixture(scope="session")
def big_catalogue_url(test_databases: DatabaseFactory) -> str:
    url = test_databases.create("opus_dashboard_500k")
    asyncio.run(migrate(url))
    bulk_load(url, STONES)
    return url


@pytest.fixture(scope="module")
def big_server(big_catalogue_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpusServer]:
    # The feed is not used (no run is started); a small simulator keeps the host's wiring real.
    simulator = start_in_thread(InventorySpec(seed=3, stones=100))
    try:
        with opus_run(big_catalogue_url, simulator.endpoint, tmp_path_factory.mktemp("opus-500k")) as served:
            yield served
    finally:
        simulator.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def big_keys(big_server: OpusServer, settings: Settings) -> Keys:
    return await create_keys(big_server.database_url, settings)


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(browser: BrowserContext, big_server: OpusServer) -> AsyncIterator[Dashboard]:
    opened = await open_dashboard(browser, big_server.url)
    try:
        yield opened
    finally:
        await opened.page.close()
    opened.check_console()


async def first_page(page: Page, action: Awaitable[None]) -> tuple[float, int]:
    """Seconds from the action to 50 stones on screen, and the page's own figure (request + render)."""
    results = page.get_by_test_id("results")
    started = time.perf_counter()
    await action
    await expect(results).to_have_attribute("data-page-ms", re.compile(r"^\d+$"))
    await expect(page.locator("[data-testid=stones] tbody tr")).to_have_count(50)
    elapsed = time.perf_counter() - started
    return elapsed, int(await results.get_attribute("data-page-ms") or -1)


async def test_catalogue_first_page_on_500k_stones_within_a_second(dashboard: Dashboard, big_keys: Keys) -> None:
    page = dashboard.page
    # Signed in on a light page and at rest, the user opens the catalogue from the menu.
    await dashboard.sign_in(big_keys.read, "/runs")
    await page.wait_for_load_state("networkidle")
    timings: dict[str, dict[str, float]] = {}

    elapsed, in_page = await first_page(page, page.get_by_role("link", name="Catalogue").click())
    timings["default listing (newest first)"] = {"wall_s": elapsed, "page_ms": in_page}
    await expect(page.get_by_test_id("summary")).to_contain_text("stones match")

    form = page.get_by_test_id("search-form")
    await form.locator("select[name=shape]").select_option(["ROUND"])
    await form.locator("input[name=carat_min]").fill("1")
    await form.locator("input[name=carat_max]").fill("1.5")
    elapsed, in_page = await first_page(page, page.locator("th[data-sort=price]").click())
    timings["round 1-1.5 ct by price"] = {"wall_s": elapsed, "page_ms": in_page}

    await form.locator("select[name=lab_grown]").select_option("true")
    await form.locator("select[name=color]").select_option(["D", "E", "F"])
    elapsed, in_page = await first_page(page, page.locator("th[data-sort=carats]").click())
    timings["lab-grown round D-F 1-1.5 ct by carats"] = {"wall_s": elapsed, "page_ms": in_page}
    await dashboard.screenshot("catalogue-500k")

    started = time.perf_counter()
    await page.get_by_role("link", name="Overview").click()
    await expect(page.get_by_test_id("catalogue-total")).not_to_have_text("0")
    timings["overview"] = {"wall_s": time.perf_counter() - started}
    await dashboard.screenshot("overview-500k")
    started = time.perf_counter()
    await page.get_by_role("link", name="Heatmap").click()
    await expect(page.get_by_test_id("heat-grid")).to_be_visible()
    timings["heatmap"] = {"wall_s": time.perf_counter() - started}

    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
    for name, figures in timings.items():
        print(f"500K catalogue, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    slow = {name: t["wall_s"] for name, t in timings.items() if "page_ms" in t and t["wall_s"] > FIRST_PAGE_BUDGET_S}
    assert not slow, f"catalogue first pages over {FIRST_PAGE_BUDGET_S} s in the browser: {slow}"
    dashboard.check_console()
