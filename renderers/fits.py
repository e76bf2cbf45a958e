"""FITS output: cut planes with headers whose WCS still places every pixel where it
was in the source (CRPIX shifted by the cut's offset).

Every card is written whole. A string value too long for one card is continued on
CONTINUE cards (the long-string convention, which astropy applies by itself and which
carries the comment whole too); a value that fits one card but leaves no room for its
comment is written without the comment, where astropy would cut the comment and warn.

The file is written here, not by ``HDUList.writeto``: each card is formatted once by
astropy (``fits.Card``) when it is made, and the file is those card images, END, the
big-endian pixels and the padding to 2880-byte blocks (FITS 4.0 §3, §4.4.1, §5). The
copied cards of a source header are formatted once per header object (the engine keeps
one per image file) and reused by every cut of it; source headers are read, never changed.
"""

from __future__ import annotations

import io
import math
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np
from astropy.io import fits

# Keywords that describe the source file's layout, not the cut's; the writer adds its own.
_STRUCTURAL = {
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "PCOUNT",
    "GCOUNT", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM", "END",
}
_COMPRESSION = ("ZTILE", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ")

CARD_LENGTH = 80
BLOCK = 2880
_COMMENTARY = {"COMMENT", "HISTORY", ""}
_VALUE_FIELD = 20  # astropy pads a value to at least this many characters after "= "
_STANDARD = re.compile(r"[A-Z0-9_-]{0,8}")  # FITS 4.0 §4.1.2.1


def card_image(keyword: str, value: object, comment: str = "") -> str:
    """The card's image (80 characters, or a multiple for a continued long string), with
    ``comment`` only when it fits whole."""
    # a value card of a standard keyword, its comment as astropy keeps it (it drops a blank one)
    plain = comment == comment.strip() and _PLAIN_KEYWORD.fullmatch(keyword) and keyword not in _COMMENTARY
    if plain and type(value) is str and _PLAIN_STRING.fullmatch(value):
        return _string_card_image(keyword, value, comment)  # SRCBOX, REGION: new on every cut
    if type(value) in (str, int, bool):  # IDs, names, sizes: the same on every plane and file
        return _kept_card_image(keyword, value, comment, type(value))
    if plain and type(value) is float and math.isfinite(value):
        return _float_card_image(keyword, value, comment)  # CRPIX, LTV: new on every cut
    return _card_image(keyword, value, comment)


_PLAIN_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")


def _float_card_image(keyword: str, value: float, comment: str) -> str:
    """What astropy writes for a float (FITS 4.0 §4.2.4: fixed format, at most 20
    characters, right-justified in columns 11-30), without its Card machinery."""
    text = str(value).replace("e", "E")
    if len(text) > 20:
        at = text.find("E")
        text = text[:20] if at < 0 else text[:20 - (len(text) - at)] + text[at:]
    image = f"{keyword:<8}= {text:>20}"
    if comment and len(image) + 3 + len(comment) <= CARD_LENGTH:
        image += f" / {comment}"
    return f"{image:<80}"


# A string astropy writes on one card as it is: printable ASCII without quotes, from 1 to
# 68 characters (80 less "KEYWORD = ''"), not ending in a space (astropy keeps those but
# FITS readers strip them).
_PLAIN_STRING = re.compile(r"[ !#-&(-~]{0,67}[!#-&(-~]")


def _string_card_image(keyword: str, value: str, comment: str) -> str:
    """What astropy writes for a short string (FITS 4.0 §4.2.1.1: quoted, at least 8
    characters between the quotes, the value field at least 20), without its Card machinery."""
    quoted = f"'{value:<8}'"
    image = f"{keyword:<8}= {quoted:<20}"
    if comment and len(image) + 3 + len(comment) <= CARD_LENGTH:
        image += f" / {comment}"
    return f"{image:<80}"


@lru_cache(maxsize=4096)
def _kept_card_image(keyword: str, value: object, comment: str, kind: type) -> str:
    return _card_image(keyword, value, comment)  # ``kind`` keeps 1 and True apart


def _card_image(keyword: str, value: object, comment: str) -> str:
    if keyword.upper() in _COMMENTARY:
        return fits.Card(keyword, value).image
    if not _STANDARD.fullmatch(keyword.upper()) and not keyword.upper().startswith("HIERARCH "):
        keyword = "HIERARCH " + keyword  # what the source card was (ESO convention); astropy would warn
    bare = fits.Card(keyword, value).image
    if not comment:
        return bare
    if len(bare) > CARD_LENGTH:  # a long string, continued: the comment follows it whole
        return fits.Card(keyword, value, comment).image
    if _value_end(bare) + len(" / ") + len(comment) > CARD_LENGTH:
        return bare
    return fits.Card(keyword, value, comment).image


def _value_end(image: str) -> int:
    return max(len(image.rstrip()), image.index("=") + 2 + _VALUE_FIELD)


def fitting_comment(keyword: str, value: object, comment: str) -> str:
    """``comment`` when the card holds it whole, else "" (see the module's docstring)."""
    if not comment or keyword.upper() in _COMMENTARY:
        return comment
    image = fits.Card(keyword, value).image
    if len(image) > CARD_LENGTH:
        return comment
    return comment if _value_end(image) + len(" / ") + len(comment) <= CARD_LENGTH else ""


def set_card(header: fits.Header, keyword: str, value: object, comment: str = "") -> None:
    """``header[keyword] = (value, comment)``, the comment kept only if the card holds it."""
    header[keyword] = (value, fitting_comment(keyword, value, comment))


class Cards:
    """A header as its card images, in order: what the writer writes. ``set`` replaces a
    keyword's card where it stands, or appends it."""

    def __init__(self, cards: Iterable[tuple[str, str, object]] = ()) -> None:
        self._cards: list[tuple[str, str, object]] = []  # (KEYWORD, image, value)
        self._where: dict[str, int] = {}
        for keyword, image, value in cards:
            self._put(keyword, image, value)

    def _put(self, keyword: str, image: str, value: object) -> None:
        at = None if keyword in _COMMENTARY else self._where.get(keyword)
        if at is None:
            if keyword not in _COMMENTARY:
                self._where[keyword] = len(self._cards)
            self._cards.append((keyword, image, value))
        else:
            self._cards[at] = (keyword, image, value)

    def set(self, keyword: str, value: object, comment: str = "") -> None:
        """The card ``keyword = value / comment``, the comment kept only if it fits."""
        self._put(keyword.upper(), card_image(keyword, value, comment), value)

    def get(self, keyword: str, default: object = None) -> object:
        at = self._where.get(keyword.upper())
        return default if at is None else self._cards[at][2]

    def __contains__(self, keyword: str) -> bool:
        return keyword.upper() in self._where

    def copy(self) -> Cards:
        out = Cards()
        out._cards, out._where = list(self._cards), dict(self._where)
        return out

    def images(self) -> list[str]:
        return [image for _, image, _ in self._cards]

    def header(self) -> fits.Header:
        """The cards as an astropy header (parsed again: for pictures and tests)."""
        return fits.Header.fromstring("".join(self.images()))


def header_cards(header: fits.Header) -> Cards:
    """An astropy header as cards, each formatted by astropy as it stands."""
    return Cards((card.keyword, card.image, card.value) for card in header.cards)


# The copied cards of each source header, by the header object (see the module docstring),
# with the comments of its CRPIXn cards (read again for every cut otherwise).
_copied: dict[int, tuple[weakref.ref, Cards, dict[str, str]]] = {}
_copied_lock = threading.Lock()


def _forget(key: int) -> None:
    with _copied_lock:
        _copied.pop(key, None)


def _source_cards(source: fits.Header) -> tuple[Cards, dict[str, str]]:
    key = id(source)
    with _copied_lock:
        kept = _copied.get(key)
    if kept is not None and kept[0]() is source:
        return kept[1], kept[2]
    cards = Cards()
    for card in source.cards:
        keyword = card.keyword
        if keyword in _STRUCTURAL or keyword.startswith(_COMPRESSION):
            continue
        # A new card formats its value afresh, which may leave less room for the comment.
        if keyword in _COMMENTARY:
            cards._put(keyword, fits.Card(keyword, card.value).image, card.value)
        elif card.field_specifier:  # a record-valued card (DPj/DQi distortion): as it was
            cards._put(keyword.upper(), card.image, card.value)
        else:
            cards.set(keyword, card.value, card.comment)
    comments = {k: source.comments[k] for k in ("CRPIX1", "CRPIX2") if k in source}
    with _copied_lock:
        _copied[key] = (weakref.ref(source, lambda _, key=key: _forget(key)), cards, comments)
    return cards, comments


def cutout_cards(source: fits.Header, x0: int, y0: int) -> Cards:
    """The source header's cards for a cut starting at 0-based pixel (x0, y0)."""
    kept, comments = _source_cards(source)
    cards = kept.copy()
    for axis, offset in ((1, x0), (2, y0)):
        crpix = f"CRPIX{axis}"
        if crpix in cards:
            cards.set(crpix, float(cards.get(crpix)) - offset, comments.get(crpix, ""))  # type: ignore[arg-type]
        # IRAF physical coordinates: DS9 and friends then show source pixel numbers.
        cards.set(f"LTV{axis}", float(cards.get(f"LTV{axis}", 0.0)) - offset,  # type: ignore[arg-type]
                  "offset of this cut in the source")
    for key in ("LTM1_1", "LTM2_2"):
        if key not in cards:
            cards.set(key, 1.0)
    return cards


def cutout_header(source: fits.Header, x0: int, y0: int) -> fits.Header:
    """The source header for a cut starting at 0-based pixel (x0, y0)."""
    return cutout_cards(source, x0, y0).header()


# --- the file -------------------------------------------------------------------------------

# Unsigned integers are written as signed with an offset, signed bytes as unsigned ones
# (FITS 4.0 §5.2.5): flipping the top bit is adding the offset.
_OFFSET = {"u2": ("i2", 1 << 15), "u4": ("i4", 1 << 31), "u8": ("i8", 1 << 63), "i1": ("u1", -128)}
_BITPIX = {"u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}


def _padded(images: list[str]) -> bytes:
    body = ("".join(images) + "END").encode("ascii")
    return body + b" " * (-len(body) % BLOCK)


def _pixels(data: np.ndarray) -> tuple[int, np.ndarray, int | None]:
    """BITPIX, the pixels to write (big-endian, or native ones that ``_written`` swaps in
    place) and the BZERO offset."""
    code = f"{data.dtype.kind}{data.dtype.itemsize}"
    zero = None
    if code in _OFFSET:
        code, zero = _OFFSET[code]
        size = data.dtype.itemsize
        top = np.array(1 << (8 * size - 1), dtype=f"=u{size}")
        data = (data.astype(data.dtype.newbyteorder("="), copy=False).view(f"=u{size}") ^ top).view(f"={code}")
    elif data.dtype.kind == "b":
        code, data = "u1", data.view(np.uint8)
    elif code not in _BITPIX:
        raise ValueError(f"cannot write pixels of type {data.dtype} to FITS")
    swappable = data.dtype.byteorder != ">" and data.flags.c_contiguous and data.flags.writeable
    return _BITPIX[code], data if swappable else np.ascontiguousarray(data, np.dtype(code).newbyteorder(">")), zero


def _written(out: io.BytesIO, pixels: np.ndarray) -> None:
    """The pixels into ``out``, big-endian. Native ones are byte-swapped in place while
    they are copied and swapped back at once, as astropy's writer does: the one copy of a
    plane is the one into the file's bytes."""
    if pixels.dtype.byteorder in (">", "|"):
        out.write(memoryview(pixels).cast("B"))
        return
    pixels.byteswap(inplace=True)
    try:
        out.write(memoryview(pixels.view(pixels.dtype.newbyteorder(">"))).cast("B"))
    finally:
        pixels.byteswap(inplace=True)


def _image_hdu(out: io.BytesIO, data: np.ndarray, cards: Cards) -> None:
    bitpix, pixels, zero = _pixels(data)
    lead = Cards()
    lead.set("XTENSION", "IMAGE", "Image extension")
    lead.set("BITPIX", bitpix, "array data type")
    lead.set("NAXIS", pixels.ndim, "number of array dimensions")
    for axis, length in enumerate(reversed(pixels.shape), start=1):
        lead.set(f"NAXIS{axis}", length)
    lead.set("PCOUNT", 0, "number of parameters")
    lead.set("GCOUNT", 1, "number of groups")
    if zero is not None:
        lead.set("BSCALE", 1)
        lead.set("BZERO", zero)
    own = [image for keyword, image, _ in cards._cards
           if keyword not in _STRUCTURAL and not keyword.startswith("NAXIS")]
    out.write(_padded(lead.images() + own))
    if pixels.size:
        _written(out, pixels)
        out.write(b"\0" * (-pixels.nbytes % BLOCK))


def write_fits(planes: Iterable[tuple[np.ndarray, Cards | fits.Header]], primary: Mapping[str, object]) -> bytes:
    """A multi-extension FITS: an empty primary HDU with ``primary`` cards, one image HDU per plane.

    Native-endian planes are byte-swapped in place while each is copied (then swapped
    back): no other thread may read them during the call."""
    head = Cards()
    head.set("SIMPLE", True, "conforms to FITS standard")
    head.set("BITPIX", 8, "array data type")
    head.set("NAXIS", 0, "number of array dimensions")
    head.set("EXTEND", True)
    for key, value in primary.items():
        if isinstance(value, tuple):
            head.set(key, *value)
        else:
            head.set(key, value)
    out = io.BytesIO()
    out.write(_padded(head.images()))
    for data, cards in planes:
        _image_hdu(out, data, cards if isinstance(cards, Cards) else header_cards(cards))
    return out.getvalue()
