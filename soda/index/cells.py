"""HEALPix cells (nested) of footprints and circles, through astropy-healpix."""

from __future__ import annotations

import math
from collections.abc import Sequence

import astropy.units as u
import numpy as np
from astropy_healpix import HEALPix

from soda.index.tables import CELL_ORDER
from soda.sky.footprint import meets_circle
from soda.sky.sphere import separation

_GRID = HEALPix(nside=2**CELL_ORDER, order="nested")
# astropy-healpix's cone search can leave out a cell the circle only grazes: widen the
# circle by one cell size so every touched cell is in.
_PAD = float(_GRID.pixel_resolution.to_value(u.deg))
_RES0 = float(HEALPix(nside=1).pixel_resolution.to_value(u.deg))  # order 0: 58.6 degrees
# A circle needing more cells than this is searched at a coarser order, as ranges.
_MAX_CELLS = 64


def cell_of(ra: float, dec: float) -> int:
    return int(_GRID.lonlat_to_healpix(ra * u.deg, dec * u.deg))


def cells_of(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``cell_of`` of many positions (arrays of degrees), as int64."""
    return np.asarray(_GRID.lonlat_to_healpix(np.asarray(ra, dtype=float) * u.deg,
                                              np.asarray(dec, dtype=float) * u.deg), dtype=np.int64)


def circle_cells(ra: float, dec: float, radius: float) -> list[int]:
    """Every cell (at CELL_ORDER) that a circle of ``radius`` degrees may touch."""
    found = _GRID.cone_search_lonlat(ra * u.deg, dec * u.deg, min(180.0, radius + _PAD) * u.deg)
    return sorted(int(c) for c in found)


def footprint_cells(vertices: Sequence[tuple[float, float]], centre: tuple[float, float],
                    radius: float) -> list[int]:
    """The cells a footprint may touch: those of its circle whose own circumscribed circle
    (with a margin: cell edges are not great circles) meets the footprint."""
    cells = np.array(circle_cells(centre[0], centre[1], radius), dtype=np.int64)
    lon, lat = _GRID.healpix_to_lonlat(cells)
    corners_lon, corners_lat = _GRID.boundaries_lonlat(cells, step=1)
    ra, dec = lon.to_value(u.deg), lat.to_value(u.deg)
    reach = separation(ra[:, None], dec[:, None], corners_lon.to_value(u.deg), corners_lat.to_value(u.deg)).max(axis=1)
    return [int(c) for c, r, d, m in zip(cells, ra, dec, reach)
            if meets_circle(vertices, centre, radius, float(r), float(d), 1.1 * float(m))]


def circle_ranges(ra: float, dec: float, radius: float) -> list[tuple[int, int]]:
    """The same as half-open ranges [low, high) of CELL_ORDER cells, few of them even for a
    wide circle: a coarser order's cell is a range of nested cells at CELL_ORDER."""
    # Start at the order whose cells are about half the radius: a dozen or so cells.
    order = CELL_ORDER if radius <= 0 else max(0, min(CELL_ORDER, round(math.log2(2 * _RES0 / radius))))
    while True:
        grid = HEALPix(nside=2**order, order="nested")
        pad = float(grid.pixel_resolution.to_value(u.deg))
        cells = grid.cone_search_lonlat(ra * u.deg, dec * u.deg, min(180.0, radius + pad) * u.deg)
        if len(cells) <= _MAX_CELLS or order == 0:
            break
        order = max(0, order - max(1, math.ceil(math.log(len(cells) / _MAX_CELLS, 4))))
    shift = 4 ** (CELL_ORDER - order)
    ranges: list[tuple[int, int]] = []
    for c in np.sort(cells):
        low, high = int(c) * shift, (int(c) + 1) * shift
        if ranges and ranges[-1][1] == low:
            ranges[-1] = (ranges[-1][0], high)
        else:
            ranges.append((low, high))
    return ranges
