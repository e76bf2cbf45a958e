"""The caller's identity, as every other layer sees it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request


@dataclass(frozen=True)
class Identity:
    """``user_id`` is None for an anonymous caller."""

    user_id: str | None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Identity(None)

IdentityResolver = Callable[[Request], Awaitable[Identity]]


async def anonymous_resolver(request: Request) -> Identity:
    """Until login exists, every caller is anonymous."""
    return ANONYMOUS
