"""Alerts reach a webhook (a local HTTP receiver here) and survive its outages; the watermark
mirror writes `<feed>.json` to Blob Storage (Azurite, installed from npm, running on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import orjson
import pytest
import pytest_asyncio
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.alerts import Alert, deliver_pending, record_alert
from shared.db.pool import Pool
from shared.settings import Settings
from shared.watermark_blob import mirror_watermark
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
AZURITE_DIR = ROOT / ".cache" / "azurite"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.status = 200

    async def hook(self, request: Request) -> JSONResponse:
        self.bodies.append(orjson.loads(await request.body()))
        return JSONResponse({"ok": self.status == 200}, status_code=self.status)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    app = Starlette(routes=[Route("/hook", target.hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield target, f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    await task


async def test_alerts_are_delivered_in_a_slack_compatible_body_and_retried_after_a_failure(
    db: Pool, receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver
    run_id = uuid4()
    async with db.connection() as conn, conn.transaction():
        await record_alert(
            conn,
            Alert(
                "run_skipped",
                "warning",
                "Run skipped: nivoda-natural",
                "3 of 10 partitions failed",
                run_id,
                "nivoda-natural",
            ),
        )
    target.status = 500
    async with httpx.AsyncClient() as http:
        assert await deliver_pending(db, url, http) == 0
        async with db.connection() as conn:
            cur = await conn.execute("SELECT delivered_at, delivery_attempts, delivery_error FROM alerts")
            assert await cur.fetchall() == [(None, 1, "webhook answered HTTP 500")]
        target.status = 200
        assert await deliver_pending(db, url, http) == 1
        assert await deliver_pending(db, url, http) == 0, "a delivered alert is not sent twice"
    body = target.bodies[-1]
    assert isinstance(body["text"], str)
    assert "Run skipped: nivoda-natural" in body["text"]
    assert "3 of 10 partitions failed" in body["text"]
    assert body["run_id"] == str(run_id)
    assert body["severity"] == "warning"


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azurite's blob service on a free port; installed with npm into .cache/ on first use."""
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        assert shutil.which("npm"), "npm is needed to install Azurite for this test"
        AZURITE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(AZURITE_DIR), "azurite@3"],
            check=True,
            timeout=600,
        )
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--silent",
            "--inMemoryPersistence",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "AZURITE_ACCOUNTS": ""},
    )
    try:
        wait_for(lambda: _listening(port), timeout=60, what="Azurite to listen")
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return False
    return True


async def test_the_watermark_is_mirrored_to_blob_storage(azurite: str, settings: Settings) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    configured = settings.model_copy(update={"azure_storage_connection_string": SecretStr(azurite)})
    mark = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    run_id = uuid4()
    assert await mirror_watermark(configured, "nivoda-natural", mark, run_id, datetime.now(UTC))
    assert await mirror_watermark(configured, "nivoda-natural", mark, run_id, datetime.now(UTC)), "overwrites"
    async with BlobServiceClient.from_connection_string(azurite) as service:
        blob = service.get_blob_client(settings.watermark_container, "nivoda-natural.json")
        document = orjson.loads(await (await blob.download_blob()).readall())
    assert document["lastUpdatedAt"] == "2026-11-28T12:30:00Z"
    assert document["lastRunId"] == str(run_id)


async def test_without_storage_configured_nothing_is_mirrored(settings: Settings) -> None:
    assert settings.azure_storage_connection_string is None
    assert not await mirror_watermark(settings, "nivoda-natural", datetime.now(UTC), uuid4(), datetime.now(UTC))


async def test_an_unreachable_storage_account_is_logged_not_fatal(settings: Settings) -> None:
    port = free_port()
    broken = settings.model_copy(
        update={
            "azure_storage_connection_string": SecretStr(
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            )
        }
    )
    assert not await mirror_watermark(broken, "nivoda-natural", datetime.now(UTC), uuid4(), datetime.now(UTC))
