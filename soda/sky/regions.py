"""Sky regions of SODA requests (SODA §3.3.1-3.3.3), in ICRS degrees."""

from __future__ import annotations

import math
from dataclasses import dataclass

from soda.sky.polygons import polygon_plane
from soda.sky.sphere import radec


@dataclass(frozen=True)
class Circle:
    ra: float
    dec: float
    radius: float

    def dali(self) -> str:
        return f"CIRCLE {self.ra:g} {self.dec:g} {self.radius:g}"


@dataclass(frozen=True)
class Range:
    """RANGE ra1 ra2 dec1 dec2; bounds may be -inf/+inf (DALI open intervals)."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @property
    def bounded(self) -> bool:
        return all(math.isfinite(v) for v in (self.ra_min, self.ra_max, self.dec_min, self.dec_max))

    def dali(self) -> str:
        return f"RANGE {self.ra_min:g} {self.ra_max:g} {self.dec_min:g} {self.dec_max:g}"


@dataclass(frozen=True)
class Polygon:
    vertices: tuple[tuple[float, float], ...]

    def dali(self) -> str:
        return "POLYGON " + " ".join(f"{ra:g} {dec:g}" for ra, dec in self.vertices)


Shape = Circle | Range | Polygon


def centre(shape: Shape) -> tuple[float, float] | None:
    """A representative position (used to choose the image that holds the region).

    None for a RANGE with an open bound: it has no centre, so it needs an ID.
    """
    if isinstance(shape, Circle):
        return shape.ra, shape.dec
    if isinstance(shape, Range):
        if not shape.bounded:
            return None
        # ra_min <= ra_max (SODA §3.3.1 as parsed): the middle of the interval, not across RA 0
        return (shape.ra_min + shape.ra_max) / 2, (shape.dec_min + shape.dec_max) / 2
    ra, dec = radec(polygon_plane(shape.vertices).centre)  # the vertices' mean direction
    return float(ra), float(dec)
