"""``GET /stats.json``: the operators' usage statistics (``soda.audit.statistics``), the
data the statistics page is drawn from; for operators only (the app guards it as /metrics)."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dali.errors import UsageError
from dali.http import Endpoint
from dali.timestamps import utcnow
from soda.audit.statistics import usage
from soda.ops.runtime import Runtime

MAX_DAYS = 366
DEFAULT_DAYS = 30


def parse_days(values: list[str]) -> int:
    """``days``: whole UTC days ending today, 1 to MAX_DAYS (default DEFAULT_DAYS)."""
    if not values:
        return DEFAULT_DAYS
    if len(values) > 1:
        raise UsageError(f"days takes one value, not {len(values)}")
    text = values[0].strip()
    # At most three digits before int(): Python refuses to read more than 4300 (a ValueError, a 500).
    if not re.fullmatch(r"[0-9]{1,3}", text) or not 1 <= int(text) <= MAX_DAYS:
        raise UsageError(f"days must be a whole number of days from 1 to {MAX_DAYS}, not {values[0][:40]!r}")
    return int(text)


def stats_endpoint(runtime: Runtime) -> Endpoint:
    async def stats(request: Request) -> Response:
        days = parse_days(request.query_params.getlist("days"))

        def compute() -> dict[str, object]:
            phases = {phase.value: count for phase, count in runtime.store.count_by_phase().items()}
            return usage(runtime.db, days, utcnow(), phases)

        return JSONResponse(await run_in_threadpool(compute), headers={"Cache-Control": "no-store"})
    return stats
