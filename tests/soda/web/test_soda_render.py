"""PNG/JPEG cutouts and Lupton colour composites over HTTP (the renderers wired into SODA)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from conftest import assert_uws, eventually
from soda.sky.sphere import separation
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"


def image_of(response, mime: str) -> Image.Image:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == mime
    picture = Image.open(io.BytesIO(response.content))
    picture.load()
    return picture


@pytest.mark.parametrize("fmt,mime,kind", [("png", "image/png", "PNG"), ("image/png", "image/png", "PNG"),
                                           ("jpeg", "image/jpeg", "JPEG"), ("jpg", "image/jpeg", "JPEG")])
def test_single_band_preview(embedded, fmt, mime, kind):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "RESPONSEFORMAT": fmt})
    picture = image_of(r, mime)
    assert picture.format == kind and picture.mode == "L"
    fits_cut = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01"})
    with fits.open(io.BytesIO(fits_cut.content)) as hdul:
        assert picture.size == hdul["SCI"].data.shape[::-1]
    pixels = np.asarray(picture)
    # The sky dark grey, the sources (here none brighter than about 10σ) well above it.
    assert 20 < np.median(pixels) < 70 and pixels.max() > 2 * np.median(pixels)
    assert r.headers["content-disposition"].endswith(f'.{"png" if mime == "image/png" else "jpg"}"')


def test_png_carries_wcs_and_provenance(embedded):
    ra, dec = RA0 + 0.005, DEC0 - 0.004
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{ra} {dec} 0.01", "RESPONSEFORMAT": "png",
                                      "STRETCH": "linear", "LIMITS": "minmax"})
    picture = image_of(r, "image/png")
    assert picture.text["dataset"] == DID and picture.text["scaling"] == "linear, minmax"
    wcs = WCS(fits.Header.fromstring(picture.text["FITS-WCS"], sep="\n"))
    width, height = picture.size
    cra, cdec = wcs.pixel_to_world_values((width - 1) / 2, (height - 1) / 2)
    assert float(separation(ra, dec, cra, cdec)) < 0.263 / 3600


def test_size_makes_a_thumbnail(embedded):
    r = embedded.get("/sync", params={"ID": DID, "RESPONSEFORMAT": "png", "SIZE": "200"})
    picture = image_of(r, "image/png")
    assert max(picture.size) <= 200 and max(picture.size) > 100


@pytest.mark.parametrize("stretch", ["linear", "asinh", "log", "sqrt"])
@pytest.mark.parametrize("limits", [{"LIMITS": "zscale"}, {"LIMITS": "minmax"}, {"PERCENTILES": "1 99"}])
def test_every_stretch_and_limit(embedded, stretch, limits):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.005", "RESPONSEFORMAT": "png",
                                      "STRETCH": stretch, **limits})
    assert image_of(r, "image/png").mode == "L"


def test_lupton_rgb_by_id_and_by_position(embedded):
    for params in ({"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.008", "RGB": "i,r,g"},
                   {"POS": f"CIRCLE {RA0} {DEC0} 0.008", "RGB": "default"},
                   {"POS": f"CIRCLE {RA0} {DEC0} 0.008", "RGB": "g r i"}):
        r = embedded.get("/sync", params={**params, "RESPONSEFORMAT": "png"})
        picture = image_of(r, "image/png")
        assert picture.mode == "RGB"
        assert picture.text["rgb"].startswith(params["RGB"].replace(" ", ",") if params["RGB"] != "default" else "i,r,g")
        channels = np.asarray(picture).reshape(-1, 3)
        assert np.median(channels) < 40 and channels.max() > 3 * np.median(channels)  # a dark sky
        assert len(np.unique(channels, axis=0)) > 100


def test_rgb_bands_are_cut_on_the_same_grid(embedded):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.006", "RGB": "i,r,g",
                                      "RESPONSEFORMAT": "png"})
    picture = image_of(r, "image/png")
    single = image_of(embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.006",
                                                    "RESPONSEFORMAT": "png"}), "image/png")
    assert picture.size == single.size
    assert "DES0139-4457_i" in picture.text["dataset"] and "DES0139-4457_g" in picture.text["dataset"]


@pytest.mark.parametrize("params,fragment", [
    ({"STRETCH": "cubic"}, "STRETCH"),
    ({"STRETCH": "LINEAR"}, "STRETCH"),
    ({"LIMITS": "auto"}, "LIMITS"),
    ({"PERCENTILES": "99 1"}, "PERCENTILES"),
    ({"PERCENTILES": "1"}, "PERCENTILES"),
    ({"PERCENTILES": "-1 50"}, "PERCENTILES"),
    ({"SIZE": "0"}, "SIZE"),
    ({"SIZE": "4097"}, "SIZE"),
    ({"SIZE": "big"}, "SIZE"),
    ({"RGB": "i,r"}, "RGB"),
    ({"RGB": "i,r,q"}, "RGB band q"),
    ({"RGB": "i,r,z"}, "has no z image"),
    ({"RGB": "i,r,g", "FILTER": "g"}, "FILTER"),
    ({"Q": "0"}, "Q"),
    ({"Q": "nan"}, "Q"),
])
def test_bad_render_parameters_are_labelled_400(embedded, params, fragment):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.01", "RESPONSEFORMAT": "png",
                                      **params})
    assert r.status_code == 400, r.text
    assert r.text.startswith("UsageError: ") and fragment in r.text, r.text


def test_one_picture_per_sync_request(embedded):
    r = embedded.get("/sync", params={"ID": DID, "CIRCLE": [f"{RA0} {DEC0} 0.01", f"{RA0} {DEC0} 0.02"],
                                      "RESPONSEFORMAT": "png"})
    assert r.status_code == 400 and r.text.startswith("MultiValuedParamNotSupported: ")


def test_async_pngs_one_per_position(embedded):
    r = embedded.post("/async", data={"POS": [f"CIRCLE {RA0} {DEC0} 0.004", f"CIRCLE {RA0 + 0.01} {DEC0} 0.004"],
                                      "RGB": "default", "RESPONSEFORMAT": "image/png", "PHASE": "RUN"})
    url = r.headers["location"]
    eventually(lambda: embedded.get(url + "/phase").text == "COMPLETED", timeout=30)
    doc = assert_uws(embedded.get(url).content)
    results = [(e.get("id"), e.get("mime-type")) for e in doc.iter("{http://www.ivoa.net/xml/UWS/v1.0}result")]
    assert results == [(f"01_{TILE}_irg.png", "image/png"), (f"02_{TILE}_irg.png", "image/png")]
    assert image_of(embedded.get(f"{url}/results/01_{TILE}_irg.png"), "image/png").mode == "RGB"
