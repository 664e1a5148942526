"""The simulator as a server: what it rejects, the quirks it reproduces, churn, knobs and embedding."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest

from feedsim import cli, vocab
from feedsim.embed import start_process
from feedsim.gql import schema
from feedsim.inventory import DAY_MS, Inventory
from feedsim.payload import build_items
from feedsim.simulator import InventorySpec, SimConfig, Simulator
from shared.feed import documents
from shared.feed.query import DateRange, DiamondQuery, PriceRange
from shared.feed.variants import ALL_SHAPES
from tests.feed.conftest import ANCHOR_MS, ClientFactory, SimControl
from tests.feed.test_client_contract import diamond_ids, fetch_all
from tests.feed.truth import matching_ids
from tests.helpers import wait_for


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    return list(response.json()["errors"])


# --- what the server rejects ---------------------------------------------------------------------


def test_rejects_unknown_fields_with_a_validation_error(sim: SimControl) -> None:
    token = sim.token()
    response = sim.graphql(documents.SEARCH.replace("total_count", "total_count\n grand_total"), {"token": token})
    assert response.status_code == 400
    [error] = errors_of(response)
    assert "grand_total" in error["message"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_rejects_unknown_query_keys(sim: SimControl) -> None:
    response = sim.graphql(documents.COUNT, {"token": sim.token(), "query": {"has_video": True}})
    assert response.status_code == 400
    [error] = errors_of(response)
    assert "has_video" in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_rejects_malformed_documents_and_bodies(sim: SimControl) -> None:
    response = sim.graphql("query { as(token: ", {})
    assert response.status_code == 400
    assert errors_of(response)[0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    response = sim.http.post("/api/diamonds", content=b"not json")
    assert response.status_code == 400
    assert sim.stats()["rejections"] == {"parse": 2}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"limit": 51}, "limit must be between 0 and 50"),
        ({"offset": -1}, "offset must be >= 0"),
        ({"query": {"updated": {"from": "last tuesday"}}}, "not an ISO-8601 timestamp"),
        ({"order": {"type": "popular", "direction": "ASC"}}, "not supported by the simulator"),
    ],
)
def test_rejects_bad_arguments_inside_a_200(sim: SimControl, variables: dict[str, Any], message: str) -> None:
    response = sim.graphql(documents.SEARCH, {"token": sim.token(), "query": {}, **variables})
    assert response.status_code == 200
    body = response.json()
    [error] = body["errors"]
    assert message in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["path"] == ["as", "diamonds_by_query"]
    assert body["data"] == {"as": {"diamonds_by_query": None}}


def test_rejects_bad_and_expired_tokens(sim: SimControl) -> None:
    response = sim.graphql(documents.COUNT, {"token": "forged", "query": {}})
    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {"message": "Unauthorized: invalid token", "path": ["as"], "extensions": {"code": "UNAUTHENTICATED"}}
        ],
        "data": {"as": None},
    }
    bad_login = sim.graphql(documents.AUTHENTICATE, {"username": "sim-user", "password": "nope"}).json()
    assert bad_login["errors"][0]["message"] == "Authentication failed: invalid username or password"
    assert sim.stats()["rejections"] == {"invalid_token": 1, "bad_credentials": 1}


# --- quirks -------------------------------------------------------------------------------------


def test_total_count_is_the_window_not_the_total(sim: SimControl) -> None:
    token = sim.token()
    total = sim.graphql(documents.COUNT, {"token": token, "query": {}}).json()["data"]["as"]
    count = total["diamonds_by_query_count"]
    for offset, expected in ((0, 50), (count - 13, 13), (count + 100, 0)):
        page = sim.graphql(documents.SEARCH, {"token": token, "query": {}, "offset": offset, "limit": 50})
        result = page.json()["data"]["as"]["diamonds_by_query"]
        assert result["total_count"] == len(result["items"]) == expected


@pytest.fixture(scope="module")
def every_item(shared_sim: SimControl) -> list[dict[str, Any]]:
    """Every stone of the shared simulator, as search items (no filter at all)."""
    token = shared_sim.token()
    items: list[dict[str, Any]] = []
    while True:
        variables = {"token": token, "query": {}, "offset": len(items), "limit": 50}
        page = shared_sim.graphql(documents.SEARCH, variables).json()["data"]["as"]["diamonds_by_query"]["items"]
        if not page:
            return items
        items.extend(page)


def test_items_carry_ground_truth_identity_and_cent_prices(
    every_item: list[dict[str, Any]], inventory: list[dict[str, Any]]
) -> None:
    assert [item["diamond"]["id"] for item in every_item] == [s["supplier_stone_id"] for s in inventory]
    for item, stone in zip(every_item, inventory, strict=True):
        assert item["id"] == stone["offer_id"]
        assert item["price"] == item["markup_price"] == stone["price_cents"]
        assert isinstance(item["price"], int)
        assert item["diamond"]["availability"] == stone["availability"]
        assert (item["diamond"]["HoldId"] is not None) == (stone["availability"] == "On Hold")


def test_vocabularies_and_shares_are_realistic(every_item: list[dict[str, Any]]) -> None:
    diamonds = [item["diamond"] for item in every_item]
    certificates = [d["certificate"] for d in diamonds if d["certificate"] is not None]
    availability = Counter(d["availability"] for d in diamonds)
    assert set(availability) == set(vocab.AVAILABILITIES)
    assert availability["AVAILABLE"] / len(diamonds) > 0.85
    assert 0.002 < 1 - len(certificates) / len(diamonds) < 0.02
    assert {c["shape"] for c in certificates} >= set(ALL_SHAPES)
    assert {c["clarity"] for c in certificates} == set(vocab.CLARITIES)
    assert {c["color"] for c in certificates} >= {*vocab.WHITE_COLOURS, "Fancy", "FANCY"}
    assert {c["cut"] for c in certificates} >= {"EX", "EXCELLENT", "IDEAL", "VG", "VERY GOOD", "F", "P", None}
    assert {c["floInt"] for c in certificates} == set(vocab.FLUORESCENCE)
    fancy = [c for c in certificates if c["f_color"]]
    assert {"ORANGE BROWN", "BROWN ORANGE"} <= {c["f_color"] for c in fancy}
    assert {c["f_intensity"] for c in fancy} >= {"FANCY_VIVID", "Fancy Intense", "FANCY-LIGHT"}
    assert {type(d["eyeClean"]) for d in diamonds} == {bool, str, type(None)}


def test_a_few_payloads_carry_nonsense_values() -> None:
    inventory = Inventory.generate(seed=3, stones=20_000, anchor_ms=ANCHOR_MS)
    certificates = [item["diamond"]["certificate"] for item in build_items(inventory, range(20_000))]
    nonsense = [c for c in certificates if c and (c["shape"] == "???" or c["carats"] <= 0)]
    assert 5 <= len(nonsense) <= 60
    assert {c["shape"] for c in nonsense} & {"???"}
    assert any(c["carats"] < 0 for c in nonsense)


def test_some_stones_have_no_image_or_no_video_in_the_payload(every_item: list[dict[str, Any]]) -> None:
    def no_image(d: dict[str, Any]) -> bool:
        certificate = d["certificate"] or {}
        return d["image"] is None and certificate.get("image") is None

    def no_video(d: dict[str, Any]) -> bool:
        certificate = d["certificate"] or {}
        v360 = certificate.get("v360") or {}
        return d["video"] is None and v360.get("url") is None and d["supplier_video_link"] is None

    diamonds = [item["diamond"] for item in every_item]
    assert 0 < sum(map(no_image, diamonds)) < 0.06 * len(diamonds)
    assert 0 < sum(map(no_video, diamonds)) < 0.08 * len(diamonds)


def test_distributions_follow_the_real_feed() -> None:
    inventory = Inventory.generate(seed=3, stones=100_000, anchor_ms=ANCHOR_MS)
    price, ct100 = inventory.column("price_cents"), inventory.column("ct100")
    labgrown = inventory.column("labgrown")
    per_carat = price / ct100  # dollars per carat
    natural_bins, _ = np.histogram(per_carat[~labgrown], bins=[0, 500, 1500, 3000, 10_000, 10**7])
    assert natural_bins.argmax() == 1  # natural stones peak at $500-1,500/ct
    assert (per_carat[labgrown] < 250).mean() > 0.75
    assert 0.5 < labgrown.mean() < 0.7
    assert np.median(ct100) < 130
    assert set(np.unique(inventory.column("shape"))) == set(range(len(ALL_SHAPES)))
    recent = inventory.column("updated_ms") >= ANCHOR_MS - DAY_MS / 4
    assert 0.01 < recent.mean() < 0.1  # a 6-hour incremental window sees a few percent
    created = inventory.column("created_ms")
    assert (np.diff(created) >= 0).all()
    assert (inventory.column("updated_ms") >= created).all()


def test_inventory_is_deterministic_per_seed() -> None:
    first, second = (Inventory.generate(seed=5, stones=2_000, anchor_ms=ANCHOR_MS) for _ in range(2))
    other = Inventory.generate(seed=6, stones=2_000, anchor_ms=ANCHOR_MS)
    for name in ("price_cents", "ct100", "shape", "availability", "updated_ms", "labgrown"):
        assert np.array_equal(first.column(name), second.column(name))
    assert not np.array_equal(first.column("price_cents"), other.column("price_cents"))
    assert build_items(first, range(50)) == build_items(second, range(50))


def test_built_payloads_follow_the_schema_field_order() -> None:
    """The identity fast path returns built payloads untouched: their keys must be the schema's."""
    item = build_items(Inventory.generate(seed=1, stones=100, anchor_ms=ANCHOR_MS), [0])[0]
    offer = schema().get_type("Offer")
    diamond = schema().get_type("Diamond")
    certificate = schema().get_type("Certificate")
    assert list(item) == list(offer.fields)  # type: ignore[union-attr]
    assert list(item["diamond"]) == list(diamond.fields)  # type: ignore[union-attr]
    assert list(item["diamond"]["certificate"]) == list(certificate.fields)  # type: ignore[union-attr]


