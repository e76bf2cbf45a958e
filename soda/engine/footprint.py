"""Where an image lies on the sky, from its own WCS (DataLink VALUES, SODA §4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soda.engine.cutout import celestial_wcs, open_image, science_header
from soda.sky.sphere import TangentPlane, separation, signed_area, unit_vectors
from soda.surveys.base import ImageRef


@dataclass(frozen=True)
class Footprint:
    """Where an image lies on the sky (for DataLink VALUES, SODA §4.2)."""

    corners: tuple[tuple[float, float], ...]  # counter-clockwise with RA increasing to the right
    centre: tuple[float, float]
    radius: float  # degrees: the circle about ``centre`` that covers the image
    pixels: int    # of the science plane: what a whole-image preview reads


def footprint(image: ImageRef) -> Footprint:
    with open_image(image) as hdul:
        header, (ny, nx) = science_header(hdul, image)
        wcs = celestial_wcs(header)
    xs = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ras, decs = (np.asarray(v, dtype=float) for v in wcs.pixel_to_world_values(xs, ys))
    cra, cdec = (float(v) for v in wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    corners = [(float(r) % 360.0, float(d)) for r, d in zip(ras, decs, strict=True)]
    plane = TangentPlane.about(unit_vectors(cra, cdec))  # x east, y north: east to the right
    if signed_area(*plane.project(unit_vectors(ras, decs))) < 0:
        corners.reverse()
    radius = float(np.max(separation(cra, cdec, ras, decs)))
    return Footprint(tuple(corners), (cra % 360.0, cdec), radius, int(nx) * int(ny))
