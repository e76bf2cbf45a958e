"""FITS cutouts with the longest realistic provenance: every value whole, no warning."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.engine.cutout import Cut, CutPlane
from soda.engine.pixels import PixelBox
from soda.output.fits import fits_cutouts
from soda.sky.regions import Circle, Polygon
from soda.surveys.base import ImageRef

pytestmark = pytest.mark.filterwarnings("error")

LONG_ID = "ivo://cutouts.example.university.edu/surveys/des/dr2/coadd?DES0139-4457_r4907p01_r_science"
LONG_FILE = "DES0139-4457_r4907p01_r_coadd_science_with_a_long_processing_tag.fits.fz"


def source_header() -> fits.Header:
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"] = 24.9655, -44.9583
    header["CRPIX1"], header["CRPIX2"] = 5000.5, 5000.5
    header["CD1_1"], header["CD2_2"] = -7.305555555556e-05, 7.305555555556e-05
    header["FILTER"] = ("r DECam SDSS c0002 6415.0 1480.0", "filter")
    return header


def polygon(vertices: int) -> Polygon:
    # A ring of vertices, as a client drawing a region by hand might send.
    return Polygon(tuple((24.9655 + 0.012345678 * math.cos(2 * math.pi * k / vertices),
                          -44.9583 + 0.012345678 * math.sin(2 * math.pi * k / vertices))
                         for k in range(vertices)))


def cut(region: Polygon | Circle | None, dataset_id: str = LONG_ID, file: str = LONG_FILE) -> Cut:
    image = ImageRef(dataset_id, "des", "DES0139-4457", "r", Path("/data/des") / file, ("SCI", "WGT"))
    box = PixelBox(9001, 9999, 8003, 9998)
    planes = tuple(CutPlane(name, np.zeros(box.shape, np.float32), source_header()) for name in ("SCI", "WGT"))
    return Cut(image, region, box, planes)


def read(body: bytes) -> list[fits.Header]:
    with fits.open(io.BytesIO(body)) as hdul:
        hdul.verify("exception")
        return [hdu.header.copy() for hdu in hdul]


def test_longest_provenance_is_written_whole_without_a_warning() -> None:
    region = polygon(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = fits_cutouts([cut(region), cut(Circle(24.9655, -44.9583, 0.0123456))])
    primary, *extensions = read(body)
    assert primary["NCUTOUTS"] == 2 and len(extensions) == 4
    first = extensions[0]
    assert len(region.dali()) > 1500
    assert first["REGION"] == region.dali()
    assert first.comments["REGION"] == "requested region (ICRS deg)"  # continued with the value
    assert first["DATASET"] == LONG_ID and first["SRCFILE"] == LONG_FILE
    assert first["SRCBOX"] == "[9002:9999,8004:9998]"
    assert (first["LTV1"], first["LTV2"]) == (-9001.0, -8003.0)
    assert first.comments["LTV1"] == "offset of this cut in the source"
    assert (first["CRPIX1"], first["CRPIX2"]) == (5000.5 - 9001, 5000.5 - 8003)
    assert extensions[2]["REGION"] == "CIRCLE 24.9655 -44.9583 0.0123456"


@pytest.mark.parametrize("extra", range(0, 60, 4))
def test_ids_and_file_names_of_every_length(extra: int) -> None:
    dataset_id = "ivo://demo.cutout/des?DES0139-4457_r" + "x" * extra
    file = "DES0139-4457_r4907p01_r" + "y" * extra + ".fits.fz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = fits_cutouts([cut(None, dataset_id, file)])
    header = read(body)[1]
    assert (header["DATASET"], header["SRCFILE"], header["REGION"]) == (dataset_id, file, "whole image")
    assert header.comments["SRCHDU"] == "source HDU"


def real_image(name: str, hdu: str) -> ImageRef:
    import astropy.io.fits.hdu.compressed.tests as compressed_tests

    path = Path(compressed_tests.__file__).parent / "data" / name
    return ImageRef(LONG_ID, "m13", "m13", "dss", path, (hdu,))


@pytest.mark.parametrize("name, hdu", [("m13.fits", "0"), ("m13_rice.fits", "1")])
def test_a_real_cutout_response_raises_no_warning_and_keeps_its_pixels(name: str, hdu: str) -> None:
    from soda.engine.cutout import cut as engine_cut
    from soda.engine.files import ImageFiles

    image = real_image(name, hdu)
    with fits.open(image.path) as hdul:
        source = hdul[int(hdu)]
        ra, dec = (float(v) for v in WCS(source.header).pixel_to_world_values(120, 90))
        pixels = np.array(source.data)
    files = ImageFiles(4, 2**20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):  # the second from the kept layout and tiles
            ring = Polygon(tuple((ra + 0.02 * math.cos(2 * math.pi * k / 40), dec + 0.015 * math.sin(2 * math.pi * k / 40))
                                 for k in range(40)))
            made = engine_cut(image, ring, files=files)
            assert made is not None
            body = fits_cutouts([made, engine_cut(image, Circle(ra, dec, 0.01), files=files)], ["one", "two"])
            with fits.open(io.BytesIO(body)) as hdul:
                hdul.verify("exception")
                b = made.box
                assert np.array_equal(hdul[1].data, pixels[b.y0:b.y1, b.x0:b.x1])
                assert hdul[1].header["CUTNAME"] == "one" and hdul[2].header["EXTVER"] == 2
                moved = WCS(hdul[1].header).pixel_to_world_values(3, 4)
                assert np.allclose(moved, WCS(source.header).pixel_to_world_values(b.x0 + 3, b.y0 + 4), atol=1e-10)


def test_hierarch_and_commentary_source_cards_are_copied_without_a_warning() -> None:
    header = source_header()
    header["HIERARCH MP_SUSPECT"] = 7
    header["COMMENT"] = "a comment card of the source"
    header["HISTORY"] = "h" * 72
    made = cut(None)
    made = Cut(made.image, None, made.box, tuple(CutPlane(p.name, p.data, header) for p in made.planes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extension = read(fits_cutouts([made]))[1]
    assert extension["MP_SUSPECT"] == 7
    assert list(extension["COMMENT"]) == ["a comment card of the source"]
    assert extension["HISTORY"][0] == "h" * 72
