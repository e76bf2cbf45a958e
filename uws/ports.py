"""What uws/ needs from the rest of the service, as protocols it defines itself.

The application passes in objects that fit: an identity resolver (``auth`` provides
one), a results store (``storage`` provides one). uws/ imports neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request


class Caller(Protocol):
    """Who sends a request: a user id (the job owner), or None for an anonymous caller."""

    @property
    def user_id(self) -> str | None: ...

    @property
    def anonymous(self) -> bool: ...


CallerResolver = Callable[[Request], Awaitable[Caller]]
