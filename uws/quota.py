"""What a caller may do with jobs: create them at all, see the list, how many at once,
how much result space, how long they are kept.

The application decides an ``Allowance`` per identity (``AllowanceFor``); the routes
enforce it before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dali.errors import AuthenticationError, ServiceUnavailable, UsageError
from uws.ports import Caller


@dataclass(frozen=True)
class Allowance:
    may_create: bool = True
    list_jobs: bool = True           # False: the job list is empty (anonymous capability URLs)
    max_active_jobs: int = 0         # QUEUED + EXECUTING at once; 0: no limit
    max_result_bytes: int = 0        # results kept; 0: no limit
    max_destruction_seconds: int = 0  # 0: the service-wide limit only
    retry_after_seconds: int = 30    # suggested wait when the active-job limit is reached


UNLIMITED = Allowance()

AllowanceFor = Callable[[Caller], Allowance]


def unlimited(identity: Caller) -> Allowance:
    return UNLIMITED


@dataclass(frozen=True)
class Usage:
    active_jobs: int
    result_bytes: int


def refuse_creation(identity: Caller) -> AuthenticationError:
    return AuthenticationError("log in to create jobs here; anonymous callers may use the "
                               "synchronous endpoint only")


def check_run(allowance: Allowance, usage: Usage, who: str) -> None:
    """Raise when starting one more job would break the allowance (nothing has run yet)."""
    if allowance.max_result_bytes and usage.result_bytes >= allowance.max_result_bytes:
        raise UsageError(
            f"result space quota reached: {who} keeps {usage.result_bytes} bytes of results "
            f"and the quota is {allowance.max_result_bytes}; delete jobs to free space",
            status=403)
    if allowance.max_active_jobs and usage.active_jobs >= allowance.max_active_jobs:
        raise ServiceUnavailable(
            f"active job limit reached: {who} has {usage.active_jobs} jobs queued or executing "
            f"and the limit is {allowance.max_active_jobs}; try again when one has finished",
            status=429, headers={"Retry-After": str(allowance.retry_after_seconds)})
