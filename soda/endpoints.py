"""The SODA endpoints: {sync} (SODA §5) and the {async} job kind (SODA §6)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from soda.cutout import Cut, ImageUnreadable, cut
from soda.datasets import Datasets
from soda.output import fits_cutouts
from soda.params import parse_cutout
from soda.plan import Target, plan
from uws.errors import MultiValuedParamNotSupported, ServiceError
from uws.kinds import JobContext, JobKind, Params
from uws.params import read_params

log = logging.getLogger(__name__)

FITS_TYPE = "application/fits"


class Cutouts:
    """Cutting planned targets, shared by sync and async."""

    def __init__(self, datasets: Datasets, max_pixels: int, max_sync_cutouts: int) -> None:
        self.datasets = datasets
        self.max_pixels = max_pixels
        self.max_sync_cutouts = max_sync_cutouts

    def cut(self, target: Target) -> Cut | None:
        if target.image is None:
            return None
        try:
            return cut(target.image, target.shape, self.max_pixels)
        except ImageUnreadable as exc:
            log.error("%s", exc)
            raise ServiceError(f"the image of {target.image.dataset_id} cannot be read; "
                               f"the operators have been told") from None

    def cut_all(self, targets: Sequence[Target]) -> list[Cut]:
        return [c for c in map(self.cut, targets) if c is not None]

    # --- {sync} ---------------------------------------------------------------------

    async def sync(self, request: Request) -> Response:
        params = await read_params(request)
        request_params = parse_cutout(params.pairs)
        targets = await run_in_threadpool(plan, request_params, self.datasets)
        if len(targets) > self.max_sync_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {len(targets)} cutouts; /sync makes at most "
                f"{self.max_sync_cutouts} (into one multi-extension FITS file); use /async for more")
        cuts = await run_in_threadpool(self.cut_all, targets)
        if not cuts:
            return Response(status_code=204)  # SODA §5.1: no pixels of the dataset
        body = await run_in_threadpool(fits_cutouts, cuts)
        name = targets[0].name if len(targets) == 1 else "cutouts"
        return Response(body, media_type=FITS_TYPE,
                        headers={"Content-Disposition": f'inline; filename="{name}.fits"'})

    # --- {async} ------------------------------------------------------------------

    def validate(self, pairs: Params) -> Params:
        """At job creation: the same checks as sync, so a bad job fails before it runs.

        The job keeps the parameters as the client wrote them.
        """
        plan(parse_cutout(pairs), self.datasets)
        return pairs

    def run(self, ctx: JobContext) -> None:
        """SODA §6: one result per combination; one without pixels is a text/plain error."""
        for target in plan(parse_cutout(ctx.parameters), self.datasets):
            result = self.cut(target)
            if result is None:
                problem = target.problem or f"{target.shape.dali() if target.shape else 'the region'} " \
                                            f"does not overlap {target.image.dataset_id if target.image else 'any image'}"
                ctx.put_result(f"{target.name}.txt", f"UsageError: {problem}\n".encode(), "text/plain")
            else:
                ctx.put_result(f"{target.name}.fits", fits_cutouts([result]), FITS_TYPE)

    def job_kind(self) -> JobKind:
        return JobKind(name="soda", validate=self.validate, run=self.run,
                       description="SODA 1.0 async cutouts (one result per position and band)")
