"""Pricing rules over HTTP: validation, preview, repricing jobs with progress, revert."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.catalogue import insert, stone
from tests.api.conftest import Keys

RULES = "/api/v2/pricing/rules"


@pytest.fixture
def catalogue(db: Any, sync_db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    # Priced as the base margins price them (natural 40 %, lab 79 %, no rule, no rating), so only
    # a rule changes them.
    base = {"rating": None, "markup_ratio": Decimal("1.4000")}
    stones = [
        stone(**base, feed_price=Decimal("1000.00"), retail_price=Decimal("1400.00")),
        stone(**base, feed_price=Decimal("2500.50"), retail_price=Decimal("3500.70")),
        stone(
            **{**base, "markup_ratio": Decimal("1.7900")},
            lab_grown=True,
            feed_price=Decimal("300.00"),
            retail_price=Decimal("537.00"),
        ),
        stone(**base, feed_price=Decimal("999.99"), retail_price=Decimal("1399.99"), status="deleted"),
    ]
    insert(sync_db, stones)
    return stones


def _admin(keys: Keys) -> dict[str, str]:
    return {"X-API-Key": keys.admin}


def _wait_for_job(http: httpx.Client, keys: Keys, job_id: int) -> dict[str, Any]:
    for _ in range(300):
        job: dict[str, Any] = http.get(f"/api/v2/pricing/jobs/{job_id}", headers=_admin(keys)).json()["data"]
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"repricing job {job_id} did not finish: {job}")


def _prices(conn: psycopg.Connection[Any]) -> dict[str, Decimal]:
    rows = conn.execute("SELECT id::text, retail_price FROM diamonds WHERE status = 'active'").fetchall()
    return dict(rows)


NATURAL_X2 = {"priority": 5, "stone_type": "natural", "markup_multiplier": "2", "rating": 7}


@pytest.mark.parametrize(
    ("rule", "parameter"),
    [
        ({"priority": 1, "carat_min": "2", "carat_max": "1", "markup_multiplier": "1.5"}, "carat_min"),
        ({"priority": 1, "cost_min": "10", "cost_max": "5", "margin_modifier": "1"}, "cost_min"),
        ({"priority": 1, "shapes": ["BLOB"], "markup_multiplier": "1.5"}, "shapes"),
        ({"priority": 1, "cuts": ["superb"], "markup_multiplier": "1.5"}, "cuts"),
        ({"priority": 1, "markup_multiplier": "1.5", "margin_modifier": "2"}, "markup_multiplier"),
        ({"priority": 1}, "markup_multiplier"),
        ({"priority": 1, "feed": "nivoda-moon", "markup_multiplier": "1.5"}, "feed"),
        ({"priority": 1, "stone_type": "plastic", "markup_multiplier": "1.5"}, "stone_type"),
        ({"priority": -1, "markup_multiplier": "1.5"}, "priority"),
        ({"priority": 1, "rating": 11, "markup_multiplier": "1.5"}, "rating"),
        ({"priority": 1, "markup_multiplier": "1.5", "colour": ["D"]}, "colour"),
        ({"priority": 1, "markup_multiplier": "1e9"}, "markup_multiplier"),
        # Within the columns' range, but a markup ratio the engine refuses (above 100, or not above 0
        # once the stone type's base margin is added): refused whole, never a 500.
        ({"priority": 1, "markup_multiplier": "500"}, "markup_multiplier"),
        ({"priority": 1, "stone_type": "natural", "margin_modifier": "-140"}, "margin_modifier"),
        ({"priority": 1, "margin_modifier": "-150"}, "margin_modifier"),
        ({"priority": 1, "carat_min": 1e30, "markup_multiplier": "1.5"}, "carat_min"),
        ({"priority": 1, "cost_max": "Infinity", "markup_multiplier": "1.5"}, "cost_max"),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(
    db: Any, http: httpx.Client, keys: Keys, rule: dict[str, Any], parameter: str
) -> None:
    response = http.post(RULES, json=rule, headers=_admin(keys))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert parameter in {detail["parameter"] for detail in error["details"]}
    assert http.get(RULES, headers=_admin(keys)).json()["data"] == []
    preview = http.post("/api/v2/pricing/preview", json={"action": "create", "rule": rule}, headers=_admin(keys))
    assert preview.status_code == 422, preview.text
    named = {detail["parameter"].removeprefix("rule.") for detail in preview.json()["error"]["details"]}
    assert parameter in named


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"action": "update", "rule": NATURAL_X2}, "rule_id"),
        ({"action": "deactivate"}, "rule_id"),
        ({"action": "create"}, "rule"),
        # A field of another action is refused, not ignored: "create" with an update's rule_id
        # would preview a new rule beside the one the caller meant to change.
        ({"action": "create", "rule_id": 1, "rule": NATURAL_X2}, "rule_id"),
        ({"action": "deactivate", "rule_id": 1, "rule": NATURAL_X2}, "rule"),
        ({"action": "replace", "rule_id": 1}, "action"),
    ],
)
def test_previews_take_exactly_their_actions_fields(
    db: Any, http: httpx.Client, keys: Keys, body: dict[str, Any], parameter: str
) -> None:
    response = http.post("/api/v2/pricing/preview", json=body, headers=_admin(keys))
    assert response.status_code == 422, response.text
    assert [detail["parameter"] for detail in response.json()["error"]["details"]] == [parameter]


def test_priorities_are_unique_per_feed(db: Any, http: httpx.Client, keys: Keys) -> None:
    first = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys))
    assert first.status_code == 201, first.text
    clash = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys))
    assert clash.status_code == 422
    assert clash.json()["error"]["details"][0]["parameter"] == "priority"
    other_feed = http.post(
        RULES, params={"reprice": "false"}, json={**NATURAL_X2, "feed": "nivoda-natural"}, headers=_admin(keys)
    )
    assert other_feed.status_code == 201


def test_rules_need_the_admin_scope(db: Any, http: httpx.Client, keys: Keys) -> None:
    assert http.get(RULES, headers={"X-API-Key": keys.read}).status_code == 403
    assert http.post(RULES, json=NATURAL_X2, headers={"X-API-Key": keys.read}).status_code == 403


def test_preview_then_apply_reprices_in_the_background(
    catalogue: list[dict[str, Any]], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    etag = http.get("/api/v2/diamonds", headers={"X-API-Key": keys.read}).headers["etag"]
    preview = http.post("/api/v2/pricing/preview", json={"action": "create", "rule": NATURAL_X2}, headers=_admin(keys))
    assert preview.status_code == 200, preview.text
    report = preview.json()
    assert report["stones"] == 3
    assert report["changed"] == 2
    assert report["increased"] == 2
    # 1000.00 x 2 - 1400.00 + 2500.50 x 2 - 3500.70 = 600.00 + 1500.30
    assert report["total_delta"] == "2100.30"
    assert report["examples"][0]["candidate_price"] == "5001.00"
    assert _prices(sync_db)[catalogue[0]["id"]] == Decimal("1400.00"), "a preview saves nothing"

    created = http.post(RULES, json=NATURAL_X2, headers=_admin(keys))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["data"]["markup_multiplier"] == "2.0000"
    job = _wait_for_job(http, keys, body["repricing_job"]["id"])
    assert job["status"] == "completed"
    assert (job["processed"], job["total"], job["changed"]) == (3, 3, 2)
    assert job["price_delta"] == report["total_delta"]
    assert job["progress"] == 1.0
    prices = _prices(sync_db)
    assert prices[catalogue[0]["id"]] == Decimal("2000.00")
    assert prices[catalogue[1]["id"]] == Decimal("5001.00")
    assert prices[catalogue[2]["id"]] == Decimal("537.00")
    row = sync_db.execute(
        "SELECT markup_ratio, rating, pricing_rule_id FROM diamonds WHERE id = %s", (catalogue[0]["id"],)
    ).fetchone()
    assert row == (Decimal("2.0000"), 7, body["data"]["id"])
    history = sync_db.execute("SELECT count(*) FROM diamond_history WHERE change = 'repriced'").fetchone()
    assert history == (2,)
    assert http.get("/api/v2/diamonds", headers={"X-API-Key": keys.read}).headers["etag"] != etag


def test_revert_restores_rules_and_prices(
    catalogue: list[dict[str, Any]], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    original = _prices(sync_db)
    created = http.post(RULES, json=NATURAL_X2, headers=_admin(keys)).json()
    job = _wait_for_job(http, keys, created["repricing_job"]["id"])
    assert _prices(sync_db) != original
    reverted = http.post(f"/api/v2/pricing/jobs/{job['id']}/revert", headers=_admin(keys))
    assert reverted.status_code == 202, reverted.text
    back = _wait_for_job(http, keys, reverted.json()["data"]["id"])
    assert back["status"] == "completed"
    assert back["changed"] == 2
    assert _prices(sync_db) == original
    assert http.get(RULES, headers=_admin(keys)).json()["data"] == []
    assert http.get(f"/api/v2/pricing/jobs/{job['id']}", headers=_admin(keys)).json()["data"]["status"] == "reverted"
    again = http.post(f"/api/v2/pricing/jobs/{job['id']}/revert", headers=_admin(keys))
    assert again.status_code == 409


def test_a_revert_never_undoes_later_changes(
    catalogue: list[dict[str, Any]], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    created = http.post(RULES, json=NATURAL_X2, headers=_admin(keys)).json()
    job = _wait_for_job(http, keys, created["repricing_job"]["id"])
    later = {"priority": 9, "stone_type": "lab", "margin_modifier": "1.00"}
    assert http.post(RULES, params={"reprice": "false"}, json=later, headers=_admin(keys)).status_code == 201
    prices = _prices(sync_db)
    reverted = http.post(f"/api/v2/pricing/jobs/{job['id']}/revert", headers=_admin(keys))
    assert reverted.status_code == 409, reverted.text
    assert [rule["priority"] for rule in http.get(RULES, headers=_admin(keys)).json()["data"]] == [5, 9]
    assert http.get(f"/api/v2/pricing/jobs/{job['id']}", headers=_admin(keys)).json()["data"]["status"] == "completed"
    assert _prices(sync_db) == prices


def test_replace_and_deactivate(
    catalogue: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    rule = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys)).json()["data"]
    replaced = http.put(
        f"{RULES}/{rule['id']}",
        params={"reprice": "false"},
        json={"priority": 6, "margin_modifier": "-5.5", "carat_min": "0.5", "carat_max": "2"},
        headers=_admin(keys),
    )
    assert replaced.status_code == 200, replaced.text
    data = replaced.json()["data"]
    assert (data["priority"], data["margin_modifier"], data["stone_type"], data["markup_multiplier"]) == (
        6,
        "-5.50",
        None,
        None,
    )
    gone = http.delete(f"{RULES}/{rule['id']}", headers=_admin(keys))
    assert gone.status_code == 200
    _wait_for_job(http, keys, gone.json()["repricing_job"]["id"])
    assert http.get(RULES, headers=_admin(keys)).json()["data"] == []
    listed = http.get(RULES, params={"include_inactive": "true"}, headers=_admin(keys)).json()["data"]
    assert [r["active"] for r in listed] == [False]
    assert http.delete(f"{RULES}/{rule['id']}", headers=_admin(keys)).status_code == 409
    assert http.delete(f"{RULES}/999999", headers=_admin(keys)).status_code == 404
    # A preview answers as saving would: no report of a change that cannot be made.
    for body in (
        {"action": "deactivate", "rule_id": rule["id"]},
        {"action": "update", "rule_id": rule["id"], "rule": {**NATURAL_X2, "priority": 8}},
    ):
        previewed = http.post("/api/v2/pricing/preview", json=body, headers=_admin(keys))
        assert previewed.status_code == 409, previewed.text
    # A rule that does not exist, or no longer applies, is said so before its new values are judged
    # (these take a live rule's priority, which would otherwise be the complaint).
    live = {**NATURAL_X2, "priority": 8}
    assert http.post(RULES, params={"reprice": "false"}, json=live, headers=_admin(keys)).status_code == 201
    missing = http.put(f"{RULES}/999999", params={"reprice": "false"}, json=live, headers=_admin(keys))
    assert missing.status_code == 404, missing.text
    inactive = http.put(f"{RULES}/{rule['id']}", params={"reprice": "false"}, json=live, headers=_admin(keys))
    assert inactive.status_code == 409, inactive.text
    refused = http.post(RULES, json={**NATURAL_X2, "shapes": ["ROUND", "BLOB"]}, headers=_admin(keys))
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["details"][0]["parameter"] == "shapes"
    assert error["message"].startswith("invalid value for shapes: ")
    assert not error["message"].startswith("invalid value for shapes: shapes")
    versions = sync_db.execute("SELECT count(*) FROM pricing_rule_versions").fetchone()
    assert versions == (5,)  # the initial version, then create, replace, deactivate and the live rule


def test_a_change_while_a_job_is_running_is_refused_whole(
    catalogue: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    first = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys)).json()
    running = sync_db.execute(
        "INSERT INTO repricing_jobs (status, to_version, reason) VALUES ('running', %s, 'busy') RETURNING id",
        (first["version"],),
    ).fetchone()
    assert running is not None
    assert http.post(f"/api/v2/pricing/jobs/{running[0]}/revert", headers=_admin(keys)).status_code == 409
    response = http.post(RULES, json={**NATURAL_X2, "priority": 9}, headers=_admin(keys))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    # Without repricing too: the running job would go on writing prices of rules no longer current.
    unpriced = http.post(RULES, params={"reprice": "false"}, json={**NATURAL_X2, "priority": 9}, headers=_admin(keys))
    assert unpriced.status_code == 409, unpriced.text
    deactivated = http.delete(f"{RULES}/{first['data']['id']}", params={"reprice": "false"}, headers=_admin(keys))
    assert deactivated.status_code == 409, deactivated.text
    assert [rule["priority"] for rule in http.get(RULES, headers=_admin(keys)).json()["data"]] == [5]
    versions = sync_db.execute("SELECT count(*) FROM pricing_rule_versions").fetchone()
    assert versions == (2,)


def test_a_stalled_job_resumes_from_its_last_batch(
    catalogue: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    created = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys)).json()
    version = created["version"]
    row = sync_db.execute(
        "INSERT INTO repricing_jobs (status, from_version, to_version, reason) VALUES ('pending', %s, %s, 'lost')"
        " RETURNING id",
        (version - 1, version),
    ).fetchone()
    assert row is not None
    job_id = row[0]
    resumed = http.post(f"/api/v2/pricing/jobs/{job_id}/resume", headers=_admin(keys))
    assert resumed.status_code == 202
    job = _wait_for_job(http, keys, job_id)
    assert (job["status"], job["changed"]) == ("completed", 2)
    assert http.post(f"/api/v2/pricing/jobs/{job_id}/resume", headers=_admin(keys)).status_code == 409
    listed = http.get("/api/v2/pricing/jobs", headers=_admin(keys)).json()["data"]
    assert [j["id"] for j in listed] == [job_id]


def test_a_failed_job_is_resumed_while_its_rules_are_current(
    catalogue: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    created = http.post(RULES, params={"reprice": "false"}, json=NATURAL_X2, headers=_admin(keys)).json()
    version = created["version"]
    row = sync_db.execute(
        """INSERT INTO repricing_jobs (status, from_version, to_version, reason, error, completed_at)
           VALUES ('failed', %s, %s, 'timed out', 'canceling statement due to statement timeout', now())
           RETURNING id""",
        (version - 1, version),
    ).fetchone()
    assert row is not None
    resumed = http.post(f"/api/v2/pricing/jobs/{row[0]}/resume", headers=_admin(keys))
    assert resumed.status_code == 202, resumed.text
    job = _wait_for_job(http, keys, row[0])
    assert (job["status"], job["changed"], job["error"]) == ("completed", 2, None)
    assert _prices(sync_db)[catalogue[0]["id"]] == Decimal("2000.00")
