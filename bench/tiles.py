"""The bench's test image: one DES-like 3-HDU tile (SCI, MSK, WGT) in three storage layouts.

  rows      RICE .fits.fz with one compression tile per row, as DES ships (the demo builder)
  plain     the same pixels decompressed into plain FITS
  tiled256  the same pixels recompressed as RICE with 256x256 tiles (astropy's CompImageHDU;
            the float planes quantised again with the parameters the demo builder uses,
            so their pixels differ from `rows` within the quantisation step)

Made once per side length under ``workdir/size-<side>/`` and reused; a layout is written to a
temporary name and renamed when complete, so an interrupted build is made again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed import SUBTRACTIVE_DITHER_1, SUBTRACTIVE_DITHER_2

from soda.surveys.base import ImageRef
from soda.surveys.demo import build_des_demo

TILE, BAND = "DES0139-4457", "r"
HDUS = ("SCI", "MSK", "WGT")
LAYOUTS = ("plain", "rows", "tiled256")
PIXEL_ARCSEC = 0.263  # DES coadd pixels
SQUARE_TILE = (256, 256)


@dataclass(frozen=True)
class Tile:
    """The three files of one tile and their side in pixels."""

    side: int
    paths: dict[str, Path]  # layout -> file

    def image(self, layout: str) -> ImageRef:
        return ImageRef(f"ivo://bench/{layout}?{TILE}_{BAND}", layout, TILE, BAND, self.paths[layout], HDUS)


def _replace_when_done(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def _write_plain(rows: Path, out: Path) -> None:
    tmp = _replace_when_done(out)
    with fits.open(rows) as src:
        fits.PrimaryHDU(header=src[0].header).writeto(tmp, overwrite=True)
        for name in HDUS:  # one plane in memory at a time
            hdu = src[name]
            with fits.open(tmp, mode="append") as dst:
                dst.append(fits.ImageHDU(data=hdu.data, header=hdu.header, name=name))
            hdu.data = None
    os.replace(tmp, out)


def _square_options(name: str, data: np.ndarray) -> dict[str, object]:
    options: dict[str, object] = {"compression_type": "RICE_1", "tile_shape": SQUARE_TILE}
    if name == "SCI":  # as the demo builder: a step of 1/16 of the noise, dithered
        options |= {"quantize_level": 16.0, "quantize_method": SUBTRACTIVE_DITHER_1, "dither_seed": 1}
    elif name == "WGT":  # smooth: a fixed step of 1/4096 of the largest weight, zeros kept
        step = float(np.nanmax(data)) / 4096 or 1.0
        options |= {"quantize_level": -step, "quantize_method": SUBTRACTIVE_DITHER_2, "dither_seed": 2}
    return options


def _write_square_tiled(rows: Path, out: Path) -> None:
    tmp = _replace_when_done(out)
    with fits.open(rows) as src:
        fits.PrimaryHDU(header=src[0].header).writeto(tmp, overwrite=True)
        for name in HDUS:
            hdu = src[name]
            data = hdu.data
            with fits.open(tmp, mode="append") as dst:
                dst.append(fits.CompImageHDU(data=data, header=hdu.header, name=name,
                                             **_square_options(name, data)))
            hdu.data = None
            del data
    os.replace(tmp, out)


def ensure_tile(workdir: Path, side: int, log=print) -> Tile:  # type: ignore[no-untyped-def]
    """The tile of ``side`` pixels in every layout, made where missing."""
    root = Path(workdir) / f"size-{side}"
    rows_dir = root / "rows"
    build_des_demo(rows_dir, tiles=(TILE,), bands=(BAND,), size=side)  # a no-op when built
    rows = next(rows_dir.glob(f"{TILE}_*_{BAND}.fits.fz"))
    stem = rows.name.removesuffix(".fits.fz")
    paths = {"rows": rows, "plain": root / "plain" / f"{stem}.fits",
             "tiled256": root / "tiled256" / f"{stem}.fits.fz"}
    for layout, write in (("plain", _write_plain), ("tiled256", _write_square_tiled)):
        path = paths[layout]
        if not path.exists() or path.stat().st_mtime < rows.stat().st_mtime:
            log(f"writing the {layout} layout of the {side}² tile")
            path.parent.mkdir(parents=True, exist_ok=True)
            write(rows, path)
    return Tile(side, paths)
