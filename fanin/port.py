"""How a run's fan-in is started: a Durable orchestration in Azure, nothing to start locally."""

from __future__ import annotations

from typing import Protocol

from shared.runs import RunRecord


class FanInStarter(Protocol):
    async def start(self, run: RunRecord) -> None:
        """Begin waiting for the run's partitions; called BEFORE any work item is sent."""


class LocalFanIn:
    """The local host evaluates runs from its work-done consumer and a periodic sweep."""

    async def start(self, run: RunRecord) -> None:
        return None
