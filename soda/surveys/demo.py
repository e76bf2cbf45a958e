"""DES-like demo images: synthetic coadd tiles laid out and compressed as DESDM does.

Each file ``{TILE}_r{req}p{att}_{band}.fits.fz`` has an empty primary HDU and three
RICE_1 tile-compressed extensions with one compression tile per image row (as DESDM's
fpack): SCI (float32, quantized with subtractive dithering), MSK (int32 bitmask, lossless)
and WGT (float32 inverse variance). The pixels are a pure function of (seed, tile, band,
size): stars (Moffat PSF) and elliptical exponential galaxies on sky noise. The stars and
galaxies of a tile are the same in every band, with band-dependent colours.

Full-size tiles (size=10000) are 400 MB per plane in memory; each plane is made, written
and dropped before the next, so a builder holds one plane and its compressed bytes
(about 0.7 GB at 10000 px), and at most two builders run at once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed import SUBTRACTIVE_DITHER_1, SUBTRACTIVE_DITHER_2

from soda.surveys.des import PIXEL_SCALE, tile_wcs
from soda.surveys.locks import exclusive

log = logging.getLogger(__name__)

_MANIFEST = ".demo-build.json"  # the parameters the files were built from (written last)
_LOCK = ".demo-build.lock"
_ORIGIN = "cutout-service demo"
_VERSION = 2  # bump when the generated pixels change

DEFAULT_TILES = ("DES0139-4457", "DES0000+0209")
DEFAULT_BANDS = ("g", "r", "i")

# Bits of the demo MSK plane (our own; DES coadd masks use their own bit set).
MASK_BADPIX = 1
MASK_SATURATE = 2
MASK_BADCOL = 4

ZEROPOINT = 30.0  # DES coadds: mag = 30 - 2.5 log10(counts)
SATURATION = 30000.0
_BLOCK_ROWS = 512  # rows of noise drawn at a time, to bound temporary memory

_SKY_SIGMA = {"g": 3.0, "r": 4.0, "i": 5.0, "z": 7.0, "Y": 12.0}  # ADU, per pixel at full depth
_SEEING = {"g": 1.10, "r": 0.95, "i": 0.90, "z": 0.88, "Y": 0.92}  # PSF FWHM, arcsec
_COLOUR_SLOPE = {"g": 1.0, "r": 0.0, "i": -0.35, "z": -0.55, "Y": -0.65}  # mag per unit (g-r)
# DECam-style FILTER strings (band, camera, centre and width in Angstrom).
_FILTER = {
    "g": "g DECam SDSS c0001 4720.0 1520.0",
    "r": "r DECam SDSS c0002 6415.0 1480.0",
    "i": "i DECam SDSS c0003 7835.0 1470.0",
    "z": "z DECam SDSS c0004 9260.0 1520.0",
    "Y": "Y DECam c0005 10095.0 1130.0",
}
_MOFFAT_BETA = 3.0


@dataclass(frozen=True)
class _Build:
    tiles: tuple[str, ...]
    bands: tuple[str, ...]
    size: int
    seed: int
    version: int = _VERSION


@dataclass(frozen=True)
class _File:
    tile: str
    band: str
    name: str


def _files(build: _Build) -> list[_File]:
    files = []
    for i, tile in enumerate(build.tiles):
        # Real DESDM names carry the processing request and attempt, which differ per tile.
        reqatt = f"r{4907 + 13 * i}p{1 + i % 2:02d}"
        files += [_File(tile, band, f"{tile}_{reqatt}_{band}.fits.fz") for band in build.bands]
    return files


# --- the sky model ------------------------------------------------------------------------

def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _rng(*parts: int | str) -> np.random.Generator:
    return np.random.default_rng([p if isinstance(p, int) else _crc(p) for p in parts])


@dataclass(frozen=True)
class _Catalogue:
    """The stars and galaxies of one tile (pixel positions, r magnitudes, g-r colours)."""

    star_x: np.ndarray
    star_y: np.ndarray
    star_mag: np.ndarray
    star_colour: np.ndarray
    gal_x: np.ndarray
    gal_y: np.ndarray
    gal_mag: np.ndarray
    gal_colour: np.ndarray
    gal_re: np.ndarray  # half-light radius, pixels
    gal_q: np.ndarray  # axis ratio
    gal_theta: np.ndarray  # position angle, radians


def _magnitudes(rng: np.random.Generator, n: int, bright: float, faint: float) -> np.ndarray:
    # Number counts rising as 10^(0.3 m): mostly faint sources, a few bright ones.
    u = rng.random(n)
    return bright + np.log10(1 + u * (10 ** (0.3 * (faint - bright)) - 1)) / 0.3


def _catalogue(seed: int, tile: str, size: int) -> _Catalogue:
    rng = _rng(seed, tile, "sources")
    area = (size / 2048) ** 2
    n_star, n_gal = max(1, round(200 * area)), max(1, round(50 * area))
    n_bright = max(1, round(3 * area))  # saturated, so that MSK has saturated cores
    star_mag = np.concatenate([rng.uniform(12.5, 14.5, n_bright), _magnitudes(rng, n_star, 15.0, 24.0)])
    n_star += n_bright
    return _Catalogue(
        star_x=rng.uniform(0, size, n_star), star_y=rng.uniform(0, size, n_star),
        star_mag=star_mag, star_colour=rng.uniform(0.2, 1.4, n_star),
        gal_x=rng.uniform(0, size, n_gal), gal_y=rng.uniform(0, size, n_gal),
        gal_mag=_magnitudes(rng, n_gal, 15.5, 21.0), gal_colour=rng.uniform(0.4, 1.8, n_gal),
        gal_re=rng.uniform(4.0, 20.0, n_gal), gal_q=rng.uniform(0.25, 1.0, n_gal),
        gal_theta=rng.uniform(0, math.pi, n_gal),
    )


def _flux(mag: float) -> float:
    return 10 ** (-0.4 * (mag - ZEROPOINT))


def _moffat_alpha(band: str) -> float:
    fwhm = _SEEING[band] / PIXEL_SCALE
    return fwhm / (2 * math.sqrt(2 ** (1 / _MOFFAT_BETA) - 1))


def _moffat_peak(flux: float, alpha: float) -> float:
    return flux * (_MOFFAT_BETA - 1) / (math.pi * alpha**2)


def _stamp(size: int, x: float, y: float, radius: int) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """The image slices around (x, y) and the offsets of their pixel centres from it."""
    x0, x1 = max(0, int(x) - radius), min(size, int(x) + radius + 1)
    y0, y1 = max(0, int(y) - radius), min(size, int(y) + radius + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = np.arange(x0, x1, dtype=np.float32) - np.float32(x)
    dy = np.arange(y0, y1, dtype=np.float32) - np.float32(y)
    return slice(y0, y1), slice(x0, x1), dx[None, :], dy[:, None]


def _add_stars(sci: np.ndarray, cat: _Catalogue, band: str) -> None:
    alpha = _moffat_alpha(band)
    for x, y, mag, colour in zip(cat.star_x, cat.star_y, cat.star_mag, cat.star_colour):
        flux = _flux(mag + colour * _COLOUR_SLOPE[band])
        # Out to where the profile drops to ~0.1 ADU.
        radius = int(min(80, alpha * math.sqrt((_moffat_peak(flux, alpha) / 0.1) ** (1 / _MOFFAT_BETA))))
        stamp = _stamp(sci.shape[0], x, y, max(radius, 4))
        if stamp is None:
            continue
        ys, xs, dx, dy = stamp
        r2 = (dx**2 + dy**2) / np.float32(alpha**2)
        sci[ys, xs] += np.float32(_moffat_peak(flux, alpha)) * (1 + r2) ** np.float32(-_MOFFAT_BETA)


def _cores(size: int, cat: _Catalogue, band: str) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Where each star's noiseless profile rises above SATURATION: slices and a boolean disc.

    Found from the catalogue, not the pixels, so MSK can be made without SCI in memory.
    """
    alpha = _moffat_alpha(band)
    for x, y, mag, colour in zip(cat.star_x, cat.star_y, cat.star_mag, cat.star_colour):
        peak = _moffat_peak(_flux(mag + colour * _COLOUR_SLOPE[band]), alpha)
        if peak <= SATURATION:
            continue
        radius = alpha * math.sqrt((peak / SATURATION) ** (1 / _MOFFAT_BETA) - 1)
        stamp = _stamp(size, x, y, int(radius) + 1)
        if stamp is not None:
            ys, xs, dx, dy = stamp
            yield ys, xs, (dx**2 + dy**2) <= np.float32(radius**2)


