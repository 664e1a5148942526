"""Shared fixtures: a real, isolated, migrated PostgreSQL for the whole test session.

With DATABASE_URL set, a fresh database is created on that server for the session; otherwise an
embedded server is started in a temporary directory (one per xdist worker) and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from shared.db.embedded import EmbeddedPostgres
from shared.db.migrate import migrate
from shared.db.pool import Pool, open_pool
from shared.settings import Settings, load_settings

# Tables holding state that tests create; reference data (feeds, base margins) stays.
STATE_TABLES = (
    "run_metadata",
    "partition_progress",
    "worker_runs",
    "raw_diamonds_nivoda",
    "raw_pending",
    "run_seen_stones",
    "diamonds",
    "diamond_history",
    "pricing_rules",
    "pricing_rule_versions",
    "repricing_jobs",
    "repricing_snapshots",
    "watermarks",
    "bus_messages",
    "bus_message_ids",
    "dead_letters",
    "error_records",
    "alerts",
    "api_keys",
    "api_hmac_nonces",
    "rate_limit_buckets",
)

TEST_SERVER_SETTINGS = {"shared_buffers": "128MB", "fsync": "off", "full_page_writes": "off"}


class DatabaseFactory:
    """Creates databases on the session's server (embedded or DATABASE_URL)."""

    def __init__(self) -> None:
        self._tmp: Path | None = None
        self._server: EmbeddedPostgres | None = None
        external = os.environ.get("DATABASE_URL")
        if external:
            self._admin_url = external
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="opus-test-pg-"))
            self._server = EmbeddedPostgres(self._tmp / "pgdata", extra_settings=TEST_SERVER_SETTINGS)
            self._server.start()
            self._admin_url = self._server.admin_url
        self._created: list[str] = []

    def create(self, prefix: str = "opus_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return psycopg.conninfo.make_conninfo(self._admin_url, dbname=name)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            assert self._tmp is not None
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            for name in self._created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def test_databases() -> Iterator[DatabaseFactory]:
    databases = DatabaseFactory()
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def database_url(test_databases: DatabaseFactory) -> str:
    """URL of the session's migrated database."""
    import asyncio

    url = test_databases.create()
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("opus-data"))


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "opus_data_dir": data_dir,
        "log_level": "WARNING",
        "db_pool_max_size": 8,
        # The suite fails authentication on purpose, all from 127.0.0.1: tests/api/test_auth_throttle.py turns it on.
        "api_auth_failure_limit": 0,
        **overrides,
    }
    return load_settings(**values)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(database_url: str, settings: Settings) -> AsyncIterator[Pool]:
    pool = await open_pool(database_url, settings, name="tests")
    yield pool
    await pool.close()


async def truncate_state(pool: Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in STATE_TABLES)
            )
        )
        await conn.execute("UPDATE dataset_versions SET version = 1")


@pytest_asyncio.fixture(loop_scope="session")
async def db(pool: Pool) -> AsyncIterator[Pool]:
    """The session pool over an emptied database (state tables truncated before the test)."""
    await truncate_state(pool)
    yield pool
