"""Spherical geometry on the celestial sphere, for the whole service.

Positions are ICRS (ra, dec) in degrees. Directions are unit 3-vectors on the last axis
(x towards RA 0 on the equator, z towards the north pole), so that one call serves one
position or many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import angular_separation, offset_by, position_angle
from numpy.typing import ArrayLike

# A sum or cross product of unit vectors shorter than this has no usable direction.
DEGENERATE = 1e-12
# Directions this close (about 0.01 arcsec) are one point: a few rounding errors of 1.0.
SAME_POINT_COS = 1.0 - 1e-15
# Directions this close to a tangent plane's horizon (cosine from its centre) or beyond
# count as behind it: they would project too far out to matter.
HORIZON_COS = 1e-9

Position = tuple[float, float]


def unit_vectors(ra: ArrayLike, dec: ArrayLike) -> np.ndarray:
    """The directions of positions, shape (..., 3)."""
    ra, dec = np.broadcast_arrays(np.radians(ra), np.radians(dec))
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def radec(vectors: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The positions of vectors of any length: RA in [0, 360), Dec in [-90, 90]."""
    v = np.asarray(vectors, dtype=float)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    ra = np.where(ra == 360.0, 0.0, ra)  # -1e-20 % 360 is 360.0
    return ra, np.degrees(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))


def separation(ra1: ArrayLike, dec1: ArrayLike, ra2: ArrayLike, dec2: ArrayLike) -> np.ndarray:
    """Angular distance in degrees (Vincenty's formula: stable at all distances).

    A numpy scalar for scalar positions, an array (broadcast) otherwise.
    """
    return np.degrees(angular_separation(*(np.radians(x) for x in (ra1, dec1, ra2, dec2))))


def ra_offset(ra: ArrayLike, ra0: float) -> np.ndarray:
    """``ra - ra0`` in degrees wrapped into [-180, 180): no jump at RA 0."""
    return (np.asarray(ra, dtype=float) - ra0 + 180.0) % 360.0 - 180.0


def same_direction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether unit vectors point the same way (broadcast over the leading axes)."""
    return np.sum(a * b, axis=-1) > SAME_POINT_COS


def same_point(a: Position, b: Position) -> bool:
    """Also true for RA 0 vs 360, or any two RAs at a pole."""
    return bool(same_direction(unit_vectors(*a), unit_vectors(*b)))


def mean_direction(vectors: np.ndarray) -> np.ndarray | None:
    """The direction of the sum of unit vectors (n, 3); None when they cancel out."""
    total = np.sum(vectors, axis=0)
    norm = float(np.linalg.norm(total))
    return None if norm < DEGENERATE else total / norm


@dataclass(frozen=True, eq=False)
class TangentPlane:
    """The gnomonic projection about a direction, onto the plane touching the sphere there.

    It maps great circles to straight lines, so a polygon with great-circle edges stays
    a polygon, RA wrap-around included. x grows to the east and y to the north: the
    sky as seen from outside the sphere, with east to the right. Only the hemisphere
    in front of the centre projects faithfully (``in_front``).
    """

    centre: np.ndarray
    east: np.ndarray
    north: np.ndarray

    @classmethod
    def about(cls, centre: np.ndarray) -> TangentPlane:
        """The plane about a unit vector."""
        # The cross products (0, 0, 1) x centre and centre x east, written out: np.cross
        # costs more than the rest of checking a small polygon.
        east = np.array([-centre[1], centre[0], 0.0])
        norm = math.hypot(centre[0], centre[1])
        east = east / norm if norm >= DEGENERATE else np.array([0.0, 1.0, 0.0])  # at a pole: any
        north = np.array([centre[1] * east[2] - centre[2] * east[1],
                          centre[2] * east[0] - centre[0] * east[2],
                          centre[0] * east[1] - centre[1] * east[0]])
        return cls(centre, east, north)

    def cos_distance(self, vectors: np.ndarray) -> np.ndarray:
        """The cosine of each direction's angle from the centre."""
        return vectors @ self.centre

    def within(self, vectors: np.ndarray, degrees: float) -> np.ndarray:
        """Whether directions are less than ``degrees`` from the centre."""
        return self.cos_distance(vectors) > math.cos(math.radians(degrees))

    def in_front(self, vectors: np.ndarray) -> np.ndarray:
        """Whether directions are on the near hemisphere (the others project as mirrors)."""
        return self.cos_distance(vectors) > HORIZON_COS

    def project(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) on the plane, in units of the sphere's radius; meaningful in front only."""
        z = self.cos_distance(vectors)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (vectors @ self.east) / z, (vectors @ self.north) / z

    def deproject(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The unit vectors of points on the plane."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        v = self.centre + x[..., None] * self.east + y[..., None] * self.north
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def signed_area(x: ArrayLike, y: ArrayLike) -> float:
    """Shoelace area of a plane polygon: positive when its vertices run counter-clockwise
    with x to the right and y up."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) / 2)


def great_circle_points(start: Position, end: Position, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced points along the minor arc from ``start`` towards ``end``
    (``end`` excluded)."""
    ra1, dec1, ra2, dec2 = np.radians((*start, *end))
    steps = np.linspace(0.0, 1.0, n, endpoint=False) * angular_separation(ra1, dec1, ra2, dec2)
    # One heading per step: offset_by fails on a scalar heading from a pole.
    headings = np.full(n, position_angle(ra1, dec1, ra2, dec2).radian)
    ra, dec = offset_by(ra1, dec1, headings, steps)
    return ra.degree, dec.degree


def circle_points(ra: float, dec: float, radius: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced points on the circle of ``radius`` degrees about (ra, dec).

    Plain numpy (astropy's offset_by wraps each call in Angle and Quantity objects, a third
    of the time of a small cutout's pixel box): the point at angular distance ``radius``
    along each heading (east of north), by the spherical law of cosines."""
    headings = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    lat, dist = math.radians(dec), math.radians(radius)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    sin_out = np.clip(sin_lat * math.cos(dist) + cos_lat * math.sin(dist) * np.cos(headings), -1.0, 1.0)
    if cos_lat < 1e-12:  # at a pole every heading starts along a meridian: its RA is the heading's
        turn = np.pi - headings if sin_lat > 0 else headings
    else:
        turn = np.arctan2(np.sin(headings) * math.sin(dist) * cos_lat, math.cos(dist) - sin_lat * sin_out)
    return np.degrees(math.radians(ra) + turn) % 360.0, np.degrees(np.arcsin(sin_out))
