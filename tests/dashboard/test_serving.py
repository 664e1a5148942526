"""How the dashboard is served (no browser): the page and every asset from the app itself, nothing
fetched from elsewhere, at `/` and through the Functions HTTP function at `/api/dashboard/`; and
the two endpoints the dashboard added, GET /api/v2/whoami and POST /api/v2/heatmap/preview."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.keys import create_key
from api.routes.dashboard import STATIC
from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from shared.bootstrap import open_container
from shared.db.pool import Pool
from tests.azure.conftest import FakeContext
from tests.azure.indexing import user_function
from tests.conftest import make_settings
from tests.pipeline.conftest import expected_ids, ground_truth

NATURAL = "nivoda-natural"
ASSETS = sorted(path for path in (STATIC / "assets").rglob("*") if path.is_file())
_REFERENCE = re.compile(r"""(?:src|href)="([^"]+)\"""")
_IMPORT = re.compile(r"""^import\s[^;]*?from\s+"([^"]+)";""", re.MULTILINE | re.DOTALL)
_URL = re.compile(r"https?://[^\s\"'`)]+")
# Not fetched: the SVG namespace is an identifier.
_NOT_FETCHED = {"http://www.w3.org/2000/svg"}


@pytest_asyncio.fixture(loop_scope="session")
async def static_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app without a container: serving the dashboard needs none."""
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as client:
        yield client


@pytest.mark.parametrize("mount", ["/", "/api/dashboard/"])
async def test_the_page_and_every_asset_it_references_are_served_by_the_app(
    static_client: httpx.AsyncClient, mount: str
) -> None:
    page = await static_client.get(mount)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    references = _REFERENCE.findall(page.text)
    assert "assets/js/main.js" in references
    for reference in references:
        if reference.startswith("data:"):
            continue
        assert not re.match(r"^[a-z]+://", reference), f"{reference} would be fetched from elsewhere"
        url = reference if reference.startswith("/") else mount + reference
        response = await static_client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
    script = await static_client.get(f"{mount}assets/js/main.js")
    assert script.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")


def test_modules_import_only_each_other_and_fetch_nothing_from_elsewhere() -> None:
    scripts = [path for path in ASSETS if path.suffix == ".js"]
    assert len(scripts) >= 10
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        for specifier in _IMPORT.findall(text):
            assert specifier.startswith(("./", "../")), f"{script.name} imports {specifier}"
            assert (script.parent / specifier).resolve().is_file(), f"{script.name}: {specifier} is missing"
    for asset in [STATIC / "index.html", *ASSETS]:
        urls = set(_URL.findall(asset.read_text(encoding="utf-8"))) - _NOT_FETCHED
        assert not urls, f"{asset.name} refers to {urls}"


async def test_azure_serves_the_dashboard_through_the_http_function() -> None:
    """The Functions host prefixes HTTP routes with `api`, so Azure serves the page at /api/dashboard/."""
    http = user_function("http_app_func")
    binding = json.dumps(
        {
            "taskHubName": "Dashboard",
            "creationUrls": {},
            "managementUrls": {},
            "rpcBaseUrl": "http://127.0.0.1:9/durabletask/",
            "requiredQueryStringParameters": "",
        }
    )
    for path, kind in (("/api/dashboard/", "text/html"), ("/api/dashboard/assets/js/api.js", "javascript")):
        response = await http(
            req=func.HttpRequest("GET", f"http://localhost{path}", body=b""),
            context=FakeContext("http_app_func"),
            client=binding,
        )
        assert response.status_code == 200, path
        assert kind in (response.mimetype or ""), path


# --- the endpoints --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=21, stones=2000))
    yield sim
    sim.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    db: Pool, database_url: str, tmp_path: Path, simulator: ThreadedSimulator
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url,
        tmp_path,
        nivoda_endpoint=simulator.endpoint,
        nivoda_rate_limit_scope="process",
        nivoda_rate_limit_per_s=10_000,
        nivoda_max_retries=0,
        min_records_per_worker=50,
    )
    async with open_container(settings, database_url, name="dashboard-routes") as container:
        transport = httpx.ASGITransport(app=create_app(container))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test/api/v2") as client:
            yield client


async def key(db: Pool, scope: str) -> dict[str, str]:
    created = await create_key(db, name=f"dashboard-{scope}", scopes=[scope])
    return {"X-API-Key": created.key}


async def test_whoami_names_the_caller_and_its_scopes(api: httpx.AsyncClient, db: Pool) -> None:
    read = await api.get("/whoami", headers=await key(db, "read"))
    assert read.json() == {"data": {"client": "dashboard-read", "scopes": ["read"], "method": "api_key"}}
    admin = await api.get("/whoami", headers=await key(db, "admin"))
    assert admin.json()["data"]["scopes"] == ["read", "admin"]
    anonymous = await api.get("/whoami")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"


def _contiguous(ranges: list[dict[str, Any]]) -> bool:
    bounds = [(Decimal(r["min"]), None if r["max"] is None else Decimal(r["max"])) for r in ranges]
    edges_meet = all(
        high is not None and low_next == high + Decimal("0.01") for (_, high), (low_next, _) in pairwise(bounds)
    )
    return bounds[0][0] == 0 and bounds[-1][1] is None and edges_meet


async def test_heatmap_preview_scans_and_plans_like_a_run_without_starting_one(
    api: httpx.AsyncClient, db: Pool, simulator: ThreadedSimulator
) -> None:
    headers = await key(db, "admin")
    response = await api.post("/heatmap/preview", json={"feed": NATURAL, "max_workers": 4}, headers=headers)
    assert response.status_code == 200, response.text
    scan = response.json()["data"]
    assert scan["run_type"] == "full", "no watermark yet: a full window, as a run would choose"
    updated_to = datetime.fromisoformat(scan["updated_to"])
    truth = expected_ids(await ground_truth(simulator), NATURAL, updated_to)
    assert scan["total"] == len(truth) == sum(chunk["count"] for chunk in scan["chunks"])
    assert 1 <= len(scan["partitions"]) <= 4
    assert sum(p["estimated"] for p in scan["partitions"]) == scan["total"]
    assert _contiguous(scan["chunks"])
    assert _contiguous(scan["partitions"])
    assert 0 < scan["count_calls"] <= 60
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM run_metadata")
        assert await cur.fetchone() == (0,), "a preview records nothing"


async def test_heatmap_preview_refuses_bad_requests_and_read_keys(
    api: httpx.AsyncClient, db: Pool, simulator: ThreadedSimulator
) -> None:
    admin = await key(db, "admin")
    for body, parameter in (
        ({"feed": "nivoda-pink"}, "feed"),
        ({"feed": NATURAL, "max_count_calls": 4}, "max_count_calls"),
        ({"feed": NATURAL, "max_workers": False}, "max_workers"),
        ({"feed": NATURAL, "colour": "pink"}, "colour"),
    ):
        response = await api.post("/heatmap/preview", json=body, headers=admin)
        assert response.status_code == 422, body
        assert [d["parameter"] for d in response.json()["error"]["details"]] == [parameter]
    forbidden = await api.post("/heatmap/preview", json={"feed": NATURAL}, headers=await key(db, "read"))
    assert forbidden.status_code == 403

    async with db.connection() as conn:  # a watermark ahead of the clock leaves an empty window
        await conn.execute(
            "INSERT INTO watermarks (feed, last_updated_at) VALUES (%s, %s)",
            (NATURAL, datetime.now(UTC) + timedelta(days=1)),
        )
    empty = await api.post("/heatmap/preview", json={"feed": NATURAL, "run_type": "incremental"}, headers=admin)
    assert empty.status_code == 409
    assert "empty window" in empty.json()["error"]["message"]

    async with httpx.AsyncClient() as control:
        (await control.post(f"{simulator.url}/_sim/config", json={"graphql_error_rate": 1.0})).raise_for_status()
        try:
            failed = await api.post("/heatmap/preview", json={"feed": NATURAL, "run_type": "full"}, headers=admin)
        finally:
            (await control.post(f"{simulator.url}/_sim/config", json={"graphql_error_rate": 0.0})).raise_for_status()
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "feed_unavailable"
