"""Schemathesis hooks for test_schemathesis.py, which names this module in SCHEMATHESIS_HOOKS.

Schemathesis's link inference takes the HMAC header X-Client-Id for a reference to a resource's
`id`, and fills it from a response's integer id (rule ids, dead-letter ids). Its HTTP client then
refuses a header that is not text, and the stateful phase reports a "Network Error" for a request
that never left it. A client can only send the number as text; so does this hook, and the API
still has to answer that request.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, HookContext


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    if case.headers:
        for name, value in list(case.headers.items()):
            if not isinstance(value, str):
                case.headers[name] = str(value)
