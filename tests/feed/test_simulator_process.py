"""An embedded simulator process does not outlive the process that started it."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil

from tests.helpers import wait_for

STARTER = """
import sys, time
from feedsim.embed import start_process
from feedsim.simulator import InventorySpec
sim = start_process(InventorySpec(seed=1, stones=500))
print(sim.pid, flush=True)
time.sleep(120)
"""


def test_a_killed_parent_takes_its_simulator_with_it() -> None:
    parent = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    parent.send_signal(signal.SIGKILL)  # no chance to stop its child in order
    parent.wait(10)
    wait_for(lambda: not _alive(child), timeout=15, what="the orphaned simulator to exit")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
