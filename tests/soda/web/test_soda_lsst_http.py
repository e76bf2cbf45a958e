"""The shipped defaults' second survey, lsst, over HTTP: /sync by its IDs, and positions
served by the first configured survey with an image there."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits

from conftest import lsst_demo_root
from soda.plan import plan
from soda.request.params import parse_cutout
from soda.surveys.des import tile_centre
from soda.surveys.lsst_demo import DEFAULT_RUN, DEFAULT_TRACT, butler_path, central_patches
from soda.surveys.lsst_skymap import DEMO, skymap

SKY = skymap(DEMO)
PATCH = central_patches(SKY, DEFAULT_TRACT)[0]
FIELD = f"{DEFAULT_TRACT}_{PATCH}"
_INNER, _OUTER = SKY.patch_boxes(DEFAULT_TRACT, PATCH)
# The middle of the patch's inner box (tract pixels), on the sky.
RA, DEC = (float(v) for v in SKY.tract_wcs(DEFAULT_TRACT).all_pix2world(
    [[_INNER.x0 + _INNER.nx / 2, _INNER.y0 + _INNER.ny / 2]], 0)[0])
RADIUS = 5 / 3600  # 25 pixels of 0.2"


def fits_of(response) -> fits.HDUList:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fits"
    return fits.open(io.BytesIO(response.content))


def test_sync_by_lsst_id_cuts_the_patch_planes(embedded, demo_root):
    r = embedded.get("/sync", params={"ID": f"ivo://demo.cutout/lsst?{FIELD}_r", "CIRCLE": f"{RA} {DEC} {RADIUS}"})
    source = lsst_demo_root(demo_root) / butler_path(DEFAULT_RUN, DEFAULT_TRACT, PATCH, "r")
    with fits_of(r) as hdul, fits.open(source) as src:
        assert [h.name for h in hdul[1:]] == ["IMAGE", "MASK", "VARIANCE"]
        assert hdul["IMAGE"].header["DATASET"] == f"ivo://demo.cutout/lsst?{FIELD}_r"
        x0, x1, y0, y1 = (int(v) for v in hdul["IMAGE"].header["SRCBOX"].strip("[]").replace(":", ",").split(","))
        for name in ("IMAGE", "MASK", "VARIANCE"):
            assert np.array_equal(hdul[name].data, src[name].data[y0 - 1:y1, x0 - 1:x1]), name


def test_a_position_in_the_lsst_demo_is_served_by_lsst(embedded):
    r = embedded.get("/sync", params={"POS": f"CIRCLE {RA} {DEC} {RADIUS}", "FILTER": "g"})
    with fits_of(r) as hdul:
        assert hdul["IMAGE"].header["DATASET"] == f"ivo://demo.cutout/lsst?{FIELD}_g"
    # Without a band: each band the patch has there.
    r = embedded.get("/sync", params={"POS": f"CIRCLE {RA} {DEC} {RADIUS}"})
    with fits_of(r) as hdul:
        assert [h.header["DATASET"] for h in hdul if h.name == "IMAGE"] == [
            f"ivo://demo.cutout/lsst?{FIELD}_{band}" for band in ("g", "r", "i")]


def test_a_position_in_the_des_demo_is_still_served_by_des(embedded):
    ra, dec = tile_centre("DES0139-4457")
    r = embedded.get("/sync", params={"POS": f"CIRCLE {ra} {dec} 0.003", "FILTER": "r"})
    with fits_of(r) as hdul:
        assert hdul["SCI"].header["DATASET"] == "ivo://demo.cutout/des?DES0139-4457_r"


def test_a_position_outside_both_is_reported_by_the_first_survey(embedded):
    r = embedded.get("/sync", params={"POS": "CIRCLE 180 60 0.01"})
    assert r.status_code == 204, r.text   # no pixels
    datasets = embedded.app_state.runtime.datasets
    assert list(datasets.surveys) == ["des", "lsst"]
    [target] = plan(parse_cutout([("POS", "CIRCLE 180 60 0.01")]), datasets)
    assert target.problem == "no des image holds CIRCLE 180 60 0.01"
