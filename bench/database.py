"""A throwaway embedded PostgreSQL for benchmarks: production settings, migrated, removed afterwards.

With DATABASE_URL set, a fresh database is created on that server instead (and dropped).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from shared.db.embedded import EmbeddedPostgres
from shared.db.migrate import migrate


@contextmanager
def temporary_database() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"opus_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(external, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = psycopg.conninfo.make_conninfo(external, dbname=name)
        try:
            asyncio.run(migrate(url))
            yield url
        finally:
            with psycopg.connect(external, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    directory = Path(tempfile.mkdtemp(prefix="opus-bench-pg-"))
    server = EmbeddedPostgres(directory / "pgdata")
    server.start()
    try:
        asyncio.run(migrate(server.url))
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
