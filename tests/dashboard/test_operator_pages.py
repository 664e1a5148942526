"""Dashboard pages over data seeded in the database (no feed, no pipeline): the app served by
uvicorn in a thread over the session database, Debian's Chromium on it. Quick checks of what an
operator reads and does: resuming a failed repricing job, what the heatmap counts, the zone of
every time shown, why a run over unchanged stones consolidated nothing, and dismissing a dead letter
with a note."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, Route, expect
from psycopg.types.json import Jsonb

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


def add_run(
    database_url: str, partitions: list[tuple[int, int]], feed_clock: dict[str, Any] | None = None, **values: Any
) -> str:
    """A completed full natural run whose partitions saw and changed (records_seen, records_changed) stones,
    with the feed clock reading the scheduler stores in its heatmap (none: unmeasured)."""
    started = values.pop("started_at", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    run: dict[str, Any] = {
        "feed": "nivoda-natural",
        "run_type": "full",
        "status": "completed",
        "trace_id": "trace",
        "updated_from": datetime(2000, 1, 1, tzinfo=UTC),
        "updated_to": started,
        "expected_partitions": len(partitions),
        "estimated_records": sum(seen for seen, _ in partitions),
        "started_at": started,
        "ingestion_completed_at": started + timedelta(minutes=2),
        "consolidation_requested_at": started + timedelta(minutes=2),
        "consolidation_started_at": started + timedelta(minutes=2, seconds=1),
        "consolidation_completed_at": started + timedelta(minutes=3),
        "completed_at": started + timedelta(minutes=3),
        "last_progress_at": started + timedelta(minutes=2),
        **values,
    }
    # Partitions of $1,000 per carat, the last open-ended, as a density scan would plan them.
    last = len(partitions) - 1
    planned = [
        {
            "id": f"partition-{i}",
            "min": f"{i * 1000}.00",
            "max": None if i == last else f"{i * 1000 + 999}.99",
            "estimated": seen,
            "seen": seen,
            "changed": changed,
        }
        for i, (seen, changed) in enumerate(partitions)
    ]
    scan = [{key: p[key] for key in ("id", "min", "max", "estimated")} for p in planned]
    chunks = [{"min": p["min"], "max": p["max"], "count": p["seen"]} for p in planned]
    total = run["estimated_records"]
    scanned: dict[str, Any] = {"total": total, "count_calls": 3, "duration_s": 0.5, "chunks": chunks}
    clock = {} if feed_clock is None else {"feed_clock": feed_clock}
    run["heatmap"] = Jsonb({**scanned, "partitions": scan, **clock})
    columns, marks = ", ".join(run), ", ".join(["%s"] * len(run))
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            f"INSERT INTO run_metadata ({columns}) VALUES ({marks}) RETURNING run_id::text", list(run.values())
        ).fetchone()
        assert row is not None
        for position, p in enumerate(planned):
            conn.execute(
                """INSERT INTO partition_progress (run_id, partition_id, position, min_price, max_price,
                       estimated_records, status, next_offset, pages, records_seen, records_changed, completed_at)
                   VALUES (%s, %s, %s, %s, %s, %s, 'completed', %s, 1, %s, %s, %s)""",
                (
                    row[0],
                    p["id"],
                    position,
                    p["min"],
                    p["max"],
                    p["seen"],
                    p["seen"],
                    p["seen"],
                    p["changed"],
                    run["completed_at"],
                ),
            )
    run_id: str = row[0]
    return run_id


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


# --- times: every one says its zone ------------------------------------------------------------------
ZONE = "Asia/Kolkata"  # UTC+5:30: neither the machine's zone nor a whole hour away from UTC


async def in_zone(page: Page, zone: str) -> None:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setTimezoneOverride", {"timezoneId": zone})


async def shown_times(page: Page) -> list[dict[str, str]]:
    """Every <time> on the page: its text, hover title and the instant it stands for."""
    found: list[dict[str, str]] = await page.locator("time").evaluate_all(
        "times => times.map(t => ({text: t.textContent, title: t.title, datetime: t.dateTime}))"
    )
    return found


async def test_every_time_shown_is_local_with_its_zone(
    dashboard: Dashboard, admin_key: str, api: httpx.AsyncClient, database_url: str
) -> None:
    zone = ZoneInfo(ZONE)
    now = datetime.now(UTC)
    local_midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    # Today in Kolkata, still yesterday in UTC: the overview's bars count it on today's (local) bar.
    early_today = min(now - timedelta(minutes=5), (local_midnight + timedelta(minutes=1)).astimezone(UTC))
    run_id = add_run(database_url, [(40, 0), (60, 0)], started_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    add_run(database_url, [(10, 10)], started_at=early_today, feed="nivoda-labgrown")
    seed(
        database_url,
        "INSERT INTO watermarks (feed, last_updated_at, last_run_id) VALUES ('nivoda-natural', %s, %s) RETURNING feed",
        datetime(2026, 3, 1, 11, 0, 30, tzinfo=UTC),
        run_id,
    )
    version = await new_rule_version(api, 5)
    seed(
        database_url,
        """INSERT INTO repricing_jobs (status, to_version, reason, error, completed_at, created_at)
           VALUES ('failed', %s, 'rule 5', 'timeout', now(), %s) RETURNING id""",
        version,
        datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    )
    page = dashboard.page
    await in_zone(page, ZONE)
    await dashboard.sign_in(admin_key, f"/runs/{run_id}")

    timeline = page.get_by_test_id("timeline")
    await expect(timeline.locator("time").first).to_have_text("1 Mar 2026, 17:30:00 GMT+5:30")
    await expect(timeline.locator("time").last).to_have_text("1 Mar 2026, 17:33:00 GMT+5:30")
    await expect(page.locator("p.muted time").last).to_have_text("1 Mar 2026, 17:30:00 GMT+5:30")  # the window's end
    pages = {"run": await shown_times(page)}

    await dashboard.open("/overview")
    natural = page.locator("[data-testid=feeds] tr[data-feed='nivoda-natural']")
    await expect(natural.get_by_test_id("watermark")).to_have_text("1 Mar 2026, 16:30:30 GMT+5:30")
    await expect(page.get_by_test_id("days-zone")).to_have_text("days in GMT+5:30")
    weekday = datetime.now(zone).strftime("%a")
    await expect(page.get_by_test_id("bar-chart")).to_have_attribute(
        "aria-label", re.compile(f"{weekday}: 1 completed$")
    )
    pages["overview"] = await shown_times(page)

    await dashboard.open("/runs")
    await expect(page.locator("[data-testid=runs] time")).to_have_count(2)
    pages["runs"] = await shown_times(page)

    await dashboard.open("/pricing")
    await expect(page.locator("[data-testid=jobs] time")).to_have_attribute("title", "1 Mar 2026, 18:00:00 GMT+5:30")
    pages["pricing"] = await shown_times(page)

    for name, times in pages.items():
        assert times, name
        for time in times:
            assert (time["title"] or time["text"]).endswith(" GMT+5:30"), (name, time)
            assert time["datetime"], (name, time)
    dashboard.check_console()


# --- a run over unchanged stones ----------------------------------------------------------------------
async def test_a_run_over_unchanged_stones_says_why_it_consolidated_none(
    dashboard: Dashboard, admin_key: str, database_url: str
) -> None:
    unchanged = add_run(database_url, [(400, 0), (834, 0)])
    partly = add_run(database_url, [(400, 25), (600, 0)], feed="nivoda-labgrown", consolidation_processed=25)
    fresh = add_run(database_url, [(50, 50)], feed="nivoda-labgrown", consolidation_processed=50)
    page = dashboard.page
    await dashboard.sign_in(admin_key, f"/runs/{unchanged}")
    card = page.get_by_test_id("consolidated")
    await expect(card).to_contain_text("0")
    await expect(page.get_by_test_id("consolidation-note")).to_have_text(
        "1,234 stones seen, unchanged since they were last fetched: nothing to consolidate"
    )
    await dashboard.screenshot("run-unchanged")
    await dashboard.open(f"/runs/{partly}")
    await expect(page.get_by_test_id("consolidation-note")).to_have_text(
        "1,000 stones seen, 975 unchanged since they were last fetched: only the 25 changed are consolidated"
    )
    await dashboard.open(f"/runs/{fresh}")
    await expect(card).to_contain_text("50")
    await expect(page.get_by_test_id("consolidation-note")).to_have_count(0)
    dashboard.check_console()


# --- the feed's clock, as each run measured it -------------------------------------------------------
async def test_a_feed_clock_lag_beyond_the_safety_buffer_is_a_warning_on_the_run_and_in_the_runs_table(
    dashboard: Dashboard, admin_key: str, database_url: str
) -> None:
    lagging = add_run(
        database_url,
        [(10, 10)],
        feed_clock={"lag_s": 603.4, "beyond_safety_buffer": True, "safety_buffer_s": 300.0},
        run_type="incremental",
        watermark_before=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
    )
    in_step = add_run(database_url, [(10, 10)], feed_clock={"lag_s": 1.3, "beyond_safety_buffer": False})
    page = dashboard.page
    await dashboard.sign_in(admin_key, f"/runs/{lagging}")
    warning = page.get_by_test_id("feed-clock").locator(".notice.warn")
    await expect(warning).to_have_text(
        "Feed clock 10 min 3 s behind ours, more than the incremental safety buffer of 5 min 0 s: added to this"
        " incremental window"
    )
    await dashboard.screenshot("run-feed-clock-lag")

    await dashboard.open("/runs")
    flag = page.locator(f"[data-testid=runs] tr[data-run='{lagging}'] [data-testid=clock-lag]")
    await expect(flag).to_have_text("feed clock lag")
    await expect(flag).to_have_attribute("title", re.compile("^Feed clock 10 min 3 s behind ours, more than"))
    await expect(page.get_by_test_id("clock-lag")).to_have_count(1)  # not on the run within the buffer

    await dashboard.open(f"/runs/{in_step}")
    quiet = page.get_by_test_id("feed-clock")
    await expect(quiet).to_have_text("Feed clock 1.3 s behind ours: not added to the window")
    await expect(page.locator(".notice.warn")).to_have_count(0)

    # A run planned before the buffer was recorded; a lag of days, and one no clock could have.
    for lag_s, shown in ((3 * 86400 + 1234, "3 d"), (1e300, "over 100 years")):
        older = add_run(database_url, [(10, 10)], feed_clock={"lag_s": lag_s, "beyond_safety_buffer": True})
        await dashboard.open(f"/runs/{older}")
        await expect(page.get_by_test_id("feed-clock")).to_have_text(
            f"Feed clock {shown} behind ours, more than the incremental safety buffer: not added to the window"
        )
    dashboard.check_console()


async def test_a_run_without_a_feed_clock_reading_says_so_quietly(
    dashboard: Dashboard, admin_key: str, database_url: str
) -> None:
    unmeasured = add_run(database_url, [(10, 10)], run_type="incremental")
    page = dashboard.page
    await dashboard.sign_in(admin_key, f"/runs/{unmeasured}")
    clock = page.get_by_test_id("feed-clock")
    await expect(clock).to_have_text("Feed clock not measured")
    await expect(clock).to_have_class("small muted")
    await expect(page.locator(".notice.warn")).to_have_count(0)
    await dashboard.open("/runs")
    await expect(page.locator(f"[data-testid=runs] tr[data-run='{unmeasured}']")).to_be_visible()
    await expect(page.get_by_test_id("clock-lag")).to_have_count(0)
    dashboard.check_console()


# --- dismissing a dead letter ------------------------------------------------------------------
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
