"""A bulk job's cuts of many rows in one file: a multi-extension FITS file (``group``) or
a FITS binary table with one row per cutout and its pixels in array columns (``table``).

Both take the rows of one part of the job (one image field), each row with its cuts (one
per band). The row layout (one file per row) is ``fits.fits_cutouts`` itself.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from renderers.fits import cutout_header
from soda.engine.cutout import Cut
from soda.output.fits import fits_cutouts


@dataclass(frozen=True)
class RowCuts:
    """One input row of a bulk job and its cuts (one per band)."""

    row: int      # 1-based row of the input table
    id: str
    ra: float     # degrees
    dec: float
    cuts: Sequence[Cut]


def group_fits(rows: Sequence[RowCuts]) -> tuple[bytes, list[list[int]]]:
    """Every row's cuts in one multi-extension FITS file, and the EXTVERs of each row's
    cuts. EXTVER numbers the cuts in the file (EXTNAME + EXTVER name an HDU uniquely, and a
    row has one cut per band); every HDU carries ROW, OBJID and CUTNAME (its band)."""
    cuts: list[Cut] = []
    names: list[str] = []
    cards: list[dict[str, tuple[object, str]]] = []
    extvers: list[list[int]] = []
    for r in rows:
        mine = []
        for cut in r.cuts:
            cuts.append(cut)
            names.append(cut.image.band)
            cards.append({"ROW": (r.row, "row of the input position table (1-based)"),
                          "OBJID": (r.id, "id of the row"),
                          "RA_ROW": (r.ra, "[deg] RA of the row"),
                          "DEC_ROW": (r.dec, "[deg] Dec of the row")})
            mine.append(len(cuts))
        extvers.append(mine)
    return fits_cutouts(cuts, names, cards), extvers


# The linear WCS of each cut, as table columns (the row layout keeps the whole header).
WCS_COLUMNS = ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")


def table_fits(rows: Sequence[RowCuts]) -> tuple[bytes, list[list[int]]]:
    """One binary table row per cut (a row with three bands has three), and the table rows
    (1-based) of each input row. Columns: ``row``, ``id``, ``ra``, ``dec``, ``band``,
    ``dataset``; one 2-d array column per plane (``SCI``, ``MSK``, ``WGT``, as the survey
    names its HDUs; TDIM gives the shape) padded to the largest cut of the table (NaN for
    floating planes, 0 for integer ones) from pixel (1, 1), so the cut's own pixels are
    ``[:NAXIS2, :NAXIS1]`` of it; ``NAXIS1``/``NAXIS2``, the cut's real shape; the cut's
    celestial WCS as ``CTYPE1``/``CTYPE2`` and the numbers of ``WCS_COLUMNS`` (CD: degrees
    per pixel, PC x CDELT when the source uses those; distortion terms are not kept)."""
    flat = [(r, cut) for r in rows for cut in r.cuts]
    where: list[list[int]] = []
    n = 0
    for r in rows:
        where.append(list(range(n + 1, n + 1 + len(r.cuts))))
        n += len(r.cuts)
    planes: list[str] = []
    dtypes: dict[str, np.dtype] = {}
    for _, cut in flat:
        for plane in cut.planes:
            if plane.name not in dtypes:
                planes.append(plane.name)
                dtypes[plane.name] = plane.data.dtype
            else:
                dtypes[plane.name] = np.promote_types(dtypes[plane.name], plane.data.dtype)
    ny = max((p.data.shape[0] for _, c in flat for p in c.planes), default=0)
    nx = max((p.data.shape[1] for _, c in flat for p in c.planes), default=0)
    table = Table()
    table["row"] = np.array([r.row for r, _ in flat], dtype=np.int64)
    table["id"] = np.array([r.id for r, _ in flat], dtype=str)
    table["ra"] = np.array([r.ra for r, _ in flat], dtype=np.float64)
    table["dec"] = np.array([r.dec for r, _ in flat], dtype=np.float64)
    table["band"] = np.array([c.image.band for _, c in flat], dtype=str)
    table["dataset"] = np.array([c.image.dataset_id for _, c in flat], dtype=str)
    for name in planes:
        dtype = dtypes[name]
        column = np.full((len(flat), ny, nx), np.nan if dtype.kind == "f" else 0, dtype=dtype)
        for k, (_, cut) in enumerate(flat):
            for plane in cut.planes:
                if plane.name == name:
                    h, w = plane.data.shape
                    column[k, :h, :w] = plane.data
        table[name] = column
    table["NAXIS1"] = np.array([c.planes[0].data.shape[1] for _, c in flat], dtype=np.int32)
    table["NAXIS2"] = np.array([c.planes[0].data.shape[0] for _, c in flat], dtype=np.int32)
    wcs_rows = [_linear_wcs(c) for _, c in flat]
    table["CTYPE1"] = np.array([w[0] for w in wcs_rows], dtype=str)
    table["CTYPE2"] = np.array([w[1] for w in wcs_rows], dtype=str)
    for k, key in enumerate(WCS_COLUMNS):
        table[key] = np.array([w[2][k] for w in wcs_rows], dtype=np.float64)
    for key in ("ra", "dec", "CRVAL1", "CRVAL2"):
        table[key].unit = "deg"
    hdu = fits.table_to_hdu(table)
    hdu.name = "CUTOUTS"
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out.getvalue(), where


def _linear_wcs(cut: Cut) -> tuple[str, str, tuple[float, ...]]:
    header = cutout_header(cut.planes[0].header, cut.box.x0, cut.box.y0)
    w = WCS(header, naxis=2, relax=True, fix=False).celestial
    if w.naxis != 2:
        return "", "", (np.nan,) * len(WCS_COLUMNS)
    cd = w.pixel_scale_matrix
    return (str(w.wcs.ctype[0]), str(w.wcs.ctype[1]),
            (float(w.wcs.crpix[0]), float(w.wcs.crpix[1]), float(w.wcs.crval[0]), float(w.wcs.crval[1]),
             float(cd[0, 0]), float(cd[0, 1]), float(cd[1, 0]), float(cd[1, 1])))
