"""Reading request parameters (DALI §3.1-3.3) and the UWS job-control values."""

from __future__ import annotations

import datetime as dt
import re

from starlette.datastructures import UploadFile
from starlette.requests import Request

from uws.errors import MultiValuedParamNotSupported, UsageError
from uws.kinds import Params
from uws.phases import Phase, parse_phase

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Characters XML 1.0 cannot carry; such a value could not be shown in the job document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
RUNID_MAX = 64  # DALI §3.4.6
LAST_MAX = 2**31 - 1


class RequestParams:
    """Parameters of one request: names case-insensitive, values case-sensitive."""

    def __init__(self, pairs: Params) -> None:
        self.pairs = pairs

    def all(self, name: str) -> list[str]:
        upper = name.upper()
        return [v for n, v in self.pairs if n.upper() == upper]

    def single(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            raise MultiValuedParamNotSupported(f"{name.upper()} was given {len(values)} times; it takes one value")
        return values[0] if values else None

    def without(self, names: frozenset[str]) -> Params:
        return [(n, v) for n, v in self.pairs if n.upper() not in names]


async def read_params(request: Request) -> RequestParams:
    """Query string plus, for POST, the form body (urlencoded or multipart).

    Empty values are ignored (DALI: an empty value means the parameter is absent).
    """
    pairs: Params = list(request.query_params.multi_items())
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in FORM_TYPES:
            try:
                form = await request.form()
            except Exception as exc:  # malformed multipart bodies raise several types
                raise UsageError(f"could not read the form body: {exc}") from None
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    raise UsageError(f"file upload ({name}) is not supported by this service")
                pairs.append((name, value))
        elif await request.body():
            raise UsageError(
                f"POST bodies must be application/x-www-form-urlencoded or multipart/form-data, "
                f"not {content_type or 'untyped'}")
    kept: Params = []
    for name, value in pairs:
        if _NOT_XML.search(name) or _NOT_XML.search(value):
            raise UsageError(f"parameter {name[:40]!r} contains control characters")
        if value != "":
            kept.append((name, value))
    return RequestParams(kept)


def parse_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise UsageError(f"{name} must be an integer, not {value!r}") from None


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


def parse_duration(value: str) -> int:
    seconds = parse_int("EXECUTIONDURATION", value)
    if seconds < 0:
        raise UsageError(f"EXECUTIONDURATION must be 0 (unlimited) or a positive number of seconds, not {value!r}")
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
