"""OpenAPI document, self-hosted interactive docs (no CDN), and the error envelope."""

from __future__ import annotations

import re
from typing import Any

import httpx

from shared import grades


def test_openapi_publishes_operations_and_grade_enums(http: httpx.Client) -> None:
    document = http.get("/api/v2/openapi.json").json()
    assert document["info"]["title"] == "Diamond Opus API"
    paths = document["paths"]
    for path in (
        "/api/health",
        "/api/v2/diamonds",
        "/api/v2/diamonds/{diamond_id}",
        "/api/v2/pricing/rules",
        "/api/v2/pricing/preview",
        "/api/v2/pricing/jobs/{job_id}/revert",
        "/api/v2/analytics/price-per-carat",
        "/api/v2/runs/{run_id}",
        "/api/v2/dead-letters/{dead_letter_id}/replay",
    ):
        assert path in paths, path
    search = {p["name"]: p for p in paths["/api/v2/diamonds"]["get"]["parameters"]}
    assert search["shape"]["schema"]["items"]["enum"] == list(grades.SHAPES)
    assert search["fancy_intensity"]["schema"]["items"]["enum"] == list(grades.FANCY_INTENSITIES)
    assert "price" in search["sort"]["schema"]["enum"]
    assert document["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_docs_are_served_without_any_cdn(http: httpx.Client) -> None:
    page = http.get("/api/v2/docs")
    assert page.status_code == 200
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) if "://" in url]
    assert external == []
    for asset in re.findall(r"""(?:src|href)=["'](/api/v2/docs/assets/[^"']+)""", page.text):
        assert http.get(asset).status_code == 200, asset
    redoc = http.get("/api/v2/docs/redoc")
    assert redoc.status_code == 200
    assert "/api/v2/docs/assets/redoc.standalone.js" in redoc.text
    assert "fonts.googleapis" not in redoc.text


def _envelope(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def test_every_error_uses_the_envelope(db: Any, http: httpx.Client) -> None:
    assert _envelope(http.get("/api/v2/nothing"))["code"] == "not_found"
    wrong_method = http.delete("/api/v2/diamonds")
    assert wrong_method.status_code == 405
    assert _envelope(wrong_method)["code"] == "method_not_allowed"
    assert _envelope(http.get("/api/v2/diamonds"))["code"] == "unauthorized"
    broken = http.post("/api/v2/pricing/rules", content=b"\xff{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    assert _envelope(broken)["details"][0]["parameter"] == "body"
