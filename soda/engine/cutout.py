"""The cutout engine: read only the pixels a region needs, from every configured HDU.

Plain FITS is memory-mapped (``numpy.memmap`` of the HDU's data; only the box is copied
out); a tile-compressed ``.fits.fz`` is read tile by tile: only the compression tiles that
overlap the box are decompressed (for DES row tiling: only the rows of the box), by
astropy's ``CompImageHDU.section``, and kept in the process's bounded cache of decoded
tiles for the next cut. Nothing is decompressed to disk. Each file's headers and WCS are
read once (``soda.engine.files.ImageFiles``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from dali.errors import UsageError
from soda.engine.files import Hdu, ImageFiles, ImageUnreadable, Layout, celestial_wcs
from soda.engine.pixels import PixelBox, pixel_box
from soda.sky.regions import Shape
from soda.surveys.base import ImageRef

__all__ = ["Cut", "CutPlane", "ImageFiles", "ImageUnreadable", "Mosaic", "celestial_wcs", "cut", "locate"]

# Files an engine call without the process's ImageFiles keeps while it runs (a cut and
# its neighbours); it keeps no decoded tiles and no open file.
_CALL_FILES = 16


@dataclass(frozen=True)
class CutPlane:
    """One HDU's pixels of a cutout, with the source header they came with (shared with
    the engine's file cache: read it, never change it)."""

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


def call_files(files: ImageFiles | None) -> ImageFiles:
    """``files``, or for a caller without the process's: files kept for this call only."""
    return files if files is not None else ImageFiles(_CALL_FILES, 0, idle_handles=0)


def hdu_key(name: str) -> str | int:
    return int(name) if name.isdigit() else name


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


def image_hdu(layout: Layout, image: ImageRef, name: str) -> Hdu:
    try:
        return layout.hdu(name)
    except KeyError as exc:
        raise ImageUnreadable(f"{image.dataset_id}: cannot read HDU {name} of {image.path.name}: {exc}") from exc


def plane_shape(hdu: Hdu, image: ImageRef) -> tuple[int, int]:
    """The (ny, nx) of an image HDU's pixels."""
    if len(hdu.shape) != 2:  # the reads slice the first two axes
        raise ImageUnreadable(f"{image.dataset_id}: HDU {hdu.name or hdu.index} of {image.path.name} "
                              f"is not a 2-axis image ({len(hdu.shape)} axes)")
    return hdu.shape[0], hdu.shape[1]


def science(files: ImageFiles, image: ImageRef) -> tuple[Layout, Hdu, tuple[int, int]]:
    """The image's file, its science HDU and that HDU's (ny, nx)."""
    layout = files.layout(image.source, image.dataset_id)
    hdu = image_hdu(layout, image, image.hdus[0])
    return layout, hdu, plane_shape(hdu, image)


def locate(image: ImageRef, region: Shape | None, files: ImageFiles | None = None) -> tuple[Layout, PixelBox | None]:
    """The image's file and the box of ``region`` on it (None: they do not overlap)."""
    layout, hdu, (ny, nx) = science(call_files(files), image)
    if region is None:
        return layout, PixelBox(0, nx, 0, ny)
    return layout, pixel_box(layout.thread_wcs(image.hdus[0]), (ny, nx), region)


def read_planes(files: ImageFiles, layout: Layout, image: ImageRef, box: PixelBox,
                planes: int | None) -> tuple[CutPlane, ...]:
    """The box of the image's first ``planes`` HDUs (all: None)."""
    names = image.hdus[:planes]
    hdus = [image_hdu(layout, image, name) for name in names]
    pixels = files.read_planes(layout, hdus, box, image.dataset_id)
    return tuple(CutPlane(hdu.name or name, data, hdu.header)
                 for name, hdu, data in zip(names, hdus, pixels, strict=True))


def cut(image: ImageRef, region: Shape | None, max_pixels: int | None = None, *,
        planes: int | None = None, box: PixelBox | None = None,
        limit_name: str = "this service's limit", files: ImageFiles | None = None) -> Cut | None:
    """The cutout of ``region`` from the HDUs of ``image``; None when they do not overlap.

    ``planes`` keeps only the first HDUs (1: the science image, for previews); ``box``
    reuses a box found on another image of the same pixel grid (the bands of a tile);
    ``files`` is the process's cache of file layouts and decoded tiles (without it, the
    call reads what it needs and keeps nothing).
    """
    files = call_files(files)
    if box is None:
        layout, box = locate(image, region, files)
    else:
        layout = files.layout(image.source, image.dataset_id)
    if box is None:
        return None
    if max_pixels is not None and box.pixels > max_pixels:
        raise UsageError(f"the cutout from {image.dataset_id} would have {box.shape[1]}x{box.shape[0]} "
                         f"pixels, more than {limit_name} of {max_pixels}; ask for a smaller region")
    return Cut(image, region, box, read_planes(files, layout, image, box, planes))
