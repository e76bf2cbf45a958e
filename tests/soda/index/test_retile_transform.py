"""The square-tiling rewrite of one .fits.fz file (soda.index.retile), on real files: the
demo's DES-like row-tiled tiles and astropy's sample images."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import astropy
import numpy as np
import pytest
from astropy.io import fits

from soda.index.retile import (NotRetilable, needs_retiling, original_tilings, retile_file, steps_moved,
                               tilings)
from soda.surveys.demo import build_des_demo

SAMPLES = Path(astropy.__file__).parent / "io" / "fits" / "hdu" / "compressed" / "tests" / "data"
# Cards that describe the HDU's layout, which astropy writes itself (their comments, and
# EXTEND of an image compressed from a primary HDU); their values are compared apart.
STRUCTURE = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "EXTEND"}


def user_cards(header: fits.Header) -> list[tuple[str, object, str]]:
    return [(c.keyword, c.value, c.comment) for c in header.cards if c.keyword not in STRUCTURE]


def assert_same_headers(a: fits.Header, b: fits.Header) -> None:
    assert user_cards(a) == user_cards(b)
    for key in ("BITPIX", "NAXIS", "NAXIS1", "NAXIS2"):
        assert a[key] == b[key]


@pytest.fixture(scope="module")
def des_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DES-like tile, 100 pixels a side: one compression tile per row, quantised floats."""
    root = build_des_demo(tmp_path_factory.mktemp("des"), tiles=("DES0139-4457",), bands=("r",), size=100)
    [path] = root.glob("*.fits.fz")
    return path


def test_quantised_planes_keep_their_quantisation_and_move_less_than_half_a_step(des_file: Path,
                                                                                 tmp_path: Path) -> None:
    copy = tmp_path / des_file.name
    result = retile_file(des_file, copy, tile=32)
    assert [(t.name, t.compression, t.tile) for t in tilings(des_file)] == \
        [(n, "RICE_1", (1, 100)) for n in ("SCI", "MSK", "WGT")]
    after = tilings(copy)
    # Square tiles, the same algorithm and the same quantisation parameters.
    assert [(t.name, t.compression, t.tile) for t in after] == [(n, "RICE_1", (32, 32)) for n in ("SCI", "MSK", "WGT")]
    for old, new in zip(tilings(des_file), after):
        assert (new.bitpix, new.quantize, new.level, new.dither_seed) == \
            (old.bitpix, old.quantize, old.level, old.dither_seed)
    assert [p.pixels for p in result.planes][1] == "exact"
    with fits.open(des_file) as a, fits.open(copy) as b, \
            fits.open(copy, disable_image_compression=True) as raw, \
            fits.open(des_file, disable_image_compression=True) as raw_old:
        for name in ("SCI", "MSK", "WGT"):
            assert_same_headers(a[name].header, b[name].header)
            assert b[name].data.dtype == a[name].data.dtype
        assert np.array_equal(a["MSK"].data, b["MSK"].data)  # integers: exact
        for name in ("SCI", "WGT"):
            old, new = a[name].data, b[name].data
            assert not np.array_equal(old, new)  # quantised again: the bytes cannot stay
            moved = steps_moved(old, new, np.asarray(raw[name].data["ZSCALE"]), (32, 32))
            assert 0 < moved <= 0.5 + 1e-6
            # The same level (a step of 1/16 of each tile's noise, or WGT's fixed step)
            # gives steps like the original's.
            before, steps = np.asarray(raw_old[name].data["ZSCALE"]), np.asarray(raw[name].data["ZSCALE"])
            assert np.median(steps) == pytest.approx(np.median(before), rel=0.25)
            assert np.max(steps) <= 1.25 * np.max(before)
        # WGT's dither keeps zero weights zero (SUBTRACTIVE_DITHER_2).
        zeros = a["WGT"].data == 0
        assert zeros.any() and np.all(b["WGT"].data[zeros] == 0)


