"""A rings sky map of tracts and patches, laid out as the LSST pipelines' ``RingsSkyMap``.

Every convention below follows lsst.skymap (ringsSkyMap.py, tractInfo.py, tractBuilder.py,
detail/wcsFactory.py on github.com/lsst/skymap) and lsst.geom (Box2I, Point2I), read
and rewritten here with numpy and astropy only:

* The sphere is cut into ``num_rings`` rings of Declination plus two polar caps; the two
  caps together count as one more ring, so a ring is pi / (num_rings + 1) high. Ring i
  (0 = southernmost) is centred at Dec = ring_size * (i + 1) - 90 deg.
* Ring i holds int(2 pi cos(d) / ring_size) + 1 tracts, d being the edge of the ring nearer
  the equator; tract j of the ring is centred at RA = ra_start + 360 j / n.
* Tract 0 is the south cap, then ring 0 from ra_start eastwards, ring 1..., and the north
  cap is the last tract. This is the numbering of ``RingsSkyMap(version=1)`` (after
  DM-14809); the HSC SSP data used version 0, which numbers the tracts at RA = ra_start of
  every ring but the first differently; all other tract numbers agree.
* A tract is an ``ExplicitTractInfo``: a TAN projection with its tangent point at the tract
  centre, CD = diag(-scale, +scale) (no rotation), whose minimum box holds the four points
  ``radius + tract_overlap`` from the centre due N, E, S, W, radius = ring_size / 2. The box
  is made whole pixels as lsst.geom's Box2I(Box2D, EXPAND) does (min = floor(min + 0.5),
  max = ceil(max - 0.5)), grown to a whole number of patches keeping its centre (the
  remainder split with the odd pixel at the top), then shifted so it starts at pixel 0.
* LSST pixel coordinates are zero-based with pixel centres on integers; a FITS CRPIX is one
  more. A sky position belongs to the pixel its coordinates round to (Point2I(Point2D)
  rounds to nearest), and a tract contains a position when that pixel is in its box.
* Patch (x, y) has the inner box [x * w, (x + 1) * w) x [y * h, (y + 1) * h); its outer box
  is the inner one grown by ``patch_border`` and clipped to the tract (the "legacy" tract
  builder). Its sequential index, the Gen3 ``patch`` value, is y * nx + x.
* ``RingsSkyMap.findTract`` picks the tract by ring (Dec) and by the nearest centre in RA
  within it, which is the nearest tract centre but near ring edges; ``tracts_at`` puts that
  tract first and the other tracts holding the position after it, nearest centre first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from soda.sky.sphere import separation
from astropy.wcs import WCS


@dataclass(frozen=True)
class SkyMapConfig:
    """A rings sky map's parameters; the defaults are Rubin's DC2 sky map (obs_lsst's
    ``makeSkyMap`` config for DC2 and DP0.2: 120 rings, TAN, 1' overlap, 0.2"/px, legacy
    tract builder with lsst.skymap's default 4000 x 4000 patches and 100 px borders)."""

    num_rings: int = 120
    tract_overlap: float = 1.0 / 60  # degrees
    pixel_scale: float = 0.2  # arcsec per pixel
    patch_inner: tuple[int, int] = (4000, 4000)  # (x, y) pixels
    patch_border: int = 100  # pixels
    ra_start: float = 0.0  # degrees

    def __post_init__(self) -> None:
        if (self.num_rings < 1 or self.tract_overlap < 0 or self.pixel_scale <= 0
                or min(self.patch_inner) < 1 or self.patch_border < 0
                or not 0.0 <= self.ra_start < 360.0):
            raise ValueError(f"not a valid rings sky map: {self}")


DC2 = SkyMapConfig()
HSC_RINGS_120 = SkyMapConfig(pixel_scale=0.168)  # the HSC SSP's "rings.120" (same tracts)
# The demo: DC2's tracts and pixels, with small patches so a few of them make a small file.
DEMO = SkyMapConfig(patch_inner=(200, 200), patch_border=10)


@dataclass(frozen=True)
class PixelBox:
    """A box of whole pixels in a tract's pixel coordinates: [x0, x0 + nx) x [y0, y0 + ny)."""

    x0: int
    y0: int
    nx: int
    ny: int

    @property
    def x1(self) -> int:
        return self.x0 + self.nx

    @property
    def y1(self) -> int:
        return self.y0 + self.ny

    def contains(self, x: int, y: int) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def intersection(self, other: PixelBox) -> PixelBox | None:
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        if x0 >= x1 or y0 >= y1:
            return None
        return PixelBox(x0, y0, x1 - x0, y1 - y0)

    def slices(self, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """(rows, columns) of this box in an array whose pixel [0, 0] is tract pixel ``origin``."""
        ox, oy = origin
        return slice(self.y0 - oy, self.y1 - oy), slice(self.x0 - ox, self.x1 - ox)


@dataclass(frozen=True)
class Tract:
    """One tract: its centre, its pixel box (from 0) and its patch grid."""

    id: int
    ring: int  # -1 for the south cap, num_rings for the north cap
    centre: tuple[float, float]  # (RA, Dec) degrees: the tangent point of its TAN WCS
    crpix: tuple[float, float]  # LSST (zero-based) pixel position of the centre
    width: int
    height: int
    patches: tuple[int, int]  # (nx, ny)


def _offset(ra: float, dec: float, bearing: float, distance: float) -> tuple[float, float]:
    """The point ``distance`` degrees from (ra, dec) along position angle ``bearing`` (deg E of N)."""
    if abs(dec) == 90.0:
        # At a pole every direction points south (north): the meridians at ra + bearing
        # stand in for the bearings, so the four offsets of a cap lie 90 deg apart.
        return (ra + bearing) % 360.0, math.copysign(90.0 - distance, dec)
    ra1, dec1, pa, d = map(math.radians, (ra, dec, bearing, distance))
    sin_dec = math.sin(dec1) * math.cos(d) + math.cos(dec1) * math.sin(d) * math.cos(pa)
    dec2 = math.asin(max(-1.0, min(1.0, sin_dec)))
    dra = math.atan2(math.sin(pa) * math.sin(d) * math.cos(dec1),
                     math.cos(d) - math.sin(dec1) * sin_dec)
    return math.degrees(ra1 + dra) % 360.0, math.degrees(dec2)


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in degrees (Vincenty's formula, good at every distance)."""
    l1, b1, l2, b2 = map(math.radians, (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    num = math.hypot(math.cos(b2) * math.sin(dl),
                     math.cos(b1) * math.sin(b2) - math.sin(b1) * math.cos(b2) * math.cos(dl))
    den = math.sin(b1) * math.sin(b2) + math.cos(b1) * math.cos(b2) * math.cos(dl)
    return math.degrees(math.atan2(num, den))


def _tan_wcs(centre: tuple[float, float], crpix: tuple[float, float], scale: float,
             shape: tuple[int, int] | None = None) -> WCS:
    """TAN WCS; ``crpix`` zero-based (LSST), written one-based (FITS); shape (ny, nx)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = list(centre)
    wcs.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    wcs.wcs.cd = [[-scale / 3600.0, 0.0], [0.0, scale / 3600.0]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    if shape is not None:
        wcs.pixel_shape = (shape[1], shape[0])
    return wcs


class RingsSkyMap:
    """Tracts and patches of a rings sky map (see the module's notes for the conventions)."""

    def __init__(self, config: SkyMapConfig = DC2) -> None:
        self.config = config
        self.ring_size = 180.0 / (config.num_rings + 1)  # degrees
        self.ring_counts: tuple[int, ...] = tuple(self._ring_count(i) for i in range(config.num_rings))
        starts = np.cumsum((1,) + self.ring_counts)  # tract id of each ring's first tract
        self._ring_first: tuple[int, ...] = tuple(int(s) for s in starts[:-1])
        self.tract_count = int(starts[-1]) + 1
        self._tract = lru_cache(maxsize=4096)(self._make_tract)
        self._wcs = lru_cache(maxsize=4096)(self._make_wcs)

    def _ring_count(self, i: int) -> int:
        size = math.radians(self.ring_size)
        start = size * (i + 0.5) - 0.5 * math.pi
        dec = min(abs(start), abs(start + size))
        return int(2 * math.pi * math.cos(dec) / size) + 1

    # --- tracts ---------------------------------------------------------------------------

    def ring_of(self, tract: int) -> tuple[int, int]:
        """(ring, position in the ring) of a tract; ring -1 and num_rings are the caps."""
        if not 0 <= tract < self.tract_count:
            raise IndexError(f"no tract {tract}: this sky map has tracts 0..{self.tract_count - 1}")
        if tract == 0:
            return -1, 0
        if tract == self.tract_count - 1:
            return self.config.num_rings, 0
        ring = int(np.searchsorted(self._ring_first, tract, side="right")) - 1
        return ring, tract - self._ring_first[ring]

    def tract_centre(self, tract: int) -> tuple[float, float]:
        ring, j = self.ring_of(tract)
        if ring == -1:
            return 0.0, -90.0
        if ring == self.config.num_rings:
            return 0.0, 90.0
        dec = self.ring_size * (ring + 1) - 90.0
        return (self.config.ra_start + 360.0 * j / self.ring_counts[ring]) % 360.0, dec

    def _make_tract(self, tract: int) -> Tract:
        ring, _ = self.ring_of(tract)
        centre = self.tract_centre(tract)
        cfg = self.config
        initial = _tan_wcs(centre, (0.0, 0.0), cfg.pixel_scale)
        reach = self.ring_size / 2 + cfg.tract_overlap
        corners = [_offset(*centre, bearing, reach) for bearing in (0.0, 90.0, 180.0, 270.0)]
        px, py = initial.all_world2pix(np.array(corners), 0).T
        lo = [math.floor(min(px) + 0.5), math.floor(min(py) + 0.5)]
        dims = [math.ceil(max(px) - 0.5) + 1 - lo[0], math.ceil(max(py) - 0.5) + 1 - lo[1]]
        counts = []
        for axis, inner in enumerate(cfg.patch_inner):
            n = (dims[axis] + inner - 1) // inner
            lo[axis] -= (inner * n - dims[axis]) // 2
            dims[axis] = inner * n
            counts.append(n)
        return Tract(id=tract, ring=ring, centre=centre, crpix=(float(-lo[0]), float(-lo[1])),
                     width=dims[0], height=dims[1], patches=(counts[0], counts[1]))

    def tract(self, tract: int) -> Tract:
        return self._tract(tract)

    def _make_wcs(self, tract: int) -> WCS:
        t = self.tract(tract)
        return _tan_wcs(t.centre, t.crpix, self.config.pixel_scale, (t.height, t.width))

    def tract_wcs(self, tract: int) -> WCS:
        """The tract's TAN WCS, pixel (0, 0) at its box's first pixel. Shared: do not modify."""
        return self._wcs(tract)

    def tract_pixel(self, tract: int, ra: float, dec: float) -> tuple[float, float] | None:
        """Zero-based (x, y) of a position in the tract's frame; None on the far hemisphere."""
        t = self.tract(tract)
        if _separation(ra, dec, *t.centre) >= 89.0:  # the TAN projection is meaningless there
            return None
        x, y = self.tract_wcs(tract).all_world2pix([[ra, dec]], 0)[0]
        return float(x), float(y)

    def contains(self, tract: int, ra: float, dec: float) -> bool:
        pixel = self.tract_pixel(tract, ra, dec)
        if pixel is None:
            return False
        t = self.tract(tract)
        return PixelBox(0, 0, t.width, t.height).contains(*_round(pixel))

    def find_tract(self, ra: float, dec: float) -> int:
        """The tract lsst.skymap's ``RingsSkyMap.findTract`` gives: by ring, then nearest in RA."""
        size = self.ring_size
        first_start = size / 2 - 90.0
        if dec < first_start:
            return 0
        if dec > -first_start:
            return self.tract_count - 1
        ring = min(int((dec - first_start) / size), self.config.num_rings - 1)
        return self._ring_first[ring] + self._ra_to_position(ra, ring)

    def find_tracts(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """``find_tract`` of many positions at once (-1 where a coordinate is not finite)."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        finite = np.isfinite(ra) & np.isfinite(dec)
        ra, dec = np.where(finite, ra, 0.0), np.where(finite, dec, 0.0)
        size = self.ring_size
        first_start = size / 2 - 90.0
        ring = np.clip(((dec - first_start) / size).astype(np.int64), 0, self.config.num_rings - 1)
        n = np.asarray(self.ring_counts, dtype=np.int64)[ring]
        j = (((ra - self.config.ra_start) % 360.0) / (360.0 / n) + 0.5).astype(np.int64)
        tract = np.asarray(self._ring_first, dtype=np.int64)[ring] + np.where(j == n, 0, j)
        tract = np.where(dec < first_start, 0, np.where(dec > -first_start, self.tract_count - 1, tract))
        return np.where(finite, tract, -1)

    def patches_at(self, tract: int, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """``patch_at``'s index of many positions in one tract (-1: off the tract)."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        t = self.tract(tract)
        out = np.full(len(ra), -1, dtype=np.int64)
        near = np.flatnonzero(separation(ra, dec, *t.centre) < 89.0)
        if not near.size:
            return out
        x, y = self.tract_wcs(tract).all_world2pix(ra[near], dec[near], 0)
        ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
        inside = (ix >= 0) & (ix < t.width) & (iy >= 0) & (iy < t.height)
        px = ix[inside].astype(np.int64) // self.config.patch_inner[0]
        py = iy[inside].astype(np.int64) // self.config.patch_inner[1]
        out[near[inside]] = py * t.patches[0] + px
        return out

    def _ra_to_position(self, ra: float, ring: int) -> int:
        n = self.ring_counts[ring]
        j = int(((ra - self.config.ra_start) % 360.0) / (360.0 / n) + 0.5)
        return 0 if j == n else j

    def tracts_at(self, ra: float, dec: float) -> list[int]:
        """Every tract containing the position: ``find_tract``'s first, then by nearest centre."""
        if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
            return []
        ra %= 360.0
        best = self.find_tract(ra, dec)
        first_start = self.ring_size / 2 - 90.0
        ring = -1 if dec < first_start else min(int((dec - first_start) / self.ring_size),
                                                 self.config.num_rings)
        candidates = {best, 0, self.tract_count - 1}
        for r in (ring - 1, ring, ring + 1):
            if 0 <= r < self.config.num_rings:
                n, j = self.ring_counts[r], self._ra_to_position(ra, r)
                candidates |= {self._ring_first[r] + (j + k) % n for k in (-1, 0, 1)}
        found = [t for t in candidates if self.contains(t, ra, dec)]
        found.sort(key=lambda t: (t != best, _separation(ra, dec, *self.tract_centre(t)), t))
        return found

    # --- patches --------------------------------------------------------------------------

    def patch_index(self, tract: int, x: int, y: int) -> int:
        """The sequential (Gen3) index of patch (x, y): y * nx + x."""
        nx, ny = self.tract(tract).patches
        if not (0 <= x < nx and 0 <= y < ny):
            raise IndexError(f"tract {tract} has patches (0..{nx - 1}, 0..{ny - 1}), not ({x}, {y})")
        return y * nx + x

    def patch_xy(self, tract: int, index: int) -> tuple[int, int]:
        """(x, y) of a sequential patch index."""
        nx, ny = self.tract(tract).patches
        if not 0 <= index < nx * ny:
            raise IndexError(f"tract {tract} has patches 0..{nx * ny - 1}, not {index}")
        return index % nx, index // nx

    def patch_at(self, tract: int, ra: float, dec: float) -> tuple[int, int, int] | None:
        """(index, x, y) of the patch whose inner box holds the position; None off the tract."""
        pixel = self.tract_pixel(tract, ra, dec)
        if pixel is None:
            return None
        t = self.tract(tract)
        ix, iy = _round(pixel)
        if not PixelBox(0, 0, t.width, t.height).contains(ix, iy):
            return None
        x, y = ix // self.config.patch_inner[0], iy // self.config.patch_inner[1]
        return self.patch_index(tract, x, y), x, y

    def patch_boxes(self, tract: int, patch: int) -> tuple[PixelBox, PixelBox]:
        """(inner, outer) boxes of a patch in its tract's pixel coordinates."""
        x, y = self.patch_xy(tract, patch)
        w, h = self.config.patch_inner
        inner = PixelBox(x * w, y * h, w, h)
        b = self.config.patch_border
        t = self.tract(tract)
        outer = PixelBox(inner.x0 - b, inner.y0 - b, w + 2 * b, h + 2 * b)
        clipped = outer.intersection(PixelBox(0, 0, t.width, t.height))
        assert clipped is not None  # the inner box is always inside the tract
        return inner, clipped

    def patches_in_box(self, tract: int, box: PixelBox) -> list[int]:
        """Patches whose outer boxes meet a box of tract pixels, in index order."""
        t = self.tract(tract)
        clipped = box.intersection(PixelBox(0, 0, t.width, t.height))
        if clipped is None:
            return []
        (w, h), b = self.config.patch_inner, self.config.patch_border
        nx, ny = t.patches
        xs = range(max(0, (clipped.x0 - b) // w), min(nx - 1, (clipped.x1 - 1 + b) // w) + 1)
        ys = range(max(0, (clipped.y0 - b) // h), min(ny - 1, (clipped.y1 - 1 + b) // h) + 1)
        return [y * nx + x for y in ys for x in xs
                if self.patch_boxes(tract, y * nx + x)[1].intersection(clipped) is not None]

    def patch_wcs(self, tract: int, patch: int) -> WCS:
        """The WCS of a patch image (its outer box): the tract's, CRPIX shifted by the box origin."""
        t = self.tract(tract)
        _, outer = self.patch_boxes(tract, patch)
        crpix = (t.crpix[0] - outer.x0, t.crpix[1] - outer.y0)
        return _tan_wcs(t.centre, crpix, self.config.pixel_scale, (outer.ny, outer.nx))


def _round(pixel: tuple[float, float]) -> tuple[int, int]:
    """The pixel a zero-based position falls in: round half up, as lsst.geom's Point2I."""
    return math.floor(pixel[0] + 0.5), math.floor(pixel[1] + 0.5)


@lru_cache(maxsize=8)
def skymap(config: SkyMapConfig = DC2) -> RingsSkyMap:
    """One shared sky map per configuration."""
    return RingsSkyMap(config)
