"""PNG and JPEG previews of cut planes: thumbnails, display orientation, WCS and provenance.

Orientation: FITS row 0 is the bottom of the image, PNG/JPEG row 0 the top, so rows are
flipped; an image with a standard WCS (north up, east left in FITS) shows the same way.

Thumbnails: when the longest side exceeds ``max_size`` the plane is averaged over
f×f blocks, f = ceil(longest / max_size), ignoring blank pixels (a block with none left is
blank). Sides become ceil(side / f): the longest is at most ``max_size``, the aspect ratio
is kept to within a pixel, nothing is ever enlarged, and the pixel grid stays an exact
rebinning so the WCS stays exact too.

WCS (PNG only): a ``FITS-WCS`` text chunk holds 80-character FITS cards separated by
newlines (``fits.Header.fromstring(text, sep="\\n")``) describing the PNG's own pixel grid
as stored: pixel (1, 1) is the top-left pixel, the second axis counts rows downwards, and
NAXIS1/NAXIS2 are its width and height. Linear terms are written as CDi_j; SIP polynomials
are rescaled; PVi_m (TAN/TPV/ZPN...) need no change. Only the first two header axes are
used, and only if they are celestial and wcslib accepts them; otherwise no chunk is
written. Lookup-table distortions (CPDIS/D2IM, stored outside the header) are not supported.

Provenance: every ``text`` item becomes a PNG text chunk (key → value), or a
``key: value`` line of the JPEG comment.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning, WcsError
from PIL import Image, PngImagePlugin

from renderers.stretch import GREY_STRIP, Scaling, grey8, lupton8, lupton_params

Format = Literal["png", "jpeg"]
FORMATS = ("png", "jpeg")
WCS_KEY = "FITS-WCS"
_JPEG_COMMENT_MAX = 65533  # one COM segment
_PNG_KEY = re.compile(r"[\x21-\x7e\xa1-\xff](?:[ ]?[\x21-\x7e\xa1-\xff])*")


def render_grey(data: np.ndarray, *, scaling: Scaling = Scaling(), max_size: int | None = None,
                wcs_header: fits.Header | None = None, fmt: Format = "png", quality: int = 90,
                text: Mapping[str, str] | None = None) -> bytes:
    """A greyscale (mode L) PNG or JPEG of a 2-D plane (FITS row order).

    ``max_size`` caps the longest side (None: full size); ``wcs_header`` is the plane's
    header, whose celestial WCS goes into the PNG; ``quality`` (1-95) is for JPEG but
    always checked; ``text`` is provenance. Bad options raise ValueError naming them.
    """
    _check_output(fmt, quality, text)
    factor = _check_plane(data, max_size)
    plane = reduce(data, factor)
    pixels = grey8(plane, scaling)
    return _encode(pixels, _preview_wcs(wcs_header, factor, pixels.shape), fmt, quality, text or {})


def render_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray, *, q: float = 8.0,
               stretch: float | None = None, minimum: float | tuple[float, float, float] | None = None,
               scales: float | tuple[float, float, float] | None = None,
               max_size: int | None = None, wcs_header: fits.Header | None = None, fmt: Format = "png",
               quality: int = 90, text: Mapping[str, str] | None = None) -> bytes:
    """A colour (RGB) PNG or JPEG of three planes on the same pixel grid, by Lupton et al. (2004).

    ``q``, ``stretch`` and ``minimum`` (one value or one per band) are astropy's
    ``make_lupton_rgb`` parameters; ``scales`` (one value or one per band) multiply each
    band after its minimum is taken out. The defaults for ``stretch``, ``minimum`` and
    ``scales`` come from each band's sky (see ``renderers.stretch.lupton_params``): a dark,
    neutral sky. Other arguments as ``render_grey``.
    """
    _check_output(fmt, quality, text)
    factor = max(_check_plane(band, max_size) for band in (red, green, blue))
    if not green.shape == blue.shape == red.shape:
        raise ValueError(f"the three bands must have the same shape, not {red.shape}, {green.shape}, {blue.shape}")
    planes = (reduce(red, factor), reduce(green, factor), reduce(blue, factor))
    params = lupton_params(planes, q=q, stretch=stretch, minimum=minimum, scales=scales)
    pixels = lupton8(*planes, params)
    return _encode(pixels, _preview_wcs(wcs_header, factor, pixels.shape[:2]), fmt, quality, text or {})


# --- checks --------------------------------------------------------------------------------

def _check_output(fmt: str, quality: int, text: Mapping[str, str] | None) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be an integer from 1 to 95, not {quality!r}")
    for key, value in (text or {}).items():
        if not isinstance(key, str) or len(key) > 79 or not _PNG_KEY.fullmatch(key):
            raise ValueError(f"text key {key!r} must be 1-79 printable Latin-1 characters, single spaces inside")
        if key == WCS_KEY:
            raise ValueError(f"text key {key!r} is reserved for the WCS")
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(f"text value for {key!r} must be a string without NUL characters")


def _check_plane(data: np.ndarray, max_size: int | None) -> int:
    """Validate a plane and return its block-averaging factor."""
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, not shape {getattr(data, 'shape', None)}")
    if data.dtype.kind not in "iuf":
        raise ValueError(f"expected integer or real pixels, not {data.dtype}")
    if max_size is None:
        return 1
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise ValueError(f"max_size must be a positive integer, not {max_size!r}")
    return block_factor(data.shape, int(max_size))


# --- thumbnails ----------------------------------------------------------------------------

def block_factor(shape: tuple[int, ...], max_size: int) -> int:
    """The smallest f for which ceil(longest side / f) <= max_size (1: no reduction)."""
    return max(1, math.ceil(max(shape) / max_size))


def reduce(data: np.ndarray, factor: int) -> np.ndarray:
    """``data`` averaged over factor×factor blocks as float32 (``data`` itself when factor is 1)."""
    if factor == 1:
        return data
    height, width = (-(-side // factor) for side in data.shape)
    out = np.empty((height, width), np.float32)
    rows = factor * max(1, GREY_STRIP // (width * factor * factor))
    for start in range(0, data.shape[0], rows):
        out[start // factor:(start + rows) // factor] = _block_mean(data[start:start + rows], factor)
    return out


def _block_mean(block: np.ndarray, factor: int) -> np.ndarray:
    height, width = (-(-side // factor) for side in block.shape)
    padded = np.full((height * factor, width * factor), np.nan, np.float32)
    padded[:block.shape[0], :block.shape[1]] = block
    blank = ~np.isfinite(padded)
    padded[blank] = 0.0
    sums = padded.reshape(height, factor, width, factor).sum(axis=(1, 3), dtype=np.float64)
    counts = (~blank).reshape(height, factor, width, factor).sum(axis=(1, 3))
    with np.errstate(invalid="ignore"):  # 0/0: blocks with no finite pixel stay blank
        return (sums / counts).astype(np.float32)


# --- WCS -----------------------------------------------------------------------------------

def _preview_wcs(header: fits.Header | None, factor: int, shape: tuple[int, ...]) -> fits.Header | None:
    """The header's celestial WCS for the preview grid of ``shape`` (rows, columns), or None."""
    if header is None:
        return None
    wcs = celestial_wcs(header)
    if wcs is None:
        return None
    out = wcs.to_header(relax=True)
    for key in [k for k in out if re.fullmatch(r"(PC|CD)\d_\d|CDELT\d|CROTA\d", k)]:
        del out[key]
    # Preview pixel (u, v) is source pixel (f·u, -f·v) relative to the reference pixel.
    flip = np.diag([factor, -factor])
    matrix = wcs.pixel_scale_matrix @ flip
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(matrix[i - 1, j - 1])
    crpix1, crpix2 = (float(c) for c in wcs.wcs.crpix)
    out["CRPIX1"] = (crpix1 - 0.5) / factor + 0.5
    out["CRPIX2"] = shape[0] + 0.5 - (crpix2 - 0.5) / factor
    _rescale_sip(out, factor)
    out.insert(0, ("NAXIS", 2))
    out.insert(1, ("NAXIS1", shape[1], "preview width"))
    out.insert(2, ("NAXIS2", shape[0], "preview height; row 1 is the top"))
    return out


