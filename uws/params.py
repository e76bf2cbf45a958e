"""The UWS job-control values (UWS 1.1 §2.2): WAIT, PHASE, EXECUTIONDURATION, LAST, RUNID."""

from __future__ import annotations

from dali.errors import UsageError
from dali.params import parse_int
from uws.phases import Phase, parse_phase

RUNID_MAX = 64  # DALI §3.4.6
LAST_MAX = 2**31 - 1


def parse_wait(value: str) -> int:
    """UWS §2.2.1.2: an integer number of seconds; -1 means 'until the phase changes'."""
    seconds = parse_int("WAIT", value)
    if seconds < -1:
        raise UsageError(f"WAIT must be -1 or a number of seconds >= 0, not {value!r}")
    return seconds


def parse_phase_filter(value: str) -> Phase:
    phase = parse_phase(value)
    if phase is None:
        raise UsageError(f"PHASE must be one of {', '.join(p.value for p in Phase)}, not {value!r}")
    return phase


def parse_duration(value: str) -> int:
    seconds = parse_int("EXECUTIONDURATION", value)
    if seconds < 0:
        raise UsageError(f"EXECUTIONDURATION must be 0 (unlimited) or a positive number of seconds, not {value!r}")
    if seconds > LAST_MAX:  # the database's integers: and no job runs for 68 years
        raise UsageError(f"EXECUTIONDURATION must be at most {LAST_MAX} seconds, not {value!r}")
    return seconds


def parse_last(value: str) -> int:
    count = parse_int("LAST", value)
    if count <= 0:
        raise UsageError(f"LAST must be an integer greater than 0, not {value!r}")
    return min(count, LAST_MAX)  # more than any list holds; keeps the database's integers happy


def parse_run_id(value: str) -> str:
    if len(value) > RUNID_MAX:
        raise UsageError(f"RUNID may have at most {RUNID_MAX} characters")
    return value
