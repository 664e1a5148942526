"""Which PostgreSQL to use (DATABASE_URL or the embedded server), reachable and migrated.

The embedded server belongs to the host (`opus run`) while one runs: the host holds an exclusive lock
on `host.lock` in the data directory for its lifetime (one host per data directory), starts the
server or adopts one a killed host left running, and stops it on exit. A CLI command starts the
server only when it is down and stops it on exit, unless a host has taken it over meanwhile.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

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
    # False when the embedded server is known to have no host (`opus run`) serving it; with
    # DATABASE_URL it cannot be known, and a host is assumed.
    host_running: bool = True

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


class HostAlreadyRunningError(DatabaseUnavailableError):
    """Another `opus run` serves this data directory."""


def _lock_file(settings: Settings) -> Path:
    return settings.pgdata.parent / "host.lock"


def _try_lock(path: Path) -> IO[str] | None:
    """The open, exclusively locked file; None when another process holds the lock."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _host_running(settings: Settings) -> bool:
    held = _try_lock(_lock_file(settings))
    if held is None:
        return True
    held.close()  # closing releases the lock
    return False


@contextmanager
def _hosting(settings: Settings) -> Iterator[None]:
    held = _try_lock(_lock_file(settings))
    if held is None:
        raise HostAlreadyRunningError(f"another `opus run` is already serving {settings.pgdata.parent}")
    try:
        yield
    finally:
        held.close()


@asynccontextmanager
async def ready_database(
    settings: Settings, *, apply_migrations: bool = True, host: bool = False
) -> AsyncIterator[DatabaseTarget]:
    """Start the embedded server if needed, check, migrate; `host` is for `opus run` (module docstring)."""
    target = database_target(settings)
    if target.embedded is None:
        await _prepare(target, apply_migrations)
        yield target
        return
    settings.pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _hosting(settings) if host else nullcontext():
        started = target.embedded.start()
        if started:
            log.info("embedded PostgreSQL started", extra={"pgdata": str(settings.pgdata)})
        elif host:
            log.info("adopting the embedded PostgreSQL a previous host left running in %s", settings.pgdata)
        try:
            await _prepare(target, apply_migrations)
            yield replace(target, host_running=host or _host_running(settings))
        finally:
            # A command leaves the server to a host that took it over while the command ran.
            if host or (started and not _host_running(settings)):
                target.embedded.stop()
                log.info("embedded PostgreSQL stopped")


async def _prepare(target: DatabaseTarget, apply_migrations: bool) -> None:
    await check_reachable(target.url)
    if apply_migrations:
        applied = await migrate(target.url)
        if applied:
            log.info("migrations applied", extra={"files": ",".join(applied)})
