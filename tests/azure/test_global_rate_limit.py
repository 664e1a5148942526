"""The vendor's limit holds across OS processes that share the database (Functions scale-out)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATE = 40.0
BURST = RATE / 5  # PostgresTokenBucket's default capacity
PROCESSES = 4
TASKS = 6
SECONDS = 4.0


def test_several_processes_together_stay_within_the_global_rate(database_url: str) -> None:
    key = f"rate-test-{uuid.uuid4().hex[:8]}"
    start_at = time.time() + 3.0  # every process is up before the measured window opens
    argv = [database_url, key, str(RATE), str(SECONDS), str(TASKS), str(start_at)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.azure.rate_probe", *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    grants: list[float] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        mine = json.loads(out)
        assert mine, "every process got requests through"
        grants += mine
    grants.sort()
    in_window = [t for t in grants if start_at <= t < start_at + SECONDS]
    measured = len(in_window) / SECONDS
    print(f"aggregate {measured:.2f}/s over {SECONDS}s, {PROCESSES} processes x {TASKS} tasks, limit {RATE}/s")
    assert RATE * 0.95 <= measured <= RATE + BURST / SECONDS, f"{measured:.1f}/s for a limit of {RATE}/s"
    # In any 1-second window: never more than the rate plus the burst.
    busiest = max(sum(1 for u in grants[i:] if u < t + 1.0) for i, t in enumerate(grants))
    assert busiest <= RATE + BURST, f"{busiest} requests within one second"
