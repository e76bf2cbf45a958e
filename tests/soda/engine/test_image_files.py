"""The engine's files: layouts read once, plain pixels through a memory map, compressed
pixels through the tile cache; every box equal to astropy's own slice of the data."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import astropy.io.fits.hdu.compressed.tests as compressed_tests
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.engine.cutout import cut
from soda.engine.files import ImageFiles, ImageUnreadable
from soda.engine.pixels import PixelBox
from soda.engine.tiles import Sweep, TileCache, _rectangles, read_tiled, sweeping
from soda.sky.regions import Circle
from soda.surveys.base import ImageRef

M13 = Path(os.path.dirname(compressed_tests.__file__)) / "data"
BOXES = [PixelBox(0, 1, 0, 1), PixelBox(3, 70, 5, 9), PixelBox(100, 300, 17, 250), PixelBox(250, 300, 250, 300),
         PixelBox(0, 300, 0, 300), PixelBox(37, 38, 0, 300)]


def ref(path: Path, *hdus: str) -> ImageRef:
    return ImageRef(f"ivo://test/files?{path.name}", "t", path.stem, "r", path, hdus or ("1",))


def astropy_box(path: Path, hdu: int, box: PixelBox) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.array(hdul[hdu].data[box.y0:box.y1, box.x0:box.x1])


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype.newbyteorder("=") == theirs.dtype.newbyteorder("="), (ours.dtype, theirs.dtype)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs, equal_nan=True)


def read(files: ImageFiles, path: Path, hdu: str, box: PixelBox) -> np.ndarray:
    layout = files.layout(path, "test")
    return files.read(layout, layout.hdu(hdu), box, "test")


def wcs_header() -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [150.5, 150.5]
    w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    return w.to_header()


def scaled_file(tmp_path: Path, name: str, raw: np.ndarray, **cards: object) -> Path:
    """A plain file with raw pixels written as they are and scaling cards beside them."""
    hdu = fits.ImageHDU(raw, header=wcs_header(), do_not_scale_image_data=True)
    for key, value in cards.items():
        hdu.header[key] = value
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@pytest.fixture(scope="module")
def files() -> ImageFiles:
    return ImageFiles(16, 8 * 2**20)


# --- plain images: one memory map, astropy's scaling -----------------------------------------

RNG = np.random.default_rng(5)
RAW = {
    "float32": (RNG.normal(size=(300, 300)).astype(">f4"), {}),
    "float64 scaled": (RNG.normal(size=(300, 300)).astype(">f8"), {"BSCALE": 2.5, "BZERO": -1.0}),
    "int16 BSCALE/BZERO/BLANK": (RNG.integers(-3000, 3000, (300, 300)).astype(">i2"),
                                 {"BSCALE": 0.01, "BZERO": 100.0, "BLANK": -32768}),
    "int32 BZERO": (RNG.integers(-10**6, 10**6, (300, 300)).astype(">i4"), {"BZERO": 7.0}),
    "uint16": (RNG.integers(-32768, 32767, (300, 300)).astype(">i2"), {"BZERO": 32768}),
    "uint32": (RNG.integers(-2**31, 2**31 - 1, (300, 300)).astype(">i4"), {"BZERO": 2**31}),
    "int8": (RNG.integers(0, 255, (300, 300)).astype("u1"), {"BZERO": -128}),
    "uint8 BLANK": (RNG.integers(0, 255, (300, 300)).astype("u1"), {"BSCALE": 1.5, "BLANK": 7}),
    "int64": (RNG.integers(-2**62, 2**62, (300, 300)).astype(">i8"), {}),
}
RAW["int16 BSCALE/BZERO/BLANK"][0][10:20, 10:20] = -32768  # blank pixels
RAW["uint8 BLANK"][0][5, :] = 7


@pytest.mark.parametrize("kind", RAW)
@pytest.mark.parametrize("box", BOXES, ids=str)
def test_plain_pixels_equal_astropys(tmp_path: Path, files: ImageFiles, kind: str, box: PixelBox) -> None:
    raw, cards = RAW[kind]
    path = scaled_file(tmp_path, "scaled.fits", raw, **cards)
    assert_same(read(files, path, "1", box), astropy_box(path, 1, box))


def test_blank_pixels_are_nan(tmp_path: Path, files: ImageFiles) -> None:
    raw, cards = RAW["int16 BSCALE/BZERO/BLANK"]
    path = scaled_file(tmp_path, "blank.fits", raw, **cards)
    data = read(files, path, "1", PixelBox(0, 30, 0, 30))
    assert np.isnan(data[10:20, 10:20]).all() and not np.isnan(data[:10]).any()


def test_plain_files_are_memory_mapped_not_read_by_astropy(tmp_path: Path, files: ImageFiles,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = scaled_file(tmp_path, "mapped.fits", RAW["float32"][0])
    layout = files.layout(path, "test")

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("astropy opened the file to read plain pixels")

    monkeypatch.setattr(fits, "open", refused)
    box = PixelBox(10, 20, 30, 40)
    assert np.array_equal(files.read(layout, layout.hdu("1"), box, "test"),
                          RAW["float32"][0][30:40, 10:20])


@pytest.mark.parametrize("name, hdu", [("m13.fits", "0"), ("m13_rice.fits", "1")])
def test_m13_boxes(files: ImageFiles, name: str, hdu: str) -> None:
    for box in BOXES:
        assert_same(read(files, M13 / name, hdu, box), astropy_box(M13 / name, int(hdu), box))


def test_gzipped_plain_file_is_read_through_astropy(tmp_path: Path, files: ImageFiles) -> None:
    import gzip

    path = tmp_path / "m13.fits.gz"
    path.write_bytes(gzip.compress((M13 / "m13.fits").read_bytes()))
    box = PixelBox(20, 90, 40, 41)
    assert_same(read(files, path, "0", box), astropy_box(M13 / "m13.fits", 0, box))


# --- compressed images: the tile cache --------------------------------------------------------

def compressed_file(tmp_path: Path, name: str, data: np.ndarray, tile_shape: tuple[int, int],
                    compression: str, **cards: object) -> Path:
    hdu = fits.CompImageHDU(data, header=wcs_header(), compression_type=compression, tile_shape=tile_shape,
                            name="SCI")
    for key, value in cards.items():
        hdu.header[key] = value
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


SKY = (np.random.default_rng(3).normal(100, 5, (300, 300))).astype(np.float32)
MASK = np.random.default_rng(4).integers(0, 2**20, (300, 300)).astype(np.int32)
COMPRESSED = {
    "row-tiled RICE float": (SKY, (1, 300), "RICE_1"),
    "row-tiled RICE int": (MASK, (1, 300), "RICE_1"),
    "256² RICE float": (SKY, (256, 256), "RICE_1"),
    "64² GZIP float": (SKY, (64, 64), "GZIP_1"),
    "50x30 GZIP_2 int": (MASK, (50, 30), "GZIP_2"),
    "100-row HCOMPRESS int": (MASK, (100, 300), "HCOMPRESS_1"),
}


@pytest.mark.parametrize("kind", COMPRESSED)
def test_compressed_boxes_equal_astropys_cold_and_cached(tmp_path: Path, kind: str) -> None:
    data, tiles, compression = COMPRESSED[kind]
    path = compressed_file(tmp_path, "c.fits.fz", data, tiles, compression)
    for tile_bytes in (0, 2**20, 64 * 2**20):  # none kept, some evicted, all kept
        files = ImageFiles(4, tile_bytes)
        for box in BOXES + BOXES[::-1]:
            assert_same(read(files, path, "SCI", box), astropy_box(path, 1, box))
        assert files.tiles.held_bytes <= tile_bytes


def test_scaled_compressed_integers(tmp_path: Path) -> None:
    raw = np.random.default_rng(6).integers(-3000, 3000, (300, 300)).astype(np.int16)
    hdu = fits.CompImageHDU(raw, header=wcs_header(), compression_type="RICE_1", tile_shape=(1, 300),
                            name="SCI", do_not_scale_image_data=True)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 10.0
    path = tmp_path / "scaled.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    files = ImageFiles(4, 2**20)
    for box in BOXES:
        assert_same(read(files, path, "SCI", box), astropy_box(path, 1, box))


def recording(data: np.ndarray) -> tuple[list[PixelBox], Callable[[PixelBox], np.ndarray]]:
    """A decoder of ``data`` and the boxes it was asked for."""
    asked: list[PixelBox] = []

    def decode(area: PixelBox) -> np.ndarray:
        asked.append(area)
        return data[area.y0:area.y1, area.x0:area.x1].copy()

    return asked, decode


def test_a_nearby_box_decodes_only_the_tiles_it_does_not_share() -> None:
    data = np.arange(100 * 40, dtype=np.float32).reshape(100, 40)
    asked, decode = recording(data)

    cache = TileCache(10**6)
    out = read_tiled(cache, "k", data.shape, (1, 40), PixelBox(5, 9, 10, 30), decode)
    assert np.array_equal(out, data[10:30, 5:9])
    assert asked == [PixelBox(0, 40, 10, 30)]  # twenty one-row tiles, one decoding
    asked.clear()
    out = read_tiled(cache, "k", data.shape, (1, 40), PixelBox(0, 40, 0, 35), decode)
    assert np.array_equal(out, data[0:35])
    assert asked == [PixelBox(0, 40, 0, 10), PixelBox(0, 40, 30, 35)]  # the rows above and below only
    asked.clear()
    read_tiled(cache, "k", data.shape, (1, 40), PixelBox(1, 2, 3, 33), decode)
    assert asked == []


def test_reading_ahead_decodes_the_rows_below_a_box_with_it_for_the_next_boxes() -> None:
    data = np.arange(100 * 40, dtype=np.float32).reshape(100, 40)
    asked, decode = recording(data)

    cache = TileCache(10**6)
    with sweeping(Sweep(16)):  # rows ahead, no boxes known
        out = read_tiled(cache, "k", data.shape, (1, 40), PixelBox(5, 9, 10, 20), decode)
        assert np.array_equal(out, data[10:20, 5:9])
        assert asked == [PixelBox(0, 40, 10, 36)]  # the box's rows and 16 more, in one call
        for y in range(12, 27, 3):  # boxes going down the image: served from those rows
            out = read_tiled(cache, "k", data.shape, (1, 40), PixelBox(1, 30, y, y + 10), decode)
            assert np.array_equal(out, data[y:y + 10, 1:30])
        assert len(asked) == 1
        read_tiled(cache, "k", data.shape, (1, 40), PixelBox(0, 40, 30, 40), decode)
        assert asked[1:] == [PixelBox(0, 40, 36, 56)]  # from the first row not kept
        read_tiled(cache, "k", data.shape, (1, 40), PixelBox(0, 40, 90, 95), decode)
        assert asked[2:] == [PixelBox(0, 40, 90, 100)]  # not past the image's end
        square = TileCache(10**6)  # tiles as tall as the rows asked for ahead: nothing more
        read_tiled(square, "s", data.shape, (20, 20), PixelBox(5, 9, 10, 20), decode)
        assert asked[3:] == [PixelBox(0, 20, 0, 20)]
    asked.clear()
    read_tiled(TileCache(10**6), "k", data.shape, (1, 40), PixelBox(5, 9, 10, 20), decode)
    assert asked == [PixelBox(0, 40, 10, 20)]  # outside the block: the box's rows only


def test_a_sweep_over_square_tiles_decodes_the_tiles_its_cuts_need_a_row_of_tiles_at_a_time() -> None:
    data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    asked, decode = recording(data)
    # cuts to come: two in the first row of 20-pixel tiles (columns 0 and 3), one in the third
    boxes = (PixelBox(2, 8, 3, 9), PixelBox(61, 70, 5, 12), PixelBox(30, 35, 45, 50))
    cache = TileCache(10**6)
    with sweeping(Sweep(128, boxes, (100, 100), frozenset({"f.fits"}))):
        out = read_tiled(cache, "k", data.shape, (20, 20), boxes[0], decode, "f.fits")
        assert np.array_equal(out, data[3:9, 2:8])
        assert asked == [PixelBox(0, 80, 0, 20)]  # tiles 0..3 of the first row, in one call
        out = read_tiled(cache, "k", data.shape, (20, 20), boxes[1], decode, "f.fits")
        assert np.array_equal(out, data[5:12, 61:70]) and len(asked) == 1  # decoded with the first
        out = read_tiled(cache, "k", data.shape, (20, 20), boxes[2], decode, "f.fits")
        assert np.array_equal(out, data[45:50, 30:35])
        assert asked[1:] == [PixelBox(20, 40, 40, 60)]  # the one tile it needs: no row below
        read_tiled(cache, "other", data.shape, (20, 20), PixelBox(2, 8, 3, 9), decode, "other.fits")
        assert asked[2:] == [PixelBox(0, 20, 0, 100)]  # a file not swept: its column, rows ahead as ever


def test_a_sweep_over_row_tiles_reads_ahead_only_down_to_the_rows_its_cuts_need() -> None:
    data = np.arange(100 * 40, dtype=np.float32).reshape(100, 40)
    asked, decode = recording(data)
    boxes = (PixelBox(5, 9, 10, 20), PixelBox(1, 30, 15, 25))  # nothing below row 25
    with sweeping(Sweep(50, boxes, (100, 40), frozenset({"f.fits"}))):
        out = read_tiled(TileCache(10**6), "k", data.shape, (1, 40), boxes[0], decode, "f.fits")
    assert np.array_equal(out, data[10:20, 5:9])
    assert asked == [PixelBox(0, 40, 10, 25)]  # not the 50 rows below the box: 5 are needed
    asked.clear()
    with sweeping(Sweep(50, boxes, (100, 40), frozenset({"f.fits"}))):  # unknown file: 50 rows
        read_tiled(TileCache(10**6), "k", data.shape, (1, 40), boxes[0], decode, "g.fits")
    assert asked == [PixelBox(0, 40, 10, 70)]
    asked.clear()
    with sweeping(Sweep(50, boxes, (200, 40), frozenset({"f.fits"}))):  # another grid: unknown
        read_tiled(TileCache(10**6), "k", data.shape, (1, 40), boxes[0], decode, "f.fits")
    assert asked == [PixelBox(0, 40, 10, 70)]


@pytest.mark.parametrize("kind", ["float32", "int16 BSCALE/BZERO/BLANK", "uint16"])
def test_a_sweep_reads_plain_files_through_a_map_kept_until_release(tmp_path: Path, kind: str) -> None:
    raw, cards = RAW[kind]
    path = scaled_file(tmp_path, "swept.fits", raw, **cards)
    files = ImageFiles(4, 0)
    layout = files.layout(path, "test")
    with sweeping(Sweep(128)):
        for box in BOXES:
            assert_same(files.read(layout, layout.hdu("1"), box, "test"), astropy_box(path, 1, box))
    assert list(files._maps) == [str(path)]
    kept = weakref.ref(files._maps[str(path)][1])
    files.release()
    gc.collect()
    assert files._maps == {} and kept() is None  # unmapped: no cut holds a view of it
    assert_same(read(files, path, "1", BOXES[2]), astropy_box(path, 1, BOXES[2]))  # outside: pread
    assert files._maps == {}


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_a_swept_file_shorter_than_its_header_says_is_unreadable(tmp_path: Path) -> None:
    path = scaled_file(tmp_path, "short.fits", RAW["float32"][0])
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 40 * 2880)
    files = ImageFiles(4, 0)
    for swept in (False, True):
        with sweeping(Sweep(128)) if swept else contextlib.nullcontext():
            with pytest.raises(ImageUnreadable, match="ends before the pixels"):
                read(files, path, "1", PixelBox(0, 300, 290, 300))


def test_a_swept_plane_of_three_axes_is_read_as_outside_a_sweep(tmp_path: Path) -> None:
    cube = RNG.normal(size=(1, 40, 50)).astype(">f4")
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, header=wcs_header())]).writeto(path)
    files = ImageFiles(4, 0)
    layout = files.layout(path, "test")
    outside = files.read(layout, layout.hdu("1"), PixelBox(3, 9, 2, 7), "test")
    with sweeping(Sweep(128)):
        assert_same(files.read(layout, layout.hdu("1"), PixelBox(3, 9, 2, 7), "test"), outside)


def test_a_swept_file_that_changed_is_mapped_again(tmp_path: Path) -> None:
    path = scaled_file(tmp_path, "changing.fits", RAW["float32"][0])
    files = ImageFiles(4, 0)
    with sweeping(Sweep(128)):
        read(files, path, "1", BOXES[1])
        first = weakref.ref(files._maps[str(path)][1])
        new = RAW["float32"][0] + 1
        replaced = scaled_file(tmp_path, "new.fits", new)
        os.replace(replaced, path)
        assert_same(read(files, path, "1", BOXES[1]), new[5:9, 3:70])
    gc.collect()
    assert first() is None and str(path) in files._maps


def test_missing_tiles_are_decoded_in_few_rectangles() -> None:
    assert _rectangles([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]) == [(0, 1, 0, 1), (2, 2, 1, 1)]
    assert _rectangles([(r, 0) for r in (3, 4, 5, 9, 10)]) == [(3, 5, 0, 0), (9, 10, 0, 0)]
    assert _rectangles([]) == []


def test_tile_cache_evicts_the_least_recently_used_at_its_byte_bound() -> None:
    cache = TileCache(3 * 4000)
    blocks = [np.zeros((10, 100), np.float32) for _ in range(4)]  # 4000 bytes each
    for n, block in enumerate(blocks[:3]):
        cache.put_block(block, [((n, r), block[r:r + 1]) for r in range(10)])
    assert cache.held_bytes == 12000 and len(cache) == 30
    assert cache.get((0, 5)) is not None  # block 0 used: block 1 is now the oldest
    cache.put_block(blocks[3], [((3, r), blocks[3][r:r + 1]) for r in range(10)])
    assert cache.held_bytes <= 12000
    assert cache.get((1, 0)) is None and cache.get((0, 5)) is not None and cache.get((3, 9)) is not None
    # A block counts whole while any of its tiles is kept.
    assert cache.held_bytes == 4000 * len({key[0] for key in cache._tiles})
    cache.put_block(np.zeros((100, 100), np.float32), [(("big", 0), np.zeros(1))])  # larger than the bound
    assert cache.get(("big", 0)) is None and cache.held_bytes <= 12000


def test_concurrent_cuts_share_the_cache_and_agree(tmp_path: Path) -> None:
    path = compressed_file(tmp_path, "shared.fits.fz", SKY, (1, 300), "RICE_1")
    files = ImageFiles(4, 300 * 1200 * 4)  # holds about a third of the image: evictions race too
    expected = astropy_box(path, 1, PixelBox(0, 300, 0, 300))
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                y0, x0 = (int(v) for v in rng.integers(0, 250, 2))
                box = PixelBox(x0, x0 + 50, y0, y0 + int(rng.integers(1, 50)))
                assert np.array_equal(read(files, path, "SCI", box), expected[box.y0:box.y1, box.x0:box.x1])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert files.tiles.held_bytes <= files.tiles.max_bytes


# --- layouts: read once, read again when the file changes ---------------------------------------

def test_layout_is_read_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    files = ImageFiles(2, 2**20)
    path = compressed_file(tmp_path, "changing.fits.fz", SKY, (1, 300), "RICE_1")
    image = ref(path, "SCI")
    first = cut(image, None, files=files)
    assert files.layout(path, "test") is files.layout(path, "test")
    layout = files.layout(path, "test")
    compressed_file(tmp_path, "changing.fits.fz.new", SKY + 1, (1, 300), "RICE_1")
    os.replace(tmp_path / "changing.fits.fz.new", path)
    os.utime(path, ns=(layout.identity[1] + 10**9, layout.identity[1] + 10**9))
    second = cut(image, None, files=files)
    assert files.layout(path, "test") is not layout
    assert first is not None and second is not None
    assert np.array_equal(second.planes[0].data, astropy_box(path, 1, PixelBox(0, 300, 0, 300)))
    assert not np.array_equal(second.planes[0].data, first.planes[0].data)  # no tile of the old file


def test_layouts_are_bounded_by_entries(tmp_path: Path) -> None:
    files = ImageFiles(2, 0)
    paths = [scaled_file(tmp_path, f"f{n}.fits", RAW["float32"][0]) for n in range(3)]
    layouts = [files.layout(p, "test") for p in paths]
    assert files.layout(paths[2], "test") is layouts[2] and files.layout(paths[1], "test") is layouts[1]
    assert files.layout(paths[0], "test") is not layouts[0]  # forgotten: the least recently used


def test_wcs_is_each_callers_own_copy(tmp_path: Path) -> None:
    files = ImageFiles(2, 0)
    layout = files.layout(scaled_file(tmp_path, "w.fits", RAW["float32"][0]), "test")
    one, two = layout.wcs("1"), layout.wcs("1")
    one.wcs.crpix = [0.0, 0.0]
    assert list(two.wcs.crpix) == [150.5, 150.5] and list(layout.wcs("1").wcs.crpix) == [150.5, 150.5]


def test_missing_and_damaged_files_are_unreadable(tmp_path: Path) -> None:
    files = ImageFiles(2, 0)
    with pytest.raises(ImageUnreadable, match="cannot open"):
        files.layout(tmp_path / "gone.fits", "ivo://x")
    (tmp_path / "bad.fits").write_bytes(b"not a FITS file at all" * 200)
    with pytest.raises(ImageUnreadable, match="cannot read"):
        files.layout(tmp_path / "bad.fits", "ivo://x")
    with pytest.raises(ImageUnreadable, match="HDU NOPE"):
        cut(ref(M13 / "m13.fits", "NOPE"), None, files=files)


def test_cut_with_and_without_the_process_files_agree() -> None:
    image = ref(M13 / "m13_rice.fits", "1")
    with fits.open(M13 / "m13_rice.fits") as hdul:
        ra, dec = WCS(hdul[1].header).pixel_to_world_values(100, 120)
    region = Circle(float(ra), float(dec), 0.01)
    shared = ImageFiles(4, 2**20)
    for _ in range(2):
        a, b = cut(image, region, files=shared), cut(image, region)
        assert a is not None and b is not None and a.box == b.box
        assert np.array_equal(a.planes[0].data, b.planes[0].data)


def open_descriptors(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            pass
    return count


def test_files_opened_for_decoding_are_kept_bounded_and_closed_when_changed(tmp_path: Path) -> None:
    paths = [compressed_file(tmp_path, f"h{n}.fits.fz", SKY, (1, 300), "RICE_1") for n in range(3)]
    files = ImageFiles(8, 0, idle_handles=2)
    for path in paths:
        read(files, path, "SCI", PixelBox(0, 10, 0, 10))
    held = [open_descriptors(p) for p in paths]  # a file and its memory map
    assert held[0] == 0 and held[1] == held[2] > 0  # the least recently returned closed
    read(files, paths[2], "SCI", PixelBox(0, 10, 20, 30))
    assert open_descriptors(paths[2]) == held[2]  # taken again, not opened twice
    layout = files.layout(paths[2], "test")
    os.utime(paths[2], ns=(layout.identity[1] + 10**9, layout.identity[1] + 10**9))
    files.layout(paths[2], "test")
    assert open_descriptors(paths[2]) == 0


def test_a_cut_without_the_process_files_leaves_nothing_open(tmp_path: Path) -> None:
    path = compressed_file(tmp_path, "alone.fits.fz", SKY, (1, 300), "RICE_1")
    assert cut(ref(path, "SCI"), None) is not None
    assert open_descriptors(path) == 0


def test_hdus_are_found_by_name_in_any_case_and_keep_their_own(tmp_path: Path) -> None:
    hdu = fits.ImageHDU(RAW["float32"][0], header=wcs_header())
    hdu.header["EXTNAME"] = "sci"
    path = tmp_path / "lower.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    made = cut(ref(path, "SCI"), None, files=ImageFiles(2, 0))
    assert made is not None and made.planes[0].name == "sci"
    assert np.array_equal(made.planes[0].data, RAW["float32"][0])
    layout = ImageFiles(2, 0).layout(path, "test")
    assert layout.hdu("sci") is layout.hdu("SCI") is layout.hdu("1")
    assert layout.hdu("PRIMARY").index == 0


def test_a_layout_keeps_one_wcs_per_thread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The WCS the pixel box is found on is kept per thread (astropy's WCS is not safe to
    share between threads), and equal to the caller's own copies."""
    import threading

    from astropy.io import fits as _fits
    from astropy.wcs import WCS as _WCS

    from soda.engine.files import ImageFiles as _Files

    header = _WCS(naxis=2)
    header.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    header.wcs.crval = [10.0, -20.0]
    header.wcs.crpix = [32.5, 32.5]
    header.wcs.cdelt = [-0.001, 0.001]
    path = tmp_path / "one.fits"
    _fits.HDUList([_fits.PrimaryHDU(), _fits.ImageHDU(np.zeros((64, 64), np.float32), header.to_header(),
                                                    name="SCI")]).writeto(path)
    layout = _Files(4, 2**20).layout(path, "one")
    mine = layout.thread_wcs("SCI")
    assert layout.thread_wcs("SCI") is mine and layout.wcs("SCI") is not mine
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(layout.thread_wcs("SCI")))
    thread.start()
    thread.join()
    assert other[0] is not mine
    assert np.allclose(mine.wcs.crval, [10.0, -20.0]) and np.allclose(other[0].wcs.crval, mine.wcs.crval)  # type: ignore[attr-defined]