def test_partial_and_aliased_selections_are_projected(sim: SimControl) -> None:
    query = """
    query($token: String!) {
      as(token: $token) {
        n: diamonds_by_query_count(query: {labgrown: true})
        diamonds_by_query(query: {labgrown: true}, limit: 3) {
          items { price offer: id diamond { ...Stone certificate { carats } } }
        }
      }
    }
    fragment Stone on Diamond { id availability }
    """
    token = sim.token()
    body = sim.graphql(query, {"token": token}).json()["data"]["as"]
    full = sim.graphql(documents.SEARCH, {"token": token, "query": {"labgrown": True}, "limit": 3}).json()
    full_items = full["data"]["as"]["diamonds_by_query"]["items"]
    assert body["n"] > 3
    assert body["diamonds_by_query"]["items"] == [
        {
            "price": item["price"],
            "offer": item["id"],
            "diamond": {
                "id": item["diamond"]["id"],
                "availability": item["diamond"]["availability"],
                "certificate": {"carats": item["diamond"]["certificate"]["carats"]},
            },
        }
        for item in full_items
    ]


def test_introspection_works(sim: SimControl) -> None:
    body = sim.graphql("{ __schema { queryType { name } } }").json()
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


# --- churn ---------------------------------------------------------------------------------------


async def test_windows_closed_in_the_past_only_shrink_under_churn(
    private_sim: SimControl, make_client: ClientFactory
) -> None:
    client = make_client(private_sim.endpoint)
    await asyncio.sleep(0.01)
    closed = DiamondQuery(
        updated=DateRange(from_=datetime(2000, 1, 1, tzinfo=UTC), to=datetime.now(UTC)),
        availability=("AVAILABLE",),
    )
    before = set(diamond_ids(await fetch_all(client, closed)))
    report = private_sim.churn(400)
    after = set(diamond_ids(await fetch_all(client, closed)))

    assert report["applied"] > 300
    assert set(report["by_kind"]) == {"added", "repriced", "on_hold", "sold", "removed"}
    assert after < before
    changed = {event["supplier_stone_id"] for event in report["events"]}
    assert before - after <= changed


