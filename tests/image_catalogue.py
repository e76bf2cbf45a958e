"""A real image catalogue for tests, read from the demo FITS files themselves.

It answers the ``ImageCatalogue`` protocol (soda/surveys/catalogue.py) from the files'
headers and WCS, with exact footprint geometry (``soda.sky.overlap``), until the database
index (soda/index) is what the runtime holds; the SIA and coverage tests then use that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from soda.sky.overlap import meets
from soda.sky.regions import Circle
from soda.sky.sphere import separation
from soda.surveys.catalogue import CatalogueImage, Footprint

_DES_FILE = re.compile(r"(DES\d{4}[+-]\d{4})_r(\d+)p(\d+)_([a-zA-Z]+)\.fits\.fz$")


def _footprint(wcs: WCS, ny: int, nx: int) -> Footprint:
    """Corners and edge midpoints of the pixel grid, in order round the edge."""
    x0, y0, x1, y1, xm, ym = -0.5, -0.5, nx - 0.5, ny - 0.5, (nx - 1) / 2, (ny - 1) / 2
    xs = [x0, xm, x1, x1, x1, xm, x0, x0]
    ys = [y0, y0, y0, ym, y1, y1, y1, ym]
    ra, dec = wcs.all_pix2world(np.array(xs), np.array(ys), 0)
    cra, cdec = (float(v) for v in wcs.all_pix2world(xm, ym, 0))
    vertices = tuple((float(r) % 360.0, float(d)) for r, d in zip(ra, dec, strict=True))
    radius = max(float(separation(cra, cdec, r, d)) for r, d in vertices)
    return Footprint(vertices, (cra % 360.0, cdec), radius)


class FitsCatalogue:
    """The DES demo images under ``root`` as survey ``survey``."""

    def __init__(self, root: Path, survey: str = "des") -> None:
        self.images: list[CatalogueImage] = []
        for path in sorted(root.glob("*.fits.fz")):
            match = _DES_FILE.match(path.name)
            if not match:
                continue
            tile, req, att, band = match.groups()
            with fits.open(path) as hdul:
                header = hdul["SCI"].header
                ny, nx = header["NAXIS2"], header["NAXIS1"]
                wcs = WCS(header)
                hdus = tuple(h.name for h in hdul[1:])
            scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600
            self.images.append(CatalogueImage(
                survey=survey, name=f"{tile}_{band}", field=tile, band=band, path=path, hdus=hdus,
                shape=(ny, nx), pixel_scale=scale, footprint=_footprint(wcs, ny, nx),
                extra={"reqnum": req, "attnum": att}))

    def _of(self, survey: str) -> list[CatalogueImage]:
        return [i for i in self.images if i.survey == survey]

    def get(self, survey: str, name: str) -> CatalogueImage | None:
        return next((i for i in self._of(survey) if i.name == name), None)

    def at(self, survey: str, ra: float, dec: float) -> list[CatalogueImage]:
        return self.overlapping(survey, ra, dec, 1e-9)

    def overlapping(self, survey: str, ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        hits = [i for i in self._of(survey) if meets(i.footprint.vertices, Circle(ra, dec, radius))]
        return sorted(hits, key=lambda i: float(separation(ra, dec, *i.footprint.centre)))

    def in_field(self, survey: str, field: str) -> list[CatalogueImage]:
        return [i for i in self._of(survey) if i.field == field]

    def bands(self, survey: str) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        for image in self._of(survey):
            counts[image.band] = counts.get(image.band, 0) + 1
        return counts

    def first(self, survey: str) -> CatalogueImage | None:
        return min(self._of(survey), key=lambda i: i.name, default=None)

    def search(self, surveys: Sequence[str], ra: float, dec: float, radius: float,
               limit: int) -> list[CatalogueImage]:
        hits = [i for s in surveys for i in self.overlapping(s, ra, dec, radius)]
        return hits[:limit]
