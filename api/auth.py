"""Who is calling: an API key (`X-API-Key`) or an HMAC-signed request, and with which scopes.

HMAC: `X-Client-Id`, `X-Timestamp` (unix seconds) and `X-Signature` = hex HMAC-SHA256, keyed by the
client's secret, over `METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nhex(SHA256(BODY))` (the method, path and
query string as sent: nothing is decoded or reordered). The timestamp must be within HMAC_TOLERANCE_S
of the server clock, and a signature is accepted once: accepted signatures are kept in
`api_hmac_nonces` (shared by every replica) until they leave the window.

HMAC scope rule: each entry of HMAC_SECRETS is `"<client-id>": "<secret>"` (scopes read and admin)
or `"<client-id>:read": "<secret>"` (scope read only); the client sends `X-Client-Id: <client-id>`.

An API key's `last_used_at` is written at most once a minute, so reads do not turn into writes.

Failed authentications are throttled per source (api/auth_throttle.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.auth_throttle import throttled
from api.deps import get_container
from api.errors import AuthError, ForbiddenError
from api.head import sent_method
from api.keys import Scope, hash_key
from api.versions import VERSION_SQL, remember
from shared.bootstrap import Container
from shared.settings import Settings

_LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
_READ_ONLY_SUFFIX: Final = ":read"
_NONCE_MARGIN: Final = timedelta(minutes=1)
_TIMESTAMP_MAX_DIGITS: Final = 12  # unix seconds until the year 33658


@dataclass(frozen=True)
class Principal:
    client: str
    scopes: frozenset[str]
    method: Literal["api_key", "hmac"]
    key_id: UUID | None = None


@dataclass(frozen=True)
class HmacClient:
    secret: bytes
    scopes: frozenset[str]


def hmac_clients(secrets: Mapping[str, str]) -> dict[str, HmacClient]:
    """Apply the scope rule to HMAC_SECRETS (see the module docstring)."""
    clients = {}
    for name, secret in secrets.items():
        if name.endswith(_READ_ONLY_SUFFIX):
            clients[name.removesuffix(_READ_ONLY_SUFFIX)] = HmacClient(secret.encode(), frozenset({"read"}))
        else:
            clients[name] = HmacClient(secret.encode(), frozenset({"read", "admin"}))
    return clients


def canonical_request(method: str, path_with_query: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path_with_query, timestamp, digest)).encode()


def sign(secret: str | bytes, method: str, path_with_query: str, timestamp: str, body: bytes = b"") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    message = canonical_request(method, path_with_query, timestamp, body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def path_with_query(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


# The catalogue version rides along: most authenticated requests are catalogue reads that need it.
_KEY_LOOKUP = f"""
SELECT id, client_name, scopes, active, expires_at < now() AS expired, last_used_at, now() AS now,
       ({VERSION_SQL}) AS catalogue_version
FROM api_keys WHERE key_hash = %s
"""


async def _from_api_key(container: Container, request: Request, key: str) -> Principal:
    async with container.pool.connection() as conn:
        row = await (await conn.execute(_KEY_LOOKUP, (hash_key(key),))).fetchone()
        if row is None:
            raise AuthError("invalid API key")
        key_id, client, scopes, active, expired, last_used, now, version = row
        remember(request, version)
        if not active:
            raise AuthError("API key revoked")
        if expired:
            raise AuthError("API key expired")
        if last_used is None or now - last_used >= _LAST_USED_RESOLUTION:
            await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
    return Principal(client=client, scopes=frozenset(scopes), method="api_key", key_id=key_id)


_CLAIM_NONCE = """
WITH purge AS (DELETE FROM api_hmac_nonces WHERE expires_at < now())
INSERT INTO api_hmac_nonces (signature, client_id, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (signature) DO NOTHING RETURNING 1
"""


def _check_timestamp(timestamp: str, now: datetime, tolerance_s: int) -> datetime:
    """Refuse a stale or future timestamp; return until when its signature must be remembered."""
    # Digits only: int() would also take "1_7", " 17 " or 400 digits (too large for a date).
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_MAX_DIGITS):
        raise AuthError("X-Timestamp must be unix seconds")
    seconds = int(timestamp)
    skew = abs(now.timestamp() - seconds)
    if skew > tolerance_s:
        raise AuthError(f"X-Timestamp is {int(skew)} s from the server clock (allowed {tolerance_s} s)")
    # Replicas' clocks differ a little: keep the nonce a margin past the last accepting moment.
    return datetime.fromtimestamp(seconds + tolerance_s, UTC) + _NONCE_MARGIN


async def _from_hmac(container: Container, request: Request, client_id: str) -> Principal:
    settings: Settings = container.settings
    clients = hmac_clients({k: v.get_secret_value() for k, v in settings.hmac_secrets.items()})
    timestamp = request.headers.get("x-timestamp")
    signature = request.headers.get("x-signature")
    if not timestamp or not signature:
        raise AuthError("HMAC authentication needs X-Client-Id, X-Timestamp and X-Signature")
    client = clients.get(client_id)
    if client is None:
        raise AuthError("unknown HMAC client")
    keep_until = _check_timestamp(timestamp, container.clock.now(), settings.hmac_tolerance_s)
    method = sent_method(request.scope)
    expected = sign(client.secret, method, path_with_query(request), timestamp, await request.body())
    # As bytes: compare_digest refuses a str holding non-ASCII (a header is latin-1), a TypeError.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise AuthError("invalid HMAC signature")
    async with container.pool.connection() as conn:
        claimed = await (await conn.execute(_CLAIM_NONCE, (expected, client_id, keep_until))).fetchone()
    if claimed is None:
        raise AuthError("HMAC signature already used (replay)")
    return Principal(client=client_id, scopes=client.scopes, method="hmac")


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")


async def _identify(request: Request, container: Container, api_key: str | None) -> Principal:
    if api_key:
        return await _from_api_key(container, request, api_key)
    client_id = request.headers.get("x-client-id")
    if client_id:
        return await _from_hmac(container, request, client_id)
    raise AuthError("missing credentials: send X-API-Key or an HMAC signature")


async def authenticate(request: Request, container: Container, api_key: str | None) -> Principal:
    """The caller, unless its source failed too often lately (api/auth_throttle.py): then 429 before
    any key lookup or signature check, even for a correct credential."""
    return await throttled(request, container, lambda: _identify(request, container, api_key))


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the request and checks one scope."""

    async def dependency(
        request: Request,
        container: Container = Depends(get_container),
        api_key: str | None = Depends(_api_key_header),
    ) -> Principal:
        principal = await authenticate(request, container, api_key)
        if scope not in principal.scopes:
            raise ForbiddenError(f"this operation needs the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


require_read = require("read")
require_admin = require("admin")
