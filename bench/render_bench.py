"""Rendering cost of PNG/JPEG previews, as a fraction of the cutout (read) time.

For 512² and 2048² stamps from a full-size row-tiled DES-like tile, times (medians):
  cut       reading the science plane of the box (soda.engine.cutout.cut, planes=1)
  png/jpeg  renderers.render_grey (the default: asinh, sky limits) of that plane
  rgb       renderers.render_rgb of three bands (their cut is 3 × cut)
and prints render/cut. Usage:  .venv/bin/python bench/render_bench.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from renderers import Scaling, render_grey, render_rgb
from soda.engine.cutout import cut
from soda.engine.pixels import PixelBox
from soda.surveys.base import ImageRef
from soda.surveys.demo import build_des_demo
from timing import median_time  # bench/timing.py (the script's folder is on sys.path)

TILE = "DES0139-4457"
BANDS = ("i", "r", "g")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/cutout-bench-rgb")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(args.workdir)
    t0 = time.perf_counter()
    build_des_demo(root, tiles=(TILE,), bands=BANDS, size=10000)
    print(f"full-size tiles ready in {time.perf_counter() - t0:.1f} s")
    images = [ImageRef(f"ivo://bench/des?{TILE}_{b}", "des", TILE, b,
                       next(root.glob(f"{TILE}_*_{b}.fits.fz")), ("SCI",)) for b in BANDS]
    print(f"{'stamp':>6} {'cut ms':>8} {'png ms':>8} {'jpeg ms':>8} {'rgb ms':>8} "
          f"{'png/cut':>8} {'jpeg/cut':>9} {'rgb/3cut':>9}")
    for side in (512, 2048):
        box = PixelBox(3000, 3000 + side, 4000, 4000 + side)
        cuts = [cut(image, None, box=box, planes=1) for image in images]
        planes = [c.planes[0].data for c in cuts]  # type: ignore[union-attr]
        t_cut = median_time(lambda: cut(images[1], None, box=box, planes=1), args.repeat)
        t_png = median_time(lambda: render_grey(planes[1], scaling=Scaling(), fmt="png"), args.repeat)
        t_jpg = median_time(lambda: render_grey(planes[1], scaling=Scaling(), fmt="jpeg"), args.repeat)
        t_rgb = median_time(lambda: render_rgb(*planes, fmt="png"), args.repeat)
        print(f"{side:>5}² {t_cut * 1e3:>8.1f} {t_png * 1e3:>8.1f} {t_jpg * 1e3:>8.1f} {t_rgb * 1e3:>8.1f} "
              f"{t_png / t_cut:>8.2f} {t_jpg / t_cut:>9.2f} {t_rgb / (3 * t_cut):>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
