"""function_app indexed once per process, as the worker does (get_functions() is not idempotent)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def indexed() -> dict[str, Any]:
    import function_app

    return {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


def user_function(name: str) -> Any:
    return indexed()[name].get_user_function()
