"""Authentication and scopes over HTTP: API keys (missing, invalid, expired, revoked, wrong scope),
HMAC signatures (valid, expired, tampered, replayed, read-only client), key management CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import hmac_clients, sign
from api.keys import MAX_NAME_LENGTH, create_key, ensure_local_admin_key, hash_key, revoke_key
from opus import cli
from shared.db.pool import Pool
from shared.settings import Settings
from tests.api.conftest import HMAC_SECRETS, Keys, ServedApi, serve

SEARCH = "/api/v2/diamonds"
RULES = "/api/v2/pricing/rules"


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


def test_missing_and_invalid_keys_are_401(db: Pool, http: httpx.Client) -> None:
    missing = _error(http.get(SEARCH), 401)
    assert missing["code"] == "unauthorized"
    assert "missing credentials" in missing["message"]
    assert http.get(SEARCH).headers["www-authenticate"]
    assert "invalid API key" in _error(http.get(SEARCH, headers={"X-API-Key": "opus_nope"}), 401)["message"]


async def test_expired_and_revoked_keys_are_401(db: Pool, ahttp: httpx.AsyncClient) -> None:
    expired = await create_key(db, name="old", scopes=["read"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert "expired" in _error(await ahttp.get(SEARCH, headers={"X-API-Key": expired.key}), 401)["message"]
    live = await create_key(db, name="live", scopes=["read"])
    assert (await ahttp.get(SEARCH, headers={"X-API-Key": live.key})).status_code == 200
    await revoke_key(db, live.info.key_prefix)
    assert "revoked" in _error(await ahttp.get(SEARCH, headers={"X-API-Key": live.key}), 401)["message"]


async def test_scopes(db: Pool, ahttp: httpx.AsyncClient, keys: Keys) -> None:
    assert (await ahttp.get(SEARCH, headers={"X-API-Key": keys.read})).status_code == 200
    forbidden = _error(await ahttp.get(RULES, headers={"X-API-Key": keys.read}), 403)
    assert forbidden["code"] == "forbidden"
    assert "admin" in forbidden["message"]
    assert (await ahttp.get(RULES, headers={"X-API-Key": keys.admin})).status_code == 200
    assert (await ahttp.get(SEARCH, headers={"X-API-Key": keys.admin})).status_code == 200, "admin implies read"
    assert (await ahttp.get("/api/health")).status_code == 200, "health is public"


async def test_last_used_is_recorded(db: Pool, ahttp: httpx.AsyncClient, keys: Keys) -> None:
    await ahttp.get(SEARCH, headers={"X-API-Key": keys.read})
    async with db.connection() as conn:
        row = await (
            await conn.execute("SELECT last_used_at FROM api_keys WHERE key_hash = %s", (hash_key(keys.read),))
        ).fetchone()
    assert row is not None
    assert row[0] is not None


def _signed(
    client: str, method: str, path: str, body: bytes = b"", *, secret: str | None = None, at: int | None = None
) -> dict[str, str]:
    timestamp = str(at if at is not None else int(time.time()))
    key = secret or next(v for k, v in HMAC_SECRETS.items() if k.split(":")[0] == client)
    return {
        "X-Client-Id": client,
        "X-Timestamp": timestamp,
        "X-Signature": sign(key, method, path, timestamp, body),
    }


def test_hmac_valid_signature_is_accepted_once(db: Pool, http: httpx.Client) -> None:
    headers = _signed("ops", "GET", "/api/v2/diamonds?limit=2&shape=ROUND")
    ok = http.get(SEARCH, params={"limit": "2", "shape": "ROUND"}, headers=headers)
    assert ok.status_code == 200, ok.text
    replay = _error(http.get(SEARCH, params={"limit": "2", "shape": "ROUND"}, headers=headers), 401)
    assert "replay" in replay["message"]


def test_hmac_signature_covers_method_path_query_and_body(db: Pool, http: httpx.Client) -> None:
    body = json.dumps({"priority": 3, "markup_multiplier": "1.5"}).encode()
    signed = _signed("ops", "POST", "/api/v2/pricing/rules?reprice=false", body)
    headers = {**signed, "Content-Type": "application/json"}
    other_query = http.post(RULES, params={"reprice": "true"}, content=body, headers=headers)
    assert "invalid HMAC signature" in _error(other_query, 401)["message"]
    tampered = body.replace(b"1.5", b"9.5")
    assert _error(http.post(RULES, params={"reprice": "false"}, content=tampered, headers=headers), 401)
    created = http.post(RULES, params={"reprice": "false"}, content=body, headers=headers)
    assert created.status_code == 201, created.text
    other_path = _signed("ops", "GET", "/api/v2/diamonds")
    assert _error(http.get(RULES, headers=other_path), 401)


def test_a_signature_is_accepted_once_across_api_servers(
    db: Pool, api: ServedApi, api_settings: Settings, database_url: str
) -> None:
    """Replicas share the nonces (api_hmac_nonces): the same signed request sent at once to two servers
    (each with its own pool, as replicas), and again to each, is accepted exactly once."""
    with serve(api_settings, database_url) as other:
        headers = _signed("ops", "GET", SEARCH)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(
                    lambda url: httpx.get(url + SEARCH, headers=headers, timeout=30).status_code,
                    [api.url, other.url] * 2,
                )
            )
    assert sorted(statuses) == [200, 401, 401, 401]


def test_hmac_timestamp_window(db: Pool, http: httpx.Client) -> None:
    # 10 s past the 300 s window: X-Timestamp is whole seconds (truncating loses up to 1 s) and the
    # request takes time, which must not carry a "future" timestamp back inside the window.
    stale = _signed("ops", "GET", SEARCH, at=int(time.time()) - 310)
    assert "server clock" in _error(http.get(SEARCH, headers=stale), 401)["message"]
    future = _signed("ops", "GET", SEARCH, at=int(time.time()) + 310)
    assert _error(http.get(SEARCH, headers=future), 401)
    for garbage in ("yesterday", "9" * 400, "1_700_000_000", f"+{int(time.time())}", "-5", "1e9"):
        headers = {**_signed("ops", "GET", SEARCH), "X-Timestamp": garbage}
        assert _error(http.get(SEARCH, headers=headers), 401)["message"] == "X-Timestamp must be unix seconds"
    inside = _signed("ops", "GET", SEARCH, at=int(time.time()) - 200)
    assert http.get(SEARCH, headers=inside).status_code == 200


def test_hmac_unknown_client_wrong_secret_and_read_only_client(db: Pool, http: httpx.Client) -> None:
    assert (
        "unknown HMAC client"
        in _error(http.get(SEARCH, headers=_signed("eve", "GET", SEARCH, secret="x")), 401)["message"]
    )
    assert _error(http.get(SEARCH, headers=_signed("ops", "GET", SEARCH, secret="wrong")), 401)
    assert http.get(SEARCH, headers=_signed("shop", "GET", SEARCH)).status_code == 200
    assert _error(http.get(RULES, headers=_signed("shop", "GET", RULES)), 403)["code"] == "forbidden"
    partial = {"X-Client-Id": "ops"}
    assert _error(http.get(SEARCH, headers=partial), 401)


def test_hmac_signs_the_query_as_sent(db: Pool, http: httpx.Client) -> None:
    sent = "/api/v2/diamonds?shape=CUSHION%20MODIFIED&limit=2"
    decoded = _signed("ops", "GET", "/api/v2/diamonds?shape=CUSHION MODIFIED&limit=2")
    assert "invalid HMAC signature" in _error(http.get(sent, headers=decoded), 401)["message"]
    reordered = _signed("ops", "GET", "/api/v2/diamonds?limit=2&shape=CUSHION%20MODIFIED")
    assert _error(http.get(sent, headers=reordered), 401)
    assert http.get(sent, headers=_signed("ops", "GET", sent)).status_code == 200


def test_a_signed_head_request_is_verified_over_head(db: Pool, http: httpx.Client) -> None:
    # HEAD is answered as GET (api/head.py); the client signed the method it sent.
    assert http.head(SEARCH, headers=_signed("ops", "HEAD", SEARCH)).status_code == 200
    assert http.head(SEARCH, headers=_signed("ops", "GET", SEARCH)).status_code == 401


def test_hmac_signature_with_non_ascii_characters_is_401(db: Pool, http: httpx.Client) -> None:
    # Header values arrive as latin-1; a signature holding é or ÿ is just wrong, not a server error.
    for garbage in (b"\xe9" * 64, b"\xff", b"a" * 63 + b"\xe9"):
        signed = _signed("ops", "GET", SEARCH)
        headers = [(name.encode(), value.encode()) for name, value in signed.items() if name != "X-Signature"]
        headers.append((b"X-Signature", garbage))
        assert "invalid HMAC signature" in _error(http.get(SEARCH, headers=headers), 401)["message"]


def test_hmac_scope_rule() -> None:
    clients = hmac_clients({"ops": "a", "shop:read": "b"})
    assert clients["ops"].scopes == {"read", "admin"}
    assert clients["shop"].scopes == {"read"}


async def test_local_admin_key_is_created_once_and_remembered(
    db: Pool, tmp_path: Any, ahttp: httpx.AsyncClient
) -> None:
    assert await ensure_local_admin_key(db) is not None
    assert await ensure_local_admin_key(db) is None, "without a key file the key is shown only once"
    key_file = tmp_path / "local-admin-key"
    key = await ensure_local_admin_key(db, key_file)
    assert key is not None
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert await ensure_local_admin_key(db, key_file) == key
    assert (await ahttp.get(RULES, headers={"X-API-Key": key})).status_code == 200


def test_cli_create_list_revoke(
    db: Pool, cli_env: None, http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["api-key", "create", "--name", "storefront", "--scope", "read", "--expires-days", "30"]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    assert key.startswith("opus_")
    assert http.get(SEARCH, headers={"X-API-Key": key}).status_code == 200
    assert cli.main(["api-key", "list"]) == 0
    listing = capsys.readouterr().out
    assert "storefront" in listing
    assert key not in listing
    assert key[:12] in listing
    assert cli.main(["api-key", "revoke", key[:12]]) == 0
    assert http.get(SEARCH, headers={"X-API-Key": key}).status_code == 401
    assert cli.main(["api-key", "revoke", key[:12]]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert cli.main(["api-key", "create", "--name", " ", "--scope", "read"]) == 1


def test_cli_lists_an_expired_key_as_expired(
    db: Pool, cli_env: None, sync_db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("fresh", "lapsed", "withdrawn"):
        assert cli.main(["api-key", "create", "--name", name, "--scope", "read", "--expires-days", "1"]) == 0
    sync_db.execute("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE client_name = 'lapsed'")
    prefix = sync_db.execute("SELECT key_prefix FROM api_keys WHERE client_name = 'withdrawn'").fetchone()
    assert prefix is not None
    assert cli.main(["api-key", "revoke", prefix[0]]) == 0
    capsys.readouterr()
    assert cli.main(["api-key", "list"]) == 0
    states = {line.split()[2]: line.split()[4] for line in capsys.readouterr().out.splitlines()}
    assert states == {"fresh": "active", "lapsed": "expired", "withdrawn": "revoked"}


def test_cli_refuses_an_expiry_beyond_a_date_and_an_overlong_name_in_one_line(
    db: Pool, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["api-key", "create", "--name", "x", "--scope", "read", "--expires-days", "3000000"])
    assert refused.value.code == 2
    assert "argument --expires-days: must be an integer 1-36500" in capsys.readouterr().err
    long_name = "n" * (MAX_NAME_LENGTH + 1)
    assert cli.main(["api-key", "create", "--name", long_name, "--scope", "read"]) == 1
    assert (
        capsys.readouterr().err
        == f"error: a key's client name is at most {MAX_NAME_LENGTH} characters (got {MAX_NAME_LENGTH + 1})\n"
    )
    assert cli.main(["api-key", "create", "--name", long_name[1:], "--scope", "read", "--expires-days", "36500"]) == 0


def test_cli_stops_quietly_when_its_reader_goes_away(db: Pool, cli_env: None) -> None:
    """`opus api-key create ... | head -1`: the rest of the output has nowhere to go; no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "opus", "api-key", "create", "--name", "piped", "--scope", "read"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, "")
