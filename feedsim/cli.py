"""`opus feed-sim` / `python -m feedsim`: serve the Nivoda simulator until interrupted.

Unset flags fall back to the FEEDSIM_* settings (host, port, stones, seed, latency, churn) and to
NIVODA_USERNAME/NIVODA_PASSWORD for the accepted credentials, then to the simulator's defaults.
With `--port 0` a free port is chosen; the first stdout line is always `FEEDSIM_URL=<base url>`
(the GraphQL endpoint is <base url>/api/diamonds).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from datetime import datetime
from typing import Any

from pydantic import SecretStr, ValidationError

from feedsim.embed import ANNOUNCE_PREFIX, ENDPOINT_PATH, base_url, bind, make_server
from feedsim.simulator import InventorySpec, SimConfig, Simulator
from shared.argtypes import int_range
from shared.settings import FEEDSIM_MAX_SEED, Settings, SettingsError, get_settings

HELP = "serve the Nivoda feed simulator"
# Flags that fall back to a setting when not given (the simulator accepts the client's credentials).
_SETTINGS_DEFAULTS = {
    "host": "feedsim_host",
    "port": "feedsim_port",
    "stones": "feedsim_stones",
    "seed": "feedsim_seed",
    "latency_ms": "feedsim_latency_ms",
    "churn_per_s": "feedsim_churn_per_s",
    "username": "nivoda_username",
    "password": "nivoda_password",
}


def _anchor_ms(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither epoch milliseconds nor ISO-8601") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return int(moment.timestamp() * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inventory = parser.add_argument_group("inventory")
    inventory.add_argument(
        "--seed",
        type=int_range(0, FEEDSIM_MAX_SEED),
        help=f"inventory seed, 0-{FEEDSIM_MAX_SEED} (default FEEDSIM_SEED, 42)",
    )
    inventory.add_argument("--stones", type=int_range(0, 1_000_000), help="stones, 0-1000000 (default FEEDSIM_STONES)")
    inventory.add_argument(
        "--anchor-ms",
        type=_anchor_ms,
        help="the 'now' the inventory's timestamps are relative to (epoch ms or ISO-8601; default now)",
    )
    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", help="interface to bind (default FEEDSIM_HOST, 127.0.0.1)")
    serving.add_argument("--port", type=int_range(0, 65_535), help="TCP port, 0 = any free port (default FEEDSIM_PORT)")
    serving.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serving.add_argument(
        "--parent-pid",
        type=int,
        help="stop when this process (the one that started this one, when embedded) is no longer the parent",
    )
    knobs = parser.add_argument_group("behaviour (changeable at run time with POST /_sim/config)")
    for name, info in SimConfig.model_fields.items():
        if name in ("username", "password"):
            knobs.add_argument(f"--{name}", help=f"accepted {name} (default {info.default})")
        else:
            knobs.add_argument(f"--{name.replace('_', '-')}", type=float, help=info.description)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `feed-sim` subcommand to an argparse subparsers object; its handler is `run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "feed-sim",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def register(commands: Any) -> None:
    """For opus.cli's CommandRegistry: `commands.add(name, handler, help)` returns the parser."""
    add_arguments(commands.add("feed-sim", run, HELP))


def _resolve(args: argparse.Namespace, settings: Settings | None = None) -> tuple[InventorySpec, SimConfig, str, int]:
    given = dict(vars(args))
    unset = [key for key in _SETTINGS_DEFAULTS if given.get(key) is None]
    if unset:
        if settings is None:
            try:
                settings = get_settings()
            except SettingsError as exc:
                raise SystemExit(f"feed-sim: {exc}") from None
        for key in unset:
            value = getattr(settings, _SETTINGS_DEFAULTS[key])
            given[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    knobs = {name: given[name] for name in SimConfig.model_fields if given.get(name) is not None}
    try:
        config = SimConfig.model_validate(knobs)
    except ValidationError as exc:
        # As argparse reports a bad option: one line, exit status 2.
        print(f"feed-sim: error: {_invalid_options(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    spec = InventorySpec(seed=given["seed"], stones=given["stones"], anchor_ms=given.get("anchor_ms"))
    return spec, config, given["host"], given["port"]


def _invalid_options(exc: ValidationError) -> str:
    """Each rejected behaviour option with its value and what it accepts, on one line."""
    problems = []
    for error in exc.errors():
        option = "--" + "-".join(str(part) for part in error["loc"]).replace("_", "-")
        problems.append(f"{option} {error['input']} {error['msg'].removeprefix('Input ')}")
    return "invalid option: " + "; ".join(problems)


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Serve until interrupted. Settings fill unset flags (loaded from the environment if not given)."""
    spec, config, host, port = _resolve(args, settings)
    if args.parent_pid is not None:
        _exit_with_parent(args.parent_pid)
    print(f"feed-sim: generating {spec.stones:,} stones (seed {spec.seed})...", file=sys.stderr, flush=True)
    simulator = Simulator(spec, config)
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"feed-sim: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    server = make_server(simulator, log_level=args.log_level)
    url = base_url(sock)
    # The socket already listens: connections made from now on wait in its backlog until served.
    print(f"{ANNOUNCE_PREFIX}{url}", flush=True)
    print(f"feed-sim: serving {url}{ENDPOINT_PATH}", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 0


def _exit_with_parent(parent: int) -> None:
    """An embedded simulator runs in its own session (so Ctrl-C reaches only its parent, which stops
    it in order); this watch ends it if the parent dies without doing so (kill -9). The parent names
    itself: reading getppid() here would, if the parent had already died, watch the adopter instead."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedsim", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
