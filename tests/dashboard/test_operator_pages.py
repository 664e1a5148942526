"""Dashboard pages over data seeded in the database (no feed, no pipeline): the app served by
uvicorn in a thread over the session database, Debian's Chromium on it. Quick checks of what an
operator reads and does: resuming a failed repricing job, what the heatmap counts, the zone of
every time shown, and why a run over unchanged stones consolidated nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Route, expect

from api.keys import create_key
from shared.db.pool import Pool
from tests.api.catalogue import insert, stone
from tests.api.conftest import ServedApi, serve
from tests.conftest import make_settings
from tests.dashboard.conftest import Dashboard, open_dashboard

pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.browser]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    settings = make_settings(database_url, tmp_path_factory.mktemp("dashboard-pages"))
    with serve(settings, database_url) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def admin_key(db: Pool) -> str:
    """An admin key in the emptied database (every test starts from no state)."""
    return (await create_key(db, name="pages-admin", scopes=["admin"])).key


@pytest_asyncio.fixture(loop_scope="session")
async def api(served: ServedApi, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"{served.url}/api/v2", headers={"X-API-Key": admin_key}, timeout=30
    ) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(browser: BrowserContext, served: ServedApi, admin_key: str) -> AsyncIterator[Dashboard]:
    opened = await open_dashboard(browser, served.url)
    try:
        yield opened
    finally:
        await opened.page.close()
    opened.check_console()


def seed(database_url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(sql, params or None).fetchone()
    return row[0] if row else None


async def new_rule_version(api: httpx.AsyncClient, priority: int) -> int:
    rule = {"priority": priority, "stone_type": "natural", "markup_multiplier": "2"}
    created = await api.post("/pricing/rules", params={"reprice": "false"}, json=rule)
    assert created.status_code == 201, created.text
    version: int = created.json()["version"]
    return version


# --- pricing: resuming a failed repricing job ------------------------------------------------------
async def test_a_failed_repricing_job_is_resumed_from_the_pricing_page(
    dashboard: Dashboard, admin_key: str, api: httpx.AsyncClient, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert(conn, [stone(feed_price=Decimal("1000.00")), stone(feed_price=Decimal("2000.00"))])
    outdated = await new_rule_version(api, 5)
    current = await new_rule_version(api, 6)
    failed = """INSERT INTO repricing_jobs (status, to_version, reason, error, completed_at)
                VALUES ('failed', %s, %s, %s, now()) RETURNING id"""
    stale_job = seed(database_url, failed, outdated, "rule 5", "deadlock detected")
    job = seed(database_url, failed, current, "rule 6", "canceling statement due to statement timeout")

    page = dashboard.page
    dashboard.allow(r"status of 409 .*/resume")
    await dashboard.sign_in(admin_key, "/pricing")
    resume = page.get_by_role("button", name=f"Resume repricing job {job}")
    stale = page.get_by_role("button", name=f"Resume repricing job {stale_job}")
    await expect(resume).to_be_enabled()

    # Refused: the rules changed since that job; the API's reason is shown and the list reloaded.
    await stale.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_test_id("confirm")
    await expect(dialog).to_contain_text(f"Continue job {stale_job}")
    await dialog.get_by_role("button", name="Resume").press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text(f"Job {stale_job} not resumed")
    await expect(page.get_by_role("alert")).to_contain_text("the rules changed since")
    await expect(page.locator(f"[data-testid=jobs] tr[data-job='{stale_job}']")).to_have_attribute(
        "data-status", "failed"
    )

    # Cancelling the confirmation sends nothing.
    await resume.click()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    assert (await api.get(f"/pricing/jobs/{job}")).json()["data"]["status"] == "failed"

    # Accepted: the button is disabled while the request is in flight, then the job runs to the end.
    released = asyncio.Event()

    async def hold(route: Route) -> None:
        await released.wait()
        await route.continue_()

    await page.route(f"**/api/v2/pricing/jobs/{job}/resume", hold)
    await resume.press("Enter")
    await dialog.get_by_role("button", name="Resume").click()
    await expect(resume).to_be_disabled()
    released.set()
    row = page.locator(f"[data-testid=jobs] tr[data-job='{job}']")
    await expect(row).to_have_attribute("data-status", "completed")
    await expect(page.locator(".notice.ok")).to_contain_text(f"Job {job} resumed")
    await expect(resume).to_have_count(0)
    resumed = (await api.get(f"/pricing/jobs/{job}")).json()["data"]
    assert (resumed["status"], resumed["changed"], resumed["error"]) == ("completed", 2, None)
    await dashboard.screenshot("pricing-resumed")
    dashboard.check_console()


# --- heatmap: what the live catalogue's grid counts ---------------------------------------------------
async def test_the_heatmap_names_the_stones_it_counts(dashboard: Dashboard, admin_key: str, database_url: str) -> None:
    stones = [
        *(stone(availability="available") for _ in range(3)),
        *(stone(availability="sold") for _ in range(2)),
        stone(availability="sold", lab_grown=True),
        stone(availability="sold", status="deleted"),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert(conn, stones)
    page = dashboard.page
    await dashboard.sign_in(admin_key, "/heatmap")
    total = page.get_by_test_id("heat-total")
    grid = page.get_by_test_id("heat-grid")
    await expect(total).to_have_text("6 live stones")
    await expect(grid).to_have_attribute("aria-label", "6 live stones by price per carat and carat weight")
    filters = page.locator("section form.filters").first
    await filters.locator("select[name=availability]").select_option("sold")
    await expect(total).to_have_text("3 sold stones")
    await expect(grid).to_have_attribute("aria-label", "3 sold stones by price per carat and carat weight")
    await filters.locator("select[name=feed]").select_option("nivoda-natural")
    await expect(total).to_have_text("2 sold stones from nivoda-natural")
    await filters.locator("select[name=availability]").select_option("on_hold")
    await expect(total).to_have_text("0 on hold stones from nivoda-natural")
    dashboard.check_console()
