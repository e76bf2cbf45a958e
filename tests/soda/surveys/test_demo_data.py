"""The DES-like demo survey: files laid out and compressed as DESDM's, found by DESSurvey."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.surveys import DESSurvey, build_des_demo, ensure_demo
from soda.surveys.demo import MASK_BADCOL, MASK_BADPIX, MASK_SATURATE
from soda.surveys.des import tile_centre, tile_wcs

from conftest import scanned_catalogue

SIZE = 256
TILES = ("DES0139-4457", "DES0000+0209")
BANDS = ("g", "r", "i")
AUTHORITY = "demo.cutout"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("des")
    build_des_demo(root, tiles=TILES, bands=BANDS, size=SIZE, seed=7)
    return root


@pytest.fixture(scope="module")
def survey(demo: Path) -> DESSurvey:
    return DESSurvey(scanned_catalogue(demo), authority=AUTHORITY)


def _index(root: Path) -> list[dict[str, str]]:
    """The tiles and bands the file names say (DESDM: TILE_rREQpATT_BAND.fits.fz)."""
    rows = []
    for path in sorted(root.glob("*.fits.fz")):
        tile, _, band = re.fullmatch(r"(DES\d{4}[+-]\d{4})_(r\d+p\d+)_(\w+)\.fits\.fz", path.name).groups()
        rows.append({"tilename": tile, "band": band, "path": path.name})
    return rows


def _files(root: Path) -> list[Path]:
    return sorted(root.glob("*.fits.fz"))


def test_files_are_named_as_desdm_names_them(demo: Path) -> None:
    rows = _index(demo)
    assert {(r["tilename"], r["band"]) for r in rows} == {(t, b) for t in TILES for b in BANDS}
    assert sorted(demo / r["path"] for r in rows) == _files(demo)
    for row in rows:
        assert row["path"].startswith(f"{row['tilename']}_r")
        assert row["path"].endswith(f"_{row['band']}.fits.fz")
    # Real DES names carry a per-tile processing request/attempt.
    reqatt = {r["tilename"]: r["path"].split("_")[1] for r in rows}
    assert reqatt["DES0139-4457"] == "r4907p01"
    assert len(set(reqatt.values())) == len(TILES)


def test_files_are_des_like(demo: Path) -> None:
    for path in _files(demo):
        tile, _, band = path.name.removesuffix(".fits.fz").split("_")
        with fits.open(path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "MSK", "WGT"]
            assert isinstance(hdul[0], fits.PrimaryHDU) and hdul[0].data is None
            for hdu, dtype in zip(hdul[1:], (np.float32, np.int32, np.float32)):
                assert isinstance(hdu, fits.CompImageHDU)
                assert hdu.data.dtype == dtype and hdu.data.shape == (SIZE, SIZE)
                assert hdu.header["TILENAME"] == tile
                assert hdu.header["BAND"] == band
                assert hdu.header["FILTER"].startswith(f"{band} DECam")
            assert hdul["SCI"].header["BUNIT"] == "adu"
            assert hdul["WGT"].header["BUNIT"] == "adu-2"


def test_compression_is_rice_with_row_tiles(demo: Path) -> None:
    path = _files(demo)[0]
    with fits.open(path, disable_image_compression=True) as hdul:
        raw = {h.name: h.header for h in hdul[1:]}
    for name in ("SCI", "MSK", "WGT"):
        assert raw[name]["ZCMPTYPE"] == "RICE_1"
        assert (raw[name]["ZTILE1"], raw[name]["ZTILE2"]) == (SIZE, 1)
    assert raw["SCI"]["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_1"
    assert raw["WGT"]["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_2"  # keeps zero weights zero
    assert "ZQUANTIZ" not in raw["MSK"]  # integers: lossless
    assert 1 <= raw["SCI"]["ZDITHER0"] <= 10000
    assert path.stat().st_size < 0.35 * 3 * 4 * SIZE * SIZE  # it does compress


def test_file_wcs_is_the_tile_wcs(demo: Path) -> None:
    for path in _files(demo):
        tile = path.name.split("_")[0]
        want = tile_wcs(tile, (SIZE, SIZE))
        with fits.open(path) as hdul:
            for name in ("SCI", "MSK", "WGT"):
                got = WCS(hdul[name].header)
                assert list(got.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
                assert np.allclose(got.wcs.crval, want.wcs.crval, rtol=0, atol=1e-12)
                assert list(got.wcs.crpix) == [(SIZE + 1) / 2] * 2
                assert np.allclose(got.pixel_scale_matrix, want.pixel_scale_matrix, rtol=0, atol=1e-15)
        ra, dec = got.pixel_to_world_values((SIZE - 1) / 2, (SIZE - 1) / 2)
        assert (ra, dec) == pytest.approx(tile_centre(tile), abs=1e-10)


def test_pixels_look_like_a_coadd(demo: Path) -> None:
    with fits.open(demo / _index(demo)[1]["path"]) as hdul:
        sci, msk, wgt = (hdul[n].data for n in ("SCI", "MSK", "WGT"))
    clean = sci[msk == 0]
    sigma = 1.4826 * np.median(np.abs(clean - np.median(clean)))
    assert 3.0 < sigma < 8.0  # sky noise of the r band
    assert abs(np.median(clean)) < sigma  # background-subtracted
    assert (sci > 50 * sigma).sum() > 20  # stars and galaxies
    assert np.all(msk & ~(MASK_BADPIX | MASK_SATURATE | MASK_BADCOL) == 0)
    assert (msk & MASK_BADCOL).any() and (msk & MASK_BADPIX).any()
    bad = (msk & (MASK_BADPIX | MASK_BADCOL)) != 0
    assert np.all(wgt[bad] == 0)
    assert np.all(wgt[~bad] > 0)
    # Inverse variance: the noise where the weight is high is lower.
    assert np.median(wgt[~bad]) == pytest.approx(1 / sigma**2, rel=0.5)


def test_saturated_stars_are_flagged(tmp_path: Path) -> None:
    build_des_demo(tmp_path, tiles=("DES0139-4457",), bands=("r",), size=1024, seed=3)
    with fits.open(next(tmp_path.glob("*.fits.fz"))) as hdul:
        sci, msk = hdul["SCI"].data, hdul["MSK"].data
    sat = (msk & MASK_SATURATE) != 0
    assert sat.any()
    assert np.allclose(sci[sat], sci[sat].max(), atol=50)  # the saturation plateau


def test_builds_are_deterministic(demo: Path, tmp_path: Path) -> None:
    build_des_demo(tmp_path, tiles=TILES, bands=BANDS, size=SIZE, seed=7)
    assert [p.name for p in _files(tmp_path)] == [p.name for p in _files(demo)]
    for a, b in zip(_files(demo), _files(tmp_path)):
        assert a.name == b.name
        with fits.open(a) as ha, fits.open(b) as hb:
            for name in ("SCI", "MSK", "WGT"):
                assert np.array_equal(ha[name].data, hb[name].data)
    # ...and the seed, the tile and the band all matter.
    with fits.open(_files(demo)[0]) as h0, fits.open(_files(demo)[1]) as h1:
        assert not np.array_equal(h0["SCI"].data, h1["SCI"].data)
    other = tmp_path / "other"
    build_des_demo(other, tiles=TILES[:1], bands=BANDS[:1], size=SIZE, seed=8)
    with fits.open(_files(other)[0]) as h8, fits.open(demo / _index(demo)[0]["path"]) as h7:
        assert not np.array_equal(h7["SCI"].data, h8["SCI"].data)


def test_rebuild_is_skipped_when_up_to_date(tmp_path: Path) -> None:
    kwargs = {"tiles": TILES[:1], "bands": ("r",), "size": 64, "seed": 1}
    assert build_des_demo(tmp_path, **kwargs) == tmp_path
    index = tmp_path / ".demo-build.json"  # the build's manifest, written last
    image = _files(tmp_path)[0]
    stamps = (index.stat().st_mtime_ns, image.stat().st_mtime_ns, image.stat().st_ino)
    assert build_des_demo(tmp_path, **kwargs) == tmp_path
    assert (index.stat().st_mtime_ns, image.stat().st_mtime_ns, image.stat().st_ino) == stamps
    # Other parameters: rebuilt.
    build_des_demo(tmp_path, **(kwargs | {"size": 80}))
    with fits.open(_files(tmp_path)[0]) as hdul:
        assert hdul["SCI"].data.shape == (80, 80)
    # A lost file: rebuilt.
    image.unlink()
    build_des_demo(tmp_path, **(kwargs | {"size": 80}))
    assert image.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-build-")]  # no staging left


def test_ensure_demo_keeps_an_existing_build(tmp_path: Path) -> None:
    build_des_demo(tmp_path, tiles=TILES[:1], bands=("g",), size=32)
    image = _files(tmp_path)[0]
    before = image.stat().st_mtime_ns
    assert ensure_demo(tmp_path) == tmp_path
    assert image.stat().st_mtime_ns == before
    assert [p.name for p in _files(tmp_path)] == [f"{TILES[0]}_r4907p01_g.fits.fz"]


@pytest.mark.parametrize("kwargs", [{"tiles": ("DES0000+0210",)}, {"bands": ("u",)}, {"size": 8},
                                    {"seed": -1}])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_des_demo(tmp_path, **({"size": 32} | kwargs))  # type: ignore[arg-type]
    assert not _files(tmp_path)


# --- the survey over the demo files ------------------------------------------------------

def test_by_id_resolves_every_file(demo: Path, survey: DESSurvey) -> None:
    for row in _index(demo):
        did = f"ivo://{AUTHORITY}/des?{row['tilename']}_{row['band']}"
        ref = survey.by_id(did)
        assert ref is not None
        assert (ref.dataset_id, ref.survey, ref.tile, ref.band) == (did, "des", row["tilename"], row["band"])
        assert ref.path == demo / row["path"] and ref.path.exists()
        assert ref.hdus == ("SCI", "MSK", "WGT")
    assert survey.by_id("ivo://demo.cutout/des?DES0139-4457_r").dataset_id == \
        "ivo://demo.cutout/des?DES0139-4457_r"
    # The authority and resource path of an IVOA identifier are case-insensitive.
    upper = survey.by_id("IVO://Demo.Cutout/DES?DES0139-4457_r")
    assert upper is not None and upper.dataset_id == "ivo://demo.cutout/des?DES0139-4457_r"
    assert survey.by_id("ivo://demo.cutout/des?des0139-4457_r") is None  # the tile name is not


@pytest.mark.parametrize("did", [
    "ivo://other.authority/des?DES0139-4457_r",
    "ivo://demo.cutoff/des?DES0139-4457_r",  # same lengths: the prefix is compared, not cut
    "ivo://demo.cutout/dex?DES0139-4457_r",
    "ivo://demo.cutout/sdss?DES0139-4457_r",
    "ivo://demo.cutout/des?DES0139-4457_z",  # a DES band, but not in the index
    "ivo://demo.cutout/des?DES0139-4457_u",
    "ivo://demo.cutout/des?DES0002+0001_r",  # a real tile, not in the index
    "ivo://demo.cutout/des?DES0139-4458_r",  # no such tile
    "ivo://demo.cutout/des?DES0139-4457",
    "ivo://demo.cutout/des",
    "DES0139-4457_r",
    "",
])
def test_by_id_refuses_what_it_does_not_hold(survey: DESSurvey, did: str) -> None:
    assert survey.by_id(did) is None


def test_at_uses_the_tiling_and_the_index(demo: Path, survey: DESSurvey) -> None:
    ra, dec = tile_centre("DES0139-4457")
    refs = survey.at(ra, dec, ["i", "z", "g"])
    assert [(r.tile, r.band) for r in refs] == [("DES0139-4457", "i"), ("DES0139-4457", "g")]
    assert refs[0].path.exists()
    # Across RA 0, both sides of the seam find DES0000+0209.
    assert [r.tile for r in survey.at(359.99, 2.16, ["r"])] == ["DES0000+0209"]
    assert [r.tile for r in survey.at(0.01, 2.16, ["r"])] == ["DES0000+0209"]
    assert survey.at(*tile_centre("DES0002+0001"), ["r"]) == []  # a tile not in the index
    assert survey.at(10.0, 45.0, ["r"]) == []  # north of the tiled rows


def test_survey_metadata(survey: DESSurvey) -> None:
    assert survey.name == "des"
    assert survey.bands == ("g", "r", "i", "z", "Y")
    ranges = [survey.band_range(b) for b in survey.bands]
    assert all(1e-7 < lo < hi < 1.2e-6 for lo, hi in ranges)
    assert [lo for lo, _ in ranges] == sorted(lo for lo, _ in ranges)
    assert survey.bands_in(600e-9, 620e-9) == ["r"]
    assert survey.bands_in(700e-9, 700e-9) == ["r", "i"]


def test_survey_name_and_hdus_are_configurable(demo: Path, tmp_path: Path) -> None:
    rows = _index(demo)[:2]
    (tmp_path / "images").mkdir()
    for r in rows:
        shutil.copy(demo / r["path"], tmp_path / "images" / r["path"])
    other = DESSurvey(scanned_catalogue(tmp_path, survey="desdr2"), "example.org", hdus=("SCI",),
                      name="desdr2")
    ref = other.by_id(f"ivo://example.org/desdr2?{rows[0]['tilename']}_{rows[0]['band']}")
    assert ref is not None and ref.path == tmp_path / "images" / rows[0]["path"] and ref.path.exists()
    assert ref.hdus == ("SCI",) and ref.survey == "desdr2"
    assert other.by_id(f"ivo://{AUTHORITY}/des?{rows[0]['tilename']}_{rows[0]['band']}") is None
