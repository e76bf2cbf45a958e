"""FITS output: cut planes with headers whose WCS still places every pixel where it
was in the source (CRPIX shifted by the cut's offset)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import numpy as np
from astropy.io import fits

# Keywords that describe the source file's layout, not the cut's; astropy writes its own.
_STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "PCOUNT",
    "GCOUNT", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM",
}


def cutout_header(source: fits.Header, x0: int, y0: int) -> fits.Header:
    """The source header for a cut starting at 0-based pixel (x0, y0)."""
    header = fits.Header()
    for card in source.cards:
        if card.keyword in _STRUCTURAL or card.keyword.startswith(("ZTILE", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ")):
            continue
        header.append(fits.Card(card.keyword, card.value, card.comment), end=True)
    for axis, offset in ((1, x0), (2, y0)):
        if f"CRPIX{axis}" in header:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - offset
        # IRAF physical coordinates: DS9 and friends then show source pixel numbers.
        header[f"LTV{axis}"] = (header.get(f"LTV{axis}", 0.0) - offset, "offset of this cut in the source")
    header.setdefault("LTM1_1", 1.0)
    header.setdefault("LTM2_2", 1.0)
    return header


def write_fits(planes: Iterable[tuple[np.ndarray, fits.Header]], primary: Mapping[str, object]) -> bytes:
    """A multi-extension FITS: an empty primary HDU with ``primary`` cards, one image HDU per plane."""
    head = fits.PrimaryHDU()
    for key, value in primary.items():
        head.header[key] = value
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [head]
    hdus += [fits.ImageHDU(data=data, header=header) for data, header in planes]
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out, output_verify="silentfix")
    return out.getvalue()
