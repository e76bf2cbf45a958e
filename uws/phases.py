"""UWS 1.1 §2.1.3: the execution phases and which of them a job may still leave."""

from __future__ import annotations

from enum import StrEnum

from dali.errors import UsageError


class Phase(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


# §2.2.1.2: WAIT may block only in these phases.
ACTIVE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
FINAL = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})
# Phases from which a client's PHASE=RUN queues the job.
RUNNABLE = frozenset({Phase.PENDING, Phase.HELD})
# Phases from which PHASE=ABORT (or executionDuration, or destruction) aborts the job.
ABORTABLE = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED})
# Jobs not yet finished, which count against a caller's unfinished-job limit (uws.quota):
# the jobs that can still be aborted.
UNFINISHED = ABORTABLE


def parse_phase(value: str) -> Phase | None:
    """The phase named exactly by ``value`` (values are case-sensitive, DALI §3.1)."""
    try:
        return Phase(value)
    except ValueError:
        return None


def forbidden_in_phase(message: str) -> UsageError:
    """UWS §2.2: a request illegal in the job's current phase is answered 403."""
    return UsageError(message, status=403)
