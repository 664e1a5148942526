"""API keys: created once (the plain key is shown to its creator and never stored), kept as SHA-256.

A key looks like `opus_<43 url-safe characters>`; `key_prefix` (its first 12 characters) identifies
it in listings and in `opus api-key revoke` without revealing it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal
from uuid import UUID

from psycopg.rows import class_row

from shared.db.pool import Pool
from shared.errors import InvalidRequestError, NotFoundError

Scope = Literal["read", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "admin")
KEY_PREFIX: Final = "opus_"
_PREFIX_LENGTH: Final = 12
LOCAL_ADMIN_NAME: Final = "local-admin"
MAX_NAME_LENGTH: Final = 100


@dataclass(frozen=True)
class ApiKeyInfo:
    id: UUID
    key_prefix: str
    client_name: str
    scopes: list[str]
    active: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class CreatedKey:
    key: str
    info: ApiKeyInfo


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def normalise_scopes(scopes: Iterable[str]) -> list[str]:
    """`admin` implies `read` (an operator can always look at what they change)."""
    wanted = {scope.strip().lower() for scope in scopes if scope.strip()}
    unknown = wanted - set(SCOPES)
    if unknown or not wanted:
        raise InvalidRequestError(f"scope must be one of {', '.join(SCOPES)} (got {', '.join(sorted(wanted))})")
    if "admin" in wanted:
        wanted.add("read")
    return [scope for scope in SCOPES if scope in wanted]


_COLUMNS = "id, key_prefix, client_name, scopes, active, expires_at, last_used_at, revoked_at, created_at"


async def create_key(pool: Pool, *, name: str, scopes: Iterable[str], expires_at: datetime | None = None) -> CreatedKey:
    name = name.strip()
    if not name:
        raise InvalidRequestError("a key needs a client name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequestError(f"a key's client name is at most {MAX_NAME_LENGTH} characters (got {len(name)})")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidRequestError("expiry must include a time zone")
    key = generate_key()
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKeyInfo))
        await cur.execute(
            f"""INSERT INTO api_keys (key_hash, key_prefix, client_name, scopes, expires_at)
                VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (hash_key(key), key[:_PREFIX_LENGTH], name, normalise_scopes(scopes), expires_at),
        )
        info = await cur.fetchone()
    assert info is not None
    return CreatedKey(key=key, info=info)


async def list_keys(pool: Pool) -> list[ApiKeyInfo]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKeyInfo))
        await cur.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return await cur.fetchall()


async def revoke_key(pool: Pool, ident: str) -> ApiKeyInfo:
    """Revoke by id or by key prefix; revoking twice is refused so a typo is noticed."""
    ident = ident.strip()
    try:
        key_id: UUID | None = UUID(ident)
    except ValueError:
        key_id = None
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKeyInfo))
        await cur.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s OR key_prefix = %s", (key_id, ident))
        matches = await cur.fetchall()
        if not matches:
            raise NotFoundError(f"no API key with id or prefix {ident!r}")
        if len(matches) > 1:
            raise InvalidRequestError(f"prefix {ident!r} matches {len(matches)} keys; revoke by id")
        if not matches[0].active:
            raise InvalidRequestError(f"API key {matches[0].key_prefix} is already revoked")
        await cur.execute(
            f"""UPDATE api_keys SET active = false, revoked_at = now() WHERE id = %s
                RETURNING {_COLUMNS}""",
            (matches[0].id,),
        )
        revoked = await cur.fetchone()
    assert revoked is not None
    return revoked


async def ensure_local_admin_key(pool: Pool, key_file: Path | None = None) -> str | None:
    """The key `opus run` prints so a local user can call the admin API straight away.

    The first time (no active `local-admin` key) a key is created and returned. With `key_file`,
    the plain key is also written there (mode 0600, under the data directory) and returned again on
    later starts for as long as it is still valid; without it, later starts return None.
    """
    remembered = _read_private(key_file) if key_file is not None else None
    if remembered:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    """SELECT 1 FROM api_keys WHERE key_hash = %s AND active
                       AND (expires_at IS NULL OR expires_at > now())""",
                    (hash_key(remembered),),
                )
            ).fetchone()
        if row is not None:
            return remembered
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT 1 FROM api_keys WHERE client_name = %s AND active
                   AND (expires_at IS NULL OR expires_at > now())""",
                (LOCAL_ADMIN_NAME,),
            )
        ).fetchone()
    if row is not None and key_file is None:
        return None
    created = await create_key(pool, name=LOCAL_ADMIN_NAME, scopes=["admin"])
    if key_file is not None:
        _write_private(key_file, created.key)
    return created.key


def _read_private(path: Path) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