def _add_galaxies(sci: np.ndarray, cat: _Catalogue, band: str) -> None:
    soft2 = np.float32((_moffat_alpha(band) * 0.7) ** 2)  # stands in for PSF blurring
    for i in range(len(cat.gal_x)):
        flux = _flux(cat.gal_mag[i] + cat.gal_colour[i] * _COLOUR_SLOPE[band])
        re, q, theta = cat.gal_re[i], cat.gal_q[i], cat.gal_theta[i]
        scale = re / 1.678  # exponential disc: half-light radius = 1.678 scale lengths
        stamp = _stamp(sci.shape[0], cat.gal_x[i], cat.gal_y[i], int(min(160, 8 * re)))
        if stamp is None:
            continue
        ys, xs, dx, dy = stamp
        c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
        major, minor = dx * c + dy * s, (dy * c - dx * s) / np.float32(q)
        r = np.sqrt(major**2 + minor**2 + soft2) / np.float32(scale)
        sci[ys, xs] += np.float32(flux / (2 * math.pi * q * scale**2)) * np.exp(-r)


def _depth(size: int, rows: slice, seed: int, tile: str, band: str) -> np.ndarray:
    """Relative depth (number of exposures) of rows of the tile: a smooth dither pattern."""
    rng = _rng(seed, tile, band, "depth")
    px, py = rng.uniform(0, 2 * math.pi, 2)
    x = np.arange(size, dtype=np.float32)
    y = np.arange(rows.start, rows.stop, dtype=np.float32)
    fx = np.sin(x * np.float32(2 * math.pi / (0.37 * size)) + np.float32(px))
    fy = np.cos(y * np.float32(2 * math.pi / (0.29 * size)) + np.float32(py))
    return np.float32(0.8) + np.float32(0.2) * fy[:, None] * fx[None, :]


