"""Thumbnails: a block-averaged copy of each large image's science plane, for coarse pictures.

A PNG/JPEG whose pixels would be at least as coarse as the thumbnail's (a whole image shown
in 512 pixels, say) is made from the thumbnail rather than the source, so it reads at most
``size``² pixels however large the source is: that is what lets anonymous callers, held
to a small number of source pixels, see a whole image (the DataLink ``#preview`` link).

The thumbnail of an image is its science plane averaged over f×f blocks, f the smallest
factor that brings the longest side to ``size`` or less, blank pixels ignored: the same
rebinning the renderer applies (``renderers.image.reduce``), so a picture made from it is
the picture the source would give whenever the two factors multiply up to the one asked.
It is computed once, strip by strip (the source is never read whole into memory), and
kept as a ``.npy`` file named after the image's path, size and modification time (a
replaced image gets a new one); the least recently used files go once the folder holds
more than ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from renderers.image import block_factor, celestial_wcs, reduce
from soda.engine.cutout import Cut, CutPlane, ImageUnreadable, call_files, locate, science
from soda.engine.files import ImageFiles
from soda.engine.pixels import PixelBox
from soda.sky.regions import Shape
from soda.surveys.base import ImageRef

log = logging.getLogger(__name__)

STRIP_PIXELS = 4_000_000   # source pixels read at a time while a thumbnail is made
TOUCH_AFTER = 60.0         # seconds: how stale a file's use time may get before it is renewed
SUFFIX = ".npy"


class Thumbnails:
    def __init__(self, folder: Path, size: int, max_bytes: int, files: ImageFiles | None = None) -> None:
        self.folder = folder
        self.size = size
        self.max_bytes = max_bytes
        self.files = call_files(files)  # the process's file layouts (cutout.cut)
        # One thumbnail is made at a time per process: a flood of previews of new images
        # reads one whole source at a time, not one per request.
        self._making = threading.Lock()

    def cuts(self, images: Sequence[ImageRef], region: Shape | None, size: int | None) -> list[Cut] | None:
        """The cuts of a picture of ``region`` at most ``size`` pixels on a side, made from
        the thumbnails of ``images`` (one image, or three bands on one pixel grid).

        None when the thumbnails cannot make it: full resolution asked for (no ``size``),
        pixels finer than the thumbnail's, an image small enough to have none, or no overlap.
        """
        if size is None:
            return None
        _, box = locate(images[0], region, self.files)
        if box is None:
            return None
        _, _, shape = science(self.files, images[0])
        factor = block_factor(shape, self.size)
        if factor == 1 or block_factor(box.shape, size) < factor:
            return None
        return [self._cut(image, region, box, shape, factor) for image in images]

    def _cut(self, image: ImageRef, region: Shape | None, box: PixelBox, shape: tuple[int, int],
             factor: int) -> Cut:
        _, hdu, own_shape = science(self.files, image)
        header = hdu.header
        if own_shape != shape:
            raise ImageUnreadable(f"{image.dataset_id}: {own_shape} pixels, not {shape} like the "
                                  f"other bands of its picture")
        thumbnail = self.thumbnail(image, factor)
        tx0, ty0 = box.x0 // factor, box.y0 // factor
        tx1, ty1 = -(-box.x1 // factor), -(-box.y1 // factor)
        # The source pixels the thumbnail's pixels cover: the box, out to whole blocks.
        covered = PixelBox(tx0 * factor, min(tx1 * factor, shape[1]),
                           ty0 * factor, min(ty1 * factor, shape[0]))
        data = np.array(thumbnail[ty0:ty1, tx0:tx1])
        plane = CutPlane(image.hdus[0], data, binned_header(header, factor, covered.x0, covered.y0))
        return Cut(image, region, covered, (plane,))

    # --- the files --------------------------------------------------------------------------

    def path(self, image: ImageRef, factor: int) -> Path:
        try:
            stat = image.path.stat()
        except OSError as exc:
            raise ImageUnreadable(f"{image.dataset_id}: cannot read {image.path.name}: {exc}") from exc
        identity = f"{image.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{image.hdus[0]}\0{factor}"
        return self.folder / (hashlib.sha256(identity.encode()).hexdigest()[:40] + SUFFIX)

    def thumbnail(self, image: ImageRef, factor: int) -> np.ndarray:
        """The image's science plane averaged over factor×factor blocks (float32)."""
        path = self.path(image, factor)
        kept = _load(path)
        if kept is not None:
            return kept
        with self._making:
            kept = _load(path)  # made by another thread while this one waited
            if kept is not None:
                return kept
            started = time.perf_counter()
            made = make_thumbnail(image, factor, self.files)
            self._store(path, made)
            log.info("thumbnail of %s (%dx%d, 1/%d) made in %.2f s", image.dataset_id,
                     made.shape[1], made.shape[0], factor, time.perf_counter() - started)
        return made

    def _store(self, path: Path, data: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                with partial.open("wb") as out:
                    np.save(out, data, allow_pickle=False)
                os.replace(partial, path)  # readers never see half a file
            finally:
                partial.unlink(missing_ok=True)
            self._evict(keep=path)
        except OSError as exc:  # the picture can still be made; only the next one is slower
            log.warning("cannot keep the thumbnail %s: %s", path.name, exc)

    def _evict(self, keep: Path) -> None:
        """Least recently used first, until the folder is within ``max_bytes`` (``keep``
        stays: the thumbnail just made)."""
        files = []
        for entry in self.folder.glob("*" + SUFFIX):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            files.append((stat.st_mtime, stat.st_size, entry))
        total = sum(size for _, size, _ in files)
        for _, size, entry in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            if entry == keep:
                continue
            try:
                entry.unlink()
            except FileNotFoundError:
                pass
            total -= size

    def total_bytes(self) -> int:
        return sum(entry.stat().st_size for entry in self.folder.glob("*" + SUFFIX))


def _load(path: Path) -> np.ndarray | None:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged file is made again
        log.warning("thumbnail %s unreadable, made again: %s", path.name, exc)
        return None
    try:
        if time.time() - path.stat().st_mtime > TOUCH_AFTER:
            os.utime(path)  # its use time, for the least-recently-used eviction
    except OSError:
        pass
    return data


def make_thumbnail(image: ImageRef, factor: int, files: ImageFiles | None = None) -> np.ndarray:
    """Read the science plane strip by strip (whole blocks of rows) and average it; its
    decoded tiles are not kept (the whole image would push out every other's)."""
    files = call_files(files)
    layout, hdu, (ny, nx) = science(files, image)
    out = np.empty((-(-ny // factor), -(-nx // factor)), np.float32)
    rows = factor * max(1, STRIP_PIXELS // (nx * factor))
    for start in range(0, ny, rows):
        strip = files.read(layout, hdu, PixelBox(0, nx, start, min(ny, start + rows)), image.dataset_id, keep=False)
        out[start // factor:(start + rows) // factor] = reduce(np.asarray(strip, dtype=np.float32), factor)
    return out


def binned_header(source: fits.Header, factor: int, x0: int, y0: int) -> fits.Header:
    """The celestial WCS of the source rebinned by ``factor``, for the binned pixels that
    start at source pixel (x0, y0), both multiples of ``factor``.

    Pictures take a cut's header through ``renderers.fits.cutout_header(header, x0, y0)``,
    which shifts CRPIX by the cut's offset in source pixels; the thumbnail's cut has that
    offset in its box too, so CRPIX is written here with the shift already added back.
    An empty header (a picture without WCS) when wcslib refuses the source's.
    """
    wcs = celestial_wcs(source)
    if wcs is None:
        return fits.Header()
    out = wcs.to_header(relax=True)
    for key in [k for k in out if re.fullmatch(r"(PC|CD)\d_\d|CDELT\d|CROTA\d", k)]:
        del out[key]
    matrix = wcs.pixel_scale_matrix * factor
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(matrix[i - 1, j - 1])
    for axis, (crpix, offset) in enumerate(zip(wcs.wcs.crpix, (x0, y0), strict=True), start=1):
        # Binned pixel n (1-based) has its centre at source pixel (n - 1)·f + (f + 1)/2.
        out[f"CRPIX{axis}"] = (float(crpix) - offset - 0.5) / factor + 0.5 + offset
    for key in list(out):
        # SIP maps pixel offsets to pixel offsets: a term of degree p + q scales by f^(p+q-1).
        match = re.fullmatch(r"(A|B|AP|BP)_(\d+)_(\d+)", key)
        if match is not None:
            out[key] = out[key] * float(factor) ** (int(match[2]) + int(match[3]) - 1)
    return out


