"""Cutouts across image edges: a 2' cutout inside one image, across the corner of four
DES-like tiles (resampled) and across the corner of four LSST-like patches (copied).

  DES-like: four 2000² px tiles at DES's 0.263"/px, each on its own tangent point, 1900 px
            apart (so they overlap like DES tiles do), SCI + MSK + WGT;
  LSST:     the LSST demo generator on 1200² px patches (1000² inner) at 0.2"/px, one tract.

Prints the median wall time of soda.engine.mosaic.cut_across for each case. Usage:

    .venv/bin/python bench/mosaic_bench.py [--workdir DIR] [--repeat N]

The images are generated once into --workdir (default /tmp/mosaic-bench, about 250 MB).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from soda.engine.mosaic import cut_across
from soda.sky.regions import Circle
from soda.sky.sphere import separation
from soda.surveys.base import ImageRef, Survey
from soda.surveys.lsst import LSSTSurvey
from soda.surveys.lsst_demo import DEFAULT_TRACT, build_lsst_demo, butler_path, central_patches
from soda.surveys.lsst_skymap import SkyMapConfig, skymap
from timing import median_time  # bench/timing.py (the script's folder is on sys.path)

SIDE, STEP, SCALE = 2000, 1900, 0.263
CENTRE = (21.0, -45.0)
RADIUS = 1 / 60  # a 2' cutout
LSST_CONFIG = SkyMapConfig(patch_inner=(1000, 1000), patch_border=100)


def _tile_wcs(i: int, j: int) -> WCS:
    dec = CENTRE[1] + j * STEP * SCALE / 3600
    ra = CENTRE[0] + i * STEP * SCALE / 3600 / np.cos(np.radians(dec))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(SIDE + 1) / 2] * 2
    wcs.wcs.cd = [[-SCALE / 3600, 0], [0, SCALE / 3600]]
    return wcs


class Tiles(Survey):
    """Four DES-like tiles; the neighbours of a tile are the others."""

    name, bands = "des", ("r",)

    def __init__(self, root: Path) -> None:
        self.images = {}
        for i in (0, 1):
            for j in (0, 1):
                path = root / f"tile{i}{j}.fits"
                if not path.exists():
                    wcs = _tile_wcs(i, j)
                    ra, dec = wcs.pixel_to_world_values(*np.meshgrid(np.arange(SIDE), np.arange(SIDE)))
                    sky = 100 + 1000 * np.exp(-0.5 * (separation(*CENTRE, ra, dec) / 0.01) ** 2)
                    header = wcs.to_header()
                    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sky.astype(np.float32), header, name="SCI"),
                                  fits.ImageHDU((sky > 300).astype(np.int32), header, name="MSK"),
                                  fits.ImageHDU(np.ones_like(sky, dtype=np.float32), header, name="WGT")]
                                 ).writeto(path)
                self.images[f"{i}{j}"] = ImageRef(f"ivo://bench/des?tile{i}{j}_r", "des", f"tile{i}{j}", "r",
                                                  path, ("SCI", "MSK", "WGT"))

    def by_id(self, dataset_id: str) -> ImageRef | None:
        return None

    def at(self, ra: float, dec: float, bands: Sequence[str]) -> list[ImageRef]:
        return [self.images["00"]]

    def sibling(self, image: ImageRef, band: str) -> ImageRef | None:
        return image

    def band_range(self, band: str) -> tuple[float, float]:
        return (5.5e-7, 7e-7)

    def neighbours(self, image: ImageRef, ra: float, dec: float, radius: float) -> list[ImageRef]:
        return [i for i in self.images.values() if i != image]


class Manifest:
    """The LSST demo files by name (what the image catalogue's ``get`` gives the survey)."""

    def __init__(self, root: Path, patches: Sequence[int]) -> None:
        self.root, self.patches = root, patches

    def get(self, survey: str, name: str) -> SimpleNamespace | None:
        tract, patch, band = name.split("_")
        if int(patch) not in self.patches or band != "r":
            return None
        return SimpleNamespace(path=self.root / butler_path("demo/coadd", int(tract), int(patch), band), hdus=())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mosaic-bench"))
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    tiles = Tiles(args.workdir)
    first = tiles.images["00"]
    wcs = _tile_wcs(0, 0)
    # Where the four tiles meet: RA grows to -x, Dec to +y on the first tile.
    corner = [float(v) for v in wcs.pixel_to_world_values((SIDE - 1 - STEP) / 2, (SIDE - 1 + STEP) / 2)]
    inside = [float(v) for v in wcs.pixel_to_world_values(SIDE / 2, SIDE / 2)]

    sky = skymap(LSST_CONFIG)
    patches = central_patches(sky, DEFAULT_TRACT)
    build_lsst_demo(args.workdir / "lsst", bands=("r",), config=LSST_CONFIG)
    lsst = LSSTSurvey(args.workdir / "lsst", "bench", catalogue=Manifest(args.workdir / "lsst", patches),  # type: ignore[arg-type]
                      skymap_config=LSST_CONFIG)
    inner, _ = sky.patch_boxes(DEFAULT_TRACT, patches[0])
    lsst_corner = [float(v) for v in sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x1, inner.y1)]
    lsst_inside = [float(v) for v in sky.tract_wcs(DEFAULT_TRACT).pixel_to_world_values(inner.x0 + 500, inner.y0 + 500)]

    cases = [("DES-like, inside one tile", tiles, first, inside),
             ("DES-like, across a tile corner", tiles, first, corner),
             ("LSST, inside one patch", lsst, None, lsst_inside),
             ("LSST, across a patch corner", lsst, None, lsst_corner)]
    cut_across(first, Circle(*corner, RADIUS), None, tiles)  # imports reproject once, outside the timing
    for label, survey, image, (ra, dec) in cases:
        image = image or survey.at(ra, dec, ["r"])[0]
        region = Circle(ra, dec, RADIUS)
        made = cut_across(image, region, None, survey)
        assert made is not None
        seconds = median_time(lambda: cut_across(image, region, None, survey), args.repeat)
        sources = len(made.mosaic.sources) if made.mosaic else 1
        print(f"{label:34s} {made.box.shape[1]:4d}x{made.box.shape[0]:<4d} px  {sources} image(s)  "
              f"{seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
