"""The SODA {async} job kind (SODA §6): one result per combination of the request's
values (ID and position × band × TIME, as ``soda.plan`` makes them); a combination without
pixels is a text/plain result starting with UsageError that says why.

The API parses and plans the request once, at creation (so a bad job fails before it
runs); the worker gets the typed ``SodaRequest`` and never reads the client's text.
"""

from __future__ import annotations

from dali.params import Params
from soda.cutouts import Cutouts, cutout_count
from soda.request.model import SodaRequest
from uws.kinds import JobContext, JobKind


def cutout_job_kind(cutouts: Cutouts) -> JobKind[SodaRequest]:
    def parse(pairs: Params, owner: str | None) -> SodaRequest:
        request = cutouts.parse(pairs)
        targets = cutouts.plan(request)
        cutouts.check_pictures(targets, request)
        cutouts.check_job_count(cutout_count(targets), cutouts.limits(owner))
        return request

    def run(ctx: JobContext[SodaRequest]) -> None:
        request = ctx.params
        limits = cutouts.limits(ctx.job.owner)
        for target in cutouts.plan(request):
            body = cutouts.make_one(target, request, limits)
            if body is None:
                ctx.put_result(f"{target.name}.txt", f"UsageError: {target.why_empty()}\n".encode(), "text/plain")
            else:
                ctx.put_result(f"{target.name}.{request.extension}", body, request.mime)

    return JobKind(name="soda", params_type=SodaRequest, parse=parse, run=run,
                   description="SODA 1.0 async cutouts (one result per combination of values)")
