"""A diagnostic job kind: sleeps, writes small results, fails on demand.

Operators mount it (setting ``selftest_jobs``) to check a deployment's job machinery
end to end without touching image data; the test suite drives UWS with it.

Parameters (all optional, names case-insensitive):
  DURATION   seconds to run (0-3600, decimals allowed), default 0
  RESULTS    number of results to write (0-100), default 1
  SIZE       bytes per result (0-1048576), default 64
  FAIL       usage | fatal | transient | crash: fail that way after DURATION
  FAIL_TIMES with FAIL: fail only the first N attempts (retries count), then succeed
"""

from __future__ import annotations

import time

from dataclasses import dataclass

from dali.errors import MultiValuedParamNotSupported, ServiceError, ServiceUnavailable, UsageError
from dali.params import Params
from uws.kinds import JobContext, JobKind

_LIMITS = {"DURATION": (0.0, 3600.0), "RESULTS": (0, 100), "SIZE": (0, 1 << 20), "FAIL_TIMES": (1, 100)}
_FAILURES = ("usage", "fatal", "transient", "crash")


@dataclass(frozen=True)
class SelftestParams:
    duration: float = 0.0
    results: int = 1
    size: int = 64
    fail: str | None = None
    fail_times: int = 1_000_000  # with fail: fail only the first N attempts


def normalised(params: Params) -> Params:
    """The parameters checked, with upper-case names, once each, in the order given."""
    seen: dict[str, str] = {}
    for name, value in params:
        key = name.upper()
        if key not in _LIMITS and key != "FAIL":
            raise UsageError(f"unknown parameter {name!r}; the selftest kind takes "
                             f"DURATION, RESULTS, SIZE, FAIL, FAIL_TIMES")
        if key in seen:
            raise MultiValuedParamNotSupported(f"{key} was given twice; it takes one value")
        if key == "FAIL":
            if value not in _FAILURES:
                raise UsageError(f"FAIL must be one of {', '.join(_FAILURES)}, not {value!r}")
        else:
            _number(key, value)
        seen[key] = value
    return list(seen.items())


def _number(key: str, value: str) -> float | int:
    low, high = _LIMITS[key]
    try:
        number = type(low)(value)
    except ValueError:
        raise UsageError(f"{key} must be a number, not {value!r}") from None
    if not low <= number <= high:
        raise UsageError(f"{key} must be between {low} and {high}, not {value}")
    return number


def parse(params: Params, owner: str | None = None) -> SelftestParams:
    values = dict(normalised(params))
    numbers = {key.lower(): _number(key, value) for key, value in values.items() if key != "FAIL"}
    return SelftestParams(fail=values.get("FAIL"), **numbers)  # type: ignore[arg-type]


def run(ctx: JobContext[SelftestParams]) -> None:
    params = ctx.params
    deadline = time.monotonic() + params.duration
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))  # short sleeps: an abort interrupts between them
    if params.fail and ctx.job.attempts <= params.fail_times:
        _fail(params.fail)
    for number in range(1, params.results + 1):
        line = f"selftest job {ctx.job_id} result {number}\n".encode()
        body = (line * (params.size // len(line) + 1))[:params.size]
        ctx.put_result(f"result-{number}.txt", body, "text/plain")


def _fail(how: str) -> None:
    if how == "usage":
        raise UsageError("this selftest job was asked to fail with a usage error")
    if how == "transient":
        raise ServiceUnavailable("this selftest job was asked to fail transiently")
    if how == "fatal":
        raise ServiceError("this selftest job was asked to fail fatally")
    raise RuntimeError("selftest crash requested")


SELFTEST = JobKind(name="selftest", params_type=SelftestParams, parse=parse, run=run,
                   shown=lambda parsed, pairs: normalised(pairs),
                   description="diagnostic job: sleeps, writes small results, fails on demand")