async def test_churn_moves_stones_as_nivoda_would(private_sim: SimControl, make_client: ClientFactory) -> None:
    client = make_client(private_sim.endpoint)
    everything = DiamondQuery()
    await client.count(everything)  # cached before the churn: the cache must follow it
    report = private_sim.churn(300)
    events: dict[str, list[str]] = {}
    for event in report["events"]:
        events.setdefault(event["kind"], []).append(event["supplier_stone_id"])
    truth = {stone["supplier_stone_id"]: stone for stone in private_sim.inventory()}

    listed = diamond_ids(await fetch_all(client, everything))
    assert listed == list(truth)  # cache maintained through churn equals the ground truth
    assert listed[-len(events["added"]) :] == sorted(events["added"])  # additions sort last
    assert not set(events["removed"]) & set(truth)
    assert not await client.by_ids(events["removed"])
    final = {event["supplier_stone_id"]: event["kind"] for event in report["events"]}
    sold = [stone_id for stone_id, kind in final.items() if kind == "sold"]
    assert {item["diamond"]["availability"] for item in await client.by_ids(sold)} == {"Sold"}
    changed_at = min(truth[stone_id]["updated_at"] for stone_id, kind in final.items() if kind != "removed")
    assert datetime.fromisoformat(changed_at) > datetime.now(UTC) - timedelta(minutes=5)


