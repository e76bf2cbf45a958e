"""Sky region → the box of image pixels that holds it (SODA §3.3: values outside the
image are clipped to it).

The box is the bounding box of (region ∩ image), found from dense samples of the
region's boundary that fall inside the image, plus the image corners that fall inside
the region. Samples are spaced about a pixel apart, so the box is exact to a pixel.
RANGE and POLYGON cut their bounding box; CIRCLE too (a FITS image is a rectangle).

Pixel coordinates are 0-based with pixel centres on integers (astropy's convention):
pixel i covers [i - 0.5, i + 0.5).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import proj_plane_pixel_scales

from soda.sky.polygons import polygon_plane
from soda.sky.regions import Circle, Polygon, Range, Shape
from soda.sky.sphere import circle_points, great_circle_points, ra_offset, separation, unit_vectors

MAX_SAMPLES = 20000


@dataclass(frozen=True)
class PixelBox:
    """numpy slice data[y0:y1, x0:x1] of the source image."""

    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def pixels(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


# --- whether points lie in a region ------------------------------------------------------

def _polygon_contains(p: Polygon, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Even-odd test on the polygon's tangent plane (its edges are straight there)."""
    plane = polygon_plane(p.vertices)
    px, py = plane.project(unit_vectors(*np.transpose(p.vertices)))
    points = unit_vectors(ra, dec)
    x, y = plane.project(points)
    inside = np.zeros(len(x), dtype=bool)
    for i in range(len(px)):
        x1, y1, x2, y2 = px[i], py[i], px[i - 1], py[i - 1]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (x2 - x1) * (y - y1) / (y2 - y1) + x1
        inside ^= crosses & (x < at)
    return inside & plane.in_front(points)


