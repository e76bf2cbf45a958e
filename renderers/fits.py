"""FITS output: cut planes with headers whose WCS still places every pixel where it
was in the source (CRPIX shifted by the cut's offset).

Every card is written whole. A string value too long for one card is continued on
CONTINUE cards (the long-string convention, which astropy applies by itself and which
carries the comment whole too); a value that fits one card but leaves no room for its
comment is written without the comment, where astropy would cut the comment and warn."""

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


CARD_LENGTH = 80
_COMMENTARY = {"COMMENT", "HISTORY", ""}
_VALUE_FIELD = 20  # astropy pads a value to at least this many characters after "= "


def fitting_comment(keyword: str, value: object, comment: str) -> str:
    """``comment`` when the card holds it whole, else "" (see the module's docstring)."""
    if not comment or keyword.upper() in _COMMENTARY:
        return comment
    image = fits.Card(keyword, value).image
    if len(image) > CARD_LENGTH:  # a long string, continued: the comment follows it whole
        return comment
    value_end = max(len(image.rstrip()), image.index("=") + 2 + _VALUE_FIELD)
    return comment if value_end + len(" / ") + len(comment) <= CARD_LENGTH else ""


def set_card(header: fits.Header, keyword: str, value: object, comment: str = "") -> None:
    """``header[keyword] = (value, comment)``, the comment kept only if the card holds it."""
    header[keyword] = (value, fitting_comment(keyword, value, comment))


def cutout_header(source: fits.Header, x0: int, y0: int) -> fits.Header:
    """The source header for a cut starting at 0-based pixel (x0, y0)."""
    header = fits.Header()
    for card in source.cards:
        if card.keyword in _STRUCTURAL or card.keyword.startswith(("ZTILE", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ")):
            continue
        # A new card formats its value afresh, which may leave less room for the comment.
        comment = fitting_comment(card.keyword, card.value, card.comment)
        header.append(fits.Card(card.keyword, card.value, comment), end=True)
    for axis, offset in ((1, x0), (2, y0)):
        if f"CRPIX{axis}" in header:
            header[f"CRPIX{axis}"] = header[f"CRPIX{axis}"] - offset
        # IRAF physical coordinates: DS9 and friends then show source pixel numbers.
        set_card(header, f"LTV{axis}", float(header.get(f"LTV{axis}", 0.0)) - offset, "offset of this cut in the source")
    header.setdefault("LTM1_1", 1.0)
    header.setdefault("LTM2_2", 1.0)
    return header


def write_fits(planes: Iterable[tuple[np.ndarray, fits.Header]], primary: Mapping[str, object]) -> bytes:
    """A multi-extension FITS: an empty primary HDU with ``primary`` cards, one image HDU per plane."""
    head = fits.PrimaryHDU()
    for key, value in primary.items():
        if isinstance(value, tuple):
            set_card(head.header, key, *value)
        else:
            head.header[key] = value
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [head]
    hdus += [fits.ImageHDU(data=data, header=header) for data, header in planes]
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out, output_verify="silentfix")
    return out.getvalue()
