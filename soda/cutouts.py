"""The cutout pipeline in one object: typed request -> plan -> cuts -> bytes.

Shared by ``/sync`` (``soda.web.sync``) and the async job kind (``soda.jobs.cutout``);
it knows nothing about HTTP, jobs or databases. FITS carries every configured HDU;
PNG/JPEG the science plane, or a Lupton colour composite of three bands cut on the
same pixel grid.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
from astropy.wcs.utils import proj_plane_pixel_scales

from conf import Settings
from dali.errors import MultiValuedParamNotSupported, ServiceError, UsageError
from dali.params import Params
from soda.engine import memory
from soda.engine.cutout import Cut, ImageFiles, ImageUnreadable
from soda.engine.mosaic import cut_across
from soda.engine.pixels import PixelBox
from soda.engine.thumbnails import Thumbnails
from soda.engine.tiles import Sweep, sweeping
from soda.output.fits import fits_cutouts
from soda.output.pictures import render
from soda.plan import FieldGroup, Located, Target, locate_positions, plan, plan_positions, unserved_why
from soda.request.model import SodaRequest, parse_request
from soda.request.params import ShapeLimits
from soda.surveys.base import ImageRef
from soda.surveys.registry import Datasets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutoutLimits:
    max_pixels: int           # per cutout plane
    max_cutouts: int | None   # per /sync request (None: no limit but the service's)
    max_preview_source: int   # source pixels read for one PNG/JPEG
    name: str                 # how an error message names the limit
    max_job_cutouts: int | None = None  # per job (None: no limit)


# Told the format (file extension) and seconds of every cutout made, e.g. by metrics.
Observer = Callable[[str, float], None]


def _unobserved(extension: str, seconds: float) -> None:
    return None


def cutout_count(targets: Sequence[Target]) -> int:
    """The cutouts really made, which count limits count: a combination without an image
    makes none (its job result is a short UsageError text)."""
    return sum(t.cutouts for t in targets)


def _unreadable(image: ImageRef, exc: ImageUnreadable) -> ServiceError:
    log.error("%s", exc)
    return ServiceError(f"the image of {image.dataset_id} cannot be read; the operators have been told")


def _cut(image: ImageRef, *, target: Target, limit: int, planes: int | None, limit_name: str,
         datasets: Datasets, files: ImageFiles, box: PixelBox | None = None) -> Cut | None:
    try:
        return cut_across(image, target.shape, limit, datasets.surveys.get(image.survey), planes=planes,
                          box=box, limit_name=limit_name, files=files)
    except ImageUnreadable as exc:
        raise _unreadable(image, exc) from None


def _pixel_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices ordering pixel positions by row (rounded y), then x; those not finite last."""
    return np.lexsort((np.where(np.isfinite(x), x, np.inf), np.where(np.isfinite(y), np.round(y), np.inf)))


