"""Numbered SQL migrations, recorded with checksums and applied under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "shared.db.migrations"
# Arbitrary but fixed: every process that migrates this database serialises on it.
ADVISORY_LOCK_KEY = 0x0D1A_0005
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database and the migration files disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@lru_cache(maxsize=1)
def _packaged_files() -> tuple[tuple[str, str], ...]:
    # The installed migrations do not change while a process runs; /api/health reads them often.
    return tuple(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in resources.files(MIGRATIONS_PACKAGE).iterdir()
        if entry.name.endswith(".sql")
    )


def load_migrations(directory: Path | None = None) -> list[Migration]:
    if directory is None:
        files = list(_packaged_files())
    else:
        files = [(path.name, path.read_text(encoding="utf-8")) for path in directory.glob("*.sql")]
    migrations = []
    for name, text in sorted(files):
        match = _FILE_PATTERN.match(name)
        if not match:
            raise MigrationError(f"migration file {name!r} does not match NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), text))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _applied(conn: AsyncConnection[Any]) -> dict[int, tuple[str, str]]:
    cur = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
    return {row[0]: (row[1], row[2]) for row in await cur.fetchall()}


def _verify(applied: dict[int, tuple[str, str]], migrations: list[Migration]) -> list[Migration]:
    by_version = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(by_version))
    if unknown:
        raise MigrationError(
            f"the database has migration(s) {unknown} that this code does not know; it is newer than the code"
        )
    for version, (_name, checksum) in sorted(applied.items()):
        migration = by_version[version]
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.filename} was edited after it was applied "
                f"(checksum {checksum[:12]} recorded, {migration.checksum[:12]} on disk); "
                "add a new numbered migration instead"
            )
    return [m for m in migrations if m.version not in applied]


async def migrate(url: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations; return the file names applied (empty when up to date)."""
    migrations = load_migrations() if migrations is None else migrations
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            pending = _verify(await _applied(conn), migrations)
            applied = []
            for migration in pending:
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %s", migration.filename)
                applied.append(migration.filename)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


async def pending_migrations(conn: AsyncConnection[Any]) -> list[str]:
    """Files not yet applied (raises MigrationError on edited or unknown ones); used by /api/health."""
    exists = await (await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")).fetchone()
    migrations = load_migrations()
    if not exists or not exists[0]:
        return [m.filename for m in migrations]
    return [m.filename for m in _verify(await _applied(conn), migrations)]
