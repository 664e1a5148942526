"""Property: for any filters and any sort key and direction, walking the keyset pages returns every
matching stone exactly once, in `key NULLS LAST, id` order, as an independent oracle computes it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from api.catalogue.query import SORT_KEYS
from shared import grades
from tests.api.catalogue import bump_version, expected_order, insert, random_catalogue, stone
from tests.api.conftest import Keys

CATALOGUE_SIZE = 250


@pytest.fixture
def catalogue(db: Any, sync_db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    stones = random_catalogue(seed=11, size=CATALOGUE_SIZE)
    insert(sync_db, stones)
    return stones


def _subset(values: tuple[Any, ...]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)


FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "shape": _subset(("ROUND", "OVAL", "PEAR", "CUSHION MODIFIED")),
        "color": _subset((*grades.COLORS[:8], "FANCY")),
        "clarity": _subset(grades.CLARITIES[:8]),
        "cut": _subset(grades.CUT_GRADES[:4]),
        "fluorescence_intensity": _subset(grades.FLUORESCENCE_INTENSITIES[:4]),
        "fancy_color": _subset(("Yellow", "Pink", "Brown-Pink", "Orangy Brown")),
        "lab": _subset(("GIA", "IGI", "HRD")),
        "availability": _subset(grades.AVAILABILITIES),
        "feed": _subset(("nivoda-natural", "nivoda-labgrown")),
        "carat_min": st.sampled_from(["0.5", "1", "1.01", "2"]),
        "carat_max": st.sampled_from(["0.75", "1.01", "1.5", "3.1"]),
        "price_min": st.sampled_from(["420", "1400.35", "3500"]),
        "price_max": st.sampled_from(["1330", "3500", "9800"]),
        "ratio_min": st.sampled_from(["1", "1.35"]),
        "table_max": st.sampled_from(["57", "60.5"]),
        "depth_min": st.sampled_from(["60", "62"]),
        "rating_min": st.integers(1, 10),
        "rating_max": st.integers(1, 10),
        "lab_grown": st.booleans(),
        "fancy": st.booleans(),
        "eye_clean": st.booleans(),
        "no_bgm": st.booleans(),
    },
)


def _query(params: dict[str, Any], repeated: bool) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, list):
            items += [(name, v) for v in value] if repeated else [(name, ",".join(value))]
        elif isinstance(value, bool):
            items.append((name, "true" if value else "false"))
        else:
            items.append((name, str(value)))
    return items


def _ordered_bounds(params: dict[str, Any]) -> bool:
    for name in ("carat", "price", "rating"):
        low, high = params.get(f"{name}_min"), params.get(f"{name}_max")
        if low is not None and high is not None and Decimal(str(low)) > Decimal(str(high)):
            return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=FILTERS,
    sort=st.sampled_from(sorted(SORT_KEYS)),
    order=st.sampled_from(["asc", "desc"]),
    limit=st.sampled_from([3, 7, 40]),
    repeated=st.booleans(),
)
def test_keyset_pages_return_every_match_once_in_order(
    catalogue: list[dict[str, Any]],
    http: httpx.Client,
    keys: Keys,
    params: dict[str, Any],
    sort: str,
    order: str,
    limit: int,
    repeated: bool,
) -> None:
    assume(_ordered_bounds(params))
    expected = expected_order(catalogue, params, sort, order)
    query = [*_query(params, repeated), ("sort", sort), ("order", order), ("limit", str(limit)), ("fields", "slim")]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(expected) // limit + 2):
        page_query: list[tuple[str, str | int | float | bool | None]] = [
            *query,
            *([("cursor", cursor)] if cursor else []),
        ]
        response = http.get("/api/v2/diamonds", params=page_query, headers={"X-API-Key": keys.read})
        assert response.status_code == 200, response.text
        body = response.json()
        if cursor is None:
            assert body["pagination"]["total"] == len(expected)
            assert body["pagination"]["total_estimated"] is False
        seen += [stone["id"] for stone in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert cursor is None, "paging did not end"
    assert seen == expected


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sort=st.sampled_from(sorted(SORT_KEYS)), order=st.sampled_from(["asc", "desc"]), page=st.integers(1, 6))
def test_offset_pages_agree_with_the_keyset_order(
    catalogue: list[dict[str, Any]], http: httpx.Client, keys: Keys, sort: str, order: str, page: int
) -> None:
    limit = 20
    expected = expected_order(catalogue, {}, sort, order)
    response = http.get(
        "/api/v2/diamonds",
        params={"sort": sort, "order": order, "limit": limit, "page": page, "count": "false"},
        headers={"X-API-Key": keys.read},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["id"] for s in body["data"]] == expected[(page - 1) * limit : page * limit]
    assert body["pagination"]["total"] is None
    if body["pagination"]["has_more"]:
        # The next cursor continues exactly where the offset page ended.
        follow = http.get(
            "/api/v2/diamonds",
            params={"sort": sort, "order": order, "limit": limit, "cursor": body["pagination"]["next_cursor"]},
            headers={"X-API-Key": keys.read},
        )
        assert [s["id"] for s in follow.json()["data"]] == expected[page * limit : (page + 1) * limit]


@pytest.mark.parametrize(
    ("carats", "order", "limit", "shapes"),
    [
        (("0.5", "1.01"), "asc", 3, None),
        (("1", "3.1"), "desc", 7, None),
        (("0.75", "0.75"), "asc", 20, None),
        (("0.1", "9"), "desc", 3, None),
        (("0.3", "2"), "asc", 4, "ROUND,OVAL"),
        (("0.5", "1.5"), "desc", 3, "PEAR"),
    ],
)
def test_price_order_within_a_carat_range(
    catalogue: list[dict[str, Any]],
    http: httpx.Client,
    keys: Keys,
    carats: tuple[str, str],
    order: str,
    limit: int,
    shapes: str | None,
) -> None:
    """The carat-bucketed price walk (api.catalogue.query.carat_buckets), with shape cells when the
    search names shapes, pages like any other sort."""
    params = {"carat_min": carats[0], "carat_max": carats[1], **({"shape": shapes} if shapes else {})}
    expected = expected_order(catalogue, params, "price", order)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {**params, "sort": "price", "order": order, "limit": limit, "fields": "slim"}
        body = http.get(
            "/api/v2/diamonds",
            params={**query, **({"cursor": cursor} if cursor else {})},
            headers={"X-API-Key": keys.read},
        ).json()
        seen += [stone["id"] for stone in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert len(expected) > limit


def test_a_walk_over_a_changing_catalogue_returns_each_unchanged_stone_once(
    db: Any, sync_db: psycopg.Connection[Any], http: httpx.Client, keys: Keys
) -> None:
    """The documented behaviour when the catalogue changes between pages (GET /api/v2/diamonds)."""
    stones = [stone(retail_price=f"{1000 + 100 * i}.00") for i in range(12)]
    insert(sync_db, stones)
    ids = [row["id"] for row in stones]  # in price order
    query = {"sort": "price", "order": "asc", "limit": "4", "fields": "slim"}
    first = http.get("/api/v2/diamonds", params=query, headers={"X-API-Key": keys.read}).json()
    seen = [item["id"] for item in first["data"]]
    assert seen == ids[:4]
    # Behind the cursor: an unseen stone moved there, a stone added there. Ahead: a seen stone moved there.
    moved_behind, moved_ahead = ids[8], ids[1]
    sync_db.execute("UPDATE diamonds SET retail_price = 10.00 WHERE id = %s", (moved_behind,))
    sync_db.execute("UPDATE diamonds SET retail_price = 99999.00 WHERE id = %s", (moved_ahead,))
    added = stone(retail_price="20.00")
    insert(sync_db, [added])
    bump_version(sync_db)
    cursor = first["pagination"]["next_cursor"]
    while cursor:
        page = http.get("/api/v2/diamonds", params={**query, "cursor": cursor}, headers={"X-API-Key": keys.read})
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["data"]]
        cursor = page.json()["pagination"]["next_cursor"]
    unchanged = set(ids) - {moved_behind, moved_ahead}
    assert all(seen.count(ident) == 1 for ident in unchanged)
    assert moved_behind not in seen
    assert added["id"] not in seen
    assert seen.count(moved_ahead) == 2