class Cutouts:
    def __init__(self, datasets: Datasets, settings: Settings, observe: Observer = _unobserved) -> None:
        self.datasets = datasets
        self.observe = observe
        self.max_sync_cutouts = settings.soda.max_sync_cutouts
        self.max_preview_size = settings.soda.max_preview_size
        self.shape_limits = ShapeLimits(settings.soda.max_request_shapes, settings.soda.max_polygon_vertices,
                                        settings.soda.max_request_polygon_vertices)
        self.jpeg_quality = settings.soda.jpeg_quality
        # The image files' layouts and decoded tiles, shared by every cutout of the process.
        self.files = ImageFiles(settings.soda.file_cache_entries, settings.soda.tile_cache_bytes)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.thumbnails = Thumbnails(settings.ops.data_dir / "thumbnails", settings.soda.thumbnail_size,
                                     settings.soda.thumbnail_cache_bytes, self.files)
        self.user_limits = CutoutLimits(settings.soda.max_cutout_pixels, None,
                                        settings.soda.max_preview_source_pixels, "this service's limit",
                                        settings.limits.user_max_job_cutouts or None)
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

    @contextmanager
    def busy(self) -> Iterator[None]:
        """One unit of cutting work (a job). When the last one of the process ends, the
        decoded tiles and open files it kept are let go and the allocator's free memory is
        returned, so an idle worker is back near its size at start."""
        with self._busy_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1
                idle = self._busy == 0
            if idle:
                self.files.release()
                memory.trim()

    @staticmethod
    def trim_memory() -> None:
        """Return the allocator's free memory to the system (after a large cutout)."""
        memory.trim()

    def limits(self, owner: str | None) -> CutoutLimits:
        return self.anonymous_limits if owner is None else self.user_limits

    def parse(self, pairs: Params) -> SodaRequest:
        return parse_request(pairs, self.max_preview_size, self.shape_limits)

    def plan(self, request: SodaRequest) -> list[Target]:
        return plan(request.cutout, self.datasets, request.rgb)

    def check_count(self, count: int, limits: CutoutLimits, where: str) -> None:
        if limits.max_cutouts is not None and count > limits.max_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; {where} makes at most "
                f"{limits.max_cutouts} for anonymous callers ({self.more_cutouts})")

    def check_job_count(self, count: int, limits: CutoutLimits) -> None:
        """The cutouts one job plans, checked when it is created (before it exists)."""
        if limits.max_job_cutouts is not None and count > limits.max_job_cutouts:
            whom = ("for anonymous callers (log in for more)" if limits is self.anonymous_limits
                    else "(split the request into several jobs)")
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; a job makes at most "
                f"{limits.max_job_cutouts} {whom}")

    def check_pictures(self, targets: Sequence[Target], request: SodaRequest) -> None:
        """A picture shows one band, or one colour composite of three."""
        if request.render is None:
            return
        for target in targets:
            if not target.colour and len(target.images) > 1:
                raise UsageError(
                    f"{target.name}: a {request.mime} shows one band, and this combination holds "
                    f"{', '.join(i.band for i in target.images)}; narrow BAND, use FILTER, or ask "
                    f"for application/fits")

    def check_sync(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> None:
        """What one synchronous answer may hold (SODA §5.1: one file; each combination of
        SODA §6 is one cutout of it)."""
        if request.render is not None and len(targets) > 1:
            raise MultiValuedParamNotSupported(
                f"a {request.mime} holds one cutout and this request asks for {len(targets)} "
                f"({', '.join(t.name for t in targets[:10])}{', ...' if len(targets) > 10 else ''}); "
                f"ask for application/fits (one multi-extension file) or use /async")
        self.check_pictures(targets, request)
        count = cutout_count(targets)
        self.check_count(count, limits, "/sync")
        if count > self.max_sync_cutouts:
            raise MultiValuedParamNotSupported(
                f"this request asks for {count} cutouts; /sync makes at most "
                f"{self.max_sync_cutouts} (into one multi-extension FITS file); use /async for more")

    def cut(self, target: Target, request: SodaRequest, limits: CutoutLimits) -> list[Cut] | None:
        """The target's cuts (three on one pixel grid for a colour composite); None when
        nothing overlaps."""
        if not target.images:
            return None
        if request.render is not None and (target.colour or len(target.images) == 1):
            pictured = self._from_thumbnails(target, request.render.size)
            if pictured is not None:  # bounded by the thumbnail, whatever the source size
                return pictured
        preview = request.render is not None
        limit = limits.max_preview_source if preview else limits.max_pixels
        cut_one = partial(_cut, target=target, limit=limit, planes=1 if preview else None,
                          limit_name=limits.name, datasets=self.datasets, files=self.files)
        if not target.colour:
            found = [c for c in map(cut_one, target.images) if c is not None]
            return found or None
        first, *others = target.images
        head = cut_one(first)
        if head is None:
            return None
        return [head] + [cut_one(image, box=head.box) for image in others]  # type: ignore[misc]

    def _from_thumbnails(self, target: Target, size: int | None) -> list[Cut] | None:
        try:
            return self.thumbnails.cuts(target.images, target.shape, size)
        except ImageUnreadable as exc:
            raise _unreadable(target.images[0], exc) from None

    def locate_positions(self, ra: Sequence[float], dec: Sequence[float],
                         bands: Sequence[Sequence[str]]) -> tuple[list[Located], np.ndarray]:
        """Many positions grouped by the field and images that serve them, as row indices
        (``soda.plan``); and those no survey serves."""
        return locate_positions(self.datasets, ra, dec, bands)

    @staticmethod
    def unserved_why(ra: float, dec: float, wanted: Sequence[str]) -> str:
        return unserved_why(ra, dec, wanted)

    def plan_positions(self, ra: Sequence[float], dec: Sequence[float], radius: Sequence[float],
                       bands: Sequence[Sequence[str]]) -> tuple[list[FieldGroup], dict[int, str]]:
        """Many positions' targets grouped by the field that serves them (``soda.plan``)."""
        return plan_positions(self.datasets, ra, dec, radius, bands)

    @contextmanager
    def sweeping(self, targets: Sequence[Target], rows: int = 128) -> Iterator[list[int]]:
        """For many targets of one field about to be cut, in the calling thread: the order
        to cut them in (indices into ``targets``: where their centres fall on the first
        target's first image, pixel row then column; ``positions_order``), and within the
        block the engine reads for those cuts (``soda.engine.tiles.Sweep``): a row-tiled
        image's rows decoded up to ``rows`` at a time, down to the last row the targets
        need; a square-tiled image's tiles that the targets need in a row of tiles decoded
        in one call; plain files read through a memory map. The tiles one decodes are
        then still in the tile cache for the next cuts, whatever the order given."""
        order, sweep = self._sweep(targets, rows)
        with sweeping(sweep):
            yield order

    def _sweep(self, targets: Sequence[Target], rows: int) -> tuple[list[int], Sweep]:
        first = next((t.images[0] for t in targets if t.images), None)
        # circles have a centre and a radius; other shapes are cut last, in the order given
        circles = np.array([(getattr(t.shape, "ra", np.nan), getattr(t.shape, "dec", np.nan),
                             getattr(t.shape, "radius", np.nan)) if t.images else (np.nan, np.nan, np.nan)
                            for t in targets], dtype=float).reshape(-1, 3)
        found = self._on_image(first, circles[:, 0], circles[:, 1]) if first is not None else None
        if found is None:
            return list(range(len(targets))), Sweep(rows)
        x, y, scale, shape = found
        order = _pixel_order(x, y)
        reach = circles[:, 2] / scale + 2  # pixels from the centre, with a margin
        boxes = tuple(PixelBox(math.floor(x[k] - reach[k]), math.ceil(x[k] + reach[k]) + 1,
                               math.floor(y[k] - reach[k]), math.ceil(y[k] + reach[k]) + 1)
                      for k in order.tolist() if math.isfinite(x[k] + y[k] + reach[k]))
        sources = frozenset(str(image.source) for t in targets for image in t.images)  # the files read
        return order.tolist(), Sweep(rows, boxes, shape, sources)

    def positions_order(self, image: ImageRef, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Positions (degrees) ordered by where they fall on ``image``: pixel row, then
        column; those off its sky (or not finite) last. As given when it cannot be read."""
        found = self._on_image(image, ra, dec)
        return np.arange(len(ra)) if found is None else _pixel_order(found[0], found[1])

    def _on_image(self, image: ImageRef, ra: np.ndarray,
                  dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]] | None:
        """Where positions fall on the image's science HDU (0-based pixels x, y), its
        smallest pixel scale (degrees) and its (ny, nx); None when it cannot be read."""
        try:
            layout = self.files.layout(image.source, image.dataset_id)
            ny, nx = layout.hdu(image.hdus[0]).shape[-2:]
            wcs = layout.thread_wcs(image.hdus[0])
            x, y = wcs.world_to_pixel_values(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
            scale = float(np.min(proj_plane_pixel_scales(wcs)))
        except (ImageUnreadable, OSError, ValueError, KeyError):
            return None
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float), scale, (ny, nx)

    def cut_target(self, target: Target, limits: CutoutLimits) -> list[Cut]:
        """Every image's cut of the target (every configured HDU, across image edges where
        the survey has neighbours), within the caller's pixel limit; those that miss left out."""
        cuts = (_cut(image, target=target, limit=limits.max_pixels, planes=None, limit_name=limits.name,
                     datasets=self.datasets, files=self.files) for image in target.images)
        return [c for c in cuts if c is not None]

    @staticmethod
    def fits_file(cuts: Sequence[Cut], names: Sequence[str] = ()) -> bytes:
        """The cuts in one multi-extension FITS file (each cut's planes under its EXTVER)."""
        return fits_cutouts(cuts, names)

    def encode(self, parts: Sequence[tuple[str, list[Cut]]], request: SodaRequest) -> bytes:
        """Each combination's cuts under its name: FITS holds them all, a picture one."""
        if request.render is None:
            labelled = [(name, c) for name, cuts in parts for c in cuts]
            return fits_cutouts([c for _, c in labelled], [name for name, _ in labelled])
        [(_, cuts)] = parts
        return render(cuts, request.render, request.format, self.jpeg_quality)

    def make_one(self, target: Target, request: SodaRequest, limits: CutoutLimits) -> bytes | None:
        """One combination's file (a job result); None when it has no pixels."""
        return self.make([target], request, limits)

    def make(self, targets: Sequence[Target], request: SodaRequest, limits: CutoutLimits) -> bytes | None:
        """One file holding every combination's cuts; None when no combination has pixels."""
        started = time.perf_counter()
        parts = [(t.name, cuts) for t in targets if (cuts := self.cut(t, request, limits))]
        if not parts:
            return None
        body = self.encode(parts, request)
        self.observe(request.extension, time.perf_counter() - started)
        return body
