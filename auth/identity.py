"""The caller's identity, as every other layer sees it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request


@dataclass(frozen=True)
class Identity:
    """``user_id`` is None for an anonymous caller.

    ``method`` says how the caller proved it: "session" (a browser login), "token"
    (a personal API token), "jwt" (the OIDC provider's access token), or "" (anonymous
    or a test resolver).
    """

    user_id: str | None
    method: str = ""

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Identity(None)

IdentityResolver = Callable[[Request], Awaitable[Identity]]


async def anonymous_resolver(request: Request) -> Identity:
    """Every caller is anonymous (a service with login switched off, and unit tests)."""
    return ANONYMOUS