def celestial_wcs(header: fits.Header) -> WCS | None:
    """The header's celestial WCS, or None when it has none that wcslib accepts."""
    # WcsError is a ValueError, which callers report as the client's mistake; a source
    # header that wcslib rejects is not, so the picture simply goes without a WCS.
    try:
        with warnings.catch_warnings():
            # fix=False then wcslib's own fix: the same repairs, without a warning for each.
            warnings.simplefilter("ignore", FITSFixedWarning)
            full = WCS(header, fix=False)
            full.wcs.fix()
            if full.naxis < 2:
                return None
            wcs = full.sub([1, 2])
            wcs.wcs.set()
    except (WcsError, ValueError, KeyError):
        return None
    return wcs if wcs.has_celestial else None


def _rescale_sip(header: fits.Header, factor: int) -> None:
    """SIP maps pixel offsets to pixel offsets; express them on the flipped, rebinned grid."""
    for key in list(header):
        match = re.fullmatch(r"(A|B|AP|BP)_(\d+)_(\d+)", key)
        if match is None:
            continue
        prefix, p, q = match[1], int(match[2]), int(match[3])
        sign = (-1) ** q * (-1 if prefix in ("B", "BP") else 1)
        header[key] = header[key] * sign * float(factor) ** (p + q - 1)


# --- encoding ------------------------------------------------------------------------------

def _encode(pixels: np.ndarray, wcs: fits.Header | None, fmt: str, quality: int,
            text: Mapping[str, str]) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(pixels[::-1]))
    out = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if wcs is not None:
            info.add_text(WCS_KEY, wcs.tostring(sep="\n", endcard=False, padding=False))
        for key, value in text.items():
            info.add_text(key, value)
        # Noisy sky barely compresses; level 1 is 2-4x faster than the default 6 for
        # about the same size (measured on 2048² DES-like stamps: bench/render_bench.py).
        image.save(out, format="PNG", pnginfo=info, compress_level=1)
    else:
        comment = "\n".join(f"{key}: {value}" for key, value in text.items()).encode()
        if len(comment) > _JPEG_COMMENT_MAX:
            raise ValueError(f"provenance text is {len(comment)} bytes; a JPEG comment holds {_JPEG_COMMENT_MAX}")
        image.save(out, format="JPEG", quality=int(quality), comment=comment or None)
    return out.getvalue()
