"""Thumbnails (soda/engine/thumbnails.py): what they hold, when pictures are made from them,
their WCS, and their files on disk (made once, renewed when the image changes, bounded)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from PIL import Image

from conf import load_settings
from conftest import link_demo, scanned_catalogue
from dali.errors import UsageError
from renderers import WCS_KEY
from renderers.fits import cutout_header
from renderers.image import reduce
from soda.cutouts import Cutouts
from soda.engine import thumbnails as thumbnails_module
from soda.engine.pixels import PixelBox
from soda.engine.thumbnails import Thumbnails, binned_header, make_thumbnail
from soda.sky.regions import Circle
from soda.surveys.base import ImageRef
from soda.surveys.des import tile_centre
from soda.surveys.registry import load_datasets

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"


def sky_header(nx: int, ny: int, sip: bool = False) -> fits.Header:
    header = fits.Header()
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                   "CRPIX1": nx / 2 + 0.3, "CRPIX2": ny / 2 - 0.7, "CD1_1": -7.3e-5, "CD1_2": 1.1e-6,
                   "CD2_1": 0.9e-6, "CD2_2": 7.3e-5, "CUNIT1": "deg", "CUNIT2": "deg"})
    if sip:
        header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-6, "A_1_1": -1e-6, "A_0_2": 3e-6,
                       "B_2_0": -2e-6, "B_1_1": 1.5e-6, "B_0_2": 1e-6})
    return header


def write_image(path: Path, data: np.ndarray, *, compressed: bool = False, sip: bool = False) -> ImageRef:
    header = sky_header(data.shape[1], data.shape[0], sip)
    hdu = (fits.CompImageHDU(data, header, name="SCI", tile_shape=(16, data.shape[1])) if compressed
           else fits.ImageHDU(data, header, name="SCI"))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return ImageRef(f"ivo://test/img?{path.stem}", "test", path.stem, "r", path, ("SCI",))


def noisy(ny: int, nx: int, seed: int = 1) -> np.ndarray:
    data = np.random.default_rng(seed).normal(100.0, 10.0, (ny, nx)).astype(np.float32)
    data[5:9, 17:40] = np.nan  # blank pixels are left out of the averages
    return data


# --- what a thumbnail holds -----------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_a_thumbnail_is_the_block_average_read_strip_by_strip(tmp_path, monkeypatch, compressed) -> None:
    data = noisy(203, 301)   # sides that are not multiples of the factor
    image = write_image(tmp_path / ("img.fits.fz" if compressed else "img.fits"), data, compressed=compressed)
    monkeypatch.setattr(thumbnails_module, "STRIP_PIXELS", 5000)   # many strips of whole blocks
    made = make_thumbnail(image, 4)
    assert made.shape == (51, 76)
    stored = fits.getdata(image.path, "SCI")   # what the file holds (RICE quantizes)
    assert np.isnan(stored).sum() == np.isnan(data).sum()
    np.testing.assert_allclose(made, reduce(stored, 4), rtol=1e-6, equal_nan=True)


def test_binned_header_places_each_binned_pixel_on_its_source_block(tmp_path) -> None:
    for sip in (False, True):
        source = sky_header(301, 203, sip)
        factor, x0, y0 = 4, 40, 24
        # Pictures shift CRPIX by the cut's offset in source pixels, as for any cut.
        binned = cutout_header(binned_header(source, factor, x0, y0), x0, y0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            fine, coarse = WCS(source), WCS(binned)
        i, j = np.meshgrid(np.arange(0, 30, 7.0), np.arange(0, 20, 5.0))
        centre_x = x0 + i * factor + (factor - 1) / 2   # 0-based source pixel of the block centre
        centre_y = y0 + j * factor + (factor - 1) / 2
        expected = fine.all_pix2world(centre_x, centre_y, 0)
        got = coarse.all_pix2world(i, j, 0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)   # ~4 µas


def test_a_header_wcslib_refuses_gives_a_picture_without_wcs() -> None:
    header = fits.Header({"CTYPE1": "RA---XXX", "CTYPE2": "DEC--XXX", "CRPIX1": 1.0})
    assert len(binned_header(header, 4, 0, 0)) == 0


# --- when pictures are made from it ---------------------------------------------------------------

def test_pictures_coarser_than_the_thumbnail_use_it_finer_ones_do_not(tmp_path) -> None:
    image = write_image(tmp_path / "img.fits", noisy(400, 600))
    thumbs = Thumbnails(tmp_path / "thumbs", size=150, max_bytes=10**8)   # factor 4 for 600 px
    [whole] = thumbs.cuts([image], None, 100)
    assert whole.box == PixelBox(0, 600, 0, 400) and whole.planes[0].data.shape == (100, 150)
    assert thumbs.cuts([image], None, 150) is not None     # exactly the thumbnail's pixels
    assert thumbs.cuts([image], None, 199) is not None     # 600/199: still 1/4 of the source
    assert thumbs.cuts([image], None, 200) is None         # 1/3: finer, read from the source
    assert thumbs.cuts([image], None, None) is None        # full resolution
    assert Thumbnails(tmp_path / "big", size=600, max_bytes=10**8).cuts([image], None, 10) is None
    # A region: the box out to whole blocks, at the thumbnail's pixels.
    region = Circle(150.0, 2.0, 0.005)   # about 137 source pixels across
    [part] = thumbs.cuts([image], region, 30)
    assert part.box.x0 % 4 == 0 and part.box.y0 % 4 == 0
    assert part.planes[0].data.shape == (-(-part.box.shape[0] // 4), -(-part.box.shape[1] // 4))
    assert thumbs.cuts([image], region, 60) is None
    assert thumbs.cuts([image], Circle(10.0, 2.0, 0.005), 30) is None    # no overlap


def make_cutouts(data_dir: Path, demo_root: Path, **env: str) -> Cutouts:
    link_demo(data_dir, demo_root)
    settings = load_settings(environ={"CUTOUT_DATA_DIR": str(data_dir),
                                      **{f"CUTOUT_{k.upper()}": v for k, v in env.items()}})
    return Cutouts(load_datasets(settings, scanned_catalogue(demo_root)), settings)


def picture(cutouts: Cutouts, owner: str | None, *pairs: tuple[str, str]) -> tuple[np.ndarray, fits.Header]:
    request = cutouts.parse(list(pairs))
    targets = cutouts.plan(request)
    body = cutouts.make(targets, request, cutouts.limits(owner))
    assert body is not None
    with Image.open(io.BytesIO(body)) as png:
        return np.asarray(png), fits.Header.fromstring(png.text[WCS_KEY], sep="\n")


def test_a_picture_from_the_thumbnail_is_the_picture_from_the_source(tmp_path, demo_root) -> None:
    # 1024-pixel demo images: a 256-pixel thumbnail is 1/4; SIZE=128 is 1/8 of the source.
    direct = make_cutouts(tmp_path / "direct", demo_root)     # no thumbnail below 1024 pixels
    thumbnailed = make_cutouts(tmp_path / "thumbs", demo_root, thumbnail_size="256")
    for pairs in ([("ID", DID)], [("ID", DID), ("RGB", "default")]):
        asked = [*pairs, ("RESPONSEFORMAT", "png"), ("SIZE", "128")]
        expected, expected_wcs = picture(direct, "alice", *asked)
        got, got_wcs = picture(thumbnailed, "alice", *asked)
        assert got.shape == expected.shape == ((128, 128, 3) if len(pairs) == 2 else (128, 128))
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1   # float rounding only
        for key in ("CRPIX1", "CRPIX2", "CD1_1", "CD2_2", "CRVAL1", "CRVAL2", "NAXIS1", "NAXIS2"):
            assert got_wcs[key] == pytest.approx(expected_wcs[key], rel=1e-9, abs=1e-12), key
    assert len(list((tmp_path / "thumbs" / "thumbnails").glob("*.npy"))) == 3   # r, and i,r,g


def test_anonymous_whole_image_pictures_are_bounded_by_the_thumbnail(tmp_path, demo_root) -> None:
    cutouts = make_cutouts(tmp_path, demo_root, thumbnail_size="256", anonymous_max_cutout_pixels="1000")
    pixels, _ = picture(cutouts, None, ("ID", DID), ("RESPONSEFORMAT", "png"), ("SIZE", "341"))
    assert pixels.shape == (256, 256)   # 1024/341 rounds up to the thumbnail's 1/4
    with pytest.raises(UsageError, match="anonymous"):   # 1/3, finer than the thumbnail: the source limit
        picture(cutouts, None, ("ID", DID), ("RESPONSEFORMAT", "png"), ("SIZE", "342"))


# --- the files ------------------------------------------------------------------------------------

def test_made_once_and_made_again_when_the_image_changes(tmp_path) -> None:
    image = write_image(tmp_path / "img.fits", noisy(400, 600))
    thumbs = Thumbnails(tmp_path / "thumbs", size=150, max_bytes=10**8)
    first = thumbs.thumbnail(image, 4)
    [kept] = (tmp_path / "thumbs").glob("*.npy")
    np.save(kept, np.full_like(first, 7.0))   # what the next picture reads: the file, not the image
    assert float(thumbs.thumbnail(image, 4)[0, 0]) == 7.0
    write_image(tmp_path / "img.fits", noisy(400, 600, seed=2))   # the image is replaced
    stat = image.path.stat()
    os.utime(image.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = thumbs.thumbnail(image, 4)
    np.testing.assert_allclose(again, reduce(noisy(400, 600, seed=2), 4), rtol=1e-6, equal_nan=True)
    kept.write_bytes(b"not a numpy file")   # a damaged file is made again
    assert thumbs.thumbnail(image, 4).shape == (100, 150)


def test_the_folder_keeps_within_its_bytes_least_recently_used_first(tmp_path) -> None:
    images = [write_image(tmp_path / f"img{i}.fits", noisy(400, 600, seed=i)) for i in range(4)]
    one = 100 * 150 * 4 + 128   # float32 pixels and the .npy header
    thumbs = Thumbnails(tmp_path / "thumbs", size=150, max_bytes=2 * one + 10)
    for age, image in enumerate(images[:2]):
        path = thumbs.path(image, 4)
        thumbs.thumbnail(image, 4)
        os.utime(path, (1000 + age, 1000 + age))   # image 0 used longest ago
    thumbs.thumbnail(images[2], 4)
    assert not thumbs.path(images[0], 4).exists()
    assert thumbs.path(images[1], 4).exists() and thumbs.path(images[2], 4).exists()
    assert thumbs.total_bytes() <= thumbs.max_bytes
    # Smaller than one thumbnail: only the one just made is kept.
    tiny = Thumbnails(tmp_path / "thumbs", size=150, max_bytes=1)
    tiny.thumbnail(images[3], 4)
    assert [p.name for p in (tmp_path / "thumbs").glob("*.npy")] == [tiny.path(images[3], 4).name]
