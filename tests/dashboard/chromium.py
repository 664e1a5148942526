"""Debian's Chromium for the browser tests: found at /usr/bin/chromium, or installed with apt-get.

Playwright never downloads a browser here. When Chromium is missing and this process is root (as in
CI), `apt-get install -y chromium` runs, after `apt-get update` if the package lists are stale;
when that is impossible the tests fail with the reason (they are never skipped).

    python -m tests.dashboard.chromium     # install if missing, print the path
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

CHROMIUM: Final = Path("/usr/bin/chromium")
LAUNCH_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
_APT_TIMEOUT_S: Final = 900


class ChromiumUnavailableError(RuntimeError):
    pass


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False
    )


def _tail(process: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((process.stdout + process.stderr).strip().splitlines()[-5:])


def ensure_chromium() -> Path:
    """The Chromium executable, installing Debian's package first if it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailableError(f"{CHROMIUM} is missing and apt-get is not available to install it")
    if os.geteuid() != 0:
        raise ChromiumUnavailableError(f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium")
    installed = _apt("install", "-y", "chromium")
    if installed.returncode != 0:
        updated = _apt("update")
        if updated.returncode != 0:
            raise ChromiumUnavailableError(f"apt-get update failed:\n{_tail(updated)}")
        installed = _apt("install", "-y", "chromium")
    if installed.returncode != 0 or not CHROMIUM.exists():
        raise ChromiumUnavailableError(f"apt-get install -y chromium failed:\n{_tail(installed)}")
    return CHROMIUM


if __name__ == "__main__":
    print(ensure_chromium())
