"""The work-done handler of the local runtime: a partition finished, so re-evaluate its run.

(In Azure the work-done trigger raises an event on the run's Durable orchestration instead.)
"""

from __future__ import annotations

from fanin.lifecycle import Decision
from fanin.service import evaluate_run
from shared.bootstrap import Container
from shared.handling import Body, poison_on_missing
from shared.messages import WorkDone, decode


async def handle_work_done(container: Container, body: Body) -> Decision:
    done = decode(body, WorkDone)
    with poison_on_missing():
        return await evaluate_run(container, done.run_id)
