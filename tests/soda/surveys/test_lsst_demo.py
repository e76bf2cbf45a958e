"""The LSST-like demo coadds: Butler layout, afw's FITS layout, one pixel grid per tract."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.surveys.lsst_demo import (
    DEFAULT_TRACT, MANIFEST, MASK_PLANES, build_lsst_demo, butler_path, central_patches,
    demo_files, tract_pixels,
)
from soda.surveys.lsst_skymap import DEMO, PixelBox, skymap

SEED = 3
BANDS = ("g", "r", "i")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lsst")
    build_lsst_demo(root, bands=BANDS, seed=SEED)
    return root


def _patches() -> tuple[int, ...]:
    return central_patches(skymap(DEMO), DEFAULT_TRACT)


def _read(demo: Path, patch: int, band: str) -> fits.HDUList:
    return fits.open(demo / butler_path("demo/coadd", DEFAULT_TRACT, patch, band))


def test_butler_layout(demo: Path) -> None:
    files = demo_files(demo)
    assert {(f.tract, f.patch, f.band) for f in files} == {
        (DEFAULT_TRACT, p, b) for p in _patches() for b in BANDS}
    found = sorted(str(p.relative_to(demo)) for p in demo.rglob("*.fits"))
    assert found == sorted(f.path for f in files)
    f = files[0]
    # daf_butler's default file template: <run>/<type>/<tract>/<patch>/<band>/<type>_..._<run>
    assert f.path == (f"demo/coadd/deepCoadd/{f.tract}/{f.patch}/{f.band}/"
                      f"deepCoadd_{f.tract}_{f.patch}_{f.band}_demo_rings_demo_coadd.fits")
    size = sum((demo / f.path).stat().st_size for f in files)
    assert size < 10_000_000


def test_the_patches_are_a_2x2_block_round_the_tract_centre() -> None:
    sky = skymap(DEMO)
    xy = [sky.patch_xy(DEFAULT_TRACT, p) for p in _patches()]
    (x0, y0) = xy[0]
    assert xy == [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]
    centre = sky.tract(DEFAULT_TRACT).centre
    assert sky.patch_at(DEFAULT_TRACT, *centre)[0] in _patches()


def test_afw_layout_and_cards(demo: Path) -> None:
    sky = skymap(DEMO)
    for patch in _patches():
        _, outer = sky.patch_boxes(DEFAULT_TRACT, patch)
        for band in BANDS:
            with _read(demo, patch, band) as hdul:
                assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
                assert hdul[0].data is None
                for hdu, dtype in zip(hdul[1:], (np.float32, np.int32, np.float32)):
                    assert hdu.data.dtype.newbyteorder("=") == np.dtype(dtype)
                    assert hdu.data.shape == (outer.ny, outer.nx)
                    h = hdu.header
                    assert (h["TRACT"], h["PATCH"], h["BAND"]) == (DEFAULT_TRACT, patch, band)
                    assert h["FILTER"] == f"{band}_sim_1.4"
                    assert (h["LTV1"], h["LTV2"]) == (-outer.x0, -outer.y0)
                    assert (h["CRVAL1A"], h["CRVAL2A"]) == (outer.x0, outer.y0)
                    assert h["EXTTYPE"] == hdu.name
                assert hdul["IMAGE"].header["BUNIT"] == "nJy"
                mask = hdul["MASK"].header
                assert {k: mask[f"MP_{k}"] for k in MASK_PLANES} == MASK_PLANES


def test_mask_planes_mean_something(demo: Path) -> None:
    with _read(demo, _patches()[0], "r") as hdul:
        image, mask, var = (hdul[n].data for n in ("IMAGE", "MASK", "VARIANCE"))
        detected = (mask & (1 << MASK_PLANES["DETECTED"])) != 0
        bad = (mask & (1 << MASK_PLANES["BAD"])) != 0
        assert 0 < detected.mean() < 0.5
        assert np.median(image[detected]) > 5 * np.median(np.sqrt(var[~bad]))
        assert np.all(np.isinf(var[bad])) and np.all(image[bad] == 0)
        # Away from sources the image is sky noise with the variance the plane states.
        quiet = ~detected & ~bad & (mask == 0)
        pulls = image[quiet] / np.sqrt(var[quiet])
        assert abs(pulls.mean()) < 0.1 and 0.9 < pulls.std() < 1.2


def test_wcs_is_the_tract_frame(demo: Path) -> None:
    sky = skymap(DEMO)
    tract_wcs = sky.tract_wcs(DEFAULT_TRACT)
    for patch in _patches():
        _, outer = sky.patch_boxes(DEFAULT_TRACT, patch)
        with _read(demo, patch, "g") as hdul:
            wcs = WCS(hdul["IMAGE"].header)
        for x, y in ((0, 0), (outer.nx - 1, 0), (5.5, outer.ny - 1)):
            here = wcs.all_pix2world([[x, y]], 0)[0]
            there = tract_wcs.all_pix2world([[x + outer.x0, y + outer.y0]], 0)[0]
            assert here == pytest.approx(there, abs=1e-9)


def test_neighbouring_patches_agree_on_sky_and_pixels(demo: Path) -> None:
    sky = skymap(DEMO)
    a, b = _patches()[:2]  # side by side in x
    (_, oa), (_, ob) = sky.patch_boxes(DEFAULT_TRACT, a), sky.patch_boxes(DEFAULT_TRACT, b)
    common = oa.intersection(ob)
    assert common.nx == 2 * DEMO.patch_border and common.ny == oa.ny
    for band in BANDS:
        with _read(demo, a, band) as ha, _read(demo, b, band) as hb:
            wa, wb = WCS(ha["IMAGE"].header), WCS(hb["IMAGE"].header)
            # The same tract pixel has the same sky position in both files.
            x, y = common.x0 + 7, common.y0 + 50
            pa = wa.all_pix2world([[x - oa.x0, y - oa.y0]], 0)[0]
            pb = wb.all_pix2world([[x - ob.x0, y - ob.y0]], 0)[0]
            assert pa == pytest.approx(pb, abs=1e-9)
            for name in ("IMAGE", "MASK", "VARIANCE"):
                pixels_a = ha[name].data[common.slices((oa.x0, oa.y0))]
                pixels_b = hb[name].data[common.slices((ob.x0, ob.y0))]
                np.testing.assert_array_equal(pixels_a, pixels_b)


def test_cross_patch_region_equals_one_piece(demo: Path) -> None:
    """A box over the corner of four patches, pasted from their files by tract pixels,
    equals the same box made in one piece by the same generator."""
    sky = skymap(DEMO)
    inner0, _ = sky.patch_boxes(DEFAULT_TRACT, _patches()[0])
    corner = (inner0.x1, inner0.y1)  # where the four inner boxes meet
    region = PixelBox(corner[0] - 37, corner[1] - 23, 81, 60)
    for band in BANDS:
        pasted = {n: np.full((region.ny, region.nx), np.nan) for n in ("IMAGE", "VARIANCE")}
        pasted["MASK"] = np.full((region.ny, region.nx), -1, dtype=np.int64)
        for patch in _patches():
            inner, outer = sky.patch_boxes(DEFAULT_TRACT, patch)
            part = inner.intersection(region)
            assert part is not None
            with _read(demo, patch, band) as hdul:
                for name, out in pasted.items():
                    piece = hdul[name].data[part.slices((outer.x0, outer.y0))]
                    out[part.slices((region.x0, region.y0))] = piece
        image, mask, var = tract_pixels(DEFAULT_TRACT, band, region, SEED, DEMO)
        assert np.array_equal(pasted["IMAGE"], image.astype(np.float64))
        assert np.array_equal(pasted["MASK"], mask)
        assert np.array_equal(pasted["VARIANCE"], var.astype(np.float64))
    # A different seed gives different pixels: the comparison above can fail.
    assert not np.array_equal(tract_pixels(DEFAULT_TRACT, "r", region, SEED + 1, DEMO)[0],
                              tract_pixels(DEFAULT_TRACT, "r", region, SEED, DEMO)[0])


def test_generator_is_box_independent() -> None:
    big = PixelBox(1000, 2000, 300, 200)
    small = PixelBox(1123, 2077, 31, 45)
    for got, want in zip(tract_pixels(12, "i", small, 0, DEMO), tract_pixels(12, "i", big, 0, DEMO)):
        np.testing.assert_array_equal(got, want[small.slices((big.x0, big.y0))])


def test_rebuild_only_when_changed(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    sky = skymap(DEMO)
    patches = {DEFAULT_TRACT: central_patches(sky, DEFAULT_TRACT, 1, 1)}
    manifest = build_lsst_demo(root, tracts=patches, bands=("r",), seed=1)
    path = root / demo_files(root)[0].path
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(1, 1))
    build_lsst_demo(root, tracts=patches, bands=("r",), seed=1)
    assert path.stat().st_mtime_ns == 1  # up to date: not rewritten
    build_lsst_demo(root, tracts=patches, bands=("r",), seed=2)
    assert path.stat().st_mtime_ns != 1  # another seed: rebuilt
    assert manifest.name == MANIFEST and before
    path.unlink()
    build_lsst_demo(root, tracts=patches, bands=("r",), seed=2)
    assert path.is_file()  # a lost file is made again
    assert not list(root.glob(".lsst-demo-*"))  # no staging left behind


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_lsst_demo(tmp_path, bands=("Y",))
    with pytest.raises(IndexError):
        build_lsst_demo(tmp_path, tracts={DEFAULT_TRACT: [10**9]})
    with pytest.raises(ValueError):
        tract_pixels(1, "q", PixelBox(0, 0, 2, 2))
