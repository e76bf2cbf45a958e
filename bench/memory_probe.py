"""Resident memory of one process cutting one square cutout (ours: cut + FITS bytes), in a
fresh interpreter so nothing else has been resident. Prints one JSON line, kB:

    {"idle": VmRSS before the cut, "peak": VmHWM after it, "after": VmRSS after it}

Usage: python bench/memory_probe.py FILE RA DEC PIXELS   (run by bench/run.py)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rss import memory  # bench/rss.py (the script's folder is on sys.path)
from soda.engine.cutout import cut
from soda.output.fits import fits_cutouts
from soda.sky.regions import Circle
from soda.surveys.base import ImageRef
from tiles import BAND, HDUS, PIXEL_ARCSEC, TILE


def main() -> int:
    path, ra, dec, pixels = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    image = ImageRef(f"ivo://bench/probe?{TILE}_{BAND}", "probe", TILE, BAND, path, HDUS)
    idle = memory(os.getpid())
    result = cut(image, Circle(ra, dec, pixels * PIXEL_ARCSEC / 3600 / 2))
    if result is None:
        raise SystemExit("memory probe: the circle misses the tile")
    body = fits_cutouts([result])
    del result, body
    after = memory(os.getpid())
    print(json.dumps({"idle": idle.rss, "peak": after.peak, "after": after.rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
