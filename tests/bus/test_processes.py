"""Competing consumers in separate processes: each message is handled exactly once while locks
hold, and a consumer killed with SIGKILL leaves its message to come back when the lock expires."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

from shared.db.pool import Pool
from tests.bus.support import Q, make_bus, message

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def start_consumer(database_url: str, lock_s: float, mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bus.consumer_process",
        database_url,
        str(lock_s),
        mode,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


async def test_consumers_in_three_processes_handle_every_message_exactly_once(db: Pool, database_url: str) -> None:
    bus = make_bus(db)
    consumers = [await start_consumer(database_url, 30, "drain") for _ in range(3)]
    for consumer in consumers:
        assert consumer.stdout is not None
        assert await asyncio.wait_for(consumer.stdout.readline(), 30) == b"ready\n"
    await bus.send([message(f"m{i}") for i in range(2000)])
    outputs = await asyncio.gather(*(c.communicate(b"go\n") for c in consumers))
    assert [c.returncode for c in consumers] == [0, 0, 0]
    handled = Counter(line for out, _ in outputs for line in out.decode().splitlines())
    assert handled == Counter(f"m{i} 1" for i in range(2000))
    assert all(out for out, _ in outputs), "every process took a share"
    assert (await bus.depth())[Q] == 0


async def test_a_killed_consumer_leaves_its_message_to_come_back_after_the_lock(db: Pool, database_url: str) -> None:
    bus = make_bus(db, lock=3)
    await bus.send([message("held")])
    holder = await start_consumer(database_url, 3, "hold")
    assert holder.stdout is not None
    line = await asyncio.wait_for(holder.stdout.readline(), 30)
    assert line.decode().split() == ["held", "1"]
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    assert await bus.receive(Q) == []  # the dead consumer's lock still holds
    await asyncio.sleep(3.2)
    [again] = await bus.receive(Q)
    assert (again.message_id, again.delivery_count) == ("held", 2)
    await bus.complete(again)
