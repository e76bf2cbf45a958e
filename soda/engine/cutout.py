"""The cutout engine: read only the pixels a region needs, from every configured HDU.

Plain FITS is memory-mapped; a tile-compressed ``.fits.fz`` is read through astropy's
``CompImageHDU.section``, which decompresses only the compression tiles that overlap
the box (for DES row tiling: only the rows of the box). Nothing is decompressed to disk.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from dali.errors import UsageError
from soda.engine.pixels import PixelBox, pixel_box
from soda.sky.regions import Shape
from soda.surveys.base import ImageRef


@dataclass(frozen=True)
class CutPlane:
    """One HDU's pixels of a cutout, with the source header they came with."""

    name: str
    data: np.ndarray
    header: fits.Header


@dataclass(frozen=True)
class Mosaic:
    """How a cut past its image's edge was assembled (``soda.engine.mosaic``)."""

    sources: tuple[str, ...]   # dataset IDs of the images that gave pixels, the cut's own first
    resample: tuple[str, ...]  # per plane: "none" (copied), "bilinear" or "nearest"


@dataclass(frozen=True)
class Cut:
    image: ImageRef
    region: Shape | None  # None: the whole image
    box: PixelBox         # on the image's grid; past its edges when assembled (mosaic)
    planes: tuple[CutPlane, ...]
    mosaic: Mosaic | None = None  # None: every pixel is the image's own


class ImageUnreadable(Exception):
    """The survey image is missing or damaged (a fault of ours, not the client's)."""


def hdu_key(name: str) -> str | int:
    return int(name) if name.isdigit() else name


def celestial_wcs(header: fits.Header) -> WCS:
    """The image's 2-d WCS; a header wcslib refuses makes the image unreadable (ours, not
    the client's fault)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            return WCS(header, naxis=2)
    except (ValueError, KeyError, MemoryError) as exc:  # WcsError is a ValueError
        raise ImageUnreadable(f"the WCS of the image cannot be read: {exc}") from exc


def open_image(image: ImageRef) -> fits.HDUList:
    try:
        return fits.open(image.source, memmap=True, lazy_load_hdus=True)
    except OSError as exc:
        raise ImageUnreadable(f"{image.dataset_id}: cannot open {image.path.name}: {exc}") from exc


def science_header(hdul: fits.HDUList, image: ImageRef) -> tuple[fits.Header, tuple[int, int]]:
    """The science HDU's header and (ny, nx) shape."""
    try:
        header = hdul[hdu_key(image.hdus[0])].header
        return header, (int(header["NAXIS2"]), int(header["NAXIS1"]))
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise ImageUnreadable(f"{image.dataset_id}: cannot read {image.path.name}: {exc}") from exc


def locate(image: ImageRef, region: Shape | None) -> tuple[fits.HDUList, PixelBox | None]:
    """Open the image and find the box; the caller closes the HDU list."""
    hdul = open_image(image)
    try:
        header, shape = science_header(hdul, image)
    except ImageUnreadable:
        hdul.close()
        raise
    if region is None:
        return hdul, PixelBox(0, shape[1], 0, shape[0])
    return hdul, pixel_box(celestial_wcs(header), shape, region)


def cut(image: ImageRef, region: Shape | None, max_pixels: int | None = None, *,
        planes: int | None = None, box: PixelBox | None = None,
        limit_name: str = "this service's limit") -> Cut | None:
    """The cutout of ``region`` from the HDUs of ``image``; None when they do not overlap.

    ``planes`` keeps only the first HDUs (1: the science image, for previews); ``box``
    reuses a box found on another image of the same pixel grid (the bands of a tile).
    """
    if box is None:
        hdul, box = locate(image, region)
    else:
        hdul = open_image(image)
    with hdul:
        if box is None:
            return None
        if max_pixels is not None and box.pixels > max_pixels:
            raise UsageError(f"the cutout from {image.dataset_id} would have {box.shape[1]}x{box.shape[0]} "
                             f"pixels, more than {limit_name} of {max_pixels}; ask for a smaller region")
        cut_planes = []
        for name in image.hdus[:planes]:
            try:
                hdu = hdul[hdu_key(name)]
                data = np.array(hdu.section[box.y0:box.y1, box.x0:box.x1])  # a copy: the file closes
            except (OSError, KeyError, IndexError, ValueError) as exc:
                raise ImageUnreadable(f"{image.dataset_id}: cannot read HDU {name}: {exc}") from exc
            cut_planes.append(CutPlane(str(hdu.name or name), data, hdu.header.copy()))
    return Cut(image, region, box, tuple(cut_planes))