def test_a_plain_box_read_by_rows_equals_astropy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Plain pixels are read row by row with pread (whole rows at once): every kind of box,
    scaled integers and a file cut short."""
    from astropy.io import fits as _fits

    from soda.engine.files import ImageFiles as _Files
    from soda.engine.pixels import PixelBox

    rng = np.random.default_rng(5)
    sci = rng.normal(size=(40, 30)).astype(np.float32)
    counts = rng.integers(0, 60000, size=(40, 30)).astype(np.uint16)   # stored with BZERO 32768
    path = tmp_path / "plain.fits"
    _fits.HDUList([_fits.PrimaryHDU(), _fits.ImageHDU(sci, name="SCI"),
                   _fits.ImageHDU(counts, name="CNT")]).writeto(path)
    files = _Files(4, 2**20)
    layout = files.layout(path, "plain")
    for box in (PixelBox(0, 30, 0, 40), PixelBox(0, 30, 5, 9), PixelBox(3, 17, 11, 12), PixelBox(29, 30, 0, 40)):
        got_sci, got_cnt = files.read_planes(layout, [layout.hdu("SCI"), layout.hdu("CNT")], box, "plain")
        assert np.array_equal(got_sci, sci[box.y0:box.y1, box.x0:box.x1])
        assert got_cnt.dtype.kind == "u" and np.array_equal(got_cnt, counts[box.y0:box.y1, box.x0:box.x1])
