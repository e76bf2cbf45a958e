"""The cutout engine on real images: astropy's m13.fits and its RICE-compressed twin."""

from __future__ import annotations

import io
import os
from pathlib import Path

import astropy.io.fits.hdu.compressed.tests as compressed_tests
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.engine.cutout import cut
from soda.output.fits import fits_cutouts
from soda.engine.pixels import PixelBox, pixel_box
from soda.sky.sphere import separation
from soda.sky.regions import Circle, Polygon, Range
from soda.surveys.base import ImageRef

DATA = Path(os.path.dirname(compressed_tests.__file__)) / "data"
IMAGES = {"plain": ("m13.fits", "0"), "rice": ("m13_rice.fits", "1")}


def image(kind: str) -> ImageRef:
    name, hdu = IMAGES[kind]
    return ImageRef(f"ivo://test/m13?{kind}", "m13", "m13", "dss", DATA / name, (hdu,))


def source(kind: str) -> tuple[np.ndarray, WCS]:
    name, hdu = IMAGES[kind]
    with fits.open(DATA / name) as hdul:
        h = hdul[int(hdu)]
        return np.array(h.data), WCS(h.header)


def world(kind: str, x: float, y: float) -> tuple[float, float]:
    _, w = source(kind)
    ra, dec = w.pixel_to_world_values(x, y)
    return float(ra), float(dec)


REGIONS = {
    "circle-inside": lambda ra, dec: Circle(ra, dec, 0.01),
    "circle-tiny": lambda ra, dec: Circle(ra, dec, 1e-5),
    "range": lambda ra, dec: Range(ra - 0.012, ra + 0.01, dec - 0.005, dec + 0.008),
    "polygon": lambda ra, dec: Polygon(((ra, dec), (ra + 0.02, dec + 0.001), (ra + 0.005, dec + 0.015))),
    "range-open": lambda ra, dec: Range(float("-inf"), ra, dec, float("inf")),
}


@pytest.mark.parametrize("kind", IMAGES)
@pytest.mark.parametrize("region_name", REGIONS)
def test_pixels_equal_the_same_slice_read_by_astropy(kind, region_name):
    data, _ = source(kind)
    ra, dec = world(kind, 120.0, 140.0)
    result = cut(image(kind), REGIONS[region_name](ra, dec))
    assert result is not None
    b = result.box
    assert np.array_equal(result.planes[0].data, data[b.y0:b.y1, b.x0:b.x1])
    got = result.planes[0].data.dtype
    assert (got.kind, got.itemsize) == (data.dtype.kind, data.dtype.itemsize)


@pytest.mark.parametrize("kind", IMAGES)
def test_both_files_give_identical_cutouts(kind):
    ra, dec = world("plain", 200.0, 60.0)
    a = cut(image("plain"), Circle(ra, dec, 0.02))
    b = cut(image("rice"), Circle(ra, dec, 0.02))
    assert a.box == b.box and np.array_equal(a.planes[0].data, b.planes[0].data)


@pytest.mark.parametrize("x,y", [(150.0, 150.0), (100.3, 210.7), (37.5, 80.2)])
def test_cutout_wcs_centre_is_the_requested_position(x, y):
    ra, dec = world("rice", x, y)
    result = cut(image("rice"), Circle(ra, dec, 0.008))
    body = fits_cutouts([result])
    with fits.open(io.BytesIO(body)) as hdul:
        h = hdul[1]
        ny, nx = h.data.shape
        cra, cdec = WCS(h.header).pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
        scale = abs(h.header["CDELT1"])
        assert float(separation(ra, dec, cra, cdec)) / scale <= 0.5 + 1e-6
        # Every pixel keeps its sky position: compare with the source WCS.
        _, w = source("rice")
        for px, py in ((0, 0), (nx - 1, ny - 1), (3, 7)):
            sra, sdec = w.pixel_to_world_values(px + result.box.x0, py + result.box.y0)
            ora, odec = WCS(h.header).pixel_to_world_values(px, py)
            assert float(separation(sra, sdec, ora, odec)) < 1e-9
        assert h.header["DATASET"] == "ivo://test/m13?rice"
        assert h.header["SRCFILE"] == "m13_rice.fits"
        assert h.header["REGION"].startswith("CIRCLE ")
        assert h.header["LTV1"] == -result.box.x0
        assert hdul[0].header["SVCVERS"]


def test_circle_box_is_the_circle_bounding_box():
    ra, dec = world("plain", 150.0, 150.0)
    _, w = source("plain")
    box = pixel_box(w, (300, 300), Circle(ra, dec, 0.01))
    radius_px = 0.01 / abs(w.wcs.cdelt[0])
    assert abs(box.shape[1] - (2 * radius_px + 1)) <= 2
    assert abs(box.shape[0] - (2 * radius_px + 1)) <= 2


def test_regions_partly_outside_are_clipped():
    ra, dec = world("plain", 2.0, 297.0)
    result = cut(image("plain"), Circle(ra, dec, 0.02))
    assert result.box.x0 == 0 and result.box.y1 == 300
    assert 0 < result.box.pixels < (2 * 72 + 1) ** 2


def test_no_overlap_gives_none():
    assert cut(image("rice"), Circle(10.0, -40.0, 0.1)) is None
    assert cut(image("plain"), Range(0, 10, 0, 10)) is None


def test_region_covering_the_image_gives_the_whole_image():
    ra, dec = world("plain", 150.0, 150.0)
    result = cut(image("plain"), Circle(ra, dec, 1.0))
    assert result.box == PixelBox(0, 300, 0, 300)
    full = cut(image("plain"), Range(float("-inf"), float("inf"), float("-inf"), float("inf")))
    assert full.box == PixelBox(0, 300, 0, 300)
