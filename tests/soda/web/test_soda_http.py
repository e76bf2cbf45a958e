"""SODA over HTTP on the embedded app and the demo survey: /sync and /async."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from conftest import DEMO_SIZE, assert_uws, assert_votable, eventually, uws_text
from soda.sky.sphere import separation
from soda.surveys.des import tile_centre
from soda_bad_params import BAD_PARAMS

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
SCALE = 0.263 / 3600


def fits_of(response) -> fits.HDUList:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fits"
    return fits.open(io.BytesIO(response.content))


def source_file(demo_root, band: str = "r"):  # type: ignore[no-untyped-def]
    return next(demo_root.glob(f"{TILE}_*_{band}.fits.fz"))


def test_sync_cutout_by_id_matches_the_source_pixels(embedded, demo_root):
    ra, dec = RA0 + 0.01, DEC0 - 0.02
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{ra} {dec} 0.005"})
    with fits_of(r) as hdul, fits.open(source_file(demo_root)) as src:
        assert [h.name for h in hdul[1:]] == ["SCI", "MSK", "WGT"]
        x0, x1, y0, y1 = _box(hdul[1].header["SRCBOX"])
        for name in ("SCI", "MSK", "WGT"):
            assert np.array_equal(hdul[name].data, src[name].section[y0:y1, x0:x1], equal_nan=True), name
        h = hdul["SCI"].header
        ny, nx = hdul["SCI"].data.shape
        assert abs(nx - 2 * 0.005 / SCALE) <= 3 and abs(ny - 2 * 0.005 / SCALE) <= 3
        cra, cdec = WCS(h).pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
        assert float(separation(ra, dec, cra, cdec)) <= 0.5 * SCALE
        assert h["DATASET"] == DID and h["REGION"].startswith("CIRCLE")
        assert WCS(hdul["MSK"].header).wcs.crpix.tolist() == WCS(h).wcs.crpix.tolist()


def _box(section: str) -> tuple[int, int, int, int]:
    xs, ys = section.strip("[]").split(",")
    x0, x1 = (int(v) for v in xs.split(":"))
    y0, y1 = (int(v) for v in ys.split(":"))
    return x0 - 1, x1, y0 - 1, y1


def test_sync_by_position_and_filter_picks_the_tile(embedded):
    r = embedded.get("/sync", params={"POS": f"CIRCLE {RA0} {DEC0} 0.003", "FILTER": "g"})
    with fits_of(r) as hdul:
        assert hdul["SCI"].header["DATASET"] == f"ivo://demo.cutout/des?{TILE}_g"


def test_sync_band_interval_in_metres_selects_bands(embedded):
    r = embedded.get("/sync", params={"POS": f"CIRCLE {RA0} {DEC0} 0.003", "BAND": "5.6e-7 6.5e-7"})
    with fits_of(r) as hdul:
        assert {h.header.get("DATASET") for h in hdul[1:]} == {f"ivo://demo.cutout/des?{TILE}_r"}


def test_sync_several_positions_make_one_multi_extension_file(embedded):
    r = embedded.post("/sync", data={"ID": DID, "CIRCLE": [f"{RA0} {DEC0} 0.002", f"{RA0 + 0.02} {DEC0} 0.003"]})
    with fits_of(r) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 2
        assert [(h.name, h.ver) for h in hdul[1:]] == [
            ("SCI", 1), ("MSK", 1), ("WGT", 1), ("SCI", 2), ("MSK", 2), ("WGT", 2)]


def test_sync_across_ra_zero(embedded):
    ra0, dec0 = tile_centre("DES0000+0209")
    for ra in (359.999, 0.001):
        r = embedded.get("/sync", params={"POS": f"CIRCLE {ra} {dec0} 0.002", "FILTER": "i"})
        with fits_of(r) as hdul:
            h = hdul["SCI"].header
            assert h["DATASET"] == "ivo://demo.cutout/des?DES0000+0209_i"
            ny, nx = hdul["SCI"].data.shape
            cra, cdec = WCS(h).pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
            assert float(separation(ra, dec0, cra, cdec)) <= 0.5 * SCALE


def test_sync_clipped_at_the_image_edge(embedded):
    edge_ra = RA0  # the demo tile is DEMO_SIZE pixels across; go past its top edge
    edge_dec = DEC0 + (DEMO_SIZE / 2) * SCALE
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{edge_ra} {edge_dec} 0.01"})
    with fits_of(r) as hdul:
        ny, nx = hdul["SCI"].data.shape
        assert ny < nx and _box(hdul["SCI"].header["SRCBOX"])[3] == DEMO_SIZE


@pytest.mark.parametrize("params", [
    {"ID": DID, "CIRCLE": "10 10 0.01"},                       # the image is elsewhere
    {"POS": "CIRCLE 180 60 0.01"},                             # outside the DES footprint
    {"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "FILTER": "g"},  # the ID is the r band
    {"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "POL": "Q"},   # images are unpolarised
])
def test_sync_no_overlap_is_204_with_an_empty_body(embedded, params):
    r = embedded.get("/sync", params=params)
    assert r.status_code == 204 and r.content == b""


def test_sync_whole_image_by_id_alone(embedded):
    r = embedded.get("/sync", params={"ID": DID})
    with fits_of(r) as hdul:
        assert hdul["SCI"].data.shape == (DEMO_SIZE, DEMO_SIZE)


def test_unknown_id_is_a_labelled_400_on_sync_and_async(embedded):
    unknown = {"ID": "ivo://demo.cutout/des?DES9999+9999_r", "CIRCLE": "1 1 0.1"}
    r = embedded.get("/sync", params=unknown)
    assert r.status_code == 400 and r.text.startswith("UsageError: ") and "DES9999+9999_r" in r.text
    job = embedded.post("/async", data=unknown)
    assert job.status_code == 400 and job.text.startswith("UsageError: ")


def test_sync_too_many_cutouts(embedded):
    circles = [f"{RA0} {DEC0} 0.001"] * 51
    r = embedded.post("/sync", data={"ID": DID, "CIRCLE": circles})
    assert r.status_code == 400 and r.text.startswith("MultiValuedParamNotSupported: ")


@pytest.mark.parametrize("case,pairs,label,fragment", BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_parameters_are_labelled_4xx(embedded, case, pairs, label, fragment):
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    r = embedded.post("/sync", data=form)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith(f"{label}: ") and fragment in r.text, r.text
    v = embedded.post("/sync", data=form, headers={"Accept": "application/x-votable+xml"})
    assert v.status_code == 400
    assert_votable(v.content)


def test_async_one_result_per_combination(embedded):
    r = embedded.post("/async", data={
        "POS": [f"CIRCLE {RA0} {DEC0} 0.002", "CIRCLE 180 60 0.01"], "FILTER": "g,r", "PHASE": "RUN"})
    assert r.status_code == 303
    url = r.headers["location"]
    eventually(lambda: embedded.get(url + "/phase").text == "COMPLETED", timeout=30)
    doc = assert_uws(embedded.get(url).content)
    results = doc.findall("{http://www.ivoa.net/xml/UWS/v1.0}results/{http://www.ivoa.net/xml/UWS/v1.0}result")
    ids = [e.get("id") for e in results]
    assert ids == [f"01_{TILE}_g.fits", f"01_{TILE}_r.fits", "02_g.txt", "02_r.txt"]
    first = embedded.get(url + f"/results/01_{TILE}_g.fits")
    with fits_of(first) as hdul:
        assert hdul["SCI"].header["DATASET"].endswith("_g")
    missing = embedded.get(url + "/results/02_g.txt")
    assert missing.headers["content-type"].startswith("text/plain")
    assert missing.text.startswith("UsageError: ")
    params = assert_uws(embedded.get(url + "/parameters").content)
    assert {p.get("id") for p in params} == {"POS", "FILTER"}


def test_async_bad_parameters_refused_at_creation(embedded):
    r = embedded.post("/async", data={"CIRCLE": "400 0 1"})
    assert r.status_code == 400 and r.text.startswith("UsageError: ")
    assert uws_text(assert_uws(embedded.get("/async").content), "uws:jobref") is None


def test_sync_raw_query_with_plus_and_percent_20_and_any_name_case(embedded):
    for query in (f"id={DID}&circle={RA0}+{DEC0}+0.003", f"Id={DID}&CiRcLe={RA0}%20{DEC0}%200.003",
                  f"ID={DID}&POS=CIRCLE%20{RA0}+{DEC0}%200.003&RESPONSEFORMAT=fits&FILTER="):
        with fits_of(embedded.get("/sync?" + query)) as hdul:
            assert hdul["SCI"].header["DATASET"] == DID


def test_sync_multipart_post(embedded):
    r = embedded.post("/sync", files={"ID": (None, DID), "CIRCLE": (None, f"{RA0} {DEC0} 0.003")})
    with fits_of(r) as hdul:
        assert hdul["SCI"].header["DATASET"] == DID


def test_sync_votable_error_when_asked_by_responseformat(embedded):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": "0 100 1", "RESPONSEFORMAT": "votable"})
    assert r.status_code == 400
    doc = assert_votable(r.content)
    info = doc.find(".//{http://www.ivoa.net/xml/VOTable/v1.3}INFO")
    assert info.get("value") == "ERROR" and info.text.startswith("UsageError: ")
