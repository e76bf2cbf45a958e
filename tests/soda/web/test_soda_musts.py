"""The SODA and DALI MUSTs of the cutout pipeline, over HTTP on the embedded app:
one result per combination of values (SODA §6), the bands that exist at a position,
the media type the client named (DALI §3.4.3), and RANGE as a parameter of its own."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from lxml import etree

from conftest import DEMO_SIZE, app_client, assert_uws, assert_votable, eventually
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
CIRCLE_A = f"{RA0} {DEC0} 0.003"
CIRCLE_B = f"{RA0 + 0.01} {DEC0 - 0.01} 0.003"
R_BAND = "6e-7 6.5e-7"        # inside the r bandpass only
R_BAND_TOO = "5.6e-7 7e-7"    # r again, another interval
G_BAND = "4.5e-7 5e-7"        # inside the g bandpass only
NO_BAND = "2e-6 3e-6"         # overlaps no DES band
ABSENT_TILE = "DES0001-0458"  # a real DES tile the demo does not hold
UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
V = "{http://www.ivoa.net/xml/VOTable/v1.3}"


def run_job(client, data: dict) -> tuple[str, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    """Create and run a job; its URL and its (result id, mime-type) list once COMPLETED."""
    r = client.post("/async", data={**data, "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    eventually(lambda: client.get(url + "/phase").text in ("COMPLETED", "ERROR"), timeout=30)
    doc = assert_uws(client.get(url).content)
    assert doc.find(f"{UWS}phase").text == "COMPLETED", etree.tostring(doc).decode()
    return url, [(e.get("id"), e.get("mime-type")) for e in doc.iter(f"{UWS}result")]


def fits_of(response, media_type: str = "application/fits") -> fits.HDUList:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return fits.open(io.BytesIO(response.content))


def usage_text(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("UsageError: ")
    return response.text


# --- SODA §6: one result per combination ----------------------------------------------------

def test_async_two_circles_and_two_bands_are_four_results(embedded):
    url, results = run_job(embedded, {"ID": DID, "CIRCLE": [CIRCLE_A, CIRCLE_B], "BAND": [R_BAND, R_BAND_TOO]})
    names = [f"01-01_{TILE}_r_b1", f"01-01_{TILE}_r_b2", f"01-02_{TILE}_r_b1", f"01-02_{TILE}_r_b2"]
    assert results == [(f"{n}.fits", "application/fits") for n in names]
    for name in names:
        with fits_of(embedded.get(f"{url}/results/{name}.fits")) as hdul:
            assert hdul[0].header["NCUTOUTS"] == 1
            assert hdul["SCI"].header["CUTNAME"] == name
            assert hdul["SCI"].header["DATASET"] == DID
            assert hdul["SCI"].header["REGION"].startswith(f"CIRCLE {RA0 if '01-01' in name else RA0 + 0.01:g}")


def test_async_a_band_that_overlaps_nothing_is_its_own_usage_error_result(embedded):
    url, results = run_job(embedded, {"ID": DID, "CIRCLE": [CIRCLE_A, CIRCLE_B], "BAND": [R_BAND, NO_BAND]})
    assert results == [(f"01-01_{TILE}_r_b1.fits", "application/fits"), (f"01-01_{TILE}_r_b2.txt", "text/plain"),
                       (f"01-02_{TILE}_r_b1.fits", "application/fits"), (f"01-02_{TILE}_r_b2.txt", "text/plain")]
    for position in ("01", "02"):
        text = usage_text(embedded.get(f"{url}/results/01-{position}_{TILE}_r_b2.txt"))
        assert text == f"UsageError: dataset {DID} (5.42e-07-7.1e-07 m) does not overlap BAND 2e-06 3e-06\n"
    # By position, the empty BAND keeps its place too, and says there is no such band.
    url, results = run_job(embedded, {"POS": f"CIRCLE {CIRCLE_A}", "BAND": [R_BAND, NO_BAND]})
    assert results == [(f"01_{TILE}_r.fits", "application/fits"), ("01.txt", "text/plain")]
    assert usage_text(embedded.get(f"{url}/results/01.txt")) == \
        "UsageError: BAND 2e-06 3e-06 overlaps no band of survey des (g, r, i, z, Y)\n"


def test_async_filter_names_and_time_values_multiply(embedded):
    url, results = run_job(embedded, {"POS": f"CIRCLE {CIRCLE_A}", "FILTER": "g,z",
                                      "TIME": ["55000 56000", "57000 +Inf"]})
    assert [rid for rid, _ in results] == [f"01_{TILE}_g_t1.fits", f"01_{TILE}_g_t2.fits",
                                           "01_z_t1.txt", "01_z_t2.txt"]
    with fits_of(embedded.get(f"{url}/results/01_{TILE}_g_t1.fits")) as one, \
            fits_of(embedded.get(f"{url}/results/01_{TILE}_g_t2.fits")) as two:
        assert np.array_equal(one["SCI"].data, two["SCI"].data)  # coadds: no time axis to cut
    assert usage_text(embedded.get(f"{url}/results/01_z_t1.txt")).startswith(
        f"UsageError: no des z-band image holds CIRCLE {RA0:g}")


def test_sync_two_bands_are_two_cutouts_of_one_file(embedded):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE_A, "BAND": [R_BAND, R_BAND_TOO]})
    with fits_of(r) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 2
        assert [(h.name, h.ver, h.header["CUTNAME"]) for h in hdul[1:]] == [
            (plane, number, f"{TILE}_r_b{number}") for number in (1, 2) for plane in ("SCI", "MSK", "WGT")]
        assert np.array_equal(hdul["SCI", 1].data, hdul["SCI", 2].data)
    by_position = embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}", "BAND": [G_BAND, R_BAND]})
    with fits_of(by_position) as hdul:
        assert [hdul["SCI", n].header["DATASET"] for n in (1, 2)] == [
            f"ivo://demo.cutout/des?{TILE}_g", f"ivo://demo.cutout/des?{TILE}_r"]
        assert [hdul["SCI", n].header["CUTNAME"] for n in (1, 2)] == [f"01_{TILE}_g", f"01_{TILE}_r"]


def test_sync_leaves_out_a_combination_without_pixels(embedded):
    r = embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}", "BAND": [NO_BAND, R_BAND]})
    with fits_of(r) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 1
        assert hdul["SCI"].header["CUTNAME"] == f"01_{TILE}_r"
    nothing = embedded.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE_A, "BAND": NO_BAND})
    assert nothing.status_code == 204 and nothing.content == b""


@pytest.mark.parametrize("extra", [{"BAND": [G_BAND, R_BAND]}, {"FILTER": "g,r"}])
def test_sync_two_bands_as_one_picture_is_multivalued(embedded, extra):
    r = embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}", "RESPONSEFORMAT": "png", **extra})
    assert r.status_code == 400
    assert r.text.startswith("MultiValuedParamNotSupported: a image/png holds one cutout and this "
                             f"request asks for 2 (01_{TILE}_g, 01_{TILE}_r)"), r.text


def test_a_band_holding_two_bands_is_refused_as_a_picture(embedded):
    wide = "5.45e-7 5.45e-7"  # in both the g and the r bandpass
    r = embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}", "BAND": wide, "RESPONSEFORMAT": "png"})
    assert r.status_code == 400
    assert r.text.startswith(f"UsageError: 01_{TILE}_gr: a image/png shows one band, and this combination "
                             "holds g, r"), r.text
    job = embedded.post("/async", data={"POS": f"CIRCLE {CIRCLE_A}", "BAND": wide, "RESPONSEFORMAT": "png"})
    assert job.status_code == 400 and "shows one band" in job.text
    with fits_of(embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}", "BAND": wide})) as hdul:
        assert [hdul["SCI", n].header["CUTNAME"] for n in (1, 2)] == [f"01_{TILE}_gr"] * 2


# --- positions use the bands that exist there ------------------------------------------------

def test_position_without_a_band_uses_the_bands_with_an_image_there(embedded):
    with fits_of(embedded.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}"})) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 3  # g, r, i: DES also has z and Y, the demo does not
        assert [hdul["SCI", n].header["CUTNAME"] for n in (1, 2, 3)] == [f"01_{TILE}_{b}" for b in "gri"]
    _, results = run_job(embedded, {"POS": f"CIRCLE {CIRCLE_A}"})
    assert results == [(f"01_{TILE}_{b}.fits", "application/fits") for b in "gri"]


def test_position_with_no_band_present_is_204_and_one_usage_error_result(embedded):
    ra, dec = tile_centre(ABSENT_TILE)
    position = f"CIRCLE {ra} {dec} 0.003"
    r = embedded.get("/sync", params={"POS": position})
    assert r.status_code == 204 and r.content == b""
    url, results = run_job(embedded, {"POS": position})
    assert results == [("01.txt", "text/plain")]
    assert usage_text(embedded.get(f"{url}/results/01.txt")) == \
        f"UsageError: no des image holds CIRCLE {ra:g} {dec:g} 0.003\n"


@pytest.mark.parametrize(("limit", "status"), [("3", 200), ("2", 400)])
def test_anonymous_limit_counts_only_cutouts_really_made(tmp_path, demo_root, limit, status):
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_ANONYMOUS_MAX_SYNC_CUTOUTS=limit, CUTOUT_ANONYMOUS_MAX_JOB_CUTOUTS=limit) as client:
        r = client.get("/sync", params={"POS": f"CIRCLE {CIRCLE_A}"})  # g, r, i: three, not DES's five
        assert r.status_code == status, r.text
        if status == 400:
            assert r.text.startswith("MultiValuedParamNotSupported: this request asks for 3 cutouts")
        # FILTER z has no image here: its combination makes no cutout, so it is not counted.
        job = client.post("/async", data={"POS": f"CIRCLE {CIRCLE_A}", "FILTER": "g,r,z"})
        assert job.status_code == 303, job.text
        more = client.post("/async", data={"POS": f"CIRCLE {CIRCLE_A}", "FILTER": "g,r,i,z"})
        if limit == "3":
            assert more.status_code == 303, more.text
        else:
            assert more.status_code == 400
            assert more.text.startswith("MultiValuedParamNotSupported: this request asks for 3 cutouts")


# --- DALI §3.4.3: the media type that was asked for --------------------------------------------

@pytest.mark.parametrize(("asked", "answered"), [
    ("image/fits", "image/fits"), ("application/fits", "application/fits"), ("fits", "application/fits"),
    ("Image/FITS", "image/fits"), ("image/fits; x=y", "image/fits")])
def test_sync_answers_with_the_fits_media_type_named(embedded, asked, answered):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE_A, "RESPONSEFORMAT": asked})
    with fits_of(r, answered) as hdul:
        assert hdul["SCI"].header["DATASET"] == DID
    assert r.headers["content-disposition"] == f'inline; filename="{TILE}_r.fits"'


@pytest.mark.parametrize(("asked", "answered", "magic"), [
    ("image/jpg", "image/jpg", b"\xff\xd8\xff"), ("jpg", "image/jpeg", b"\xff\xd8\xff"),
    ("jpeg", "image/jpeg", b"\xff\xd8\xff"), ("png", "image/png", b"\x89PNG")])
def test_sync_pictures_answer_with_the_media_type_named(embedded, asked, answered, magic):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": CIRCLE_A, "RESPONSEFORMAT": asked})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == answered and r.content.startswith(magic)


def test_job_results_carry_the_media_type_named(embedded):
    url, results = run_job(embedded, {"ID": DID, "CIRCLE": [CIRCLE_A, CIRCLE_B], "RESPONSEFORMAT": "image/fits"})
    assert results == [(f"01-01_{TILE}_r.fits", "image/fits"), (f"01-02_{TILE}_r.fits", "image/fits")]
    with fits_of(embedded.get(f"{url}/results/01-01_{TILE}_r.fits"), "image/fits") as hdul:
        assert hdul["SCI"].header["DATASET"] == DID


# --- RANGE as a parameter of its own (Aladin Lite) -----------------------------------------------

def test_range_parameter_cuts_like_pos_range(embedded):
    box = f"{RA0 - 0.004} {RA0 + 0.004} {DEC0 - 0.003} {DEC0 + 0.003}"
    with fits_of(embedded.get("/sync", params={"ID": DID, "RANGE": box})) as alone, \
            fits_of(embedded.get("/sync", params={"ID": DID, "POS": f"RANGE {box}"})) as pos:
        assert alone["SCI"].header["SRCBOX"] == pos["SCI"].header["SRCBOX"]
        assert alone["SCI"].header["REGION"] == pos["SCI"].header["REGION"]
        assert alone["SCI"].header["REGION"].startswith("RANGE ")
        assert np.array_equal(alone["SCI"].data, pos["SCI"].data)
    by_position = embedded.get("/sync", params={"RANGE": box, "FILTER": "i"})
    with fits_of(by_position) as hdul:
        assert hdul["SCI"].header["DATASET"] == f"ivo://demo.cutout/des?{TILE}_i"


@pytest.mark.parametrize(("value", "fragment"), [
    ("24 25 -45", "a RANGE needs 4 numbers"),
    ("25 24 -45 -44", "ra1 <= ra2 is required"),
    ("RANGE 24 25 -45 -44", "belongs in POS"),
])
def test_bad_range_parameter_is_a_labelled_400(embedded, value, fragment):
    r = embedded.get("/sync", params={"ID": DID, "RANGE": value})
    assert r.status_code == 400
    assert r.text.startswith(f"UsageError: RANGE='{value}': ") and fragment in r.text, r.text


def _range_param(doc, xml_id: str):  # type: ignore[no-untyped-def]
    [resource] = [r for r in doc.iter(f"{V}RESOURCE") if r.get("ID") == xml_id]
    group = resource.find(f"{V}GROUP[@name='inputParams']")
    [param] = [p for p in group.findall(f"{V}PARAM") if p.get("name") == "RANGE"]
    return param


def test_links_descriptors_declare_range(embedded):
    doc = assert_votable(embedded.get("/links", params={"ID": DID}).content)
    for xml_id in ("soda-sync-1", "soda-async-1"):
        param = _range_param(doc, xml_id)
        assert (param.get("datatype"), param.get("arraysize"), param.get("unit"), param.get("ucd"),
                param.get("value")) == ("double", "4", "deg", "pos.outline;obs", "")
    # Its MAX covers the image: used as it is, it cuts the whole image.
    covering = _range_param(doc, "soda-sync-1").find(f"{V}VALUES/{V}MAX").get("value")
    ra1, ra2, dec1, dec2 = (float(v) for v in covering.split())
    assert ra1 < RA0 < ra2 and dec1 < DEC0 < dec2
    with fits_of(embedded.get("/sync", params={"ID": DID, "RANGE": covering})) as hdul:
        assert hdul["SCI"].data.shape == (DEMO_SIZE, DEMO_SIZE)
    generic = assert_votable(embedded.get("/links").content)
    assert _range_param(generic, "soda-sync").find(f"{V}VALUES") is None


def test_links_range_has_no_max_across_ra_zero(embedded):
    # DES0000+0209 straddles RA 0, which a RANGE (ra1 <= ra2) cannot.
    doc = assert_votable(embedded.get("/links", params={"ID": "ivo://demo.cutout/des?DES0000+0209_r"}).content)
    assert _range_param(doc, "soda-sync-1").find(f"{V}VALUES") is None
