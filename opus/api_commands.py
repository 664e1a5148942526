"""`opus api-key create|list|revoke`: manage the REST API's keys."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from api.keys import MAX_NAME_LENGTH, SCOPES, ApiKeyInfo, create_key, list_keys, revoke_key
from opus.cli import CommandRegistry
from shared.argtypes import int_range
from shared.db.database import ready_database
from shared.db.pool import Pool, open_pool
from shared.settings import Settings

# A century is long enough for any key; far larger values overflow a date (a traceback, not an error).
MAX_EXPIRES_DAYS = 36_500


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[Pool]:
    async with ready_database(settings) as database:
        pool = await open_pool(database.url, settings, name="cli", min_size=1, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()


def _with_pool(settings: Settings, action: Callable[[Pool], Awaitable[int]]) -> int:
    async def run() -> int:
        async with _pool(settings) as pool:
            return await action(pool)

    return asyncio.run(run())


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def _state(key: ApiKeyInfo, now: datetime) -> str:
    if not key.active:
        return "revoked"
    return "expired" if key.expires_at is not None and key.expires_at < now else "active"


def _describe(key: ApiKeyInfo) -> str:
    state = _state(key, datetime.now(UTC))
    return (
        f"{key.id}  {key.key_prefix}…  {key.client_name:<20}  {','.join(key.scopes):<10}  {state:<7}  "
        f"expires {_when(key.expires_at)}  last used {_when(key.last_used_at)}"
    )


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None

    async def action(pool: Pool) -> int:
        created = await create_key(pool, name=args.name, scopes=[args.scope], expires_at=expires)
        print(created.key)
        print(f"# {_describe(created.info)}")
        print("# the key is shown once; store it now (only its SHA-256 hash is kept)")
        return 0

    return _with_pool(settings, action)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def action(pool: Pool) -> int:
        keys = await list_keys(pool)
        for key in keys:
            print(_describe(key))
        if not keys:
            print("no API keys")
        return 0

    return _with_pool(settings, action)


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def action(pool: Pool) -> int:
        revoked = await revoke_key(pool, args.key)
        print(f"revoked {_describe(revoked)}")
        return 0

    return _with_pool(settings, action)


def register(commands: CommandRegistry) -> None:
    parser = commands.add("api-key", cmd_list, "manage REST API keys (create, list, revoke)")
    sub = parser.add_subparsers(dest="api_key_command", metavar="ACTION")
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument(
        "--name", required=True, help=f"client name, e.g. storefront (at most {MAX_NAME_LENGTH} characters)"
    )
    create.add_argument("--scope", required=True, choices=SCOPES, help="read, or admin (implies read)")
    create.add_argument(
        "--expires-days",
        type=int_range(1, MAX_EXPIRES_DAYS),
        default=None,
        help=f"expire after N days (1-{MAX_EXPIRES_DAYS})",
    )
    create.set_defaults(handler=cmd_create)
    sub.add_parser("list", help="list keys (never shows the keys themselves)").set_defaults(handler=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", help="the key's id or its prefix as shown by `opus api-key list`")
    revoke.set_defaults(handler=cmd_revoke)
