"""The local runtime: one process that runs the whole system on embedded defaults (`opus run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from shared.bootstrap import open_container
from shared.db.database import ready_database
from shared.settings import Settings

log = logging.getLogger(__name__)


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host decides when everything stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_host(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM), then shut everything down in order."""
    stop = stop or asyncio.Event()
    _install_stop_signals(stop)
    async with (
        ready_database(settings) as database,
        open_container(settings, database.url, name="host") as container,
    ):
        app = create_app(container)
        server = _ApiServer(
            uvicorn.Config(
                app,
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        api_task = asyncio.create_task(server.serve(), name="api")
        stop_task = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({api_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if api_task in done and not server.started:
            stop_task.cancel()
            raise RuntimeError(f"could not serve on {settings.api_host}:{settings.api_port} (port in use?)")
        print(f"stopping (database {database.display_url})", file=sys.stderr)
        server.should_exit = True
        await api_task
        stop_task.cancel()
