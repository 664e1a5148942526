"""host.json against how the code settles messages and how long an invocation may run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from consolidator.blueprint import CONSOLIDATION_BUDGET

ROOT = Path(__file__).resolve().parents[2]


def host() -> dict[str, Any]:
    return dict(json.loads((ROOT / "host.json").read_text()))


def span(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_a_consolidation_hands_over_well_before_the_function_timeout() -> None:
    timeout = span(host()["functionTimeout"])
    assert timeout <= timedelta(minutes=10), "the Consumption plan's maximum"
    assert timeout - timedelta(minutes=1) >= CONSOLIDATION_BUDGET


def test_messages_are_settled_by_return_and_raise_with_their_lock_held_for_a_whole_invocation() -> None:
    config = host()
    service_bus = config["extensions"]["serviceBus"]
    assert service_bus["autoCompleteMessages"] is True, "the triggers return to complete and raise to abandon"
    assert span(service_bus["maxAutoLockRenewalDuration"]) >= span(config["functionTimeout"])
