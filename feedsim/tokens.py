"""Tokens issued by `authenticate`, each with the time-to-live in force when it was issued."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final, Literal

TokenState = Literal["ok", "invalid", "expired"]
_PRUNE_ABOVE: Final = 10_000


class TokenStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self, ttl_s: float) -> str:
        if len(self._expiry) > _PRUNE_ABOVE:
            now = self._clock()
            self._expiry = {token: until for token, until in self._expiry.items() if until > now}
        token = secrets.token_urlsafe(32)
        self._expiry[token] = self._clock() + ttl_s
        return token

    def check(self, token: str) -> TokenState:
        until = self._expiry.get(token)
        if until is None:
            return "invalid"
        return "ok" if self._clock() < until else "expired"

    def expire_all(self) -> int:
        """Make every issued token expired now (they stay known, so the server says "expired")."""
        now = self._clock()
        self._expiry = dict.fromkeys(self._expiry, now)
        return len(self._expiry)

    def revoke_all(self) -> int:
        revoked = len(self._expiry)
        self._expiry.clear()
        return revoked
