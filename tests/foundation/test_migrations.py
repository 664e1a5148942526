from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from shared.db.migrate import MigrationError, load_migrations, migrate
from tests.conftest import DatabaseFactory

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "shared" / "db" / "migrations"


def applied_versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1")]


def test_fresh_database_gets_every_migration_and_a_rerun_is_a_no_op(test_databases: DatabaseFactory) -> None:
    url = test_databases.create()
    applied = asyncio.run(migrate(url))
    expected = [m.filename for m in load_migrations()]
    assert applied == expected
    assert [v for v, _ in applied_versions(url)] == [m.version for m in load_migrations()]
    assert asyncio.run(migrate(url)) == []
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    for table in (
        "diamonds",
        "raw_diamonds_nivoda",
        "pricing_rules",
        "run_metadata",
        "worker_runs",
        "partition_progress",
        "api_keys",
        "watermarks",
        "bus_messages",
        "dead_letters",
        "error_records",
        "diamond_history",
    ):
        assert table in tables


def test_two_processes_migrating_together_apply_each_file_once(test_databases: DatabaseFactory) -> None:
    url = test_databases.create()
    code = "import asyncio, sys; from shared.db.migrate import migrate; print(len(asyncio.run(migrate(sys.argv[1]))))"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    total = len(load_migrations())
    # The advisory lock serialises them: one applies everything, the other finds nothing to do.
    assert sorted(outputs) == ["0", str(total)]
    assert len(applied_versions(url)) == total


def test_an_edited_applied_migration_is_refused(test_databases: DatabaseFactory, tmp_path: Path) -> None:
    url = test_databases.create()
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    asyncio.run(migrate(url, load_migrations(directory)))
    first = sorted(directory.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    (directory / "9999_later.sql").write_text("CREATE TABLE should_not_exist (id int);")
    with pytest.raises(MigrationError, match=r"0001_initial\.sql was edited after it was applied"):
        asyncio.run(migrate(url, load_migrations(directory)))
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('should_not_exist')").fetchone() == (None,)


def test_a_failing_migration_leaves_nothing_half_applied(test_databases: DatabaseFactory, tmp_path: Path) -> None:
    url = test_databases.create()
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9998_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        asyncio.run(migrate(url, load_migrations(directory)))
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert 9998 not in [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]


def test_misnamed_migration_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"does not match NNNN_name\.sql"):
        load_migrations(tmp_path)
