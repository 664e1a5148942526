"""Dismissing a dead letter from the dashboard (data seeded in the database, the app served by uvicorn
in a thread, Debian's Chromium on it): the note asked in place, a blank one refused with the API's
reason, the outcome shown, the list and the overview's count without the dismissed letter, and the
resolved view showing it with its note."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, expect

from api.keys import create_key
from shared.db.pool import Pool
from tests.api.conftest import ServedApi, serve
from tests.conftest import make_settings
from tests.dashboard.conftest import Dashboard, open_dashboard

pytestmark = [pytest.mark.xdist_group("dashboard"), pytest.mark.browser]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    settings = make_settings(database_url, tmp_path_factory.mktemp("dashboard-dead-letters"))
    with serve(settings, database_url) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def admin_key(db: Pool) -> str:
    return (await create_key(db, name="dead-letters-admin", scopes=["admin"])).key


@pytest_asyncio.fixture(loop_scope="session")
async def dashboard(browser: BrowserContext, served: ServedApi, admin_key: str) -> AsyncIterator[Dashboard]:
    opened = await open_dashboard(browser, served.url)
    try:
        yield opened
    finally:
        await opened.page.close()
    opened.check_console()


def add_letters(database_url: str, *message_ids: str) -> list[int]:
    ids = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for message_id in message_ids:
            row = conn.execute(
                """INSERT INTO dead_letters (source, queue, message_id, body, reason, description, delivery_count)
                   VALUES ('poison', 'work-items', %s, %s, 'PoisonMessage', 'invalid message', 1) RETURNING id""",
                (message_id, json.dumps({"type": "WORK_ITEM", "offset": "not a number"})),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
    return ids


async def test_an_admin_dismisses_a_dead_letter_with_a_note(
    dashboard: Dashboard, admin_key: str, served: ServedApi, database_url: str
) -> None:
    poison, kept = add_letters(database_url, "poison-body", "still-waiting")
    page = dashboard.page
    dashboard.allow(r"status of 422 .*/dismiss")
    await dashboard.sign_in(admin_key, "/dead-letters")
    row = page.locator("[data-testid=dead-letters] tbody tr[data-message='poison-body']")
    other = page.locator("[data-testid=dead-letters] tbody tr[data-message='still-waiting']")
    await expect(row.get_by_test_id("replay")).to_be_visible()

    # Cancel puts the actions back; nothing is sent.
    await row.get_by_test_id("dismiss").click()
    await row.get_by_role("button", name="Cancel").click()
    await expect(row.get_by_test_id("dismiss-form")).to_have_count(0)
    await expect(row.get_by_test_id("replay")).to_be_visible()

    # A blank note is the API's to refuse, with its reason; the letter stays.
    await row.get_by_test_id("dismiss").click()
    form = row.get_by_test_id("dismiss-form")
    await form.locator("input[name=note]").fill("   ")
    await form.get_by_role("button", name="Dismiss").click()
    await expect(page.get_by_test_id("error")).to_contain_text("the note is blank")

    await form.locator("input[name=note]").fill("poison body, fixed upstream")
    await dashboard.screenshot("dead-letter-dismiss-form")
    await form.get_by_role("button", name="Dismiss").click()
    await expect(page.locator(".notice.ok")).to_have_text(
        f"Dismissed dead letter {poison}: poison body, fixed upstream"
    )
    await expect(row).to_have_count(0)
    await expect(other.get_by_test_id("dismiss")).to_be_visible()

    await page.locator("input[name=include_replayed]").check()
    await expect(row.get_by_test_id("replay-state")).to_contain_text("dismissed")
    await expect(row.get_by_test_id("dismissal-note")).to_have_text("poison body, fixed upstream")
    await expect(row.get_by_test_id("replay")).to_have_count(0)
    await expect(row.get_by_test_id("dismiss")).to_have_count(0)
    await dashboard.screenshot("dead-letter-dismissed")

    async with httpx.AsyncClient(base_url=f"{served.url}/api/v2", headers={"X-API-Key": admin_key}) as api:
        letters = (await api.get("/dead-letters", params={"include_replayed": "true"})).json()["data"]
    assert {d["id"]: d["dismissal_note"] for d in letters} == {poison: "poison body, fixed upstream", kept: None}

    await dashboard.open("/overview")
    await expect(page.get_by_test_id("card-dead-letters").locator(".value")).to_have_text("1")
    await expect(page.get_by_test_id("alerts")).to_contain_text("1 dead letter waiting")
