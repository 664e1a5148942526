"""Catalogue search and detail over HTTP: normalised filter values, booleans, parameter errors,
response shapes, bounded counts, ETag/304, gzip and the page cache."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from api.compression import gzip_accepted
from api.keys import create_key
from api.routes.diamonds import PageCache
from shared.bootstrap import open_container
from shared.db.pool import Pool
from shared.settings import Settings
from tests.api.catalogue import bump_version, insert, stone
from tests.api.conftest import Keys, served_client
from tests.conftest import make_settings


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["data"]}


@pytest.fixture
def stones(db: Any, sync_db: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = {
        "round_ex": stone(cut="EXCELLENT", shape="ROUND"),
        "oval_vg": stone(cut="VERY_GOOD", shape="OVAL", lab_grown=True),
        "cushion_mod": stone(shape="CUSHION MODIFIED", cut=None),
        "fancy_pink": stone(
            color="FANCY", fancy_color="Brown-Pink", fancy_intensity="Fancy Vivid", certificate_lab="IGI"
        ),
        "fancy_yellow": stone(color="FANCY", fancy_color="Orangy Brown", fancy_intensity="Fancy Intense"),
        "on_hold": stone(availability="on_hold"),
        "deleted": stone(status="deleted"),
        "tinted": stone(brown="Light", eye_clean=False),
        "no_tint": stone(brown="NONE", green="N/A", milky="", eye_clean=None),
    }
    insert(sync_db, rows.values())
    return rows


def _search(http: httpx.Client, keys: Keys, params: Any) -> httpx.Response:
    return http.get("/api/v2/diamonds", params=params, headers={"X-API-Key": keys.read})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"cut": "EX"}, {"round_ex", "fancy_pink", "fancy_yellow", "tinted", "no_tint"}),
        ({"cut": "very good"}, {"oval_vg"}),
        ({"shape": "cushion_modified"}, {"cushion_mod"}),
        ({"shape": "oval,Cushion Modified"}, {"oval_vg", "cushion_mod"}),
        ([("shape", "OVAL"), ("shape", "cushion modified")], {"oval_vg", "cushion_mod"}),
        ({"fancy_color": "PINK BROWN"}, {"fancy_pink"}),
        ({"fancy_color": "orangy brown"}, {"fancy_yellow"}),
        ({"fancy_intensity": "FANCY_VIVID"}, {"fancy_pink"}),
        ({"color": "fancy"}, {"fancy_pink", "fancy_yellow"}),
        ({"lab": "igi"}, {"fancy_pink"}),
        ({"lab_grown": "false", "shape": "OVAL"}, set()),
        ({"lab_grown": "true"}, {"oval_vg"}),
        ({"lab_grown": "0", "cut": "VG"}, set()),
        ({"fancy": "true"}, {"fancy_pink", "fancy_yellow"}),
        ({"eye_clean": "false"}, {"tinted"}),
        ({"no_bgm": "true", "eye_clean": "false"}, set()),
        ({"availability": "on_hold"}, {"on_hold"}),
        ({"availability": "available,on hold"}, {"*"}),
    ],
)
def test_filter_values_are_normalised_like_the_mapper_stores_them(
    stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys, params: Any, expected: set[str]
) -> None:
    if expected == {"*"}:  # every live stone
        expected = set(stones) - {"deleted"}
    found = _ids(_search(http, keys, params))
    assert found == {stones[name]["id"] for name in expected}


def test_no_bgm_false_does_not_filter(stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys) -> None:
    with_flag = _ids(_search(http, keys, {"no_bgm": "true"}))
    assert stones["tinted"]["id"] not in with_flag
    assert stones["no_tint"]["id"] in with_flag
    assert stones["tinted"]["id"] in _ids(_search(http, keys, {"no_bgm": "false"}))


def test_response_shape_money_as_strings(stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys) -> None:
    body = _search(http, keys, {"shape": "OVAL"}).json()
    item = body["data"][0]
    assert item["retail_price"] == "1400.00"
    assert item["feed_price"] == "1000.00"
    assert item["price_per_carat"] == "1000.00"
    assert item["markup_ratio"] == "1.4000"
    assert Decimal(str(item["carats"])) == Decimal("1.00")
    assert item["created_at"].startswith("2026-01-01T00:00:00")
    assert item["created_at"].endswith("+00:00")
    slim = _search(http, keys, {"shape": "OVAL", "fields": "slim"}).json()["data"][0]
    assert "supplier_stone_id" not in slim
    assert set(slim) < set(item)


def test_detail_returns_live_stones_only(stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys) -> None:
    headers = {"X-API-Key": keys.read}
    live = http.get(f"/api/v2/diamonds/{stones['oval_vg']['id']}", headers=headers)
    assert live.status_code == 200
    assert live.json()["data"]["shape"] == "OVAL"
    gone = http.get(f"/api/v2/diamonds/{stones['deleted']['id']}", headers=headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    bad = http.get("/api/v2/diamonds/not-a-uuid", headers=headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["parameter"] == "diamond_id"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"shape": "BLOB"}, "shape"),
        ({"shape": ","}, "shape"),
        ({"cut": "superb"}, "cut"),
        ({"availability": "maybe"}, "availability"),
        ({"lab_grown": "perhaps"}, "lab_grown"),
        ({"carat_min": "abc"}, "carat_min"),
        ({"carat_min": "1e400"}, "carat_min"),
        ({"carat_min": "-1"}, "carat_min"),
        ({"carat_min": "2", "carat_max": "1"}, "carat_min"),
        ({"price_max": "NaN"}, "price_max"),
        ({"rating_min": "0"}, "rating_min"),
        ({"rating_max": "2.5"}, "rating_max"),
        ({"sort": "weight"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"page": "0"}, "page"),
        ({"page": "1000"}, "page"),
        ({"fields": "all"}, "fields"),
        ({"count": "maybe"}, "count"),
        ({"colour": "D"}, "colour"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "eyJjIjoxfQ"}, "cursor"),
        ({"page": "2", "cursor": "x"}, "page"),
        ([("sort", "price"), ("sort", "carats")], "sort"),
    ],
)
def test_bad_parameters_answer_422_naming_the_parameter(
    db: Any, http: httpx.Client, keys: Keys, params: Any, parameter: str
) -> None:
    response = _search(http, keys, params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["parameter"] == parameter
    assert parameter in error["message"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "-1"}, "must be between 1 and "),
        ({"limit": "9" * 5000}, "must be between 1 and "),
        ({"limit": "1.5"}, "'1.5' is not a whole number"),
        ({"price_min": "9999999999"}, "must be between 0 and 999999999"),
        ({"carat_min": "-1"}, "must be between 0 and 999999999"),
        ({"carat_min": "1.123456"}, "'1.123456' has more than 4 decimal places"),
        ({"carat_min": "1e3"}, "'1e3' is not a decimal number such as 1.25"),
        ({"rating_min": "99999999999999999999"}, "must be between 1 and 10"),
    ],
)
def test_a_number_out_of_range_is_told_so_not_called_malformed(
    db: Any, http: httpx.Client, keys: Keys, params: dict[str, str], message: str
) -> None:
    response = _search(http, keys, params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["message"].startswith(message)


def test_a_cursor_is_bound_to_its_sort_and_filters(
    stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys
) -> None:
    first = _search(http, keys, {"limit": 1, "sort": "price"}).json()
    cursor = first["pagination"]["next_cursor"]
    assert cursor
    assert _search(http, keys, {"limit": 1, "sort": "price", "cursor": cursor}).status_code == 200
    other_sort = _search(http, keys, {"limit": 1, "sort": "carats", "cursor": cursor})
    assert other_sort.status_code == 422
    other_filters = _search(http, keys, {"limit": 1, "sort": "price", "shape": "OVAL", "cursor": cursor})
    assert other_filters.status_code == 422
    assert "filters" in other_filters.json()["error"]["details"][0]["message"]


def _cursor_fields(cursor: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return fields


def _retouched(cursor: str, **fields: str) -> str:
    """The cursor with some of its JSON fields replaced (as a client could)."""
    body = {**_cursor_fields(cursor), **fields}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def test_a_tampered_cursor_position_is_422_or_read_as_postgresql_would(
    stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys
) -> None:
    cursor = _search(http, keys, {"limit": 1}).json()["pagination"]["next_cursor"]
    # A timestamp with no offset (a real cursor always has one), or before year 1 in UTC.
    for instant in ("2026-01-01T00:00:00", "0001-01-01T00:00:00+05:00"):
        response = _search(http, keys, {"limit": 1, "cursor": _retouched(cursor, v=instant)})
        assert response.status_code == 422, (instant, response.text)
        assert response.json()["error"]["details"][0]["parameter"] == "cursor"
    # Python reads forms PostgreSQL's casts refused (a 500): an ISO week date, an offset past
    # ±15:59, a urn:uuid id. They are handed on canonical: the page of the cursor they stand for.
    future = _retouched(cursor, v="2999-01-01T00:00:00+00:00")
    expected = _ids(_search(http, keys, {"limit": 2, "cursor": future}))
    assert expected
    for instant in ("2999-W01-2T00:00:00+00:00", "2999-01-01T20:00:00+20:00"):  # 2999-W01-2 is 1 January
        assert _ids(_search(http, keys, {"limit": 2, "cursor": _retouched(future, v=instant)})) == expected
    urn = _retouched(cursor, i="urn:uuid:" + _cursor_fields(cursor)["i"])
    assert _ids(_search(http, keys, {"limit": 2, "cursor": urn})) == _ids(
        _search(http, keys, {"limit": 2, "cursor": cursor})
    )


def test_the_count_is_bounded_and_flagged_estimated(
    db: Any, sync_db: psycopg.Connection[Any], database_url: str, tmp_path: Any
) -> None:
    insert(sync_db, [stone() for _ in range(130)])
    settings: Settings = make_settings(database_url, tmp_path, api_search_count_limit=100)
    with served_client(settings, database_url, name="count", scope="read") as (client, headers):
        capped = client.get("/api/v2/diamonds", params={"limit": 5}, headers=headers).json()
        exact = client.get("/api/v2/diamonds", params={"limit": 5, "lab_grown": "true"}, headers=headers).json()
    # 101 were counted: more than the limit, so the total is an estimate that cannot be below that.
    assert capped["pagination"]["total"] >= 101
    assert capped["pagination"]["total_estimated"] is True
    assert exact["pagination"]["total"] == 0
    assert exact["pagination"]["total_estimated"] is False


def test_etag_304_and_new_version_after_consolidation(
    stones: dict[str, dict[str, Any]], sync_db: psycopg.Connection[Any], http: httpx.Client, keys: Keys
) -> None:
    headers = {"X-API-Key": keys.read}
    first = http.get("/api/v2/diamonds", headers=headers)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["vary"] == "Accept-Encoding"
    identity = http.get("/api/v2/diamonds", headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert identity.headers["vary"] == "Accept-Encoding", "the identity body varies by Accept-Encoding too"
    cached = http.get("/api/v2/diamonds", headers={**headers, "If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert cached.headers["vary"] == "Accept-Encoding", "a 304 carries the Vary its 200 would (RFC 9110)"
    detail = http.get(f"/api/v2/diamonds/{stones['oval_vg']['id']}", headers={**headers, "If-None-Match": etag})
    assert detail.status_code == 304
    bump_version(sync_db, "nivoda-labgrown")
    fresh = http.get("/api/v2/diamonds", headers={**headers, "If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != etag


def test_if_none_match_compares_weakly_and_takes_a_star_everywhere(
    stones: dict[str, dict[str, Any]], http: httpx.Client, keys: Keys
) -> None:
    headers = {"X-API-Key": keys.read}
    etag = http.get("/api/v2/diamonds", headers=headers).headers["etag"]
    strong = etag.removeprefix("W/")
    for path in ("/api/v2/diamonds", "/api/v2/analytics/inventory", "/api/v2/analytics/price-per-carat"):
        for tag in ("*", strong, f'"other", {etag}'):
            response = http.get(path, headers={**headers, "If-None-Match": tag})
            assert response.status_code == 304, (path, tag)
        assert http.get(path, headers={**headers, "If-None-Match": '"other"'}).status_code == 200


def test_bad_parameters_win_over_if_none_match(stones: Any, http: httpx.Client, keys: Keys) -> None:
    etag = http.get("/api/v2/diamonds", headers={"X-API-Key": keys.read}).headers["etag"]
    response = http.get(
        "/api/v2/diamonds", params={"limit": "0"}, headers={"X-API-Key": keys.read, "If-None-Match": etag}
    )
    assert response.status_code == 422


def test_a_bad_cursor_wins_over_if_none_match(stones: Any, http: httpx.Client, keys: Keys) -> None:
    headers = {"X-API-Key": keys.read}
    first = http.get("/api/v2/diamonds", params={"limit": 1}, headers=headers)
    conditional = {**headers, "If-None-Match": first.headers["etag"]}
    cursor = first.json()["pagination"]["next_cursor"]
    wrong_filters: dict[str, str] = {"limit": "1", "cursor": cursor, "shape": "OVAL"}
    for params in ({"limit": "1", "cursor": "garbage!"}, wrong_filters):
        response = http.get("/api/v2/diamonds", params=params, headers=conditional)
        assert response.status_code == 422, (params, response.status_code)
        assert response.json()["error"]["details"][0]["parameter"] == "cursor"


def test_large_responses_are_gzipped(stones: Any, http: httpx.Client, keys: Keys) -> None:
    response = http.get("/api/v2/diamonds", headers={"X-API-Key": keys.read, "Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["data"]) == 7


@pytest.mark.parametrize(
    ("accept_encoding", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("br, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip ; Q=0.000, identity", False),
        ("*, gzip;q=0", False),
        ("*;q=0", False),
        ("identity;q=0", False),
        ("gzip;q=2", False),
    ],
)
def test_gzip_is_negotiated_by_weight(accept_encoding: str, accepted: bool) -> None:
    assert gzip_accepted(accept_encoding) is accepted


def test_a_client_refusing_gzip_gets_no_gzip(stones: Any, http: httpx.Client, keys: Keys) -> None:
    # Both ways out: a kept search page and a body the middleware compresses (the OpenAPI document).
    for path in ("/api/v2/diamonds", "/api/v2/openapi.json"):
        for refusal in ("gzip;q=0", "gzip;q=0, identity"):
            response = http.get(path, headers={"X-API-Key": keys.read, "Accept-Encoding": refusal})
            assert response.status_code == 200
            assert "content-encoding" not in response.headers, (path, refusal)
        upper = http.get(path, headers={"X-API-Key": keys.read, "Accept-Encoding": "GZIP"})
        assert upper.headers["content-encoding"] == "gzip", path


def test_head_is_answered_wherever_get_is(stones: Any, http: httpx.Client, keys: Keys) -> None:
    read, admin = {"X-API-Key": keys.read}, {"X-API-Key": keys.admin}
    one = f"/api/v2/diamonds/{stones['round_ex']['id']}"
    for path, headers in (
        ("/api/v2/diamonds", read),
        (one, read),
        ("/api/v2/analytics/inventory", read),
        ("/api/v2/runs", read),
        ("/api/v2/pricing/rules", admin),
        ("/api/health", {}),
    ):
        get = http.get(path, headers={**headers, "Accept-Encoding": "gzip"})
        head = http.head(path, headers={**headers, "Accept-Encoding": "gzip"})
        assert (head.status_code, head.content) == (200, b""), (path, head.status_code)
        for name in ("content-type", "content-length", "content-encoding", "etag", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)
    assert http.head("/api/v2/diamonds").status_code == 401, "HEAD is authenticated as GET is"
    etag = http.get("/api/v2/diamonds", headers=read).headers["etag"]
    assert http.head("/api/v2/diamonds", headers={**read, "If-None-Match": etag}).status_code == 304


def test_pages_are_kept_until_the_catalogue_version_changes(
    stones: dict[str, dict[str, Any]], sync_db: psycopg.Connection[Any], http: httpx.Client, keys: Keys
) -> None:
    params: dict[str, str | int] = {"sort": "price", "limit": 3}
    gzip = {"X-API-Key": keys.read, "Accept-Encoding": "gzip"}
    plain = {"X-API-Key": keys.read, "Accept-Encoding": "identity"}
    first = http.get("/api/v2/diamonds", params=params, headers=gzip)
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["vary"] == "Accept-Encoding"
    cheapest = first.json()["data"][0]["id"]
    detail = http.get(f"/api/v2/diamonds/{cheapest}", headers=plain)
    # A change the catalogue version does not know of (every writer bumps it) shows what is kept.
    sync_db.execute("UPDATE diamonds SET status = 'deleted', deleted_at = now() WHERE id = %s", (cheapest,))
    assert http.get(f"/api/v2/diamonds/{cheapest}", headers=plain).content == detail.content
    again = http.get("/api/v2/diamonds", params=params, headers=gzip)
    identity = http.get("/api/v2/diamonds", params=params, headers=plain)
    assert again.content == first.content
    assert "content-encoding" not in identity.headers
    assert identity.content == first.content, "the same page, gzipped or not"
    assert again.headers["etag"] == first.headers["etag"]
    bump_version(sync_db)
    fresh = http.get("/api/v2/diamonds", params=params, headers=gzip)
    assert cheapest not in {item["id"] for item in fresh.json()["data"]}
    assert http.get(f"/api/v2/diamonds/{cheapest}", headers=plain).status_code == 404
    assert fresh.headers["etag"] != first.headers["etag"]


async def test_the_page_cache_budget_counts_what_a_client_puts_in_the_key(
    db: Pool, settings: Settings, database_url: str
) -> None:
    """50 searches naming 2,000 labs each find nothing (a page of ~150 bytes) but their keys hold
    ~30 KB each: with 1 MB for pages, they cannot all be kept."""
    budget_settings = settings.model_copy(update={"api_page_cache_mb": 1})
    key = (await create_key(db, name="long-keys", scopes=["read"])).key
    async with open_container(budget_settings, database_url, name="page-budget") as container:
        app = create_app(container)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://opus") as client:
            for search in range(50):
                labs = ",".join(f"LAB{search}-{n}" for n in range(2000))
                response = await client.get("/api/v2/diamonds", params={"lab": labs}, headers={"X-API-Key": key})
                assert response.json()["data"] == []
    pages: PageCache = app.state.pages
    assert pages.weight <= 1024 * 1024
    assert 0 < len(pages) < 50


def test_without_a_page_cache_every_search_runs(
    db: Any, sync_db: psycopg.Connection[Any], database_url: str, tmp_path: Any
) -> None:
    insert(sync_db, [stone() for _ in range(3)])
    settings: Settings = make_settings(database_url, tmp_path, api_page_cache_mb=0)
    with served_client(settings, database_url, name="nocache", scope="read") as (client, headers):
        before = client.get("/api/v2/diamonds", headers=headers).json()["pagination"]["total"]
        sync_db.execute(
            "UPDATE diamonds SET status = 'deleted', deleted_at = now() WHERE id IN (SELECT id FROM diamonds LIMIT 1)"
        )
        after = client.get("/api/v2/diamonds", headers=headers).json()["pagination"]["total"]
    assert (before, after) == (3, 2)


def test_an_expensive_count_is_the_planners_estimate(
    db: Any, sync_db: psycopg.Connection[Any], http: httpx.Client, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.catalogue import store

    insert(sync_db, [stone(shape="OVAL") for _ in range(30)] + [stone(shape="PEAR")])
    sync_db.execute("ANALYZE diamonds")
    monkeypatch.setattr(store, "COUNT_COST_BUDGET", -1.0)
    paged = _search(http, keys, {"shape": "OVAL", "limit": 10}).json()["pagination"]
    assert paged["total_estimated"] is True
    assert paged["total"] >= 11
    whole = _search(http, keys, {"shape": "PEAR", "limit": 10}).json()["pagination"]
    assert (whole["total"], whole["total_estimated"]) == (1, False), "a page holding every match counts itself"


def test_bounded_count_cost_scales_with_the_cap() -> None:
    from api.catalogue.store import bounded_count_cost

    assert bounded_count_cost(100_000, 5000, 999) == 50
    assert bounded_count_cost(10, 40, 999) == 40
    assert bounded_count_cost(0, 3, 999) == 3
