"""Which PostgreSQL to use (DATABASE_URL or the embedded server), reachable and migrated."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import psycopg

from shared.db.embedded import EmbeddedPostgres
from shared.db.migrate import migrate
from shared.errors import DatabaseUnavailableError, first_line, redact_url
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTarget:
    url: str
    embedded: EmbeddedPostgres | None
    # True when this process started the embedded server (so no `opus run` is serving it).
    started_here: bool = False

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


def database_target(settings: Settings) -> DatabaseTarget:
    """The configured database; the embedded server is described, not started."""
    if settings.database_url is not None:
        return DatabaseTarget(settings.database_url.get_secret_value(), None)
    server = EmbeddedPostgres(settings.pgdata)
    return DatabaseTarget(server.url, server)


async def check_reachable(url: str) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to the database at {redact_url(url)}: {first_line(exc)}"
        ) from None


@asynccontextmanager
async def ready_database(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[DatabaseTarget]:
    """Start the embedded server if needed (and stop it on exit if we started it), check, migrate."""
    target = database_target(settings)
    started = False
    if target.embedded is not None:
        settings.pgdata.parent.mkdir(parents=True, exist_ok=True)
        started = target.embedded.start()
        if started:
            log.info("embedded PostgreSQL started", extra={"pgdata": str(settings.pgdata)})
    try:
        await check_reachable(target.url)
        if apply_migrations:
            applied = await migrate(target.url)
            if applied:
                log.info("migrations applied", extra={"files": ",".join(applied)})
        yield replace(target, started_here=started)
    finally:
        if started and target.embedded is not None:
            target.embedded.stop()
            log.info("embedded PostgreSQL stopped")
