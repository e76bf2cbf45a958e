"""Times as the service stores and shows them: naive UTC inside, ISO 8601 outside
(DALI 1.1 §3.3.3; UWS 1.1 §2.2.1 adds the 'Z')."""

from __future__ import annotations

import datetime as dt

from dali.errors import UsageError


def utcnow() -> dt.datetime:
    """Now, as a naive UTC datetime (how every table stores times)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def isoformat(value: dt.datetime) -> str:
    """ISO 8601 with a 'T' separator, milliseconds, UTC with a 'Z' suffix."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(name: str, value: str) -> dt.datetime:
    """ISO 8601 (DALI §3.3.3); no zone means UTC. Returned as naive UTC."""
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name} must be an ISO 8601 timestamp such as "
                         f"2026-01-31T12:00:00Z, not {value!r}") from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            raise UsageError(f"{name} {value!r} is outside the years 1 to 9999 once in UTC") from None
    return parsed