@dataclass(frozen=True)
class _Defects:
    columns: tuple[tuple[int, int, int], ...]  # (x, y0, y1)
    pixels: tuple[np.ndarray, np.ndarray]  # (y, x)


def _defects(seed: int, tile: str, band: str, size: int) -> _Defects:
    rng = _rng(seed, tile, band, "defects")
    columns = []
    for _ in range(3):
        x, y0 = int(rng.integers(0, size)), int(rng.integers(0, size // 2))
        columns.append((x, y0, min(size, y0 + int(rng.integers(size // 8, size // 2)))))
    n = max(5, round(size * size * 2e-5))
    return _Defects(tuple(columns), (rng.integers(0, size, n), rng.integers(0, size, n)))


def _sci(build: _Build, tile: str, band: str, cat: _Catalogue, defects: _Defects) -> np.ndarray:
    size = build.size
    sci = np.empty((size, size), dtype=np.float32)
    rng = _rng(build.seed, tile, band, "noise")
    for start in range(0, size, _BLOCK_ROWS):
        rows = slice(start, min(size, start + _BLOCK_ROWS))
        noise = rng.standard_normal((rows.stop - rows.start, size), dtype=np.float32)
        noise *= np.float32(_SKY_SIGMA[band]) / np.sqrt(_depth(size, rows, build.seed, tile, band))
        sci[rows] = noise
    _add_stars(sci, cat, band)
    _add_galaxies(sci, cat, band)
    for ys, xs, core in _cores(size, cat, band):
        sci[ys, xs][core] = SATURATION
    for x, y0, y1 in defects.columns:
        sci[y0:y1, x] = 0.0
    return sci


def _msk(build: _Build, cat: _Catalogue, band: str, defects: _Defects) -> np.ndarray:
    size = build.size
    msk = np.zeros((size, size), dtype=np.int32)
    for ys, xs, core in _cores(size, cat, band):
        msk[ys, xs][core] |= MASK_SATURATE
    for x, y0, y1 in defects.columns:
        msk[y0:y1, x] |= MASK_BADCOL
    msk[defects.pixels] |= MASK_BADPIX
    return msk


def _wgt(build: _Build, tile: str, band: str, defects: _Defects) -> np.ndarray:
    size = build.size
    wgt = np.empty((size, size), dtype=np.float32)
    for start in range(0, size, _BLOCK_ROWS):
        rows = slice(start, min(size, start + _BLOCK_ROWS))
        wgt[rows] = _depth(size, rows, build.seed, tile, band) / np.float32(_SKY_SIGMA[band] ** 2)
    for x, y0, y1 in defects.columns:
        wgt[y0:y1, x] = 0.0
    wgt[defects.pixels] = 0.0
    return wgt


# --- files ---------------------------------------------------------------------------------

def _header(tile: str, band: str, size: int, extname: str, bunit: str | None) -> fits.Header:
    wcs = tile_wcs(tile, (size, size))
    header = fits.Header()
    header["DES_EXT"] = ({"SCI": "IMAGE", "MSK": "MASK", "WGT": "WEIGHT"}[extname], "type of extension")
    header["TILENAME"] = (tile, "DES coadd tile")
    header["BAND"] = (band, "DES band")
    header["FILTER"] = (_FILTER[band], "filter")
    if bunit:
        header["BUNIT"] = bunit
    for axis in (1, 2):
        header[f"CTYPE{axis}"] = wcs.wcs.ctype[axis - 1]
        header[f"CUNIT{axis}"] = "deg"
        header[f"CRVAL{axis}"] = float(wcs.wcs.crval[axis - 1])
        header[f"CRPIX{axis}"] = float(wcs.wcs.crpix[axis - 1])
    for i in (1, 2):
        for j in (1, 2):
            header[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1][j - 1])
    header["RADESYS"] = "ICRS"
    header["EQUINOX"] = 2000.0
    if extname == "SCI":
        header["MAGZERO"] = (ZEROPOINT, "mag = MAGZERO - 2.5 log10(flux)")
        header["SATURATE"] = (SATURATION, "saturation level")
    if extname == "MSK":
        header["MSKBADP"] = (MASK_BADPIX, "bit: bad pixel")
        header["MSKSAT"] = (MASK_SATURATE, "bit: saturated")
        header["MSKBADC"] = (MASK_BADCOL, "bit: bad column")
    return header


def _append(path: Path, data: np.ndarray, header: fits.Header, name: str,
            quantize: tuple[float, int, int] | None = None) -> None:
    """Append a RICE_1 compressed extension, one compression tile per row.

    ``quantize``: (quantize_level, dither method, dither seed) for float data.
    """
    options: dict[str, object] = {"compression_type": "RICE_1", "tile_shape": (1, data.shape[1])}
    if quantize:
        level, method, seed = quantize
        options |= {"quantize_level": level, "quantize_method": method, "dither_seed": seed}
    with fits.open(path, mode="append") as hdul:
        hdul.append(fits.CompImageHDU(data=data, header=header, name=name, **options))


def _write_file(build: _Build, file: _File, path: Path) -> None:
    """One demo file; each plane is made, compressed and dropped before the next."""
    tile, band, size = file.tile, file.band, build.size
    primary = fits.PrimaryHDU()
    primary.header["TILENAME"] = tile
    primary.header["BAND"] = band
    primary.header["ORIGIN"] = _ORIGIN
    primary.header["COMMENT"] = "Synthetic DES-like coadd tile: not real data."
    primary.writeto(path)
    cat, defects = _catalogue(build.seed, tile, size), _defects(build.seed, tile, band, size)

    def dither(ext: str) -> int:  # fixed, so that the same call writes the same pixels
        return 1 + _crc(f"{build.seed}:{tile}:{band}:{ext}") % 10000

    # SCI: fpack's defaults, q = 16 (a step of 1/16 of the noise) with subtractive dithering.
    _append(path, _sci(build, tile, band, cat, defects), _header(tile, band, size, "SCI", "adu"),
            "SCI", (16.0, SUBTRACTIVE_DITHER_1, dither("SCI")))
    _append(path, _msk(build, cat, band, defects), _header(tile, band, size, "MSK", None), "MSK")
    # WGT is smooth, so a noise-relative step would be tiny and the plane barely compressed:
    # a fixed step of 1/4096 of the full-depth weight instead (a negative level is a step),
    # with the dither variant that keeps zero weights exactly zero.
    step = 1 / _SKY_SIGMA[band] ** 2 / 4096
    _append(path, _wgt(build, tile, band, defects), _header(tile, band, size, "WGT", "adu-2"),
            "WGT", (-step, SUBTRACTIVE_DITHER_2, dither("WGT")))


def _write_into(build: _Build, file: _File, folder: str) -> str:
    path = Path(folder) / file.name
    _write_file(build, file, path)
    return file.name


def _workers(build: _Build, count: int) -> int:
    # Full-size planes take 400 MB each: at most two builders at a time.
    if build.size < 4096 or count < 2:
        return 1
    return max(1, min(2, os.cpu_count() or 1, count))


def _up_to_date(root: Path, build: _Build, files: Sequence[_File]) -> bool:
    try:
        manifest = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (manifest == json.loads(json.dumps(asdict(build)))
            and all((root / f.name).is_file() for f in files))


def _is_demo_file(path: Path) -> bool:
    try:
        return fits.getheader(path, 0).get("ORIGIN") == _ORIGIN
    except (OSError, ValueError):
        return False


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _build(root: Path, build: _Build, files: Sequence[_File]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=root))
    try:
        workers = _workers(build, len(files))
        if workers == 1:
            for file in files:
                _write_into(build, file, str(staging))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_write_into, [build] * len(files), files, [str(staging)] * len(files)))
        (root / _MANIFEST).unlink(missing_ok=True)
        # Demo files of an earlier build that this one does not make would be ingested with it.
        keep = {f.name for f in files}
        for old in root.glob("DES*.fits.fz"):
            if old.name not in keep and _is_demo_file(old):
                old.unlink()
        for file in files:
            os.replace(staging / file.name, root / file.name)
        # The manifest goes last: while it is missing or stale, the build is not done.
        _replace_text(root / _MANIFEST, json.dumps(asdict(build), indent=1) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_des_demo(root: Path, tiles: Sequence[str] = DEFAULT_TILES,
                   bands: Sequence[str] = DEFAULT_BANDS, size: int = 2048, seed: int = 0) -> Path:
    """Write the demo tiles into ``root`` (DESDM names and layout, for `cutout ingest`);
    returns ``root``.

    Nothing is rewritten when ``root`` already holds exactly this build.
    """
    build = _Build(tuple(tiles), tuple(bands), int(size), int(seed))
    unknown = [b for b in build.bands if b not in _SKY_SIGMA]
    if unknown or build.size < 16 or build.seed < 0 or not build.tiles:
        raise ValueError(f"need DES tiles, bands among {', '.join(_SKY_SIGMA)}, size >= 16 and "
                         f"seed >= 0 (got {build.tiles}, {build.bands}, {build.size}, {build.seed})")
    for tile in build.tiles:
        tile_wcs(tile)  # ValueError for a name that is not a DES tile
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = _files(build)
    with exclusive(root / _LOCK):  # one builder per folder
        if not _up_to_date(root, build, files):
            log.info("building %d demo images of %d px in %s", len(files), build.size, root)
            _build(root, build, files)
    return root


def ensure_demo(root: Path) -> Path:
    """``root``; the default demo is built only when no demo build is there."""
    root = Path(root)
    if (root / _MANIFEST).exists():
        return root
    return build_des_demo(root)
