"""`opus run` as a subprocess for the browser tests: a database of its own, a feed of the test's
choosing, and the admin and read keys the tests sign in with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers import free_port, wait_for

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60

# Quiet by default: no scheduled or start-up run; small partitions so a few thousand stones make
# several; a failing page fails its partition at once (no supplier retries) and a partly failed
# run is skipped rather than auto-consolidated, so tests can retry it from the dashboard.
DEFAULT_ENV = {
    "RUN_ON_STARTUP": "false",
    "SCHEDULE_CRON": "0 0 0 1 1 *",
    "NIVODA_RATE_LIMIT_SCOPE": "process",
    "NIVODA_RATE_LIMIT_PER_S": "10000",
    "NIVODA_MAX_RETRIES": "0",
    "NIVODA_REQUEST_TIMEOUT_S": "5",
    "AUTO_CONSOLIDATION_THRESHOLD": "1",
    "WORKER_CONCURRENCY": "3",
    "MAX_WORKERS_FULL": "6",
    "MIN_RECORDS_PER_WORKER": "100",
    "BUS_LOCK_DURATION_S": "10",
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class OpusServer:
    url: str
    database_url: str
    log: Path


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def opus_run(database_url: str, feed_endpoint: str, data_dir: Path, **env: str) -> Iterator[OpusServer]:
    """Start `python -m opus run` and wait until /api/health answers 200; SIGINT it at the end."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "opus-run.log"
    environment = {
        **os.environ,
        **DEFAULT_ENV,
        "DATABASE_URL": database_url,
        "NIVODA_ENDPOINT": feed_endpoint,
        "API_PORT": str(port),
        "OPUS_DATA_DIR": str(data_dir),
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "opus", "run"], env=environment, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            try:
                wait_for(
                    lambda: _healthy(url) or process.poll() is not None,
                    timeout=START_TIMEOUT_S,
                    what="`opus run` to serve /api/health",
                )
            except AssertionError:
                raise AssertionError(f"`opus run` did not start:\n{log.read_text()[-3000:]}") from None
            if process.poll() is not None:
                raise AssertionError(f"`opus run` exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            yield OpusServer(url, database_url, log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
