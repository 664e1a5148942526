"""OpenAPI document, self-hosted interactive docs (no CDN), and the error envelope."""

from __future__ import annotations

import re
from typing import Any

import httpx

from api.body_limit import MAX_BODY_BYTES, TOO_LARGE, declared_length
from api.routes.common import takes_several
from shared import grades
from tests.api.conftest import Keys


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
    # HMAC is offered wherever a key is: all three headers together, or the key.
    hmac: dict[str, list[str]] = {"HmacClientId": [], "HmacTimestamp": [], "HmacSignature": []}
    assert paths["/api/v2/diamonds"]["get"]["security"] == [{"APIKeyHeader": []}, hmac]
    schemes = document["components"]["securitySchemes"]
    assert [schemes[name]["name"] for name in hmac] == ["X-Client-Id", "X-Timestamp", "X-Signature"]
    assert "security" not in paths["/api/health"]["get"]
    # Every operation needs the database, so any can answer 503; a dead letter may not be replayable (400).
    operations = [op for methods in paths.values() for op in methods.values()]
    assert all("503" in op["responses"] for op in operations)
    assert "400" in paths["/api/v2/dead-letters/{dead_letter_id}/replay"]["post"]["responses"]
    assert "413" in paths["/api/v2/pricing/rules"]["post"]["responses"], "a body can be too large"


def test_docs_are_served_without_any_cdn(http: httpx.Client) -> None:
    page = http.get("/api/v2/docs")
    assert page.status_code == 200
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) if "://" in url]
    assert external == []
    for asset in re.findall(r"""(?:src|href)=["'](/api/v2/docs/assets/[^"']+)""", page.text):
        assert http.get(asset).status_code == 200, asset
    redoc = http.get("/api/v2/docs/redoc")
    assert redoc.status_code == 200
    assert "fonts.googleapis" not in redoc.text
    scripts = re.findall(r"""<script src=["']([^"']+)""", redoc.text)
    assert scripts == ["/api/v2/docs/redoc.js"]
    bundle = http.get(scripts[0])
    assert bundle.status_code == 200
    assert "createElement" in bundle.text  # the ReDoc bundle, not an error page
    # The only asset the bundle itself fetched from the network was the Redocly logo on its CDN.
    assert re.findall(r"https://cdn\.[^\s\"'`]+", bundle.text) == []


