"""The SODA {async} job kind (SODA §6): one result per combination of ID or position
and band; a combination without pixels is a text/plain result starting with UsageError."""

from __future__ import annotations

from dali.params import Params
from soda.cutouts import Cutouts
from uws.kinds import JobContext, JobKind


def cutout_job_kind(cutouts: Cutouts) -> JobKind:
    def validate(pairs: Params, owner: str | None) -> Params:
        """At job creation: the same checks as sync, so a bad job fails before it runs.

        The job keeps the parameters as the client wrote them.
        """
        targets = cutouts.plan(cutouts.parse(pairs))
        cutouts.check_count(len(targets), cutouts.limits(owner), "a job")
        return pairs

    def run(ctx: JobContext) -> None:
        request = cutouts.parse(ctx.parameters)
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

    return JobKind(name="soda", validate=validate, run=run,
                   description="SODA 1.0 async cutouts (one result per position and band)")
