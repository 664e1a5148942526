"""The embedded PostgreSQL's set-up, with the real initdb."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

ABORTED = "child process was terminated by signal 6: Aborted"


def aborting_initdb(server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, aborts: int) -> list[str]:
    """Make the first `aborts` initdb runs fail as a saturated machine made one fail; return the calls."""
    real = server._exec
    calls: list[str] = []

    def exec_(command: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        if command == "initdb" and calls.count("initdb") <= aborts:
            return subprocess.CompletedProcess([command, *args], 1, "", ABORTED)
        return real(command, *args, **kwargs)

    monkeypatch.setattr(server, "_exec", exec_)
    return calls


def test_an_initdb_that_aborts_once_is_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmbeddedPostgres(tmp_path / "pgdata")
    calls = aborting_initdb(server, monkeypatch, aborts=1)
    server._prepare_directories()
    server._initdb()
    assert calls.count("initdb") == 2
    assert server.is_initialised()
    assert "Diamond Opus embedded server settings" in (server.pgdata / "postgresql.auto.conf").read_text()


def test_an_initdb_that_keeps_failing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmbeddedPostgres(tmp_path / "pgdata")
    calls = aborting_initdb(server, monkeypatch, aborts=2)
    server._prepare_directories()
    with pytest.raises(EmbeddedPostgresError, match=r"initdb failed in .*Aborted"):
        server._initdb()
    assert calls.count("initdb") == 2
    assert not server.is_initialised()
