"""The SODA {async} job kind (SODA §6): one result per combination of the request's
values (ID and position × band × TIME, as ``soda.plan`` makes them); a combination without
pixels is a text/plain result starting with UsageError that says why.

The API parses and plans the request once, at creation (so a bad job fails before it
runs, and one planning more cutouts than the caller's limit is refused before it exists);
the worker gets the typed ``SodaRequest`` and never reads the client's text.

The job keeps, and its parameters document lists, only the parameters the service reads:
SODA §3.5 and DALI §3.1 let a service ignore parameters it does not know, so what a client
sends besides them is neither used nor stored.
"""

from __future__ import annotations

import time

from dali.params import Params
from dali.timestamps import utcnow
from soda.audit.records import AuditLog, Served, format_name
from soda.cutouts import Cutouts, cutout_count
from soda.request.model import SodaRequest
from soda.request.params import PARAM_NAMES
from uws.kinds import JobContext, JobKind


# What parse_render reads, when the format is a picture.
PICTURE_NAMES = frozenset({"STRETCH", "LIMITS", "PERCENTILES", "SIZE", "Q", "RGB"})


def read_only(request: SodaRequest, pairs: Params) -> Params:
    """The client's pairs the service reads (names are case-insensitive, DALI §3.1)."""
    names = PARAM_NAMES | PICTURE_NAMES if request.render is not None else PARAM_NAMES
    return [(name, value) for name, value in pairs if name.upper() in names]


def cutout_job_kind(cutouts: Cutouts, audit: AuditLog | None = None) -> JobKind[SodaRequest]:
    """The kind; ``audit`` records each job's results once it has run (one record a job)."""
    def parse(pairs: Params, owner: str | None) -> SodaRequest:
        request = cutouts.parse(pairs)
        targets = cutouts.plan(request)
        cutouts.check_pictures(targets, request)
        cutouts.check_job_count(cutout_count(targets), cutouts.limits(owner))
        return request

    def run(ctx: JobContext[SodaRequest]) -> None:
        started = time.perf_counter()
        request = ctx.params
        limits = cutouts.limits(ctx.job.owner)
        made, sent, survey = 0, 0, ""
        with cutouts.busy():
            for target in cutouts.plan(request):
                body = cutouts.make_one(target, request, limits)
                if body is None:
                    ctx.put_result(f"{target.name}.txt", f"UsageError: {target.why_empty()}\n".encode(),
                                   "text/plain")
                else:
                    ctx.put_result(f"{target.name}.{request.extension}", body, request.mime)
                    made, sent = made + target.cutouts, sent + len(body)
                    survey = survey or target.images[0].survey
                del body
        if audit is not None:
            audit.record(Served(utcnow(), ctx.job.owner, "async", survey, format_name(request.extension), made,
                                sent, latency_ms=(time.perf_counter() - started) * 1000, job_id=ctx.job_id))

    return JobKind(name="soda", params_type=SodaRequest, parse=parse, run=run, shown=read_only,
                   description="SODA 1.0 async cutouts (one result per combination of values)")
