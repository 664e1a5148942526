"""An optional mirror of each feed's watermark to Azure Blob Storage (`<container>/<feed>.json`).

The database row is the watermark; the blob keeps the original system's contract for tools that
read it. Written after the run's final transaction commits; a failure is logged, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from uuid import UUID

import orjson

from shared.settings import Settings

log = logging.getLogger(__name__)


def watermark_document(last_updated_at: datetime, run_id: UUID, completed_at: datetime) -> bytes:
    return orjson.dumps(
        {
            "lastUpdatedAt": last_updated_at.isoformat().replace("+00:00", "Z"),
            "lastRunId": str(run_id),
            "lastRunCompletedAt": completed_at.isoformat().replace("+00:00", "Z"),
        }
    )


async def mirror_watermark(
    settings: Settings, feed: str, last_updated_at: datetime, run_id: UUID, completed_at: datetime
) -> bool:
    """Write `<feed>.json`; True when written, False when not configured or it failed."""
    if settings.azure_storage_connection_string is None:
        return False
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob.aio import BlobServiceClient

    try:
        # One attempt: the mirror must not hold up the end of a run (the SDK's retries of a refused
        # connection took 40 s here); the next completed run writes it again.
        async with BlobServiceClient.from_connection_string(
            settings.azure_storage_connection_string.get_secret_value(), retry_total=0, connection_timeout=10
        ) as service:
            container = service.get_container_client(settings.watermark_container)
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
            await container.upload_blob(
                f"{feed}.json", watermark_document(last_updated_at, run_id, completed_at), overwrite=True
            )
    except (AzureError, ValueError) as exc:
        log.warning("could not mirror the %s watermark to blob storage: %s", feed, exc)
        return False
    return True
