"""Schemathesis against the served OpenAPI document: generated requests (examples, coverage edge
cases, positive and negative fuzzing, stateful sequences) for every operation, over real HTTP with an
admin key; the run fails on any 5xx or any response that does not conform to the schema.

The schemathesis CLI runs in a subprocess against the API served from this process (its pytest
plugin does not support pytest 9 yet); the examples per operation are bounded to keep it short.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from api.keys import create_key
from feedsim.embed import start_in_thread
from feedsim.simulator import InventorySpec
from tests.api.catalogue import insert, random_catalogue
from tests.api.conftest import ServedApi, serve
from tests.conftest import make_settings, truncate_state

ROOT = Path(__file__).resolve().parents[2]
HOOKS = "tests.api.schemathesis_hooks"
EXAMPLES_PER_OPERATION = 15
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    )
)


@pytest.fixture(scope="module")
def fuzzed_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    # A simulator feed so that POST /api/v2/runs really plans a run instead of failing upstream.
    simulator = start_in_thread(InventorySpec(seed=5, stones=300))
    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("fuzz"),
        nivoda_endpoint=simulator.endpoint,
        nivoda_rate_limit_scope="process",
        nivoda_rate_limit_per_s=10_000,
        min_records_per_worker=50,
    )
    try:
        with serve(settings, database_url) as served:
            yield served
    finally:
        simulator.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    fuzzed_api: ServedApi, database_url: str, tmp_path: Path
) -> None:
    fuzzed_api.call(truncate_state(fuzzed_api.container.pool))
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert(conn, random_catalogue(seed=3, size=60))
    key = fuzzed_api.call(create_key(fuzzed_api.container.pool, name="fuzz", scopes=["admin"])).key
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{fuzzed_api.url}/api/v2/openapi.json",
        "--header",
        f"X-API-Key: {key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        "7",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    # Run in tmp_path: schemathesis keeps a crash cache in its working directory.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
