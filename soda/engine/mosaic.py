"""Cutouts across image edges: a region that runs past its image is assembled from the
neighbouring images of the same band, on the first image's pixel grid.

The first image (the one the plan chose) keeps its grid; the cutout's box is the region's
box on that grid, not clipped to the image but to where the first image and its neighbours
have pixels. Every pixel comes from one image:

* the first image's own pixels always win;
* elsewhere, the nearest image whose pixels reach there (nearest by its central pixel,
  measured on the first image's pixel plane), so the seams fall midway between centres, as
  the DES unique areas and the LSST inner patch boxes do;
* pixels no image reaches are NaN in float planes and 0 in integer planes.

Images on the same grid (LSST patches of one tract) are copied by an integer pixel offset,
read from their WCS (CRPIX difference, checked to be whole with CRVAL, CD/PC and CTYPE
equal): exact. Images on other grids (DES tiles, each with its own tangent point) are
resampled with ``reproject.reproject_interp``:

* float planes (science, weight, variance): bilinear interpolation of the pixel values,
  which keeps surface brightness (values per pixel) but conserves total flux only to the
  interpolation error (the tiles share one pixel scale, so the pixel area is the same to
  a part in 10^6); the noise of the resampled pixels is correlated, which the weights do
  not say;
* integer planes (bit masks): nearest neighbour, never interpolated. reproject would
  turn integers into float32 (losing bits above 2^24), so they go through it as float64,
  exact for every 32-bit value, and come back as integers.

Each plane's header says so (``soda.output.fits``: MOSAIC, NSRCIMG, SRCIMGn, RESAMPLE).
Bounded: the assembled box obeys the caller's pixel limit; at most ``MAX_NEIGHBOURS``
images are opened; assembly reaches at most one image size past the first image's edges.
Without a neighbour holding pixels past the edge, the cutout is the first image's
(SODA 1.0 §3.3: the cutout is the region's intersection with the data).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from dali.errors import UsageError
from soda.engine.cutout import Cut, CutPlane, Mosaic, call_files, cut, image_hdu, locate, science
from soda.engine.files import ImageFiles, Layout
from soda.engine.pixels import PixelBox, intersection, region_box, shifted, union
from soda.sky.footprint import covering_circle
from soda.sky.regions import Shape
from soda.sky.sphere import separation
from soda.surveys.base import ImageRef, Survey

log = logging.getLogger(__name__)

MAX_NEIGHBOURS = 8
NONE, BILINEAR, NEAREST = "none", "bilinear", "nearest"


@dataclass(frozen=True)
class _Source:
    """One image that may give pixels, placed on the first image's grid."""

    image: ImageRef
    layout: Layout
    wcs: WCS
    shape: tuple[int, int]               # (ny, nx)
    offset: tuple[int, int] | None       # same grid: its pixel (x, y) is (x + dx, y + dy) of the first
    extent: PixelBox                     # the box of the first image's grid its pixels fall in
    centre: tuple[float, float]          # its central pixel on the first image's grid


def _touches_edge(box: PixelBox, shape: tuple[int, int]) -> bool:
    return box.x0 == 0 or box.y0 == 0 or box.x1 == shape[1] or box.y1 == shape[0]


def _grid_offset(first: WCS, other: WCS) -> tuple[int, int] | None:
    """The whole-pixel offset between two WCS of one grid; None when they are not one grid."""
    a, b = first.wcs, other.wcs
    same = (list(a.ctype) == list(b.ctype) and np.allclose(a.crval, b.crval, rtol=0, atol=1e-12)
            and np.allclose(a.get_pc() * a.get_cdelt()[:, None], b.get_pc() * b.get_cdelt()[:, None],
                            rtol=1e-12, atol=0) and first.sip is None and other.sip is None)
    if not same:
        return None
    dx, dy = (float(v) for v in a.crpix - b.crpix)
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        return None
    return round(dx), round(dy)


