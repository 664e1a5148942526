"""`opus`: the operator's command line (also `python -m opus`).

Every command reads the same settings as the app. Expected failures print one line on stderr
and exit non-zero; only programming errors show a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from shared.db.database import database_target, ready_database
from shared.db.embedded import EmbeddedPostgresError
from shared.db.migrate import MigrationError
from shared.errors import OpusError
from shared.feed.errors import FeedError
from shared.logs import configure_logging
from shared.settings import Settings, SettingsError, get_settings

EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    OpusError,
    SettingsError,
    MigrationError,
    EmbeddedPostgresError,
    FeedError,
)

Handler = Callable[[argparse.Namespace, Settings], int]


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


# --- commands ------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from localhost.host import run_host

    asyncio.run(run_host(settings))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def _migrate() -> int:
        async with ready_database(settings) as database:
            print(f"database {database.display_url} is up to date")
        return 0

    return _run_async(_migrate())


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    target = database_target(settings)
    print(target.url)
    if target.embedded is not None and not target.embedded.is_running():
        print("note: the embedded server is not running; `opus run` starts it", file=sys.stderr)
    return 0


class CommandRegistry:
    """Lets each topic module (opus/*_commands.py) declare its subcommands."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._sub = subparsers

    def add(self, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = self._sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command


def register(commands: CommandRegistry) -> None:
    commands.add("run", cmd_run, "run everything locally: database, simulator, pipeline, API and dashboard")
    commands.add("migrate", cmd_migrate, "apply pending database migrations")
    commands.add("db-url", cmd_db_url, "print the database connection string")


# Topic modules, each with a `register(commands: CommandRegistry)` function.
COMMAND_MODULES: tuple[str, ...] = ("opus.cli", "opus.ops_commands", "opus.api_commands", "feedsim.cli")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="opus", description="Diamond Opus: diamond inventory pipeline")
    commands = CommandRegistry(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # here, so that a closed pipe is noticed below and not at interpreter exit
    except BrokenPipeError:
        # The reader went away (`opus ... | head -1`): stop quietly. Python flushes stdout again at
        # exit, so point it at devnull first (see "Note on SIGPIPE" in the signal module's docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        # Operator commands print results; their logs stay quiet unless LOG_LEVEL asks otherwise.
        quiet = args.command != "run" and "LOG_LEVEL" not in os.environ
        configure_logging("WARNING" if quiet else settings.log_level, settings.log_format)
        handler: Handler = args.handler
        return handler(args, settings)
    except EXPECTED_ERRORS as exc:
        # One line even when the message quotes a response body (a feed's HTML error page, say).
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
