"""The dashboard in Debian's Chromium against `opus run`'s server (a real database, the simulator as
the supplier): signing in, a run progressing live to completion, a run's detail, retrying a failed
partition, catalogue search and CSV export, pricing-rule preview and save, the heatmap with a new
scan's preview, dead letters and the overview. Every page is screenshotted and no page may log a
console error."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, Route, expect

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from shared.bootstrap import local_bus
from shared.bus.port import OutgoingMessage
from shared.db.pool import open_pool
from shared.settings import Settings
from tests.conftest import DatabaseFactory
from tests.dashboard.conftest import Dashboard, Keys, create_keys, open_dashboard
from tests.dashboard.server import OpusServer, opus_run

pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.browser]

SIM_STONES = 5000  # a full run fetches ~1,200 natural and ~2,400 lab-grown stones of these
NATURAL = "nivoda-natural"
LAB = "nivoda-labgrown"
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=11, stones=SIM_STONES))
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def server(
    test_databases: DatabaseFactory, simulator: ThreadedSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpusServer]:
    with opus_run(
        test_databases.create("opus_dashboard"), simulator.endpoint, tmp_path_factory.mktemp("opus-dashboard")
    ) as served:
        yield served


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keys(server: OpusServer, settings: Settings) -> Keys:
    return await create_keys(server.database_url, settings)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(server: OpusServer, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """The API itself, with the admin key: the oracle the dashboard's figures are checked against."""
    async with httpx.AsyncClient(
        base_url=f"{server.url}/api/v2", headers={"X-API-Key": keys.admin}, timeout=60
    ) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(browser: BrowserContext, server: OpusServer) -> AsyncIterator[Dashboard]:
    opened = await open_dashboard(browser, server.url)
    try:
        yield opened
    finally:
        await opened.page.close()
    opened.check_console()


async def sim_config(sim: ThreadedSimulator, **config: Any) -> None:
    async with httpx.AsyncClient() as client:
        (await client.post(f"{sim.url}/_sim/config", json=config)).raise_for_status()


