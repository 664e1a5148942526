"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), a page per
test that records console errors, and screenshots under test-artifacts/dashboard/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright, expect

from api.keys import create_key
from shared.db.pool import open_pool
from shared.settings import Settings
from tests.dashboard.chromium import LAUNCH_ARGS, ChromiumUnavailableError, ensure_chromium

ARTIFACTS: Final = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
EXPECT_TIMEOUT_MS: Final = 15_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        return ensure_chromium()
    except ChromiumUnavailableError as exc:
        pytest.fail(f"the browser tests need Debian's Chromium: {exc}", pytrace=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """One headless Chromium with a fresh profile; each test opens its own page (its own session storage)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(chromium),
            headless=True,
            args=list(LAUNCH_ARGS),
            accept_downloads=True,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            yield context
        finally:
            await context.close()


@dataclass(frozen=True)
class Keys:
    admin: str
    read: str


async def create_keys(database_url: str, settings: Settings) -> Keys:
    pool = await open_pool(database_url, settings, name="dashboard-tests", min_size=1, max_size=1)
    try:
        admin = await create_key(pool, name="dashboard-admin", scopes=["admin"])
        read = await create_key(pool, name="dashboard-reader", scopes=["read"])
    finally:
        await pool.close()
    return Keys(admin=admin.key, read=read.key)


@dataclass
class Dashboard:
    """A browser page on the dashboard, with the console errors it logged."""

    page: Page
    url: str
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def listen(self) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.problems.append(f"console error: {message.text} ({message.location.get('url')})")

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    async def open(self, route: str) -> None:
        await self.page.goto(f"{self.url}/#{route}")

    async def sign_in(self, key: str, route: str = "/overview") -> None:
        await self.open(route)
        await self.page.locator("#api-key").fill(key)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.locator("#nav")).to_be_visible()

    async def screenshot(self, name: str) -> None:
        await self.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)

    def allow(self, pattern: str) -> None:
        """A console error this test provokes on purpose (e.g. the browser's note on a 401)."""
        self.allowed.append(re.compile(pattern))

    def check_console(self) -> None:
        unexpected = [p for p in self.problems if not any(a.search(p) for a in self.allowed)]
        self.problems.clear()
        assert not unexpected, "\n".join(unexpected)


async def open_dashboard(browser: BrowserContext, url: str) -> Dashboard:
    dashboard = Dashboard(await browser.new_page(), url)
    dashboard.listen()
    return dashboard
