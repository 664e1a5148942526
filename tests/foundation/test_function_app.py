"""function_app indexes as the Functions host would index it (get_functions() once per process)."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import azure.functions as func


@lru_cache(maxsize=1)
def indexed() -> dict[str, Any]:
    import function_app

    return {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


def test_exactly_the_expected_functions_are_indexed() -> None:
    assert set(indexed()) == {"http_app_func"}


def test_http_function_serves_every_route_through_the_asgi_bridge() -> None:
    http = indexed()["http_app_func"]
    trigger = http.get_trigger()
    assert trigger.route == "/{*route}"
    assert trigger.type == "httpTrigger"


def test_every_parameter_of_every_function_is_bound() -> None:
    for name, fn in indexed().items():
        bound = {binding.name for binding in fn.get_bindings()}
        signature = inspect.signature(fn.get_user_function())
        # The worker injects an invocation Context without a binding.
        params = {p for p, param in signature.parameters.items() if param.annotation is not func.Context}
        assert params <= bound, f"{name}: unbound parameters {params - bound}"
