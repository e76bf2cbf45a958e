"""LSSTSurvey over the demo coadds, ingested into the image index; the Butler layout
recogniser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS
from soda.ops.database import close_database, migrate, open_database
from soda.surveys.base import Recognised
from soda.surveys.lsst import BAND_RANGES, LSSTSurvey
from soda.surveys.lsst_demo import DEFAULT_TRACT, build_lsst_demo, central_patches
from soda.surveys.lsst_skymap import DEMO, skymap

AUTHORITY = "demo.cutout"
SURVEY = "lsst"
BANDS = ("g", "r", "i")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsst-survey")
    build_lsst_demo(root / "repo", bands=BANDS, seed=1)
    return root / "repo"


@pytest.fixture(scope="module")
def catalogue(demo: Path) -> Iterator[IndexCatalogue]:
    database = open_database(f"sqlite:///{demo.parent / 'index.sqlite'}")
    migrate(database, [("images", MIGRATIONS)])
    report = ingest(database, SURVEY, LSSTSurvey, [demo])
    assert report.bad == [] and report.images == 12
    yield IndexCatalogue(database)
    close_database(database)


@pytest.fixture(scope="module")
def survey(catalogue: IndexCatalogue) -> LSSTSurvey:
    return LSSTSurvey(catalogue=catalogue, authority=AUTHORITY, name=SURVEY, skymap="demo")


def _patches() -> tuple[int, ...]:
    return central_patches(skymap(DEMO), DEFAULT_TRACT)


def test_the_index_holds_every_demo_file(survey: LSSTSurvey, catalogue: IndexCatalogue) -> None:
    assert survey.images_per_band() == {"g": 4, "r": 4, "i": 4}
    names = {i.name for p in _patches() for i in catalogue.in_field(SURVEY, f"{DEFAULT_TRACT}_{p}")}
    assert names == {f"{DEFAULT_TRACT}_{p}_{b}" for p in _patches() for b in BANDS}


def test_by_id(survey: LSSTSurvey) -> None:
    patch = _patches()[0]
    ref = survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{patch}_r")
    assert ref is not None
    assert (ref.survey, ref.tile, ref.band) == (SURVEY, f"{DEFAULT_TRACT}_{patch}", "r")
    assert ref.hdus == ("IMAGE", "MASK", "VARIANCE")
    assert ref.path.name == f"deepCoadd_{DEFAULT_TRACT}_{patch}_r_demo_rings_demo_coadd.fits"
    assert ref.dataset_id == f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{patch}_r"
    assert survey.by_id(f"IVO://Demo.Cutout/LSST?{DEFAULT_TRACT}_{patch}_r") == ref
    assert survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{patch}_u") is None  # not built
    assert survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{patch}") is None
    assert survey.by_id(f"ivo://{AUTHORITY}/des?{DEFAULT_TRACT}_{patch}_r") is None


def test_at_finds_the_patch_by_inner_box(survey: LSSTSurvey) -> None:
    sky = skymap(DEMO)
    wcs = sky.tract_wcs(DEFAULT_TRACT)
    for patch in _patches():
        inner, outer = sky.patch_boxes(DEFAULT_TRACT, patch)
        # A pixel of this patch's inner box just inside its edge, in the neighbour's border.
        for x, y in ((inner.x0, inner.y0), (inner.x1 - 1, inner.y1 - 1), (inner.x0 + 50, inner.y0 + 120)):
            ra, dec = (float(v) for v in wcs.all_pix2world([[x, y]], 0)[0])
            refs = survey.at(ra, dec, ["i", "g"])
            assert [r.band for r in refs] == ["i", "g"]
            assert {r.tile for r in refs} == {f"{DEFAULT_TRACT}_{patch}"}
    # Outside the built patches (but in the tract): nothing.
    far = sky.tract(DEFAULT_TRACT).centre
    assert survey.at(far[0] + 1.0, far[1], ["r"]) == []


def test_sibling_and_same_grid(survey: LSSTSurvey) -> None:
    a, b = _patches()[:2]
    ref = survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{a}_r")
    sib = survey.sibling(ref, "g")
    assert sib is not None and sib.tile == ref.tile and sib.band == "g"
    assert survey.sibling(ref, "z") is None
    other = survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{b}_r")
    assert LSSTSurvey.same_grid(ref, other)
    elsewhere = replace(ref, tile=f"{DEFAULT_TRACT + 1}_{a}")
    assert not LSSTSurvey.same_grid(ref, elsewhere)


def test_neighbours(survey: LSSTSurvey) -> None:
    sky = skymap(DEMO)
    wcs = sky.tract_wcs(DEFAULT_TRACT)
    p0 = _patches()[0]
    ref = survey.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_{p0}_r")
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, p0)
    corner = [float(v) for v in wcs.all_pix2world([[inner.x1 - 0.5, inner.y1 - 0.5]], 0)[0]]
    near_corner = survey.neighbour_fields(ref, *corner, radius=30 * 0.2 / 3600)
    assert near_corner == [f"{DEFAULT_TRACT}_{p}" for p in _patches()]
    middle = [float(v) for v in wcs.all_pix2world([[inner.x0 + 100, inner.y0 + 100]], 0)[0]]
    assert survey.neighbour_fields(ref, *middle, radius=20 * 0.2 / 3600) == [f"{DEFAULT_TRACT}_{p0}"]


def test_bands(survey: LSSTSurvey) -> None:
    assert survey.bands == ("u", "g", "r", "i", "z", "y")
    assert survey.bands_in(600e-9, 610e-9) == ["r"]
    for band in survey.bands:
        low, high = survey.band_range(band)
        assert 300e-9 < low < high < 1100e-9
    assert survey.example() is not None


def test_recognise_by_cards_and_by_name(demo: Path, tmp_path: Path) -> None:
    path = next(demo.rglob("*.fits"))
    with fits.open(path) as hdul:
        recognised = LSSTSurvey.recognise(path, hdul, {})
        assert recognised is not None and len(recognised) == 1
        found = recognised[0]
        tract, patch, band = (hdul[0].header[k] for k in ("TRACT", "PATCH", "BAND"))
        assert found.name == f"{tract}_{patch}_{band}" and found.field == f"{tract}_{patch}"
        assert found.hdus == ("IMAGE", "MASK", "VARIANCE")
        assert found.extra["physical_filter"] == f"{band}_sim_1.4"
        # Without the cards, the Butler file name still tells.
        bare = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(data=h.data, name=h.name)
                                                   for h in hdul[1:]])
    assert LSSTSurvey.recognise(path, bare, {}) == [Recognised(
        found.name, found.field, found.band, found.hdus,
        {"tract": str(tract), "patch": str(patch), "dataset_type": "deepCoadd"})]
    # A band map renames the header's band before it is checked.
    cards = fits.PrimaryHDU(header=fits.Header([("TRACT", tract), ("PATCH", patch), ("BAND", "HSC-R")]))
    hsc = fits.HDUList([cards] + [fits.ImageHDU(data=h.data, name=h.name) for h in bare[1:]])
    assert LSSTSurvey.recognise(tmp_path / "calexp.fits", hsc, {}) is None
    assert LSSTSurvey.recognise(tmp_path / "calexp.fits", hsc, {"HSC-R": "r"})[0].name == f"{tract}_{patch}_r"
    # Neither cards nor a Butler name: not an LSST coadd.
    assert LSSTSurvey.recognise(tmp_path / "image.fits", bare, {}) is None
    # A DES tile is not one either, whatever its name.
    des = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)), name="SCI")])
    assert LSSTSurvey.recognise(tmp_path / "deepCoadd_1_2_r_x.fits", des, {}) is None
    # A band LSST does not have.
    assert LSSTSurvey.recognise(tmp_path / "deepCoadd_1_2_Y_x.fits", bare, {}) is None


def test_no_catalogue_means_no_images() -> None:
    empty = LSSTSurvey(authority=AUTHORITY, skymap="demo")
    assert empty.at(53.83, -29.0, ["r"]) == []
    assert empty.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_1_r") is None
    assert empty.images_per_band() == {} and empty.example() is None
    assert set(BAND_RANGES) == set(empty.bands)


def test_unknown_sky_map_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sky map 'rings'"):
        LSSTSurvey(authority=AUTHORITY, skymap="rings")
