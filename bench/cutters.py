"""The ways of making one cutout that the engine section compares, each from a file to the
bytes of a FITS answer (SCI, MSK and WGT cut alike):

  ours        soda.engine.cutout.cut (only the pixels or compression tiles the box needs),
              then soda.output.fits.fits_cutouts; with the process's file cache as the
              service keeps it (headers, WCS, open files), its decoded tiles dropped before
              each cut, so every cut decodes what it needs (no flattering reuse)
  decompress  open, read each whole HDU's .data (decompressing it all), slice, write
  astrocut    astrocut.fits_cut(..., extension="all", memory_only=True), then write
  naive       open, astropy's Cutout2D per HDU, write (naive_server.naive_cutout)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from naive_server import naive_cutout  # bench/naive_server.py (the script's folder is on sys.path)
from soda.engine.cutout import Cut, cut
from soda.engine.files import ImageFiles
from soda.output.fits import fits_cutouts
from soda.sky.regions import Circle
from soda.surveys.base import ImageRef

METHODS = ("ours", "decompress", "astrocut", "naive")


@dataclass(frozen=True)
class Position:
    ra: float
    dec: float
    arcmin: float  # side of the cutout: a circle of this diameter, a square of this side

    def circle(self) -> Circle:
        return Circle(self.ra, self.dec, self.arcmin / 60 / 2)


def have_astrocut() -> bool:
    try:
        import astrocut  # noqa: F401
    except ImportError:
        return False
    return True


# The service's defaults (conf.settings: file_cache_entries, tile_cache_bytes).
FILES = ImageFiles(64, 128 * 2**20)


def our_cut(image: ImageRef, pos: Position) -> Cut:
    FILES.tiles.clear()
    result = cut(image, pos.circle(), files=FILES)
    if result is None:
        raise AssertionError(f"no overlap at {pos}")
    return result


def ours(image: ImageRef, pos: Position) -> bytes:
    return fits_cutouts([our_cut(image, pos)])


def decompress(image: ImageRef, box: tuple[int, int, int, int]) -> bytes:
    """``box`` (x0, x1, y0, y1) is found beforehand, by ``our_cut``."""
    x0, x1, y0, y1 = box
    out = fits.HDUList([fits.PrimaryHDU()])
    with fits.open(image.path) as hdul:
        for name in image.hdus:
            hdu = hdul[name]
            out.append(fits.ImageHDU(np.array(hdu.data[y0:y1, x0:x1]), hdu.header, name=name))
        buffer = io.BytesIO()
        out.writeto(buffer)
    return buffer.getvalue()


def astrocut_cut(path: Path, pos: Position) -> bytes:
    import astropy.units as u
    import astrocut
    from astropy.coordinates import SkyCoord

    hduls = astrocut.fits_cut([str(path)], SkyCoord(pos.ra, pos.dec, unit="deg"), pos.arcmin * u.arcmin,
                              extension="all", memory_only=True)
    buffer = io.BytesIO()
    hduls[0].writeto(buffer)
    return buffer.getvalue()


def naive(path: Path, pos: Position) -> bytes:
    return naive_cutout(str(path), pos.ra, pos.dec, pos.arcmin)


def methods_at(image: ImageRef, positions: list[Position],
               astrocut_installed: bool) -> dict[str, Callable[[int], object]]:
    """Each method as a call of the repetition number (which picks the position)."""
    boxes = []
    for pos in positions:
        b = our_cut(image, pos).box
        boxes.append((b.x0, b.x1, b.y0, b.y1))
    found: dict[str, Callable[[int], object]] = {
        "ours": lambda i: ours(image, positions[i]),
        "decompress": lambda i: decompress(image, boxes[i]),
        "naive": lambda i: naive(image.path, positions[i]),
    }
    if astrocut_installed:
        found["astrocut"] = lambda i: astrocut_cut(image.path, positions[i])
    return found


def same_pixels(image: ImageRef, pos: Position) -> bool:
    """Whether ours and decompress-then-cut give the same pixels (a check, untimed)."""
    ours_cut = our_cut(image, pos)
    b = ours_cut.box
    with fits.open(image.path) as hdul:
        return all(np.array_equal(plane.data, hdul[name].data[b.y0:b.y1, b.x0:b.x1], equal_nan=True)
                   for plane, name in zip(ours_cut.planes, image.hdus, strict=True))
