"""What a caller may do with jobs: create them at all, see the list, how many at once,
how many not yet finished, how much result space, how long they are kept.

The application decides an ``Allowance`` per identity (``AllowanceFor``); the routes
enforce it before any work starts (``check_create``, ``check_run``), and the service
enforces the result space while a job runs (``uws.kinds.JobContext``, ``quota_reached``),
asking the same ``AllowanceFor`` about the job's owner (``Owner``).
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
    max_unfinished_jobs: int = 0     # jobs in any phase but a final one (PENDING too); 0: no limit
    max_result_bytes: int = 0        # results kept; 0: no limit
    max_destruction_seconds: int = 0  # 0: the service-wide limit only
    retry_after_seconds: int = 30    # suggested wait when a job-count limit is reached


UNLIMITED = Allowance()

AllowanceFor = Callable[[Caller], Allowance]


def unlimited(identity: Caller) -> Allowance:
    return UNLIMITED


@dataclass(frozen=True)
class Owner:
    """A job's owner as a ``Caller``, so a worker can ask the ``AllowanceFor`` about it."""

    user_id: str | None

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


def owner_name(user_id: str | None) -> str:
    return user_id or "anonymous callers together"


@dataclass(frozen=True)
class Usage:
    active_jobs: int
    result_bytes: int
    unfinished_jobs: int = 0  # PENDING, QUEUED, EXECUTING, HELD or SUSPENDED


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


def check_create(allowance: Allowance, usage: Usage, who: str) -> None:
    """Raise when one more job, even PENDING, would break the allowance: a job not yet
    finished keeps its parameters stored, so unfinished jobs are bounded, not only running ones."""
    if allowance.max_unfinished_jobs and usage.unfinished_jobs >= allowance.max_unfinished_jobs:
        raise ServiceUnavailable(
            f"unfinished job limit reached: {who} has {usage.unfinished_jobs} jobs not yet finished "
            f"(PENDING, QUEUED, EXECUTING, HELD or SUSPENDED) and the limit is "
            f"{allowance.max_unfinished_jobs}; run, abort or delete one, or try again when one "
            f"has finished", status=429, headers={"Retry-After": str(allowance.retry_after_seconds)})


def quota_reached(allowance: Allowance, used: int, adding: int, who: str) -> UsageError:
    return UsageError(
        f"result space quota reached: {who} would keep {used + adding} bytes of results with "
        f"this one ({adding} bytes) and the quota is {allowance.max_result_bytes}; the job "
        f"stopped here, its earlier results are kept; delete jobs to free space", status=403)