def test_churn_is_deterministic_per_seed() -> None:
    def run() -> list[tuple[str, int]]:
        simulator = Simulator(InventorySpec(seed=9, stones=1_000, anchor_ms=ANCHOR_MS))
        return [(e.kind, e.row) for batch in (50, 7, 120) for e in simulator.churn.apply(batch, ANCHOR_MS + 1)]

    assert run() == run()


def test_cached_matches_stay_exact_through_churn() -> None:
    from feedsim.filters import parse_query

    simulator = Simulator(InventorySpec(seed=4, stones=3_000, anchor_ms=ANCHOR_MS))
    queries: list[dict[str, Any]] = [
        {"labgrown": True, "availability": ["AVAILABLE"]},
        {"dollar_per_carat": {"from": 300, "to": 900}, "hide_memo": True},
        {"updated": {"to": "2026-01-15T00:00:00Z"}},
    ]
    orders = [("createdAt", "ASC"), ("price", "DESC"), ("price_per_carat", "ASC"), ("size", "ASC")]
    filters = [parse_query(raw, simulator.inventory.seed) for raw in queries]
    for flt in filters:
        for order in orders:
            simulator.cache.matching(flt, order)
    for _ in range(5):
        simulator.churn.apply(200, ANCHOR_MS + 10)
    cached = {(f, o): simulator.cache.matching(f, o).copy() for f in filters for o in orders}
    simulator.cache.clear()
    for key, rows in cached.items():
        assert np.array_equal(rows, simulator.cache.matching(*key))


async def test_background_churn_follows_the_knob(private_sim: SimControl) -> None:
    private_sim.configure(churn_per_s=400)
    applied = await asyncio.to_thread(
        wait_for, lambda: sum(private_sim.stats()["churn"].values()) >= 100, 10, 0.05, "background churn"
    )
    assert applied
    private_sim.configure(churn_per_s=0)


# --- control surface, embedding, CLI ---------------------------------------------------------------


def test_config_changes_are_validated(sim: SimControl) -> None:
    assert sim.configure(latency_ms=5, error_rate=0.25)["error_rate"] == 0.25
    assert sim.http.post("/_sim/config", json={"error_rate": 2}).status_code == 400
    assert sim.http.post("/_sim/config", json={"unknown_knob": 1}).status_code == 400
    assert sim.http.post("/_sim/churn", json={"events": -1}).status_code == 400
    assert sim.http.get("/_sim/config").json()["latency_ms"] == 5


def test_stats_report_cpu_and_memory(sim: SimControl) -> None:
    sim.graphql(documents.SEARCH, {"token": sim.token(), "query": {}, "limit": 5})
    stats = sim.stats()
    assert stats["requests"] == {"authenticate": 1, "diamonds_by_query": 1}
    assert stats["items_served"] == 5
    assert stats["cpu"]["search_samples"] == 1
    assert stats["rss_bytes"] > 10_000_000


