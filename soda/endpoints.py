"""The SODA endpoints: {sync} (SODA §5) and the {async} job kind (SODA §6).

Both go through one path: parameters → a plan of targets → cuts → bytes in the asked
format (FITS with every configured HDU; PNG/JPEG of the science plane, or a Lupton
colour composite of three bands cut on the same pixel grid).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from auth import IdentityResolver
from conf import Settings
from soda.cutout import Cut, ImageUnreadable, cut
from soda.datasets import Datasets
from soda.metrics import CUTOUT_SECONDS
from soda.output import fits_cutouts
from soda.params import FITS, FITS_FORMATS, CutoutParams, parse_cutout
from soda.plan import RGBRequest, Target, plan
from soda.render import IMAGE_FORMATS, PNG, RenderParams, parse_render, render
from uws.errors import MultiValuedParamNotSupported, ServiceError
from uws.kinds import JobContext, JobKind, Params
from uws.params import read_params

log = logging.getLogger(__name__)

FORMATS = {**FITS_FORMATS, **IMAGE_FORMATS}
EXTENSIONS = {FITS: "fits", PNG: "png", "image/jpeg": "jpg"}


@dataclass(frozen=True)
class SodaRequest:
    """One SODA request, parsed: what to cut and how to deliver it."""

    cutout: CutoutParams
    render: RenderParams | None  # None for FITS

    @property
    def mime(self) -> str:
        return self.cutout.response_format

    @property
    def rgb(self) -> RGBRequest | None:
        if self.render is None or (self.render.rgb is None and not self.render.use_default_rgb):
            return None
        return RGBRequest(self.render.rgb)


@dataclass(frozen=True)
class CutoutLimits:
    max_pixels: int           # per cutout plane
    max_cutouts: int | None   # per request (None: no limit, for a logged-in user's job)
    max_preview_source: int   # source pixels read for one PNG/JPEG
    name: str                 # how an error message names the limit


class Cutouts:
    """Cutting planned targets and encoding them, shared by sync and async."""

    def __init__(self, datasets: Datasets, settings: Settings) -> None:
        self.datasets = datasets
        self.max_sync_cutouts = settings.max_sync_cutouts
        self.max_preview_size = settings.max_preview_size
        self.jpeg_quality = settings.jpeg_quality
        self.user_limits = CutoutLimits(settings.max_cutout_pixels, None,
                                        settings.max_preview_source_pixels, "this service's limit")
        anonymous_pixels = min(settings.anonymous_max_cutout_pixels, settings.max_cutout_pixels)
        self.anonymous_limits = CutoutLimits(
            anonymous_pixels, min(settings.anonymous_max_sync_cutouts, settings.max_sync_cutouts),
            min(anonymous_pixels, settings.max_preview_source_pixels),
            "the limit for anonymous callers (log in for larger cutouts)")

    def limits(self, owner: str | None) -> CutoutLimits:
        return self.anonymous_limits if owner is None else self.user_limits

    def _check_count(self, count: int, limits: CutoutLimits, where: str) -> None:
        if limits.max_cutouts is not None and count > limits.max_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; {where} makes at most "
                f"{limits.max_cutouts} for anonymous callers (log in for more)")

    def parse(self, pairs: Params) -> SodaRequest:
        cutout = parse_cutout(pairs, FORMATS)
        options = parse_render(pairs, self.max_preview_size) if cutout.response_format != FITS else None
        return SodaRequest(cutout, options)

    def plan(self, request: SodaRequest) -> list[Target]:
        return plan(request.cutout, self.datasets, request.rgb)

    def _cut(self, target: Target, request: SodaRequest, limits: CutoutLimits) -> list[Cut] | None:
        """The target's cuts (three for a colour composite); None when nothing overlaps."""
        if target.image is None:
            return None
        images = target.rgb or (target.image,)
        preview = request.render is not None
        limit, planes = (limits.max_preview_source, 1) if preview else (limits.max_pixels, None)
        try:
            first = cut(images[0], target.shape, limit, planes=planes, limit_name=limits.name)
            if first is None:
                return None
            return [first] + [cut(image, target.shape, limit, planes=planes, box=first.box,  # type: ignore[misc]
                                  limit_name=limits.name)
                              for image in images[1:]]
        except ImageUnreadable as exc:
            log.error("%s", exc)
            raise ServiceError(f"the image of {target.image.dataset_id} cannot be read; "
                               f"the operators have been told") from None

    def encode(self, cuts: list[Cut], request: SodaRequest) -> bytes:
        if request.render is None:
            return fits_cutouts(cuts)
        return render(cuts, request.render, request.mime, self.jpeg_quality)

    # --- {sync} ---------------------------------------------------------------------

    def sync_endpoint(self, identify: IdentityResolver) -> Callable[[Request], Awaitable[Response]]:
        async def sync(request: Request) -> Response:
            identity = await identify(request)
            return await self.sync(request, self.limits(identity.user_id))
        return sync

    async def sync(self, request: Request, limits: CutoutLimits) -> Response:
        parsed = self.parse((await read_params(request)).pairs)
        targets = await run_in_threadpool(self.plan, parsed)
        if parsed.render is not None and len(targets) > 1:
            raise MultiValuedParamNotSupported(
                f"a {parsed.mime} holds one cutout and this request asks for {len(targets)}; "
                f"ask for application/fits (one multi-extension file) or use /async")
        self._check_count(len(targets), limits, "/sync")
        if len(targets) > self.max_sync_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {len(targets)} cutouts; /sync makes at most "
                f"{self.max_sync_cutouts} (into one multi-extension FITS file); use /async for more")
        started = time.perf_counter()
        cuts = await run_in_threadpool(self._cut_all, targets, parsed, limits)
        if not cuts:
            return Response(status_code=204)  # SODA §5.1: no pixels of the dataset
        body = await run_in_threadpool(self.encode, cuts, parsed)
        CUTOUT_SECONDS.labels(EXTENSIONS[parsed.mime]).observe(time.perf_counter() - started)
        name = targets[0].name if len(targets) == 1 else "cutouts"
        return Response(body, media_type=parsed.mime, headers={
            "Content-Disposition": f'inline; filename="{name}.{EXTENSIONS[parsed.mime]}"'})

    def _cut_all(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> list[Cut]:
        """Every cut of every target, in order (colour composites only come one at a time)."""
        cuts: list[Cut] = []
        for target in targets:
            cuts += self._cut(target, request, limits) or []
        return cuts

    # --- {async} ------------------------------------------------------------------

    def validate(self, pairs: Params, owner: str | None) -> Params:
        """At job creation: the same checks as sync, so a bad job fails before it runs.

        The job keeps the parameters as the client wrote them.
        """
        targets = self.plan(self.parse(pairs))
        self._check_count(len(targets), self.limits(owner), "a job")
        return pairs

    def run(self, ctx: JobContext) -> None:
        """SODA §6: one result per combination; one without pixels is a text/plain error."""
        request = self.parse(ctx.parameters)
        limits = self.limits(ctx.job.owner)
        for target in self.plan(request):
            started = time.perf_counter()
            cuts = self._cut(target, request, limits)
            if cuts is None:
                where = target.image.dataset_id if target.image else "any image"
                problem = target.problem or f"{target.shape.dali() if target.shape else 'the region'} " \
                                            f"does not overlap {where}"
                ctx.put_result(f"{target.name}.txt", f"UsageError: {problem}\n".encode(), "text/plain")
            else:
                body = self.encode(cuts, request)
                CUTOUT_SECONDS.labels(EXTENSIONS[request.mime]).observe(time.perf_counter() - started)
                ctx.put_result(f"{target.name}.{EXTENSIONS[request.mime]}", body, request.mime)

    def job_kind(self) -> JobKind:
        return JobKind(name="soda", validate=self.validate, run=self.run,
                       description="SODA 1.0 async cutouts (one result per position and band)")
