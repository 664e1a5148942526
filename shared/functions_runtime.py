"""The Functions worker process's side of the composition root: ONE container per process.

Every trigger and the API of the process share it (one connection pool, one Service Bus client, one
feed client with its rate limiter). The worker runs no code before the first invocation, so the
container is opened on first use, once, under a lock, and kept for the life of the process. The
fan-in is the Durable one: runs started here get their orchestration before any work item is sent.

The settings are judged when the app is indexed (`functions_settings`); with settings it cannot run
on, the app serves only `misconfigured_app` (see function_app.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fanin.durable import DurableFanIn
from fanin.service import policy_from
from shared import observability
from shared.bootstrap import Container, LazyContainer, open_container
from shared.db.database import ready_database
from shared.settings import Settings, SettingsError, get_settings

# The Functions host's workers see FUNCTIONS_WORKER_RUNTIME (an app setting it requires, though Flex
# Consumption configures the runtime elsewhere); Azure sets WEBSITE_INSTANCE_ID on each of its
# instances, Core Tools does not.
FUNCTIONS_HOST_VARIABLE = "FUNCTIONS_WORKER_RUNTIME"
AZURE_VARIABLE = "WEBSITE_INSTANCE_ID"
MISCONFIGURED = "Diamond Opus cannot start"
# host.json names the Durable task hub `%DURABLE_HUB_NAME%`: apps and deployment slots sharing a storage
# account must each have their own, and Azure Storage allows only these names.
HUB_NAME_SETTING = "DURABLE_HUB_NAME"
_HUB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,44}")


def functions_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings, judged for a Functions app; SettingsError names what must change.

    Under the Functions host the triggers are Service Bus triggers and all processes and instances
    share one database, so BUS_BACKEND=servicebus (the local bus would keep messages no trigger
    reads), its connection, DATABASE_URL (each process would start an embedded PostgreSQL of its
    own) and the task hub's name are required; in Azure, OPUS_RUNTIME=azure too. Imported elsewhere
    (tests, tools), only the settings' own checks apply.
    """
    settings = get_settings()
    if FUNCTIONS_HOST_VARIABLE not in environ and AZURE_VARIABLE not in environ:
        return settings
    problems = []
    if settings.bus_backend != "servicebus":
        problems.append("BUS_BACKEND must be 'servicebus' (the local bus keeps messages no trigger reads)")
    elif not environ.get(settings.servicebus_connection_setting, "").strip():
        problems.append(
            f"{settings.servicebus_connection_setting} (named by SERVICEBUS_CONNECTION_SETTING) must hold "
            "the Service Bus connection string"
        )
    if settings.database_url is None:
        problems.append("DATABASE_URL is required (an embedded PostgreSQL cannot serve a Functions app)")
    if not _HUB_NAME.fullmatch(environ.get(HUB_NAME_SETTING, "")):
        problems.append(
            f"{HUB_NAME_SETTING} must name the Durable task hub: 3-45 letters and digits, starting with a letter, "
            "distinct for each app and slot sharing the storage account"
        )
    if AZURE_VARIABLE in environ and settings.opus_runtime != "azure":
        problems.append("OPUS_RUNTIME must be 'azure' in Azure")
    if problems:
        raise SettingsError("invalid settings for the Functions app: " + "; ".join(problems))
    return settings


def misconfigured_app() -> Starlette:
    """What the HTTP function serves while the settings are invalid: 503 for every request (the
    reason, which may quote a secret's value, is in the log, not in a public answer)."""
    body = {
        "error": {
            "code": "misconfigured",
            "message": f"the app's settings are invalid: the log line '{MISCONFIGURED}: ...' names them",
            "details": None,
        }
    }

    async def refuse(request: Request) -> JSONResponse:
        return JSONResponse(body, status_code=503)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
    return Starlette(routes=[Route("/{path:path}", refuse, methods=methods)])


@asynccontextmanager
async def open_functions_container(settings: Settings) -> AsyncIterator[Container]:
    """Database checked and migrated (under the migration runner's advisory lock), Durable fan-in."""
    observability.configure(settings)
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(ready_database(settings))
        yield await stack.enter_async_context(
            open_container(settings, database.url, name="functions", fanin=DurableFanIn(policy_from(settings)))
        )


runtime = LazyContainer(open_functions_container)
