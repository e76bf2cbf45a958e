"""Cutout speed on a full-size, row-tiled DES-like .fits.fz tile (10000² px, SCI+MSK+WGT).

Compares, in the same run and on the same file:
  ours        soda.engine.cutout.cut: only the compressed rows the box needs (CompImageHDU.section)
  decompress  the baseline: decompress each whole HDU, then slice
  astrocut    astrocut.fits_cut(..., extension="all", memory_only=True) (if installed)

Prints the median wall time of each and the ratios. Usage:

    .venv/bin/pip install astrocut      # optional, for the astrocut column
    .venv/bin/python bench/cutout_bench.py [--workdir DIR] [--repeat N]

The tile is generated once into --workdir (default /tmp/cutout-bench, about 0.5 GB).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from soda.engine.cutout import cut
from soda.sky.regions import Circle
from soda.surveys.base import ImageRef
from soda.surveys.demo import build_des_demo
from soda.surveys.des import tile_centre
from timing import median_time  # bench/timing.py (the script's folder is on sys.path)

TILE, BAND = "DES0139-4457", "r"
HDUS = ("SCI", "MSK", "WGT")


def decompress_then_cut(path: Path, box: tuple[int, int, int, int]) -> list[np.ndarray]:
    x0, x1, y0, y1 = box
    with fits.open(path) as hdul:
        return [np.array(hdul[name].data[y0:y1, x0:x1]) for name in HDUS]


def astrocut_cut(path: Path, ra: float, dec: float, side_arcmin: float) -> object:
    import astrocut

    return astrocut.fits_cut([str(path)], SkyCoord(ra, dec, unit="deg"), side_arcmin * u.arcmin,
                             extension="all", memory_only=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/cutout-bench")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    root = Path(args.workdir)
    t0 = time.perf_counter()
    build_des_demo(root, tiles=(TILE,), bands=(BAND,), size=10000)
    print(f"full-size tile ready in {time.perf_counter() - t0:.1f} s")
    path = next(root.glob(f"{TILE}_*_{BAND}.fits.fz"))
    image = ImageRef(f"ivo://bench/des?{TILE}_{BAND}", "des", TILE, BAND, path, HDUS)
    ra, dec = tile_centre(TILE)
    ra, dec = ra + 0.05, dec - 0.07  # off-centre, as a real request would be

    try:
        import astrocut  # noqa: F401
        have_astrocut = True
    except ImportError:
        have_astrocut = False
        print("astrocut not installed: its column is skipped (pip install astrocut)")

    print(f"{'cutout':>8} {'pixels':>11} {'ours ms':>9} {'decompress ms':>14} {'astrocut ms':>12} "
          f"{'vs decompress':>14} {'vs astrocut':>12}")
    for side in (1.0, 5.0):
        region = Circle(ra, dec, side / 60 / 2)
        result = cut(image, region)
        assert result is not None
        b = result.box
        box = (b.x0, b.x1, b.y0, b.y1)
        reference = decompress_then_cut(path, box)
        assert all(np.array_equal(p.data, r, equal_nan=True) for p, r in zip(result.planes, reference, strict=True))
        ours = median_time(lambda: cut(image, region), args.repeat)
        base = median_time(lambda: decompress_then_cut(path, box), max(3, args.repeat // 2))
        theirs = median_time(lambda: astrocut_cut(path, ra, dec, side), args.repeat) if have_astrocut else float("nan")
        print(f"{side:>6.0f}' {b.shape[1]:>5}x{b.shape[0]:<5} {ours * 1e3:>9.1f} {base * 1e3:>14.1f} "
              f"{theirs * 1e3:>12.1f} {base / ours:>13.1f}x {theirs / ours:>11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
