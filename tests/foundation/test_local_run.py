"""`opus run` as a user starts it: embedded PostgreSQL, /api/health over real HTTP, clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.xdist_group("local-run")


def _opus_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "OPUS_DATA_DIR": str(tmp_path / "opus"),
            "API_PORT": str(free_port()),
            "FEEDSIM_PORT": "0",
            "FEEDSIM_STONES": "2000",
            "RUN_ON_STARTUP": "false",
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


def _postgres_for(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=("name", "cmdline")):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def _health(port: int) -> dict[str, object] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
    except httpx.TransportError:
        return None
    body: dict[str, object] = response.json()
    return body if response.status_code == 200 else None


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opus", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_run_serves_health_and_ctrl_c_leaves_no_postgres_behind(tmp_path: Path) -> None:
    env = _opus_env(tmp_path)
    port = int(env["API_PORT"])
    pgdata = (tmp_path / "opus" / "pgdata").resolve()
    for attempt in range(2):  # the second start reuses the data directory
        proc = _start(env)
        try:
            try:
                body = wait_for(lambda: _health(port), timeout=120, what="/api/health to answer 200")
            except AssertionError:
                proc.kill()
                raise AssertionError(f"opus run did not serve /api/health:\n{proc.communicate()[0]}") from None
            assert body["status"] == "ok"
            assert body["database"] == "ok"
            assert body["migrations"] == "current"
            assert _postgres_for(pgdata), "the embedded server should be running"
        finally:
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        # pg_ctl returns once the postmaster is gone; its children exit a moment later (seconds on a
        # machine other test suites saturate).
        wait_for(lambda: not _postgres_for(pgdata), timeout=60, what=f"postgres to exit (attempt {attempt})")
        assert "Traceback" not in output


def test_a_killed_hosts_postgres_is_adopted_and_stopped_by_the_next_host_and_a_second_host_is_refused(
    tmp_path: Path,
) -> None:
    env = _opus_env(tmp_path)
    port = int(env["API_PORT"])
    pgdata = (tmp_path / "opus" / "pgdata").resolve()
    killed = _start(env)
    try:
        wait_for(lambda: _health(port), timeout=120, what="/api/health to answer 200")
    finally:
        killed.kill()  # SIGKILL: no shutdown at all
        killed.communicate(timeout=30)
    assert _postgres_for(pgdata), "a killed host cannot stop its server"

    host = _start(env)
    try:
        wait_for(lambda: _health(port), timeout=120, what="/api/health to answer 200 again")
        second = subprocess.run(
            [sys.executable, "-m", "opus", "run"],
            env={**env, "API_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert "another `opus run` is already serving" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
    finally:
        host.send_signal(signal.SIGINT)
        output, _ = host.communicate(timeout=60)
    assert host.returncode == 0, output
    assert "adopting the embedded PostgreSQL" in output
    wait_for(lambda: not _postgres_for(pgdata), timeout=60, what="the adopted postgres to exit")


def test_unreachable_database_url_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    env = _opus_env(tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    proc = subprocess.run([sys.executable, "-m", "opus", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "cannot connect to the database at postgresql://nobody@127.0.0.1:1/x" in errors[0]
    assert "Traceback" not in proc.stderr


def test_invalid_setting_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    env = _opus_env(tmp_path, WORKER_CONCURRENCY="")
    proc = subprocess.run([sys.executable, "-m", "opus", "db-url"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: invalid setting WORKER_CONCURRENCY='': Input should be a valid integer, "
        "unable to parse string as an integer; expected concurrent local workers, an integer 1-128"
    ]
