"""Which images a survey's file layout finds in a file: the generic rule and DESDM's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soda.index.scan import scan_file
from soda.surveys.base import Recognised, Survey, file_stem, header_band
from soda.surveys.des import DESSurvey
from soda.surveys.demo import build_des_demo
from soda.surveys.generic import COMMON_BANDS, UNKNOWN_RANGE, GenericSurvey
from soda.surveys.in_memory import InMemoryCatalogue

from conftest import write_sky_image


def recognise(layout: type[Survey], path: Path, band_map: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    with fits.open(path) as hdul:
        return layout.recognise(path, hdul, band_map or {})


def test_file_stems() -> None:
    assert file_stem(Path("a/m13_rice.fits.fz")) == "m13_rice"
    assert file_stem(Path("x.FITS")) == "x"
    assert file_stem(Path("DES0139-4457_r4575p01_g.fits.fz")) == "DES0139-4457_r4575p01_g"


@pytest.mark.parametrize("cards, band_map, band", [
    ({"FILTER": "r DECam SDSS c0002 6415.0 1480.0"}, {}, "r"),
    ({"BAND": "g", "FILTER": "r"}, {}, "g"),
    ({"FILTER": "Johnson V"}, {"Johnson V": "V"}, "V"),
    ({"FILTER": "rp_Sloan"}, {"rp_Sloan": "r"}, "r"),
    ({}, {}, "unknown"),
    ({}, {"": "DSS"}, "DSS"),
    ({"FILTER": "a/b c"}, {}, "a_b"),
])
def test_band_from_headers(cards: dict[str, str], band_map: dict[str, str], band: str) -> None:
    assert header_band([fits.Header(cards)], band_map) == band


def test_generic_layout_one_image_per_file(tmp_path: Path) -> None:
    path = write_sky_image(tmp_path / "ngc1234_r.fits", 10.0, 10.0, header={"FILTER": "r"})
    assert recognise(GenericSurvey, path) == [Recognised(name="ngc1234_r", field="ngc1234", band="r", hdus=("0",))]


def test_generic_layout_several_images_per_file(tmp_path: Path) -> None:
    one = write_sky_image(tmp_path / "one.fits", 10.0, 10.0, header={"FILTER": "g"})
    with fits.open(one) as hdul:
        header = hdul[0].header
    hdus = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"FILTER": "i"})),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), header=header, name="CCD1"),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), header=header, name="CCD2"),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), name="NOWCS")])
    hdus.writeto(tmp_path / "mosaic.fits")
    found = recognise(GenericSurvey, tmp_path / "mosaic.fits")
    assert [(f.name, f.band, f.hdus) for f in found] == [("mosaic_CCD1", "g", ("CCD1",)),
                                                         ("mosaic_CCD2", "g", ("CCD2",))]


def test_desdm_layout(tmp_path: Path) -> None:
    build_des_demo(tmp_path, tiles=("DES0139-4457",), bands=("r",), size=32)
    [path] = tmp_path.glob("*.fits.fz")
    assert recognise(DESSurvey, path) == [Recognised(
        name="DES0139-4457_r", field="DES0139-4457", band="r", hdus=("SCI", "MSK", "WGT"),
        extra={"reqnum": "4907", "attnum": "01"})]
    # Renamed, the TILENAME and BAND cards still say what it is.
    renamed = path.rename(tmp_path / "coadd.fits.fz")
    assert [r.name for r in recognise(DESSurvey, renamed)] == ["DES0139-4457_r"]
    # Not a DESDM file: None, and the scan says why.
    other = write_sky_image(tmp_path / "DES9999+9999_r1p01_r.fits", 10.0, 10.0)
    assert recognise(DESSurvey, other) is None
    with pytest.raises(Exception, match="not a file of the DESSurvey layout"):
        scan_file(other, "des", DESSurvey, {})


def test_generic_survey_over_a_catalogue(tmp_path: Path) -> None:
    for band in ("g", "r"):
        write_sky_image(tmp_path / f"f1_{band}.fits", 30.0, 0.0, header={"FILTER": band})
    write_sky_image(tmp_path / "f2_r.fits", 30.005, 0.0, header={"FILTER": "r"})
    write_sky_image(tmp_path / "f3_Ha.fits", 30.0, 0.0, header={"FILTER": "Ha"})
    catalogue = InMemoryCatalogue(image for p in sorted(tmp_path.glob("*.fits"))
                                  for image in scan_file(p, "mine", GenericSurvey, {}))
    survey = GenericSurvey(catalogue, "example.org", "mine", band_ranges={"Ha": (655e-9, 658e-9)})
    assert survey.bands == ("g", "r", "Ha")  # by wavelength
    assert survey.band_range("Ha") == (655e-9, 658e-9)
    assert survey.band_range("V") == COMMON_BANDS["V"] and survey.band_range("x") == UNKNOWN_RANGE
    # At a position nearer f2's centre, r comes from f2, g from f1 (nearest of its band).
    refs = survey.at(30.004, 0.0, ["g", "r"])
    assert [(r.tile, r.band) for r in refs] == [("f1", "g"), ("f2", "r")]
    # Nearer f1: its own field's bands.
    assert [(r.tile, r.band) for r in survey.at(29.999, 0.0, ["g", "r"])] == [("f1", "g"), ("f1", "r")]
    ref = survey.by_id("ivo://example.org/mine?f1_g")
    assert ref is not None and ref.dataset_id == "ivo://example.org/mine?f1_g"
    assert survey.sibling(ref, "r").dataset_id == "ivo://example.org/mine?f1_r"  # type: ignore[union-attr]
    assert survey.sibling(ref, "z") is None
    assert survey.by_id("ivo://example.org/mine?") is None and survey.by_id("ivo://other/mine?f1_g") is None
    assert survey.images_per_band() == {"g": 1, "r": 2, "Ha": 1}
    assert survey.at(40.0, 0.0, ["r"]) == []