def _envelope(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def test_every_error_uses_the_envelope(db: Any, keys: Keys, http: httpx.Client) -> None:
    assert _envelope(http.get("/api/v2/nothing"))["code"] == "not_found"
    wrong_method = http.delete("/api/v2/diamonds")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, HEAD"
    runs = http.delete("/api/v2/runs")
    assert (runs.status_code, runs.headers["Allow"]) == (405, "GET, HEAD, POST")  # list runs, start one
    assert http.put("/api/health").headers["Allow"] == "GET, HEAD"
    assert _envelope(wrong_method)["code"] == "method_not_allowed"
    assert _envelope(http.get("/api/v2/diamonds"))["code"] == "unauthorized"
    broken = http.post("/api/v2/pricing/rules", content=b"\xff{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    assert _envelope(broken)["details"][0]["parameter"] == "body"
    # A JSON syntax error names the body (not the character position FastAPI locates it at)...
    syntax = http.post("/api/v2/pricing/rules", content=b"{bad json", headers={"Content-Type": "application/json"})
    assert syntax.status_code == 422
    error = _envelope(syntax)
    assert error["message"] == "invalid value for body"
    assert error["details"] == [
        {"parameter": "body", "in": "body", "message": error["details"][0]["message"]},
    ]
    assert error["details"][0]["message"].startswith("not valid JSON: ")
    assert error["details"][0]["message"].endswith(" at character 1")
    # ...and a body sent as another content type says so.
    plain = http.post(
        "/api/v2/pricing/rules",
        content=b'{"priority": 1}',
        headers={"Content-Type": "text/plain", "X-API-Key": keys.admin},
    )
    assert plain.status_code == 422
    assert "Content-Type: application/json" in _envelope(plain)["details"][0]["message"]


def test_a_query_parameter_an_operation_does_not_take_is_refused(db: Any, keys: Keys, http: httpx.Client) -> None:
    admin = {"X-API-Key": keys.admin}
    typo = http.get("/api/v2/runs", params={"stauts": "failed"}, headers=admin)
    assert typo.status_code == 422
    error = _envelope(typo)
    assert error["details"][0]["parameter"] == "stauts"
    assert "takes " in error["message"]
    assert "status" in error["message"]
    assert http.get("/api/v2/runs", params={"status": "failed", "type": "full"}, headers=admin).status_code == 200
    # Parameters of the operation's dependencies count as taken; none at all is said so.
    assert http.get("/api/v2/analytics/inventory", params={"feed": "nivoda-natural"}, headers=admin).status_code == 200
    for path in ("/api/v2/watermarks", "/api/v2/whoami"):
        bare = http.get(path, params={"x": "1"}, headers=admin)
        assert bare.status_code == 422, path
        assert "takes no query parameters" in _envelope(bare)["message"]
    one = http.get("/api/v2/diamonds/00000000-0000-0000-0000-000000000000", params={"fields": "x"}, headers=admin)
    assert _envelope(one)["details"][0]["parameter"] == "fields"


def test_a_single_valued_query_parameter_given_twice_is_refused(db: Any, keys: Keys, http: httpx.Client) -> None:
    # As the catalogue search does: FastAPI took the last value silently, so the caller's first
    # value was answered as if it had not been asked for.
    admin = {"X-API-Key": keys.admin}
    for path, name, values in (
        ("/api/v2/runs", "status", ("failed", "completed")),
        ("/api/v2/runs", "limit", ("1", "2")),
        ("/api/v2/analytics/price-per-carat", "availability", ("on_hold", "sold")),
        ("/api/v2/pricing/jobs", "limit", ("5", "5")),
    ):
        response = http.get(path, params=[(name, value) for value in values], headers=admin)
        assert response.status_code == 422, (path, response.text)
        assert _envelope(response)["details"] == [{"parameter": name, "in": "query", "message": "given more than once"}]
    assert http.get("/api/v2/runs", params=[("status", "failed"), ("type", "full")], headers=admin).status_code == 200


def test_repeatable_query_parameters_are_told_apart_by_their_annotation() -> None:
    for several in (list[str], list[str] | None, tuple[int, ...], set[str]):
        assert takes_several(several), several
    for single in (int, str | None, bool, dict[str, str]):
        assert not takes_several(single), single


def test_a_body_over_the_limit_is_413_before_credentials_are_checked(db: Any, keys: Keys, http: httpx.Client) -> None:
    # Bodies are read before credentials are checked (an HMAC signature covers the body): without a
    # bound anyone could make the process hold any amount. Declared by Content-Length or sent in
    # chunks, the answer is the same envelope.
    body = b"x" * (MAX_BODY_BYTES + 1)
    for headers in ({}, {"X-API-Key": keys.admin}, {"X-Client-Id": "ops", "X-Timestamp": "1", "X-Signature": "ab"}):
        for content in (body, iter([body[:1000], body[1000:]])):
            response = http.post("/api/v2/pricing/rules", content=content, headers=headers)
            assert response.status_code == 413, response.text
            assert _envelope(response) == {"code": "payload_too_large", "message": TOO_LARGE, "details": None}
    at_limit = http.post("/api/v2/pricing/rules", content=b" " * MAX_BODY_BYTES, headers={"X-API-Key": keys.admin})
    assert at_limit.status_code == 422


def test_declared_length() -> None:
    assert [declared_length(text) for text in (None, "", "12", "x", "-1", "1e3", "١٢")] == [0, 0, 12, 0, 0, 0, 0]
