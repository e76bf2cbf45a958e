"""Coverage maps of the surveys: /coverage/<survey>.fits (MOC 2.0 FITS) and .json (MOC JSON).

A survey's MOC is made from the footprints of its images in the catalogue, one per field
(the bands of a field share one pixel grid), at ``coverage_max_order``, and kept until the
catalogue changes: it is made again when the survey's ``ImageCatalogue.version`` differs
from the one it was made at (an ingest that added, removed or changed a file).
"""

from __future__ import annotations

import threading

from mocpy import MOC
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dali.errors import not_found
from soda.ops.runtime import Runtime
from soda.sky.coverage import footprint_moc, moc_fits, moc_json
from soda.surveys.catalogue import ImageCatalogue

FORMATS = {"fits": "application/fits", "json": "application/json"}


class CoverageMaps:
    def __init__(self, max_order: int) -> None:
        self.max_order = max_order
        self._maps: dict[str, tuple[str, MOC]] = {}
        self._lock = threading.Lock()

    def moc(self, catalogue: ImageCatalogue, survey: str) -> MOC:
        """The survey's MOC, made again when the catalogue's version of it has changed."""
        key = catalogue.version(survey)
        with self._lock:
            cached = self._maps.get(survey)
        if cached is not None and cached[0] == key:
            return cached[1]
        total = sum(catalogue.bands(survey).values())
        fields: dict[str, tuple[tuple[float, float], ...]] = {}
        if total:
            # The whole sky: a circle of 180 degrees about the pole.
            for image in catalogue.search([survey], 0.0, 90.0, 180.0, total):
                fields.setdefault(image.field, image.footprint.vertices)
        moc = footprint_moc(fields.values(), self.max_order)
        with self._lock:
            self._maps[survey] = (key, moc)
        return moc


def coverage_endpoint(runtime: Runtime, maps: CoverageMaps):  # type: ignore[no-untyped-def]
    async def coverage(request: Request) -> Response:
        file = request.path_params["file"]
        survey, _, suffix = file.rpartition(".")
        if suffix not in FORMATS or survey not in runtime.datasets.surveys:
            known = ", ".join(f"{s}.fits, {s}.json" for s in runtime.datasets.surveys)
            raise not_found(f"no coverage map {file!r}; this service has {known or 'none'}")
        moc = await run_in_threadpool(maps.moc, runtime.catalogue, survey)
        body = moc_fits(moc) if suffix == "fits" else moc_json(moc)
        return Response(body, media_type=FORMATS[suffix],
                        headers={"Content-Disposition": f'inline; filename="{survey}-coverage.{suffix}"'})
    return coverage
