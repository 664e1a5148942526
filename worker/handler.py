"""The work-items handler: decode, process one page (both runtimes call this)."""

from __future__ import annotations

from shared.bootstrap import Container
from shared.handling import Body, poison_on_missing
from shared.messages import WorkItem, decode
from worker.service import PageResult, process_work_item


async def handle_work_item(container: Container, body: Body, *, last_delivery: bool = True) -> PageResult:
    item = decode(body, WorkItem)
    with poison_on_missing():
        return await process_work_item(container, item, last_delivery=last_delivery)