def test_lossless_keeps_every_pixel_and_records_the_original_tiling(des_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / des_file.name
    result = retile_file(des_file, copy, tile=32, lossless=True)
    assert [(p.name, p.after, p.pixels) for p in result.planes] == [
        ("SCI", "GZIP_2 32x32", "exact"), ("MSK", "RICE_1 32x32", "exact"), ("WGT", "GZIP_2 32x32", "exact")]
    with fits.open(des_file) as a, fits.open(copy) as b:
        assert len(a) == len(b) == 4
        for name in ("SCI", "MSK", "WGT"):
            assert np.array_equal(a[name].data, b[name].data)
            assert_same_headers(a[name].header, b[name].header)
        # The primary header keeps its cards and says what each HDU was.
        assert user_cards(a[0].header) == user_cards(b[0].header)[:len(user_cards(a[0].header))]
    records = original_tilings(copy)
    assert records[0] == ("HDU=1 ZCMPTYPE=RICE_1 ZTILE=100,1 ZQUANTIZ=SUBTRACTIVE_DITHER_1 "
                          f"NOISEBIT=16.0 ZDITHER0={tilings(des_file)[0].dither_seed}")
    assert records[1] == "HDU=2 ZCMPTYPE=RICE_1 ZTILE=100,1"
    assert original_tilings(des_file) == []
    assert result.bytes_after > result.bytes_before  # unquantised floats take more room


@pytest.mark.parametrize("name", ["m13_rice.fits", "m13_gzip.fits", "m13_plio.fits"])
def test_astropy_samples_are_copied_exactly(name: str, tmp_path: Path) -> None:
    copy = tmp_path / name
    [plane] = retile_file(SAMPLES / name, copy, tile=64).planes
    assert plane.pixels == "exact" and plane.after.endswith(" 64x64")
    [before], [after] = tilings(SAMPLES / name), tilings(copy)
    assert (after.compression, after.tile, after.bitpix) == (before.compression, (64, 64), before.bitpix)
    with fits.open(SAMPLES / name) as a, fits.open(copy) as b:
        assert np.array_equal(a[1].data, b[1].data)
        assert_same_headers(a[1].header, b[1].header)


def test_scaled_integers_and_unquantised_floats_stay_exact(tmp_path: Path) -> None:
    src = tmp_path / "mixed.fits.fz"
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 65535, (70, 90)).astype(np.uint16)  # BZERO = 32768
    floats = rng.normal(size=(70, 90)).astype(np.float64)
    floats[3, 4] = np.nan
    table = fits.BinTableHDU.from_columns([fits.Column("X", "J", array=np.arange(5))], name="CAT")
    fits.HDUList([fits.PrimaryHDU(counts[:10, :20]),  # a plain image, kept as stored
                  fits.CompImageHDU(counts, name="COUNTS", tile_shape=(1, 90)),
                  table,
                  fits.CompImageHDU(floats, name="FLOATS", compression_type="GZIP_2", tile_shape=(1, 90),
                                    quantize_level=0.0)]).writeto(src)
    copy = tmp_path / "copy" / src.name
    result = retile_file(src, copy, tile=32)
    assert [p.pixels for p in result.planes] == ["exact", "exact"]
    with fits.open(src) as a, fits.open(copy) as b:
        assert b["COUNTS"].data.dtype == np.uint16 and np.array_equal(a["COUNTS"].data, b["COUNTS"].data)
        assert np.array_equal(a["FLOATS"].data, b["FLOATS"].data, equal_nan=True)
        assert a["CAT"].data.tobytes() == b["CAT"].data.tobytes()
        assert b[0].data.dtype == np.uint16 and np.array_equal(a[0].data, b[0].data)
        assert user_cards(b[0].header)[:len(user_cards(a[0].header))] == user_cards(a[0].header)
        assert_same_headers(a["COUNTS"].header, b["COUNTS"].header)
    assert [(t.name, t.compression, t.tile) for t in tilings(copy)] == [
        ("COUNTS", "RICE_1", (32, 32)), ("FLOATS", "GZIP_2", (32, 32))]


def test_files_with_nothing_to_rewrite_are_refused(des_file: Path, tmp_path: Path) -> None:
    with pytest.raises(NotRetilable, match="no tile-compressed image HDU"):
        retile_file(SAMPLES / "m13.fits", tmp_path / "m13.fits")
    copy = tmp_path / des_file.name
    retile_file(des_file, copy, tile=32)
    assert needs_retiling(des_file, 32) and not needs_retiling(copy, 32) and needs_retiling(copy, 64)
    with pytest.raises(NotRetilable, match="tiled 32x32 already"):
        retile_file(copy, tmp_path / "again" / des_file.name, tile=32)
    with pytest.raises(ValueError, match="16 to 65536"):
        retile_file(des_file, tmp_path / "x.fits.fz", tile=8)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_failed_rewrite_leaves_no_file_and_keeps_the_previous_copy(des_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / des_file.name
    data = des_file.read_bytes()
    broken.write_bytes(data[:len(data) - 2880 * 4])  # the last plane's compressed rows cut short
    copy = tmp_path / "copies" / des_file.name
    with pytest.raises(Exception):  # noqa: B017 - whatever astropy raises for a short heap
        retile_file(broken, copy, tile=32)
    assert list(copy.parent.iterdir()) == []
    retile_file(des_file, copy, tile=32)
    good = copy.read_bytes()
    with pytest.raises(Exception):  # noqa: B017
        retile_file(broken, copy, tile=64)
    assert copy.read_bytes() == good and [p.name for p in copy.parent.iterdir()] == [copy.name]


def test_a_killed_rewrite_never_leaves_the_file_in_place(tmp_path: Path) -> None:
    root = build_des_demo(tmp_path / "des", tiles=("DES0139-4457",), bands=("r",), size=1500)
    [src] = root.glob("*.fits.fz")
    copy = tmp_path / "copies" / src.name
    code = ("import sys; from pathlib import Path; from soda.index.retile import retile_file; "
            "retile_file(Path(sys.argv[1]), Path(sys.argv[2]), 64, lossless=True)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(copy)])
    try:
        deadline = time.monotonic() + 60
        while not any(copy.parent.glob("*.retile-tmp")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(copy.parent.glob("*.retile-tmp")), "the rewrite never started"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not copy.exists()  # only the temporary file, which `cutout retile` removes
    shutil.rmtree(copy.parent)
