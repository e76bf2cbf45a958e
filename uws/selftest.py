"""A diagnostic job kind: sleeps, writes small results, fails on demand.

Operators mount it (setting ``selftest_jobs``) to check a deployment's job machinery
end to end without touching image data; the test suite drives UWS with it.

Parameters (all optional, names case-insensitive):
  DURATION   seconds to run (0-3600, decimals allowed), default 0
  RESULTS    number of results to write (0-100), default 1
  SIZE       bytes per result (0-1048576), default 64
  FAIL       usage | fatal | transient | crash: fail that way after DURATION
  FAIL_TIMES with FAIL: fail only the first N attempts (retries count), then succeed

Parted (``uws.kinds.Part``), when PARTS is given:
  PARTS          number of parts (0-1000), each of UNITS units; RESULTS etc. are not used
  UNITS          units per part (1-1000000), default 10
  PART_DURATION  seconds each part runs (0-3600), default 0
  FAIL_PART      the part (0, 1, ...) that fails with a usage error
  FLAKY_PART     the part that fails transiently on its first run, then succeeds

A part writes ``part-<n>-run-<attempt>.txt`` (the worker's process id) when it starts and
``part-<n>.txt`` when it ends; the finishing writes ``manifest.txt`` (one line a part).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dali.errors import MultiValuedParamNotSupported, ServiceError, ServiceUnavailable, UsageError
from dali.params import Params
from uws.kinds import JobContext, JobKind, Part, PartReport

_LIMITS = {"DURATION": (0.0, 3600.0), "RESULTS": (0, 100), "SIZE": (0, 1 << 20), "FAIL_TIMES": (1, 100),
           "PARTS": (0, 1000), "UNITS": (1, 1_000_000), "PART_DURATION": (0.0, 3600.0),
           "FAIL_PART": (0, 999), "FLAKY_PART": (0, 999)}
_FAILURES = ("usage", "fatal", "transient", "crash")


@dataclass(frozen=True)
class SelftestParams:
    duration: float = 0.0
    results: int = 1
    size: int = 64
    fail: str | None = None
    fail_times: int = 1_000_000  # with fail: fail only the first N attempts
    parts: int | None = None  # None: one piece
    units: int = 10
    part_duration: float = 0.0
    fail_part: int | None = None
    flaky_part: int | None = None


def normalised(params: Params) -> Params:
    """The parameters checked, with upper-case names, once each, in the order given."""
    seen: dict[str, str] = {}
    for name, value in params:
        key = name.upper()
        if key not in _LIMITS and key != "FAIL":
            raise UsageError(f"unknown parameter {name!r}; the selftest kind takes "
                             f"DURATION, RESULTS, SIZE, FAIL, FAIL_TIMES, PARTS, UNITS, "
                             f"PART_DURATION, FAIL_PART, FLAKY_PART")
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


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))  # short sleeps: an abort interrupts between them


def run(ctx: JobContext[SelftestParams]) -> None:
    params = ctx.params
    _sleep(params.duration)
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


def parts(ctx: JobContext[SelftestParams]) -> list[Part] | None:
    params = ctx.params
    if params.parts is None:
        return None
    return [Part(json.dumps({"part": n}), params.units) for n in range(params.parts)]


def run_part(ctx: JobContext[SelftestParams], part: Part) -> PartReport:
    params = ctx.params
    number = json.loads(part.key)["part"]
    ctx.put_result(f"part-{number}-run-{part.attempt}.txt", f"{os.getpid()}\n".encode(), "text/plain")
    _sleep(params.part_duration)
    if number == params.fail_part:
        raise UsageError(f"part {number} of this selftest job was asked to fail")
    if number == params.flaky_part and part.attempt == 1:
        raise ServiceUnavailable(f"part {number} of this selftest job was asked to fail transiently once")
    ctx.put_result(f"part-{number}.txt", f"part {number} of job {ctx.job_id}: {part.units} units\n".encode(),
                   "text/plain")
    return PartReport(done=part.units, failed=0)


def finish(ctx: JobContext[SelftestParams], ended: Sequence[tuple[Part, PartReport | None]]) -> None:
    lines = [f"part {json.loads(part.key)['part']}: " +
             (f"done {report.done} failed {report.failed}" if report else f"failed: {part.error}") + "\n"
             for part, report in ended]
    ctx.put_result("manifest.txt", "".join(lines).encode(), "text/plain")


SELFTEST = JobKind(name="selftest", params_type=SelftestParams, parse=parse, run=run,
                   shown=lambda parsed, pairs: normalised(pairs),
                   parts=parts, run_part=run_part, finish=finish,
                   description="diagnostic job: sleeps, writes small results, fails on demand, "
                               "may run in parts")
