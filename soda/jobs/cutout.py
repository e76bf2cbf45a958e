"""The SODA {async} job kind (SODA §6): one result per combination of ID or position
and band; a combination without pixels is a text/plain result starting with UsageError.

The API parses and plans the request once, at creation (so a bad job fails before it
runs); the worker gets the typed ``SodaRequest`` and never reads the client's text.
"""

from __future__ import annotations

from dali.params import Params
from soda.cutouts import Cutouts
from soda.request.model import SodaRequest
from uws.kinds import JobContext, JobKind


def cutout_job_kind(cutouts: Cutouts) -> JobKind[SodaRequest]:
    def parse(pairs: Params, owner: str | None) -> SodaRequest:
        request = cutouts.parse(pairs)
        targets = cutouts.plan(request)
        cutouts.check_job_count(len(targets), cutouts.limits(owner))
        return request

    def run(ctx: JobContext[SodaRequest]) -> None:
        request = ctx.params
        limits = cutouts.limits(ctx.job.owner)
        for target in cutouts.plan(request):
            body = cutouts.make_one(target, request, limits)
            if body is None:
                where = target.image.dataset_id if target.image else "any image"
                problem = target.problem or f"{target.shape.dali() if target.shape else 'the region'} " \
                                            f"does not overlap {where}"
                ctx.put_result(f"{target.name}.txt", f"UsageError: {problem}\n".encode(), "text/plain")
                continue
            ctx.put_result(f"{target.name}.{request.extension}", body, request.mime)

    return JobKind(name="soda", params_type=SodaRequest, parse=parse, run=run,
                   description="SODA 1.0 async cutouts (one result per position and band)")
