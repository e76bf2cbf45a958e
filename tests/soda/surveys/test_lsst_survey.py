"""LSSTSurvey over the demo coadds, and the Butler layout recogniser.

The catalogue here is a small real implementation of soda.surveys.catalogue's protocol,
built by reading the demo files' headers (through the recogniser) and their WCS; these
tests should move onto the service's image index once it exists.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.surveys.catalogue import CatalogueImage, Footprint
from soda.surveys.lsst import BAND_RANGES, LSSTSurvey, Recognised
from soda.surveys.lsst_demo import DEFAULT_TRACT, build_lsst_demo, central_patches
from soda.surveys.lsst_skymap import DEMO, skymap

AUTHORITY = "demo.cutout"
SURVEY = "lsst"
BANDS = ("g", "r", "i")


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    l1, b1, l2, b2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(b1) * math.sin(b2) + math.cos(b1) * math.cos(b2) * math.cos(l2 - l1)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


class HeaderCatalogue:
    """The images of files, known from their headers alone."""

    def __init__(self, survey: str, paths: Sequence[Path]) -> None:
        self.images: list[CatalogueImage] = []
        for path in paths:
            with fits.open(path) as hdul:
                found = LSSTSurvey.recognise(path, hdul)
                if found is None:
                    continue
                header = hdul[found.hdus[0]].header
                wcs = WCS(header)
                ny, nx = header["NAXIS2"], header["NAXIS1"]
                xs = [0, (nx - 1) / 2, nx - 1, nx - 1, nx - 1, (nx - 1) / 2, 0, 0]
                ys = [0, 0, 0, (ny - 1) / 2, ny - 1, ny - 1, ny - 1, (ny - 1) / 2]
                vertices = tuple((float(r), float(d)) for r, d in wcs.all_pix2world(np.c_[xs, ys], 0))
                ra, dec = (float(v) for v in wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0])
                radius = max(_separation(ra, dec, *v) for v in vertices)
                self.images.append(CatalogueImage(
                    survey=survey, name=found.name, field=found.field, band=found.band,
                    path=path, hdus=found.hdus, shape=(ny, nx), pixel_scale=0.2,
                    footprint=Footprint(vertices, (ra, dec), radius), extra=dict(found.extra)))
        self.images.sort(key=lambda i: i.name)

    def _ours(self, survey: str) -> list[CatalogueImage]:
        return [i for i in self.images if i.survey == survey]

    def get(self, survey: str, name: str) -> CatalogueImage | None:
        return next((i for i in self._ours(survey) if i.name == name), None)

    def overlapping(self, survey: str, ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        near = [(_separation(ra, dec, *i.footprint.centre), i) for i in self._ours(survey)]
        return [i for d, i in sorted(near, key=lambda p: p[0]) if d <= i.footprint.radius + radius]

    def at(self, survey: str, ra: float, dec: float) -> list[CatalogueImage]:
        return self.overlapping(survey, ra, dec, 0.0)

    def in_field(self, survey: str, field: str) -> list[CatalogueImage]:
        return [i for i in self._ours(survey) if i.field == field]

    def bands(self, survey: str) -> Mapping[str, int]:
        return Counter(i.band for i in self._ours(survey))

    def first(self, survey: str) -> CatalogueImage | None:
        return next(iter(self._ours(survey)), None)

    def search(self, surveys: Sequence[str], ra: float, dec: float, radius: float,
               limit: int) -> list[CatalogueImage]:
        return [i for s in surveys for i in self.overlapping(s, ra, dec, radius)][:limit]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsst-survey")
    build_lsst_demo(root, bands=BANDS, seed=1)
    return root


@pytest.fixture(scope="module")
def survey(demo: Path) -> LSSTSurvey:
    catalogue = HeaderCatalogue(SURVEY, sorted(demo.rglob("*.fits")))
    return LSSTSurvey(root=demo, authority=AUTHORITY, catalogue=catalogue, skymap_config=DEMO)


def _patches() -> tuple[int, ...]:
    return central_patches(skymap(DEMO), DEFAULT_TRACT)


def test_catalogue_holds_every_demo_file(survey: LSSTSurvey) -> None:
    assert survey.images_per_band() == {"g": 4, "r": 4, "i": 4}
    names = {i.name for i in survey.catalogue.images}
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
        found = LSSTSurvey.recognise(path, hdul)
        assert isinstance(found, Recognised)
        tract, patch, band = (hdul[0].header[k] for k in ("TRACT", "PATCH", "BAND"))
        assert found.name == f"{tract}_{patch}_{band}" and found.field == f"{tract}_{patch}"
        assert found.hdus == ("IMAGE", "MASK", "VARIANCE")
        assert found.extra["physical_filter"] == f"{band}_sim_1.4"
        # Without the cards, the Butler file name still tells.
        bare = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(data=h.data, name=h.name)
                                                   for h in hdul[1:]])
    assert LSSTSurvey.recognise(path, bare) == Recognised(
        found.name, found.field, found.band, found.hdus,
        {"tract": str(tract), "patch": str(patch), "dataset_type": "deepCoadd"})
    # Neither cards nor a Butler name: not an LSST coadd.
    assert LSSTSurvey.recognise(tmp_path / "image.fits", bare) is None
    # A DES tile is not one either, whatever its name.
    des = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)), name="SCI")])
    assert LSSTSurvey.recognise(tmp_path / "deepCoadd_1_2_r_x.fits", des) is None
    # A band LSST does not have.
    assert LSSTSurvey.recognise(tmp_path / "deepCoadd_1_2_Y_x.fits", bare) is None


def test_no_catalogue_means_no_images(demo: Path) -> None:
    empty = LSSTSurvey(root=demo, authority=AUTHORITY)
    assert empty.at(53.83, -29.0, ["r"]) == []
    assert empty.by_id(f"ivo://{AUTHORITY}/lsst?{DEFAULT_TRACT}_1_r") is None
    assert empty.images_per_band() == {} and empty.example() is None
    assert set(BAND_RANGES) == set(empty.bands)
