"""Large cuts of tile-compressed images: decoded in strips, and not kept when they would
fill the cache (the memory of a 2048² cut from a DES tile stays near its own pixels)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soda.engine import tiles
from soda.engine.files import ImageFiles
from soda.engine.pixels import PixelBox

SIDE = 2048


@pytest.fixture(scope="module")
def row_tiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(3).integers(0, 60000, (SIDE, SIDE)).astype(np.int32)
    path = tmp_path_factory.mktemp("strips") / "rows.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, name="SCI", compression_type="RICE_1",
                                                       tile_shape=(1, SIDE))]).writeto(path)
    return path, data


def _read(files: ImageFiles, path: Path, box: PixelBox) -> np.ndarray:
    layout = files.layout(path, "test")
    return files.read(layout, layout.hdu("SCI"), box, "test")


def test_a_cut_larger_than_half_the_cache_keeps_nothing_and_holds_one_strip(row_tiled, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path, data = row_tiled
    monkeypatch.setattr(tiles, "STRIP_BYTES", 2 * 2**20)  # 128 rows of 8 bytes a pixel
    files = ImageFiles(8, 4 * 2**20)  # rows of a 1536-row cut: 12 MiB decoded, 3x the cache
    box = PixelBox(200, 1800, 100, 1636)
    _read(files, path, PixelBox(0, 10, 0, 10))  # the file's layout and handle made
    files.tiles.clear()
    tracemalloc.start()
    try:
        cut = _read(files, path, box)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(cut, data[100:1636, 200:1800])
    assert files.tiles.held_bytes == 0 and len(files.tiles) == 0
    own = cut.nbytes  # 9.8 MB; its whole rows decoded at once would be 12.6 MB more
    assert peak < own + 5 * 2**20, (peak, own)


def test_a_small_cut_keeps_its_tiles_and_the_next_reads_them(row_tiled) -> None:  # type: ignore[no-untyped-def]
    path, data = row_tiled
    files = ImageFiles(8, 4 * 2**20)
    box = PixelBox(10, 60, 500, 600)  # 100 rows of 8 kB: 0.8 MB, under half the cache
    assert np.array_equal(_read(files, path, box), data[500:600, 10:60])
    assert len(files.tiles) == 100 and files.tiles.held_bytes == 100 * SIDE * 4
    assert np.array_equal(_read(files, path, PixelBox(30, 90, 550, 600)), data[550:600, 30:90])
    assert len(files.tiles) == 100  # all taken from the cache
    files.release()
    assert len(files.tiles) == 0 and files.tiles.held_bytes == 0


@pytest.mark.parametrize("tile_rows", [1, 3])
def test_boxes_of_cached_row_tiles_are_their_rows_stacked(tile_rows: int) -> None:
    """A box whose tiles are all cached, on an image tiled in bands of whole rows, is read
    by stacking their rows: the same pixels as a first read that decoded them."""
    image = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    decoded: list[PixelBox] = []

    def decode(area: PixelBox) -> np.ndarray:
        decoded.append(area)
        return image[area.y0:area.y1, area.x0:area.x1]

    cache = tiles.TileCache(2**20)
    for box in (PixelBox(0, 30, 0, 40), PixelBox(3, 17, 11, 12), PixelBox(0, 30, 5, 9), PixelBox(29, 30, 1, 40),
                PixelBox(7, 8, 39, 40)):
        got = tiles.read_tiled(cache, "k", (40, 30), (tile_rows, 30), box, decode)
        assert got.dtype == image.dtype and np.array_equal(got, image[box.y0:box.y1, box.x0:box.x1]), box
    assert len(decoded) >= 1 and all(a.y0 == 0 and a.y1 == 40 for a in decoded[:1])