def _place(image: ImageRef, files: ImageFiles, first: WCS, same_grid: bool) -> _Source:
    layout, _, shape = science(files, image)
    wcs = layout.wcs(image.hdus[0])
    ny, nx = shape
    offset = _grid_offset(first, wcs) if same_grid else None
    if same_grid and offset is None:
        log.warning("%s is said to share the grid of its neighbour but its WCS does not: resampled",
                    image.dataset_id)
    if offset is not None:
        dx, dy = offset
        extent = PixelBox(dx, dx + nx, dy, dy + ny)
        centre = ((nx - 1) / 2 + dx, (ny - 1) / 2 + dy)
    else:
        xs = np.concatenate([np.linspace(-0.5, nx - 0.5, 64), np.full(64, nx - 0.5),
                             np.linspace(nx - 0.5, -0.5, 64), np.full(64, -0.5)])
        ys = np.concatenate([np.full(64, -0.5), np.linspace(-0.5, ny - 0.5, 64),
                             np.full(64, ny - 0.5), np.linspace(ny - 0.5, -0.5, 64)])
        x, y = first.world_to_pixel_values(*wcs.pixel_to_world_values(xs, ys))
        extent = PixelBox(math.floor(np.min(x) + 0.5), math.floor(np.max(x) + 0.5) + 1,
                          math.floor(np.min(y) + 0.5), math.floor(np.max(y) + 0.5) + 1)
        cx, cy = first.world_to_pixel_values(*wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
        centre = (float(cx), float(cy))
    return _Source(image, layout, wcs, shape, offset, extent, centre)


def _owners(first_shape: tuple[int, int], first: WCS, box: PixelBox,
            sources: list[_Source]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which image gives each pixel of the box (-1 the first, k the k-th source, -2 none),
    and where that pixel is on the source that gives it (x, y; NaN on the first image's)."""
    ny, nx = box.shape
    owner = np.full((ny, nx), -2, dtype=np.int16)
    at_x, at_y = np.full((ny, nx), np.nan), np.full((ny, nx), np.nan)
    ys, xs = np.mgrid[0:ny, 0:nx]
    x, y = xs + box.x0, ys + box.y0
    own = (x >= 0) & (x < first_shape[1]) & (y >= 0) & (y < first_shape[0])
    owner[own] = -1
    x, y = x[~own], y[~own]
    world = first.pixel_to_world_values(x, y) if any(s.offset is None for s in sources) else None
    best = np.full(x.shape, np.inf)
    pick = np.full(x.shape, -2, dtype=np.int16)
    px, py = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    for k, source in enumerate(sources):
        if source.offset is not None:
            sx, sy = (x - source.offset[0]).astype(float), (y - source.offset[1]).astype(float)
        else:
            sx, sy = (np.asarray(v, dtype=float) for v in source.wcs.world_to_pixel_values(*world))
        sny, snx = source.shape
        covers = (sx >= -0.5) & (sx < snx - 0.5) & (sy >= -0.5) & (sy < sny - 0.5)
        distance = np.hypot(x - source.centre[0], y - source.centre[1])
        better = covers & (distance < best)
        best[better], pick[better], px[better], py[better] = distance[better], k, sx[better], sy[better]
    owner[~own], at_x[~own], at_y[~own] = pick, px, py
    return owner, at_x, at_y


def _read(files: ImageFiles, layout: Layout, image: ImageRef, name: str, box: PixelBox) -> np.ndarray:
    return files.read(layout, image_hdu(layout, image, name), box, image.dataset_id)


def _resampled(files: ImageFiles, source: _Source, names: list[str], sy: np.ndarray, sx: np.ndarray,
               target: WCS, shape: tuple[int, int], integer: bool) -> np.ndarray:
    """The source's planes resampled onto ``target`` (of ``shape``), one per name; NaN where
    it has no pixels."""
    from reproject import reproject_interp  # heavy (dask): only when tiles are resampled

    sny, snx = source.shape
    # The source pixels the interpolation needs: those round the points, one pixel more.
    read = PixelBox(max(0, math.floor(sx.min()) - 1), min(snx, math.ceil(sx.max()) + 2),
                    max(0, math.floor(sy.min()) - 1), min(sny, math.ceil(sy.max()) + 2))
    data = np.stack([_read(files, source.layout, source.image, name, read).astype(np.float64) for name in names])
    # No round trip check of the coordinates: only pixels the source holds are asked for.
    values, _ = reproject_interp((data, shifted(source.wcs, read.x0, read.y0)), target, shape_out=shape,
                                 order="nearest-neighbor" if integer else "bilinear", roundtrip_coords=False)
    return np.asarray(values)


def _fill(files: ImageFiles, outs: list[np.ndarray], methods: list[str], index: int, source: _Source,
          owners: tuple[np.ndarray, np.ndarray, np.ndarray], box: PixelBox, first_wcs: WCS) -> None:
    """The pixels the ``index``-th source owns, in every plane."""
    owner, at_x, at_y = owners
    ys, xs = np.nonzero(owner == index)
    if ys.size == 0:
        return
    # The owned pixels' own box, in the cutout (local) and on the first image's grid.
    local = PixelBox(int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1)
    ly, lx = ys - local.y0, xs - local.x0
    planes = list(enumerate(source.image.hdus[:len(outs)]))
    if source.offset is not None:
        dx, dy = source.offset
        there = PixelBox(box.x0 + local.x0 - dx, box.x0 + local.x1 - dx,
                         box.y0 + local.y0 - dy, box.y0 + local.y1 - dy)
        for i, name in planes:
            outs[i][ys, xs] = _read(files, source.layout, source.image, name, there)[ly, lx]
        return
    sx, sy = at_x[ys, xs], at_y[ys, xs]
    target = shifted(first_wcs, box.x0 + local.x0, box.y0 + local.y0)
    for integer in (False, True):
        group = [(i, name) for i, name in planes if (outs[i].dtype.kind in "iub") == integer]
        if not group:
            continue
        values = _resampled(files, source, [name for _, name in group], sy, sx, target, local.shape, integer)
        for (i, _), plane in zip(group, values, strict=True):
            picked = plane[ly, lx]
            outs[i][ys, xs] = np.where(np.isnan(picked), 0, picked) if integer else picked
            methods[i] = NEAREST if integer else BILINEAR


def assemble(image: ImageRef, region: Shape, box: PixelBox, survey: Survey, max_pixels: int | None,
             planes: int | None, limit_name: str, given: bool, files: ImageFiles | None = None) -> Cut | None:
    """The cutout of ``box`` (on the image's grid, past its edges) from the image and its
    neighbours; None when no neighbour has pixels past the edge and the box was not
    ``given`` (the caller then cuts the image alone)."""
    files = call_files(files)
    layout, _, shape = science(files, image)
    first_wcs = layout.wcs(image.hdus[0])
    ny, nx = box.shape
    ra, dec = first_wcs.pixel_to_world_values(box.x0 + (nx - 1) / 2, box.y0 + (ny - 1) / 2)
    corners = first_wcs.pixel_to_world_values(np.array([box.x0 - 0.5, box.x1 - 0.5] * 2),
                                              np.array([box.y0 - 0.5] * 2 + [box.y1 - 0.5] * 2))
    radius = float(np.max(separation(float(ra), float(dec), *corners)))
    own = PixelBox(0, shape[1], 0, shape[0])
    sources = []
    for other in survey.neighbours(image, float(ra), float(dec), radius)[:MAX_NEIGHBOURS]:
        if other.dataset_id == image.dataset_id or other.band != image.band:
            continue
        source = _place(other, files, first_wcs, survey.same_grid(image, other))
        reached = intersection(source.extent, box)
        if reached is not None and union(reached, own) != own:
            sources.append(source)
    if not sources and not given:
        return None
    covered = own
    for source in sources:
        covered = union(covered, source.extent)
    final = box if given else intersection(box, covered)
    if final is None:  # a box from another band that misses this image: no pixels here
        return None
    if max_pixels is not None and final.pixels > max_pixels:
        raise UsageError(f"the cutout from {image.dataset_id} and its neighbours would have "
                         f"{final.shape[1]}x{final.shape[0]} pixels, more than {limit_name} of "
                         f"{max_pixels}; ask for a smaller region")
    owners = _owners(shape, first_wcs, final, sources)
    inside = intersection(final, own)
    if inside is None:
        return None
    outs, made = [], []
    for name in image.hdus[:planes]:
        hdu = image_hdu(layout, image, name)
        part = files.read(layout, hdu, inside, image.dataset_id)
        dtype = part.dtype.newbyteorder("=")
        out = np.full(final.shape, 0 if dtype.kind in "iub" else np.nan, dtype=dtype)
        out[inside.y0 - final.y0:inside.y1 - final.y0, inside.x0 - final.x0:inside.x1 - final.x0] = part
        outs.append(out)
        made.append(CutPlane(hdu.name or name, out, hdu.header))
    methods = [NONE] * len(outs)
    for k, source in enumerate(sources):
        _fill(files, outs, methods, k, source, owners, final, first_wcs)
    used = sorted({int(k) for k in np.unique(owners[0]) if k >= 0})
    mosaic = Mosaic(sources=(image.dataset_id, *(sources[k].image.dataset_id for k in used)),
                    resample=tuple(methods))
    return Cut(image, region, final, tuple(made), mosaic)


def _has_neighbours(image: ImageRef, region: Shape, survey: Survey) -> bool:
    """Whether any image could hold the region's pixels past the edge: asked before the
    region's box is laid out past the edges and the neighbours are opened."""
    circle = covering_circle(region)
    return bool(survey.neighbours(image, circle.ra, circle.dec, circle.radius))


def cut_across(image: ImageRef, region: Shape | None, max_pixels: int | None, survey: Survey | None, *,
               planes: int | None = None, box: PixelBox | None = None,
               limit_name: str = "this service's limit", files: ImageFiles | None = None) -> Cut | None:
    """``cutout.cut``, assembled from the survey's neighbouring images when the region (or the
    ``box`` given, on the image's grid) runs past the image's edge and they have pixels there.
    ``files``: the process's cache of file layouts and decoded tiles (``cutout.cut``)."""
    files = call_files(files)
    if region is None or survey is None:
        return cut(image, region, max_pixels, planes=planes, box=box, limit_name=limit_name, files=files)
    if box is not None:  # the box of another band's cut: the same grid, maybe past the edge
        _, _, shape = science(files, image)
        if intersection(box, PixelBox(0, shape[1], 0, shape[0])) == box:
            return cut(image, region, max_pixels, planes=planes, box=box, limit_name=limit_name, files=files)
        return assemble(image, region, box, survey, max_pixels, planes, limit_name, given=True, files=files)
    layout, clipped = locate(image, region, files)
    if clipped is None:
        return None
    _, _, shape = science(files, image)
    full = None
    if _touches_edge(clipped, shape) and _has_neighbours(image, region, survey):
        full = region_box(layout.wcs(image.hdus[0]), shape, region, max(shape))
    if full is not None and full != clipped:
        made = assemble(image, region, full, survey, max_pixels, planes, limit_name, given=False, files=files)
        if made is not None:
            return made
    return cut(image, region, max_pixels, planes=planes, box=clipped, limit_name=limit_name, files=files)