async def get_data(api: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await api.get(path, params=params)
    response.raise_for_status()
    return response.json()["data"]


async def wait_for_run(api: httpx.AsyncClient, run_id: str, *states: str) -> dict[str, Any]:
    for _ in range(RUN_TIMEOUT_S * 10):
        run: dict[str, Any] = await get_data(api, f"/runs/{run_id}")
        if run["state"] in states:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not reach {states}")


@pytest_asyncio.fixture(loop_scope="session")
async def natural_run(api: httpx.AsyncClient) -> dict[str, Any]:
    """A completed natural run (the one the live-progress test started, or a new one)."""
    runs = await get_data(api, "/runs", feed=NATURAL, status="completed", limit=1)
    if runs:
        return dict(runs[0])
    started = await api.post("/runs", json={"feed": NATURAL, "run_type": "full"})
    assert started.status_code == 202, started.text
    return await wait_for_run(api, started.json()["data"]["run_id"], "completed")


async def all_stones(api: httpx.AsyncClient, params: dict[str, str]) -> list[dict[str, Any]]:
    stones: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = await api.get("/diamonds", params={**params, "limit": 200, **({"cursor": cursor} if cursor else {})})
        response.raise_for_status()
        body = response.json()
        stones += body["data"]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            return stones


def money(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


async def texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in await page.locator(selector).all_inner_texts()]


async def searched(page: Page) -> None:
    """Wait for the catalogue search just triggered (the page stamps its timing when rows are in)."""
    await expect(page.get_by_test_id("results")).to_have_attribute("data-page-ms", re.compile(r"^\d+$"))


async def confirm(page: Page, expected: str) -> None:
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_contain_text(expected)
    await dialog.locator("button.danger, button.primary").click()
    await expect(dialog).to_have_count(0)


# --- sign-in ------------------------------------------------------------------------------------
async def test_sign_in_refuses_a_bad_key_and_a_read_key_sees_why_admin_pages_refuse(
    dashboard: Dashboard, keys: Keys
) -> None:
    page = dashboard.page
    # The browser itself logs each refused request; these two are provoked on purpose.
    dashboard.allow(r"status of 401")
    dashboard.allow(r"status of 403")
    await dashboard.open("/overview")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await dashboard.screenshot("sign-in")

    await page.locator("#api-key").fill("opus_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("invalid API key")
    await expect(alert).to_contain_text("401 unauthorized")
    assert await page.evaluate("sessionStorage.getItem('opus.apiKey')") is None

    await page.locator("#api-key").fill(keys.read)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_have_text("dashboard-reader · read")
    assert await page.evaluate("sessionStorage.getItem('opus.apiKey')") == keys.read
    await dashboard.open("/runs")
    await expect(page.get_by_test_id("runs")).to_be_visible()
    await expect(page.get_by_test_id("start-run")).to_have_count(0)
    await dashboard.open("/pricing")
    await expect(page.get_by_role("alert")).to_contain_text("this operation needs the 'admin' scope")
    await expect(page.get_by_role("alert")).to_contain_text("403 forbidden")
    await dashboard.screenshot("forbidden")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('opus.apiKey')") is None
    dashboard.check_console()


# --- runs ---------------------------------------------------------------------------------------
async def test_a_server_that_cannot_answer_at_start_keeps_the_key_for_another_try(
    dashboard: Dashboard, keys: Keys
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/overview")
    dashboard.allow(r"status of 503 .*/api/v2/whoami")
    outage = {"error": {"code": "unavailable", "message": "the API is starting", "details": None}}

    async def starting(route: Route) -> None:
        await route.fulfill(status=503, json=outage)

    await page.route("**/api/v2/whoami", starting)
    await page.reload()
    await expect(page.get_by_test_id("error")).to_contain_text("the API is starting")
    await page.unroute("**/api/v2/whoami", starting)
    await page.get_by_test_id("try-again").click()
    await expect(page.locator("#nav")).to_be_visible()
    await expect(page.get_by_test_id("card-live")).to_be_visible()
    dashboard.check_console()


async def test_a_run_page_for_no_such_run_says_so_once_and_stops_asking(dashboard: Dashboard, keys: Keys) -> None:
    page = dashboard.page
    dashboard.allow(r"status of 404")
    dashboard.allow(r"status of 422")
    await dashboard.sign_in(keys.admin)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/v2/runs/" in request.url else None)
    for run_id, answer in (("00000000-0000-4000-8000-000000000000", "404 not_found"), ("not-a-uuid", "422")):
        asked.clear()
        await dashboard.open(f"/runs/{run_id}")
        await expect(page.get_by_role("alert")).to_contain_text(answer)
        await page.wait_for_timeout(2500)  # the live page polls every second while it can
        assert len(asked) == 1, asked
        await expect(page.get_by_text("Loading…")).to_have_count(0)
    dashboard.check_console()


async def test_a_run_started_from_the_dashboard_progresses_live_to_completion(
    dashboard: Dashboard, keys: Keys, simulator: ThreadedSimulator, api: httpx.AsyncClient
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/runs")
    await page.evaluate("window.sameDocument = true")
    await sim_config(simulator, latency_ms=400)  # a run of a few seconds, long enough to watch
    try:
        form = page.get_by_test_id("start-run")
        await form.locator("select[name=feed]").select_option(NATURAL)
        await form.locator("select[name=run_type]").select_option("full")
        await form.get_by_role("button", name="Start run").click()
        await expect(page.locator(".notice.ok")).to_contain_text("run started with")
        row = page.locator("table[data-testid=runs] tbody tr").first
        await expect(row).to_have_attribute("data-state", re.compile("planned|ingesting"))
        run_id = await row.get_attribute("data-run")
        assert run_id is not None
        seen: list[tuple[str, str]] = []
        for _ in range(RUN_TIMEOUT_S * 5):
            state = await row.get_attribute("data-state") or ""
            progress = await row.get_by_test_id("progress").inner_text()
            if not seen or seen[-1] != (state, progress):
                seen.append((state, progress))
                if state == "ingesting" and len(seen) == 2:
                    await dashboard.screenshot("runs-live")
            if state == "completed":
                break
            await asyncio.sleep(0.2)
    finally:
        await sim_config(simulator, latency_ms=0)
    run = await get_data(api, f"/runs/{run_id}")
    states = [state for state, _ in seen]
    assert states[-1] == "completed", seen
    fetching = {progress for state, progress in seen if state == "ingesting"}
    assert len(fetching) >= 2, f"the progress should change on screen while the run fetches: {seen}"
    assert seen[-1][1].startswith(f"{run['records_fetched']:,} of ~{run['estimated_records']:,} stones")
    assert await page.evaluate("window.sameDocument") is True, "the page updated itself without reloading"
    assert re.fullmatch(r"[\d,]+/s", await row.get_by_test_id("throughput").inner_text())
    await dashboard.screenshot("runs")

    filters = page.locator("section form.filters")
    await filters.locator("select[name=status]").select_option("cancelled")
    await expect(page.get_by_test_id("runs")).to_contain_text("No runs match.")
    assert page.url.endswith("#/runs?status=cancelled")
    await filters.locator("select[name=status]").select_option("completed")
    await expect(page.locator(f"[data-testid=runs] tr[data-run='{run_id}']")).to_be_visible()

    # The run's detail: partition grid, fan-in, timeline and its density scan.
    await page.locator(f"[data-testid=runs] tr[data-run='{run_id}'] a").click()
    await expect(page.get_by_test_id("run-state")).to_have_text("completed")
    cells = page.locator("[data-testid=partition-grid] .cell")
    await expect(cells).to_have_count(run["expected_partitions"])
    assert set(await cells.evaluate_all("cells => cells.map(c => c.dataset.status)")) == {"completed"}
    await expect(page.get_by_test_id("next-action")).to_have_text(run["fan_in"]["next_action"])
    await expect(page.locator("[data-testid=timeline] li.done")).to_have_count(6)
    await expect(page.get_by_test_id("boundary")).to_have_count(len(run["heatmap"]["partitions"]) - 1)
    await expect(page.get_by_test_id("fetched")).to_have_text(f"{run['records_fetched']:,}")
    await dashboard.screenshot("run-detail")
    dashboard.check_console()


async def test_a_failed_partition_is_retried_from_the_run_page(
    dashboard: Dashboard, keys: Keys, simulator: ThreadedSimulator, api: httpx.AsyncClient
) -> None:
    page = dashboard.page
    await sim_config(simulator, latency_ms=250)
    try:
        started = await api.post("/runs", json={"feed": LAB, "run_type": "full"})
        assert started.status_code == 202, started.text
        run_id = started.json()["data"]["run_id"]
        await dashboard.sign_in(keys.admin, f"/runs/{run_id}")
        await expect(page.get_by_test_id("run-state")).to_have_text(re.compile("planned|ingesting"))
        for _ in range(RUN_TIMEOUT_S * 10):  # some pages in, then the supplier refuses every query
            if (await get_data(api, f"/runs/{run_id}"))["records_fetched"] > 0:
                break
            await asyncio.sleep(0.1)
        await sim_config(simulator, graphql_error_rate=1.0, latency_ms=0)
        await expect(page.get_by_test_id("run-state")).to_have_text("skipped", timeout=RUN_TIMEOUT_S * 1000)
    finally:
        await sim_config(simulator, graphql_error_rate=0.0, latency_ms=0)
    failed = page.locator("[data-testid=partitions] tbody tr[data-status=failed]")
    await expect(failed.first).to_be_visible()
    await expect(failed.first.locator("td.error-text")).to_contain_text("Feed")
    await expect(page.locator(".notice.warn")).to_contain_text("Run skipped")
    await dashboard.screenshot("run-failed")

    partition_id = await failed.first.get_attribute("data-partition")
    assert partition_id is not None
    await failed.first.get_by_test_id("retry-partition").click()
    await confirm(page, f"Resume {partition_id}")
    await expect(page.locator(".notice.ok")).to_contain_text(f"Retrying {partition_id}")
    retried = page.locator(f"[data-testid=partitions] tbody tr[data-partition='{partition_id}']")
    await expect(retried).to_have_attribute("data-status", "completed", timeout=RUN_TIMEOUT_S * 1000)

    run = await wait_for_run(api, run_id, "skipped", "completed")
    if run["state"] == "skipped":  # other partitions failed too: retry them all
        await expect(page.get_by_test_id("run-state")).to_have_text("skipped")
        await page.get_by_test_id("retry-all").click()
        await confirm(page, "Resume every failed partition")
    await expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=RUN_TIMEOUT_S * 1000)
    run = await get_data(api, f"/runs/{run_id}")
    attempts = {p["partition_id"]: p["attempts"] for p in run["partitions"]}
    assert attempts[partition_id] == 2
    assert run["watermark_advanced"] is True
    await dashboard.screenshot("run-retried")
    dashboard.check_console()


async def start_and_fail(api: httpx.AsyncClient, simulator: ThreadedSimulator, feed: str) -> str:
    """Start a run, let some pages in, then have the supplier refuse every query until it is skipped."""
    await sim_config(simulator, latency_ms=250)
    try:
        started = await api.post("/runs", json={"feed": feed, "run_type": "full"})
        assert started.status_code == 202, started.text
        run_id: str = started.json()["data"]["run_id"]
        for _ in range(RUN_TIMEOUT_S * 10):
            if (await get_data(api, f"/runs/{run_id}"))["records_fetched"] > 0:
                break
            await asyncio.sleep(0.1)
        await sim_config(simulator, graphql_error_rate=1.0, latency_ms=0)
        await wait_for_run(api, run_id, "skipped")
    finally:
        await sim_config(simulator, graphql_error_rate=0.0, latency_ms=0)
    return run_id


async def test_force_consolidation_and_cancel_from_the_run_page(
    dashboard: Dashboard, keys: Keys, simulator: ThreadedSimulator, api: httpx.AsyncClient
) -> None:
    page = dashboard.page
    run_id = await start_and_fail(api, simulator, LAB)
    await dashboard.sign_in(keys.admin, f"/runs/{run_id}")
    await expect(page.get_by_test_id("run-state")).to_have_text("skipped")
    await expect(page.get_by_test_id("cancel")).to_be_disabled()
    await page.get_by_test_id("force").click()
    await confirm(page, "the watermark does not advance")
    await expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=RUN_TIMEOUT_S * 1000)
    await expect(page.locator(".notice.info")).to_contain_text("consolidation forced by api:dashboard-admin")
    run = await get_data(api, f"/runs/{run_id}")
    assert run["forced"] is True
    assert run["watermark_advanced"] is False
    assert run["consolidation_completed_at"] is not None

    await sim_config(simulator, latency_ms=300)
    try:
        started = await api.post("/runs", json={"feed": NATURAL, "run_type": "full"})
        assert started.status_code == 202, started.text
        run_id = started.json()["data"]["run_id"]
        await dashboard.open(f"/runs/{run_id}")
        await expect(page.get_by_test_id("run-state")).to_have_text("ingesting")
        await page.get_by_test_id("cancel").click()
        await confirm(page, "Cancel this run?")
        await expect(page.get_by_test_id("run-state")).to_have_text("cancelled")
    finally:
        await sim_config(simulator, latency_ms=0)
    await expect(page.locator(".notice.info").first).to_contain_text("cancelled from the dashboard by dashboard-admin")
    for action in ("retry-all", "force", "cancel"):
        await expect(page.get_by_test_id(action)).to_be_disabled()
    assert (await get_data(api, f"/runs/{run_id}"))["status"] == "cancelled"
    await dashboard.screenshot("run-cancelled")
    dashboard.check_console()


# --- catalogue ----------------------------------------------------------------------------------
async def test_catalogue_search_sort_load_more_and_csv_export(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any], tmp_path: Path
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/catalogue")
    rows = page.locator("[data-testid=stones] tbody tr")
    await expect(rows).to_have_count(50)

    search = {"shape": "ROUND", "feed": NATURAL, "sort": "price", "order": "desc"}
    first = (await api.get("/diamonds", params=search)).json()["pagination"]
    matching = await all_stones(api, search)  # the oracle: every matching stone, walked by cursor
    assert len(matching) > 50, "the test catalogue should need more than one page"
    counted = f"{'about ' if first['total_estimated'] else ''}{first['total']:,} stones match"
    form = page.get_by_test_id("search-form")
    await form.locator("select[name=shape]").select_option(["ROUND"])
    await form.locator("select[name=feed]").select_option([NATURAL])
    await form.get_by_role("button", name="Search").click()
    await searched(page)
    await expect(page.get_by_test_id("summary")).to_have_text(f"{counted} · showing 50")
    assert set(await texts(page, "[data-testid=stones] td[data-field=shape]")) == {"ROUND"}

    await page.locator("th[data-sort=price]").click()  # ascending
    await searched(page)
    await expect(page.locator("th[data-sort=price]")).to_have_class(re.compile("sorted-asc"))
    prices = [money(t) for t in await texts(page, "[data-testid=stones] td[data-field=retail_price]")]
    assert len(prices) == 50
    assert prices == sorted(prices)
    await page.locator("th[data-sort=price]").click()  # descending
    await searched(page)
    await expect(page.locator("th[data-sort=price]")).to_have_class(re.compile("sorted-desc"))
    prices = [money(t) for t in await texts(page, "[data-testid=stones] td[data-field=retail_price]")]
    assert prices == sorted(prices, reverse=True)

    await page.get_by_test_id("load-more").click()
    await expect(rows).to_have_count(100)
    shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert len(set(shown)) == len(shown), "keyset paging repeats no stone"
    await dashboard.screenshot("catalogue")

    async with page.expect_download() as download_info:
        await page.get_by_test_id("export-csv").click()
    download = await download_info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    await expect(page.locator(".notice.ok")).to_contain_text(f"Exported {len(matching):,} stones")
    exported = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [row["id"] for row in exported] == [stone["id"] for stone in matching]
    assert [row["id"] for row in exported[:100]] == shown, "the table shows the same order"
    assert {row["shape"] for row in exported} == {"ROUND"}
    assert {row["feed"] for row in exported} == {NATURAL}
    assert [row["retail_price"] for row in exported] == [stone["retail_price"] for stone in matching]
    dashboard.check_console()


async def test_catalogue_sorts_from_the_keyboard_says_when_nothing_matches_and_drops_a_refused_searchs_rows(
    dashboard: Dashboard, keys: Keys, natural_run: dict[str, Any]
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/catalogue")
    rows = page.locator("[data-testid=stones] tbody tr")
    await expect(rows).to_have_count(50)
    summary = page.get_by_test_id("summary")
    await expect(summary).to_contain_text("stones match")

    # The navigation tells assistive technology which page this is; both ends of a range are named.
    await expect(page.locator("#nav a[aria-current=page]")).to_have_text("Catalogue")
    await expect(page.get_by_label("carat to", exact=True)).to_have_attribute("name", "carat_max")
    await expect(page.get_by_label("price from", exact=True)).to_have_attribute("name", "price_min")
    # Sorting is reachable without a mouse: the heading holds a button that takes focus.
    await page.locator("th[data-sort=carats] button").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("th[data-sort=carats]")).to_have_attribute("aria-sort", "ascending")
    carats = [Decimal(t) for t in await texts(page, "[data-testid=stones] td[data-field=carats]")]
    assert carats == sorted(carats)

    # A search the API refuses leaves no earlier rows or count standing for its answer.
    dashboard.allow(r"status of 422 .*/api/v2/diamonds")
    form = page.get_by_test_id("search-form")
    await form.locator("input[name=carat_min]").fill("5")
    await form.locator("input[name=carat_max]").fill("1")
    await form.get_by_role("button", name="Search").click()
    await expect(page.get_by_test_id("error")).to_contain_text("carat_min")
    await expect(rows).to_have_count(0)
    await expect(summary).to_have_text("")
    await expect(page.get_by_test_id("load-more")).to_be_hidden()

    # A search nothing matches says so.
    await form.locator("input[name=carat_min]").fill("500")
    await form.locator("input[name=carat_max]").fill("")
    await form.get_by_role("button", name="Search").click()
    await searched(page)
    await expect(page.get_by_test_id("no-match")).to_have_text("No stones match this search.")
    await expect(summary).to_have_text("0 stones match · showing 0")
    await expect(page.get_by_test_id("error")).to_have_count(0)
    dashboard.check_console()


# --- narrow screens -----------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/overview", "/runs", "/catalogue", "/pricing", "/dead-letters", "/heatmap"])
async def test_every_page_fits_a_phone_screen(
    dashboard: Dashboard, keys: Keys, natural_run: dict[str, Any], route: str
) -> None:
    page = dashboard.page
    await page.set_viewport_size({"width": 360, "height": 740})
    await dashboard.sign_in(keys.admin, route)
    await expect(page.locator("main h1")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    # Wide tables scroll inside their panels; the page itself never scrolls sideways, and the
    # navigation sits above the page instead of taking half the screen beside it.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{route} is {width} px wide on a 360 px screen"
    nav = await page.locator("#nav").bounding_box()
    main = await page.locator("main").bounding_box()
    assert nav is not None
    assert main is not None
    assert main["width"] >= 340, f"{route}: the page gets {main['width']} px of 360"
    assert nav["y"] + nav["height"] <= main["y"] + 1
    await dashboard.screenshot(f"phone{route.replace('/', '-')}")
    dashboard.check_console()


# --- pricing rules ------------------------------------------------------------------------------
async def test_pricing_rule_validation_preview_save_and_revert(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any]
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/pricing")
    await expect(page.locator("[data-testid=rules] tbody tr").first).to_be_visible()
    # Editing fills the form with the rule; previewing a change saves nothing.
    rules = await get_data(api, "/pricing/rules")
    first = rules[0]
    row = page.locator(f"[data-testid=rules] tr[data-rule='{first['id']}']")
    # Cost bounds are money: dollars with separators and cents, as the API's decimals say.
    for listed in rules:
        low, high = Decimal(listed["cost_min"] or "0"), listed["cost_max"]
        bounds = f"${low:,.2f} – {'∞' if high is None else f'${Decimal(high):,.2f}'}"
        expected_cost = "any" if listed["cost_min"] is None and high is None else bounds
        listed_row = page.locator(f"[data-testid=rules] tr[data-rule='{listed['id']}']")
        await expect(listed_row.get_by_test_id("cost")).to_have_text(expected_cost)
    await row.get_by_test_id("edit").click()
    editor = page.get_by_test_id("rule-editor")
    await expect(editor.locator("input[name=priority]")).to_have_value(str(first["priority"]))
    await expect(editor.locator("input[name=amount]")).to_have_value(first["margin_modifier"])
    await editor.locator("input[name=amount]").fill("20")
    await page.get_by_test_id("preview").click()
    update = {k: first[k] for k in ("priority", "description", "feed", "stone_type", "cost_min", "cost_max")}
    changed = (
        await api.post(
            "/pricing/preview",
            json={"action": "update", "rule_id": first["id"], "rule": {**update, "margin_modifier": "20"}},
        )
    ).json()["changed"]
    await expect(page.get_by_test_id("preview-changed")).to_have_text(f"{changed:,}")
    # Deactivating asks first, with the impact; cancelling changes nothing.
    await row.get_by_test_id("deactivate").click()
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_contain_text(f"Deactivate rule {first['id']}")
    await expect(dialog).to_contain_text("live stones would change price")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    assert await get_data(api, "/pricing/rules") == rules

    await page.get_by_test_id("new-rule").click()
    await editor.locator("input[name=priority]").fill("5")
    await editor.locator("input[name=description]").fill("round naturals, dashboard test")
    await editor.locator("select[name=feed]").select_option(NATURAL)
    await editor.locator("select[name=shapes]").select_option(["ROUND"])
    await editor.locator("select[name=mode]").select_option("markup_multiplier")

    # Checked in the page: no amount. Checked by the API: cost_min with three decimals (the browser
    # logs that refused request itself).
    dashboard.allow(r"status of 422 .*/api/v2/pricing/preview")
    await page.get_by_test_id("preview").click()
    await expect(page.locator("[data-error-for=markup_multiplier]")).to_contain_text("give the markup multiplier")
    await editor.locator("input[name=amount]").fill("1.9")
    await editor.locator("input[name=cost_min]").fill("100.123")
    await page.get_by_test_id("preview").click()
    await expect(page.locator("[data-error-for=cost_min]")).to_contain_text("decimal places")
    # A refused preview saved nothing and does not claim otherwise.
    await expect(page.get_by_test_id("rule-panel").locator(".notice.error")).to_contain_text("Not previewed")
    await dashboard.screenshot("pricing-validation")
    await editor.locator("input[name=cost_min]").fill("")

    await page.get_by_test_id("preview").click()
    report = page.get_by_test_id("preview-report")
    await expect(report).to_be_visible()
    rule = {
        "priority": 5,
        "description": "round naturals, dashboard test",
        "feed": NATURAL,
        "shapes": ["ROUND"],
        "markup_multiplier": "1.9",
    }
    expected = (await api.post("/pricing/preview", json={"action": "create", "rule": rule})).json()
    assert expected["changed"] > 0
    await expect(page.get_by_test_id("preview-changed")).to_have_text(f"{expected['changed']:,}")
    await expect(page.get_by_test_id("preview-stones")).to_have_text(f"{expected['stones']:,}")
    await dashboard.screenshot("pricing-preview")

    await page.get_by_test_id("save").click()
    await expect(page.locator(".notice.ok")).to_contain_text("saved as rule version")
    saved = [r for r in await get_data(api, "/pricing/rules") if r["description"] == rule["description"]]
    assert len(saved) == 1
    assert saved[0]["markup_multiplier"] == "1.9000"
    assert saved[0]["shapes"] == ["ROUND"]
    job_row = page.locator("[data-testid=jobs] tbody tr").first
    await expect(job_row).to_have_attribute("data-status", "completed", timeout=60_000)
    await expect(job_row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    job_id = await job_row.get_attribute("data-job")
    job = await get_data(api, f"/pricing/jobs/{job_id}")
    assert job["changed"] == expected["changed"]
    await dashboard.screenshot("pricing")

    await job_row.get_by_test_id("revert").click()
    await confirm(page, f"job {job_id}")
    await expect(page.locator(f"[data-testid=jobs] tbody tr[data-job='{job_id}'] .badge")).to_have_text("reverted")
    revert_row = page.locator("[data-testid=jobs] tbody tr").first
    await expect(revert_row).to_have_attribute("data-status", "completed", timeout=60_000)
    assert not [r for r in await get_data(api, "/pricing/rules") if r["description"] == rule["description"]]
    dashboard.check_console()


# --- heatmap ------------------------------------------------------------------------------------
async def test_heatmap_shows_a_runs_partitions_and_previews_a_new_scan(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any]
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, f"/heatmap?run={natural_run['run_id']}")
    await expect(page.get_by_test_id("heat-grid")).to_be_visible()
    run = await get_data(api, f"/runs/{natural_run['run_id']}")
    partitions = len(run["heatmap"]["partitions"])
    charts = page.get_by_test_id("density-chart")
    await expect(charts).to_have_count(1)
    await expect(charts.first.get_by_test_id("boundary")).to_have_count(partitions - 1)
    await expect(charts.first.get_by_test_id("partition-band")).to_have_count(partitions)

    form = page.get_by_test_id("preview-form")
    await form.locator("select[name=feed]").select_option(NATURAL)
    await form.locator("select[name=run_type]").select_option("full")
    await form.locator("input[name=max_workers]").fill("4")
    await form.get_by_role("button", name="Scan now").click()
    await expect(charts).to_have_count(2)
    preview = charts.nth(1)
    await expect(preview.get_by_test_id("partition-band")).to_have_count(4)
    await expect(preview.get_by_test_id("boundary")).to_have_count(3)
    await expect(page.get_by_test_id("scan-facts").nth(1)).to_contain_text("4 partitions")
    await dashboard.screenshot("heatmap")
    dashboard.check_console()


def price_bounds(low: str, high: str | None) -> str:
    """A partition's price-per-carat bounds as the tables show them: exact, with cents."""
    return f"${Decimal(low):,.2f} – {'∞' if high is None else f'${Decimal(high):,.2f}'}"


async def test_partition_tables_show_exact_price_bounds_and_a_run_counts_its_unmappable_stones(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any]
) -> None:
    run = await get_data(api, f"/runs/{natural_run['run_id']}")
    page = dashboard.page
    await dashboard.sign_in(keys.admin, f"/heatmap?run={run['run_id']}")
    planned = [price_bounds(p["min"], p["max"]) for p in run["heatmap"]["partitions"]]
    # Each chart is an image with a name that says what it shows.
    await expect(page.get_by_test_id("heat-grid")).to_have_attribute(
        "aria-label", re.compile(r"stones by price per carat")
    )
    density = page.get_by_test_id("density-chart")
    await expect(density).to_have_attribute("aria-label", re.compile(f"{len(planned)} partitions"))
    await expect(page.locator("[data-testid=scan-partitions] tbody td:nth-child(2)")).to_have_text(planned)
    await dashboard.open(f"/runs/{run['run_id']}")
    ran = [price_bounds(p["min_price"], p["max_price"]) for p in run["partitions"]]
    await expect(page.locator("[data-testid=partitions] tbody td:nth-child(2)")).to_have_text(ran)
    # The stones the run could not map are counted on its page, as the API counts them.
    await expect(page.get_by_test_id("unmappable")).to_contain_text(f"{run['consolidation_errors']:,}")
    dashboard.check_console()


# --- dead letters and errors ----------------------------------------------------------------------
async def test_dead_letters_are_listed_with_their_reason_and_replayed(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, server: OpusServer, settings: Settings
) -> None:
    pool = await open_pool(server.database_url, settings, name="dashboard-poison", min_size=1, max_size=1)
    try:
        bus = local_bus(settings, pool)
        body = {"type": "WORK_ITEM", "feed": NATURAL, "offset": "not a number"}
        await bus.send([OutgoingMessage(bus.queues.work_items, "poison-dashboard", body)])
    finally:
        await pool.close()
    for _ in range(200):
        letters = await get_data(api, "/dead-letters")
        if any(letter["message_id"] == "poison-dashboard" for letter in letters):
            break
        await asyncio.sleep(0.1)

    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/dead-letters")
    row = page.locator("[data-testid=dead-letters] tbody tr[data-message='poison-dashboard']")
    await expect(row).to_contain_text("PoisonMessage")
    await expect(row).to_contain_text("offset")
    await expect(page.get_by_test_id("errors")).to_be_visible()
    await dashboard.screenshot("dead-letters")
    await row.get_by_test_id("replay").click()
    await confirm(page, "poison-dashboard")
    await expect(page.locator(".notice.ok")).to_contain_text("Replayed as poison-dashboard:replay-")
    await page.locator("input[name=include_replayed]").check()
    await expect(row.get_by_test_id("replay-state")).to_contain_text("replayed")
    letters = await get_data(api, "/dead-letters", include_replayed="true")
    assert [letter["replayed_at"] is not None for letter in letters if letter["message_id"] == "poison-dashboard"] == [
        True
    ]
    dashboard.check_console()


async def test_a_dead_letter_list_that_failed_once_drops_its_error_when_it_loads_again(
    dashboard: Dashboard, keys: Keys
) -> None:
    page = dashboard.page
    dashboard.allow(r"status of 503 .*/api/v2/dead-letters")
    outage = {"error": {"code": "unavailable", "message": "the database is restarting", "details": None}}

    async def refuse(route: Route) -> None:
        await route.fulfill(status=503, json=outage)

    await page.route("**/api/v2/dead-letters?*", refuse)
    await dashboard.sign_in(keys.admin, "/dead-letters")
    errors = page.get_by_test_id("error")
    await expect(errors).to_contain_text("the database is restarting")
    await page.unroute("**/api/v2/dead-letters?*", refuse)
    await page.locator("input[name=queue]").fill("work-items")
    await page.locator("input[name=queue]").press("Enter")
    await expect(page.locator("[data-testid=dead-letters] tbody tr").first).to_be_visible()
    await expect(errors).to_have_count(0)
    dashboard.check_console()


async def test_a_full_page_of_recorded_errors_says_there_may_be_more(dashboard: Dashboard, keys: Keys) -> None:
    page = dashboard.page
    record = {
        "occurred_at": "2026-01-01T00:00:00Z",
        "source": "consolidator",
        "code": "unmappable",
        "message": "no shape",
    }

    async def full_page(route: Route) -> None:
        limit = int(parse_qs(urlsplit(route.request.url).query)["limit"][0])
        await route.fulfill(json={"data": [{**record, "id": i} for i in range(limit)]})

    await page.route("**/api/v2/errors?*", full_page)
    await dashboard.sign_in(keys.admin, "/dead-letters")
    rows = page.locator("[data-testid=errors] tbody tr[data-error]")
    await expect(rows).to_have_count(200)
    await expect(page.locator(".notice.info")).to_contain_text("Showing the newest 200 errors")
    dashboard.check_console()


async def test_recorded_errors_refused_for_a_bad_run_id_show_no_rows_of_the_previous_filter(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any]
) -> None:
    assert await get_data(api, "/errors", limit=1), "the test runs record unmappable stones"
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/dead-letters")
    rows = page.locator("[data-testid=errors] tbody tr[data-error]")
    await expect(rows.first).to_be_visible()
    dashboard.allow(r"status of 422 .*/api/v2/errors")
    await page.locator("input[name=run_id]").fill("not-a-run")
    await page.locator("input[name=run_id]").press("Enter")
    await expect(page.get_by_test_id("error")).to_contain_text("run_id")
    await expect(rows).to_have_count(0)
    dashboard.check_console()


# --- overview -----------------------------------------------------------------------------------
async def test_overview_says_more_dead_letters_wait_than_the_one_page_it_counted(
    dashboard: Dashboard, keys: Keys
) -> None:
    page = dashboard.page
    letter = {
        "queue": "work-items",
        "reason": "PoisonMessage",
        "description": "bad body",
        "delivery_count": 1,
        "dead_lettered_at": "2026-01-01T00:00:00Z",
        "body": {},
        "replayed_at": None,
        "replay_message_id": None,
    }

    async def full_page(route: Route) -> None:
        limit = int(parse_qs(urlsplit(route.request.url).query)["limit"][0])
        rows = [{**letter, "id": i, "message_id": f"m-{i}"} for i in range(limit)]
        await route.fulfill(json={"data": rows})

    await page.route("**/api/v2/dead-letters?*", full_page)
    await dashboard.sign_in(keys.admin, "/overview")
    await expect(page.get_by_test_id("card-dead-letters")).to_contain_text("500+")
    await expect(page.get_by_test_id("alerts")).to_contain_text("500+ dead letters waiting")
    dashboard.check_console()


async def test_overview_shows_the_catalogue_runs_watermarks_and_alerts(
    dashboard: Dashboard, keys: Keys, api: httpx.AsyncClient, natural_run: dict[str, Any]
) -> None:
    page = dashboard.page
    await dashboard.sign_in(keys.admin, "/overview")
    inventory = (await api.get("/analytics/inventory", params={"feed": NATURAL})).json()
    natural = page.locator(f"[data-testid=catalogue-by-feed] tr[data-feed='{NATURAL}']")
    await expect(natural).to_contain_text(f"{inventory['by_availability']['available']:,}")
    total = 0
    for feed in (NATURAL, LAB):
        total += int((await api.get("/analytics/inventory", params={"feed": feed})).json()["total"])
    await expect(page.get_by_test_id("card-live")).to_contain_text(f"{total:,}")
    await expect(page.get_by_test_id("catalogue-total")).to_have_text(f"{total:,}")
    feed_row = page.locator(f"[data-testid=feeds] tr[data-feed='{NATURAL}']")
    last = (await get_data(api, "/runs", feed=NATURAL, status="completed", limit=1))[0]
    await expect(feed_row).to_contain_text(last["run_id"][:8])
    marks = {m["feed"]: m for m in await get_data(api, "/watermarks")}
    await expect(feed_row.get_by_test_id("watermark").locator("time")).to_have_attribute(
        "datetime", marks[NATURAL]["last_updated_at"]
    )
    runs_7d = await get_data(api, "/analytics/runs", days=7, limit=1000)
    await expect(page.get_by_test_id("card-runs")).to_contain_text(str(len(runs_7d)))
    await expect(page.get_by_test_id("bar-chart")).to_be_visible()
    await expect(page.get_by_test_id("bar-chart")).to_have_attribute("aria-label", re.compile(r"\d+ completed"))
    await expect(page.get_by_test_id("alerts")).to_be_visible()
    await dashboard.screenshot("overview")
    dashboard.check_console()
