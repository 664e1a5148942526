"""Running the simulator: in a background thread (tests) or as a child process (`opus run`, benchmarks).

Both bind the listening socket first (port 0 = any free port), so the URL is known for certain
before anyone connects. A child process announces its URL on stdout with one line
`FEEDSIM_URL=<base url>` once it accepts connections; nothing else is written to stdout.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Final

import uvicorn

from feedsim.app import create_app
from feedsim.simulator import InventorySpec, SimConfig, Simulator

ANNOUNCE_PREFIX: Final = "FEEDSIM_URL="
ENDPOINT_PATH: Final = "/api/diamonds"


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(simulator: Simulator, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(simulator),
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        lifespan="on",
        date_header=False,  # the app dates its responses by the simulator's clock (one Date header)
    )
    return uvicorn.Server(config)


@dataclass
class ThreadedSimulator:
    """A simulator serving from a daemon thread of this process."""

    simulator: Simulator
    url: str
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT_PATH

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"feed simulator at {self.url} did not stop within {timeout_s}s")


def start_in_thread(
    spec: InventorySpec, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> ThreadedSimulator:
    simulator = Simulator(spec, config)
    sock = bind(host, port)
    server = make_server(simulator)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="feedsim", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("feed simulator thread failed to start")
        time.sleep(0.01)
    return ThreadedSimulator(simulator, base_url(sock), server, thread)


@dataclass
class SimulatorProcess:
    """A simulator running as `python -m feedsim` in a child process."""

    process: subprocess.Popen[bytes]
    url: str

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT_PATH

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def cli_arguments(spec: InventorySpec, config: SimConfig, *, host: str, port: int) -> list[str]:
    args = ["--host", host, "--port", str(port), "--seed", str(spec.seed), "--stones", str(spec.stones)]
    if spec.anchor_ms is not None:
        args += ["--anchor-ms", str(spec.anchor_ms)]
    # Every knob is explicit, so the child's FEEDSIM_* environment cannot override the caller's config.
    for name, value in config.model_dump().items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def start_process(
    spec: InventorySpec,
    config: SimConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_s: float = 300.0,
) -> SimulatorProcess:
    """Start `python -m feedsim` and wait until it announces its URL."""
    command = [
        sys.executable,
        "-m",
        "feedsim",
        *cli_arguments(spec, config or SimConfig(), host=host, port=port),
        "--parent-pid",
        str(os.getpid()),
    ]
    # Its own session: a Ctrl-C in the terminal reaches the parent only, which stops it in order.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    assert process.stdout is not None
    deadline = time.monotonic() + startup_timeout_s
    buffer = b""
    fd = process.stdout.fileno()
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"feed simulator process did not start (exit code {process.returncode}); command: {command}"
            )
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode()
    if not line.startswith(ANNOUNCE_PREFIX):
        process.kill()
        process.wait()
        raise RuntimeError(f"unexpected first line from the feed simulator: {line!r}")
    return SimulatorProcess(process, line.removeprefix(ANNOUNCE_PREFIX))
