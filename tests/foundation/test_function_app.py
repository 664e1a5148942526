"""function_app indexes as the Functions host would index it (get_functions() once per process)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import azure.functions as func

from shared.settings import get_settings
from tests.azure.indexing import indexed

ROOT = Path(__file__).resolve().parents[2]
SB = "serviceBusTrigger"


def trigger(name: str) -> dict[str, Any]:
    bindings = json.loads(indexed()[name].get_function_json())["bindings"]
    found = [b for b in bindings if b["type"].endswith("Trigger")]
    assert len(found) == 1, bindings
    return dict(found[0])


def binding_types(name: str) -> set[str]:
    return {b["type"] for b in json.loads(indexed()[name].get_function_json())["bindings"]}


def test_exactly_the_expected_functions_are_indexed() -> None:
    assert set(indexed()) == {
        "http_app_func",
        "scheduler_timer",
        "worker_work_items",
        "fanin_work_done",
        "fanin_orchestrator",
        "fanin_snapshot",
        "fanin_apply",
        "fanin_resend_consolidation",
        "fanin_finish",
        "fanin_watchdog",
        "consolidator_consolidate",
        "deadletters_work_items",
        "deadletters_work_done",
        "deadletters_consolidate",
        "alerts_deliver",
        "retention_prune",
    }


def test_http_function_serves_every_route_through_the_asgi_bridge_with_a_durable_client() -> None:
    http = trigger("http_app_func")
    assert http["route"] == "/{*route}"
    assert set(http["methods"]) == {m.value for m in func.HttpMethod}
    assert http["authLevel"] == "ANONYMOUS"
    assert "durableClient" in binding_types("http_app_func")


def test_queue_triggers_listen_where_the_bus_sends() -> None:
    settings = get_settings()
    expected = {
        "worker_work_items": settings.queue_work_items,
        "fanin_work_done": settings.queue_work_done,
        "consolidator_consolidate": settings.queue_consolidate,
        "deadletters_work_items": f"{settings.queue_work_items}/$deadletterqueue",
        "deadletters_work_done": f"{settings.queue_work_done}/$deadletterqueue",
        "deadletters_consolidate": f"{settings.queue_consolidate}/$deadletterqueue",
    }
    for name, queue in expected.items():
        binding = trigger(name)
        assert binding["type"] == SB
        assert binding["queueName"] == queue
        assert binding["connection"] == settings.servicebus_connection_setting == "ServiceBusConnection"


def test_timers_have_six_field_schedules_and_never_run_on_startup() -> None:
    timer = trigger("scheduler_timer")
    assert timer["schedule"] == get_settings().schedule_cron
    for name in ("scheduler_timer", "alerts_deliver", "fanin_watchdog", "retention_prune"):
        binding = trigger(name)
        assert len(binding["schedule"].split()) == 6, binding
        assert binding["runOnStartup"] is False


def test_durable_functions_are_bound_as_the_fan_in_expects() -> None:
    assert trigger("fanin_orchestrator")["type"] == "orchestrationTrigger"
    assert trigger("fanin_orchestrator")["orchestration"] == "fanin_orchestrator"
    for name in ("fanin_snapshot", "fanin_apply", "fanin_resend_consolidation", "fanin_finish"):
        binding = trigger(name)
        assert binding["type"] == "activityTrigger"
        assert binding["activity"] == name
    # Whatever starts a run or raises an event gets a Durable client.
    for name in (
        "scheduler_timer",
        "fanin_work_done",
        "consolidator_consolidate",
        "fanin_finish",
        "fanin_watchdog",
        "http_app_func",
    ):
        assert "durableClient" in binding_types(name), name


def test_every_parameter_of_every_function_is_bound() -> None:
    for name, fn in indexed().items():
        bound = {binding.name for binding in fn.get_bindings()}
        signature = inspect.signature(fn.get_user_function())
        # The worker injects an invocation Context without a binding.
        params = {
            p for p, param in signature.parameters.items() if param.annotation not in (func.Context, "func.Context")
        }
        assert params <= bound, f"{name}: unbound parameters {params - bound}"


def test_settings_files_and_the_emulator_agree_with_what_the_code_reads() -> None:
    settings = get_settings()
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert example["SERVICEBUS_CONNECTION_SETTING"] in example, "the named connection setting is listed"
    queues = {example["QUEUE_WORK_ITEMS"], example["QUEUE_WORK_DONE"], example["QUEUE_CONSOLIDATE"]}
    assert queues == set(settings.queue_names)
    config = json.loads((ROOT / "shared" / "bus" / "servicebus_config.json").read_text())
    namespaces = config["UserConfig"]["Namespaces"]
    assert [n["Name"] for n in namespaces] == ["sbemulatorns"]
    declared = {q["Name"]: q["Properties"] for q in namespaces[0]["Queues"]}
    assert set(declared) == queues
    for properties in declared.values():
        assert properties["RequiresDuplicateDetection"] is True
        assert 1 <= properties["MaxDeliveryCount"] <= 10
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["extensions"]["durableTask"]["hubName"] == "%DURABLE_HUB_NAME%", "one hub per app and slot"
    assert example["DURABLE_HUB_NAME"]
