"""The cutout pipeline in one object: typed request -> plan -> cuts -> bytes.

Shared by ``/sync`` (``soda.web.sync``) and the async job kind (``soda.jobs.cutout``);
it knows nothing about HTTP, jobs or databases. FITS carries every configured HDU;
PNG/JPEG the science plane, or a Lupton colour composite of three bands cut on the
same pixel grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conf import Settings
from dali.errors import MultiValuedParamNotSupported, ServiceError
from dali.params import Params
from soda.engine.cutout import Cut, ImageUnreadable, cut
from soda.engine.thumbnails import Thumbnails
from soda.output.fits import fits_cutouts
from soda.output.pictures import render
from soda.plan import Target, plan
from soda.request.model import SodaRequest, parse_request
from soda.surveys.registry import Datasets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutoutLimits:
    max_pixels: int           # per cutout plane
    max_cutouts: int | None   # per /sync request (None: no limit but the service's)
    max_preview_source: int   # source pixels read for one PNG/JPEG
    name: str                 # how an error message names the limit
    max_job_cutouts: int | None = None  # per job (None: no limit, for a logged-in user's job)


# Told the format (file extension) and seconds of every cutout made, e.g. by metrics.
Observer = Callable[[str, float], None]


def _unobserved(extension: str, seconds: float) -> None:
    return None


class Cutouts:
    def __init__(self, datasets: Datasets, settings: Settings, observe: Observer = _unobserved) -> None:
        self.datasets = datasets
        self.observe = observe
        self.max_sync_cutouts = settings.soda.max_sync_cutouts
        self.max_preview_size = settings.soda.max_preview_size
        self.jpeg_quality = settings.soda.jpeg_quality
        self.thumbnails = Thumbnails(settings.ops.data_dir / "thumbnails", settings.soda.thumbnail_size,
                                     settings.soda.thumbnail_cache_bytes)
        self.user_limits = CutoutLimits(settings.soda.max_cutout_pixels, None,
                                        settings.soda.max_preview_source_pixels, "this service's limit")
        anonymous_pixels = min(settings.limits.anonymous_max_cutout_pixels, settings.soda.max_cutout_pixels)
        self.anonymous_limits = CutoutLimits(
            anonymous_pixels, min(settings.limits.anonymous_max_sync_cutouts, settings.soda.max_sync_cutouts),
            min(anonymous_pixels, settings.soda.max_preview_source_pixels),
            "the limit for anonymous callers (log in for larger cutouts)",
            settings.limits.anonymous_max_job_cutouts if settings.limits.anonymous_async == "limited" else None)
        self.more_cutouts = {  # where an anonymous caller gets more cutouts than /sync gives
            "off": "log in for more", "open": "use /async or log in for more",
            "limited": f"use /async (up to {settings.limits.anonymous_max_job_cutouts} per job) "
                       f"or log in for more"}[settings.limits.anonymous_async]

    def limits(self, owner: str | None) -> CutoutLimits:
        return self.anonymous_limits if owner is None else self.user_limits

    def parse(self, pairs: Params) -> SodaRequest:
        return parse_request(pairs, self.max_preview_size)

    def plan(self, request: SodaRequest) -> list[Target]:
        return plan(request.cutout, self.datasets, request.rgb)

    def check_count(self, count: int, limits: CutoutLimits, where: str) -> None:
        if limits.max_cutouts is not None and count > limits.max_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; {where} makes at most "
                f"{limits.max_cutouts} for anonymous callers ({self.more_cutouts})")

    def check_job_count(self, count: int, limits: CutoutLimits) -> None:
        if limits.max_job_cutouts is not None and count > limits.max_job_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; a job makes at most "
                f"{limits.max_job_cutouts} for anonymous callers (log in for more)")

    def check_sync(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> None:
        """What one synchronous answer may hold (SODA §5.1: one file)."""
        if request.render is not None and len(targets) > 1:
            raise MultiValuedParamNotSupported(
                f"a {request.mime} holds one cutout and this request asks for {len(targets)}; "
                f"ask for application/fits (one multi-extension file) or use /async")
        self.check_count(len(targets), limits, "/sync")
        if len(targets) > self.max_sync_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {len(targets)} cutouts; /sync makes at most "
                f"{self.max_sync_cutouts} (into one multi-extension FITS file); use /async for more")

    def cut(self, target: Target, request: SodaRequest, limits: CutoutLimits) -> list[Cut] | None:
        """The target's cuts (three for a colour composite); None when nothing overlaps."""
        if target.image is None:
            return None
        images = target.rgb or (target.image,)
        preview = request.render is not None
        limit, planes = (limits.max_preview_source, 1) if preview else (limits.max_pixels, None)
        try:
            if request.render is not None:  # bounded by the thumbnail, whatever the source size
                pictured = self.thumbnails.cuts(images, target.shape, request.render.size)
                if pictured is not None:
                    return pictured
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

    def cut_all(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> list[Cut]:
        """Every cut of every target, in order (colour composites only come one at a time)."""
        cuts: list[Cut] = []
        for target in targets:
            cuts += self.cut(target, request, limits) or []
        return cuts

    def encode(self, cuts: list[Cut], request: SodaRequest) -> bytes:
        if request.render is None:
            return fits_cutouts(cuts)
        return render(cuts, request.render, request.mime, self.jpeg_quality)

    def make_one(self, target: Target, request: SodaRequest, limits: CutoutLimits) -> bytes | None:
        """One target's file; None when it has no pixels."""
        started = time.perf_counter()
        cuts = self.cut(target, request, limits)
        if cuts is None:
            return None
        body = self.encode(cuts, request)
        self.observe(request.extension, time.perf_counter() - started)
        return body

    def make(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> bytes | None:
        """One file holding every target's cuts; None when no target has pixels."""
        started = time.perf_counter()
        cuts = self.cut_all(targets, request, limits)
        if not cuts:
            return None
        body = self.encode(cuts, request)
        self.observe(request.extension, time.perf_counter() - started)
        return body