def test_runs_as_a_child_process_and_stops_cleanly() -> None:
    process = start_process(InventorySpec(seed=2, stones=500), SimConfig(latency_ms=1), startup_timeout_s=60)
    try:
        assert httpx.get(process.url + "/_sim/health").json() == {"status": "ok", "stones": 500}
        assert httpx.get(process.url + "/_sim/config").json()["latency_ms"] == 1
        response = httpx.post(process.endpoint, json={"query": documents.COUNT, "variables": {"token": "x"}})
        assert response.status_code == 400  # $query missing
    finally:
        code = process.stop()
    assert code in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_cli_parser_and_settings_defaults() -> None:
    from opus.cli import CommandRegistry
    from shared.settings import load_settings

    parser = argparse.ArgumentParser(prog="opus")
    subparsers = parser.add_subparsers()
    cli.add_parser(subparsers)
    argv = ["feed-sim", "--stones", "1000", "--rate-limit", "25", "--error-rate", "0.1"]
    args = parser.parse_args([*argv, "--anchor-ms", "2026-01-01T00:00Z"])
    assert args.handler is cli.run
    settings = load_settings(feedsim_port=0, feedsim_seed=99, nivoda_password="s3cret")

    spec, config, host, port = cli._resolve(args, settings)

    anchor = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert spec == InventorySpec(seed=99, stones=1000, anchor_ms=anchor)
    assert (config.rate_limit, config.error_rate, config.password) == (25.0, 0.1, "s3cret")
    assert (host, port) == ("127.0.0.1", 0)
    with pytest.raises(SystemExit):
        parser.parse_args(["feed-sim", "--stones", "2000000"])
    opus = argparse.ArgumentParser(prog="opus")
    cli.register(CommandRegistry(opus.add_subparsers()))
    assert opus.parse_args(argv).handler is cli.run


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--port", "99999"], "opus feed-sim: error: argument --port: must be an integer 0-65535"),
        (
            ["--latency-ms", "-5", "--error-rate", "2"],
            "feed-sim: error: invalid option: --latency-ms -5.0 should be greater than or equal to 0; "
            "--error-rate 2.0 should be less than or equal to 1",
        ),
        (
            ["--latency-ms", "nan"],
            "feed-sim: error: invalid option: --latency-ms nan should be a finite number",
        ),
        (
            ["--latency-ms", "inf"],
            "feed-sim: error: invalid option: --latency-ms inf should be a finite number",
        ),
        (["--seed", "-5"], "opus feed-sim: error: argument --seed: must be an integer 0-9223372036854775807"),
    ],
    ids=["port", "two-knobs", "nan", "inf", "seed"],
)
def test_cli_refuses_a_bad_option_in_one_line_with_status_2(options: list[str], error: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "opus", "feed-sim", "--stones", "0", "--port", "0", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == error
    assert "Traceback" not in done.stderr


def test_filters_read_prices_in_dollars_exactly(sim: SimControl, inventory: list[dict[str, Any]]) -> None:
    stone = next(s for s in inventory if s["price_cents"] % 100)
    dollars = Decimal(stone["price_cents"]) / 100
    query = DiamondQuery(dollar_value=PriceRange(from_=dollars, to=dollars))
    token = sim.token()
    body = sim.graphql(documents.COUNT, {"token": token, "query": query.to_variables()}).json()
    assert body["data"]["as"]["diamonds_by_query_count"] == len(matching_ids(inventory, query)) >= 1


def test_tokens_live_for_the_ttl_in_force_when_issued() -> None:
    from feedsim.tokens import TokenStore

    now = [0.0]
    store = TokenStore(clock=lambda: now[0])
    short, long = store.issue(10), store.issue(100)
    now[0] = 50
    assert (store.check(short), store.check(long), store.check("forged")) == ("expired", "ok", "invalid")
    store.expire_all()
    assert store.check(long) == "expired"
    store.revoke_all()
    assert store.check(long) == "invalid"
