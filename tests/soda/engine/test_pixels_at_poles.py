"""soda.engine.pixels.pixel_box for regions at the celestial poles, against every pixel."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from soda.engine.pixels import contains, pixel_box
from soda.sky.regions import Circle, Polygon, Shape

NY, NX = 300, 400


def tan_image(ra: float, dec: float, scale: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.cdelt = [-scale, scale]
    wcs.wcs.crpix = [NX / 2, NY / 2]
    return wcs


def pixels_inside(wcs: WCS, region: Shape) -> tuple[int, int, int, int]:
    """x0, x1, y0, y1 of the pixels whose centres lie in the region."""
    y, x = np.mgrid[0:NY, 0:NX]
    ra, dec = wcs.pixel_to_world_values(x.ravel(), y.ravel())
    inside = contains(region, np.asarray(ra) % 360.0, np.asarray(dec)).reshape(NY, NX)
    ys, xs = np.nonzero(inside)
    return int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1


@pytest.mark.parametrize(("image", "region"), [
    ((182.49, 89.9, 0.002), Circle(214.16, 90.0, 0.36)),
    ((267.65, -89.95, 0.003), Circle(329.22, -90.0, 0.49)),
    ((0.01, -89.95, 0.001), Circle(291.36, -90.0, 0.16)),
    ((30.0, 89.8, 0.002), Polygon(((0.0, 89.7), (90.0, 89.7), (180.0, 89.7), (270.0, 89.7)))),
])
def test_box_holds_the_region_at_a_pole_to_a_pixel(image, region):
    wcs = tan_image(*image)
    box = pixel_box(wcs, (NY, NX), region)
    assert box is not None
    x0, x1, y0, y1 = pixels_inside(wcs, region)
    assert box.x0 <= x0 and box.x1 >= x1 and box.y0 <= y0 and box.y1 >= y1
    assert x0 - box.x0 <= 1 and box.x1 - x1 <= 1 and y0 - box.y0 <= 1 and box.y1 - y1 <= 1