def contains(shape: Shape, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    if isinstance(shape, Circle):
        return separation(shape.ra, shape.dec, ra, dec) <= shape.radius
    if isinstance(shape, Range):
        return (ra >= shape.ra_min) & (ra <= shape.ra_max) & (dec >= shape.dec_min) & (dec <= shape.dec_max)
    return _polygon_contains(shape, ra, dec)


# --- the image and its sky extent ----------------------------------------------------------

@dataclass(frozen=True)
class _Image:
    wcs: WCS
    nx: int
    ny: int
    scale: float  # degrees per pixel

    def to_pixels(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.wcs.world_to_pixel_values(ra, dec)
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= -0.5) & (x < self.nx - 0.5) & (y >= -0.5) & (y < self.ny - 0.5)

    def border(self, per_edge: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates of points along the image border, corners included."""
        xs = np.linspace(-0.5, self.nx - 0.5, per_edge)
        ys = np.linspace(-0.5, self.ny - 0.5, per_edge)
        px = np.concatenate([xs, np.full(per_edge, self.nx - 0.5), xs[::-1], np.full(per_edge, -0.5)])
        py = np.concatenate([np.full(per_edge, -0.5), ys, np.full(per_edge, self.ny - 0.5), ys[::-1]])
        ra, dec = self.wcs.pixel_to_world_values(px, py)
        return np.asarray(ra) % 360.0, np.asarray(dec)

    def projectable(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Points a TAN projection can place (less than 90° from the reference point)."""
        ra0, dec0 = self.wcs.wcs.crval[0], self.wcs.wcs.crval[1]
        return separation(ra0, dec0, ra, dec) < 89.0


def _samples(length_deg: float, scale: float) -> int:
    return int(min(MAX_SAMPLES, max(16, math.ceil(length_deg / scale) + 1)))


def _range_edges(r: Range, image: _Image) -> tuple[np.ndarray, np.ndarray]:
    """Boundary samples of a RANGE, restricted to the image's own RA/Dec extent."""
    bra, bdec = image.border()
    ra_c = float(image.wcs.wcs.crval[0])
    rel = ra_offset(bra, ra_c)  # RA relative to the image, no wrap at 0
    dec_lo, dec_hi = max(r.dec_min, float(bdec.min()) - image.scale), min(r.dec_max, float(bdec.max()) + image.scale)
    pole_inside = any(image.inside(*image.to_pixels(np.array([0.0]), np.array([p])))[0] for p in (90.0, -90.0))
    if pole_inside or dec_lo > dec_hi:
        span = [(max(r.ra_min, 0.0), min(r.ra_max, 360.0))] if pole_inside else []
        dec_lo, dec_hi = max(r.dec_min, -90.0), min(r.dec_max, 90.0)
    else:
        lo, hi = float(rel.min()) - image.scale, float(rel.max()) + image.scale
        span = []
        for shift in (-360.0, 0.0, 360.0):  # the range's RA interval, seen from the image
            a, b = max(r.ra_min - ra_c + shift, lo), min(r.ra_max - ra_c + shift, hi)
            if a <= b:
                span.append((a + ra_c, b + ra_c))
    ras, decs = [], []
    for a, b in span:
        n = _samples((b - a) * max(math.cos(math.radians(d)) for d in (dec_lo, dec_hi)), image.scale)
        line = np.linspace(a, b, n)
        for d in (dec_lo, dec_hi):
            ras.append(line)
            decs.append(np.full(n, d))
        m = _samples(dec_hi - dec_lo, image.scale)
        for ra in (a, b):
            ras.append(np.full(m, ra))
            decs.append(np.linspace(dec_lo, dec_hi, m))
    if not ras:
        return np.empty(0), np.empty(0)
    return np.concatenate(ras) % 360.0, np.concatenate(decs)


def _boundary(shape: Shape, image: _Image) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(shape, Circle):
        length = 2 * math.pi * math.sin(math.radians(min(shape.radius, 90.0)))
        return circle_points(shape.ra, shape.dec, shape.radius, _samples(math.degrees(length), image.scale))
    if isinstance(shape, Range):
        return _range_edges(shape, image)
    verts = list(shape.vertices)
    parts = [great_circle_points(a, b, _samples(float(separation(a[0], a[1], b[0], b[1])), image.scale))
             for a, b in zip(verts, verts[1:] + verts[:1], strict=True)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# Each image's celestial WCS and pixel scale, kept while its WCS is (``WCS.celestial`` is a
# deep copy: asked twice per cutout it cost a small cutout a sixth of its time).
_CELESTIAL: weakref.WeakKeyDictionary[WCS, tuple[WCS, float]] = weakref.WeakKeyDictionary()


def _celestial(wcs: WCS) -> tuple[WCS, float]:
    known = _CELESTIAL.get(wcs)
    if known is None:
        celestial = wcs.celestial
        known = _CELESTIAL[wcs] = (celestial, float(np.mean(proj_plane_pixel_scales(celestial))))
    return known


def _corners(image: _Image) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The image's corners in pixels and on the sky (RA in [0, 360)), kept per WCS."""
    kept = _CORNERS.setdefault(image.wcs, {})
    known = kept.get((image.nx, image.ny))
    if known is None:
        corners_x = np.array([-0.5, image.nx - 0.5, image.nx - 0.5, -0.5])
        corners_y = np.array([-0.5, -0.5, image.ny - 0.5, image.ny - 0.5])
        cra, cdec = image.wcs.pixel_to_world_values(corners_x, corners_y)
        known = kept[(image.nx, image.ny)] = (corners_x, corners_y, np.asarray(cra) % 360.0, np.asarray(cdec))
    return known


_CORNERS: weakref.WeakKeyDictionary[WCS, dict[tuple[int, int], tuple[np.ndarray, ...]]] = weakref.WeakKeyDictionary()


def _projectable(region: Shape, image: _Image, ra: np.ndarray, dec: np.ndarray) -> np.ndarray | slice:
    """Which boundary points the projection can place: all of a circle whose far side is
    well within the limit (one distance instead of one per point), else point by point."""
    if isinstance(region, Circle):
        ra0, dec0 = image.wcs.wcs.crval[0], image.wcs.wcs.crval[1]
        if float(separation(ra0, dec0, region.ra, region.dec)) + region.radius < 88.0:
            return slice(None)
    return image.projectable(ra, dec)


def pixel_box(wcs: WCS, shape_yx: tuple[int, int], region: Shape) -> PixelBox | None:
    """The pixels of a (ny, nx) image that hold ``region``; None when they do not overlap."""
    ny, nx = shape_yx
    celestial, scale = _celestial(wcs)
    image = _Image(celestial, nx, ny, scale)
    ra, dec = _boundary(region, image)
    ok = _projectable(region, image, ra, dec)
    x, y = image.to_pixels(ra[ok], dec[ok])
    keep = image.inside(x, y)
    xs, ys = [x[keep]], [y[keep]]
    corners_x, corners_y, cra, cdec = _corners(image)
    covered = contains(region, cra, cdec)
    xs.append(corners_x[covered])
    ys.append(corners_y[covered])
    if isinstance(region, Circle):  # a circle smaller than a pixel has no inside samples
        cx, cy = image.to_pixels(np.array([region.ra]), np.array([region.dec]))
        inside = image.inside(cx, cy)
        xs.append(cx[inside])
        ys.append(cy[inside])
    allx, ally = np.concatenate(xs), np.concatenate(ys)
    if allx.size == 0:
        return None
    x0 = max(0, math.floor(float(allx.min()) + 0.5))
    x1 = min(nx, math.floor(float(allx.max()) + 0.5) + 1)
    y0 = max(0, math.floor(float(ally.min()) + 0.5))
    y1 = min(ny, math.floor(float(ally.max()) + 0.5) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return PixelBox(x0, x1, y0, y1)


def region_box(wcs: WCS, shape_yx: tuple[int, int], region: Shape, reach: int) -> PixelBox | None:
    """The pixels of ``region`` on the image's pixel grid carried ``reach`` pixels past each
    edge: the box may start below 0 or end past the image (for assembling a cutout from
    neighbouring images); None when the region misses that wider grid."""
    ny, nx = shape_yx
    box = pixel_box(shifted(wcs, -reach, -reach), (ny + 2 * reach, nx + 2 * reach), region)
    if box is None:
        return None
    return PixelBox(box.x0 - reach, box.x1 - reach, box.y0 - reach, box.y1 - reach)


def intersection(a: PixelBox, b: PixelBox) -> PixelBox | None:
    x0, x1, y0, y1 = max(a.x0, b.x0), min(a.x1, b.x1), max(a.y0, b.y0), min(a.y1, b.y1)
    return PixelBox(x0, x1, y0, y1) if x0 < x1 and y0 < y1 else None


def union(a: PixelBox, b: PixelBox) -> PixelBox:
    """The smallest box holding both."""
    return PixelBox(min(a.x0, b.x0), max(a.x1, b.x1), min(a.y0, b.y0), max(a.y1, b.y1))


def shifted(wcs: WCS, x0: int, y0: int) -> WCS:
    """The celestial WCS of the same pixel grid with its pixel (0, 0) at (x0, y0) of ``wcs``'s."""
    out = _celestial(wcs)[0].deepcopy()
    out.wcs.crpix = out.wcs.crpix - np.array([x0, y0], dtype=float)
    if out.sip is not None:  # SIP keeps its own copy of CRPIX
        out.sip = Sip(out.sip.a, out.sip.b, out.sip.ap, out.sip.bp, out.wcs.crpix)
    out.pixel_shape = None
    return out
