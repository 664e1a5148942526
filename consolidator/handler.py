"""The consolidate handler: decode, consolidate the run (both runtimes call this)."""

from __future__ import annotations

from consolidator.service import ConsolidationResult, consolidate
from shared.bootstrap import Container
from shared.handling import Body, poison_on_missing
from shared.messages import Consolidate, decode


async def handle_consolidate(container: Container, body: Body) -> ConsolidationResult:
    message = decode(body, Consolidate)
    with poison_on_missing():
        return await consolidate(container, message)
