"""What the Functions worker indexes when the app settings are missing or malformed.

Each case imports function_app in a fresh interpreter, as the worker does, with the environment an
Azure app would have: FUNCTIONS_WORKER_RUNTIME set by the host, the app settings as variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true;"
GOOD = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "OPUS_RUNTIME": "azure",
    "BUS_BACKEND": "servicebus",
    "ServiceBusConnection": CONNECTION,
    "DATABASE_URL": "postgresql://opus:opus@127.0.0.1:1/opus",
    "NIVODA_ENDPOINT": "http://127.0.0.1:1/api/diamonds",
    "DURABLE_HUB_NAME": "DiamondOpusTest",
}
# Index as the worker does, then ask the HTTP function for /api/health.
PROBE = """
import asyncio, json, logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import azure.functions as func
import function_app
functions = {str(f.get_function_name()): f for f in function_app.app.get_functions()}
binding = json.dumps({"taskHubName": "t", "creationUrls": {}, "managementUrls": {},
                      "rpcBaseUrl": "http://127.0.0.1:9/", "requiredQueryStringParameters": ""})
class Context:
    invocation_id, function_name, trace_context = "i", "http_app_func", None
async def main():
    response = await functions["http_app_func"].get_user_function()(
        req=func.HttpRequest("GET", "http://localhost/api/health", body=b""), context=Context(), client=binding)
    await function_app.app.middleware.notify_shutdown()
    return response
response = asyncio.run(main())
print(json.dumps({"functions": sorted(functions), "status": response.status_code,
                  "body": json.loads(response.get_body()) if response.status_code == 503 else None}))
"""


def index(settings: Mapping[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """Index in a fresh interpreter with these settings (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.pop("WEBSITE_INSTANCE_ID", None)
    env.update({k: v for k, v in settings.items() if v is not None})
    for unset in (k for k, v in settings.items() if v is None):
        env.pop(unset, None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if line.startswith(("CRITICAL", "ERROR"))]
    return json.loads(done.stdout.splitlines()[-1]), logged


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SCHEDULE_CRON": "0 */5 * * *"}, "SCHEDULE_CRON"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"OPUS_RUNTIME": "local", "DATABASE_URL": ""}, "DATABASE_URL"),
        ({"BUS_BACKEND": "local"}, "BUS_BACKEND"),
        ({"ServiceBusConnection": ""}, "ServiceBusConnection"),
        ({"DB_POOL_MAX_SIZE": "ten"}, "DB_POOL_MAX_SIZE"),
        ({"OPUS_RUNTIME": "local", "WEBSITE_INSTANCE_ID": "abc"}, "OPUS_RUNTIME"),
        ({"FUNCTIONS_WORKER_RUNTIME": None, "WEBSITE_INSTANCE_ID": "abc", "BUS_BACKEND": "local"}, "BUS_BACKEND"),
        ({"DURABLE_HUB_NAME": None}, "DURABLE_HUB_NAME"),
        ({"DURABLE_HUB_NAME": "diamond-opus-staging"}, "DURABLE_HUB_NAME"),
    ],
    ids=[
        "bad-cron",
        "no-database",
        "no-database-local",
        "local-bus",
        "no-connection",
        "malformed",
        "local-in-azure",
        "flex-consumption",
        "no-hub-name",
        "bad-hub-name",
    ],
)
def test_bad_settings_are_one_log_line_and_a_503_not_an_import_error(change: dict[str, str | None], named: str) -> None:
    """Before, the import raised (the worker indexed nothing; Azure shows 'No job functions found') or,
    for what the settings did not check, every function started and then failed or sent messages nowhere."""
    outcome, logged = index({**GOOD, **change})
    assert outcome["functions"] == ["http_app_func"], "no trigger consumes anything under bad settings"
    assert outcome["status"] == 503
    assert outcome["body"]["error"]["code"] == "misconfigured"
    assert len(logged) == 1, logged
    assert logged[0].startswith("CRITICAL function_app: Diamond Opus cannot start")
    assert named in logged[0]


def test_good_settings_index_every_function() -> None:
    outcome, logged = index(GOOD)
    assert len(outcome["functions"]) == 16
    assert "scheduler_timer" in outcome["functions"]
    assert logged == []


def test_the_example_settings_for_func_start_index_every_function() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    outcome, logged = index(example)
    assert len(outcome["functions"]) == 16
    assert logged == []
