"""Whether an image's footprint holds a position or meets a circle, on the sphere.

A footprint is a polygon of sky positions round an image's edge (corners and edge
midpoints) with its centre. Tests are made on the tangent plane about that centre: a
TAN image's pixel rows are great circles, which that projection keeps straight, so the
polygon is exact there for TAN images and a close approximation for other projections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from soda.sky.sphere import HORIZON_COS, unit_vectors

Vertex = tuple[float, float]  # (ra, dec) in degrees


def _unit(ra: float, dec: float) -> tuple[float, float, float]:
    r, d = math.radians(ra), math.radians(dec)
    return math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)


def _degrees_between(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Stable at all angles: atan2 of the cross product's length and the dot product."""
    cx, cy, cz = a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]
    return math.degrees(math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz),
                                   a[0] * b[0] + a[1] * b[1] + a[2] * b[2]))


def distance(a: Vertex, b: Vertex) -> float:
    """Degrees between two positions (plain floats: this runs once per candidate image)."""
    return _degrees_between(_unit(*a), _unit(*b))


def holds(vertices: Sequence[Vertex], centre: Vertex, radius: float, ra: float, dec: float) -> bool:
    """Whether the footprint (``radius``: degrees from centre to its farthest vertex) holds (ra, dec)."""
    c, p = _unit(*centre), _unit(ra, dec)
    if _degrees_between(c, p) > radius:
        return False
    # The tangent plane about the centre, as soda.sky.sphere.TangentPlane builds it.
    ex, ey = -c[1], c[0]
    norm = math.hypot(ex, ey)
    east = (ex / norm, ey / norm, 0.0) if norm >= 1e-12 else (0.0, 1.0, 0.0)
    north = (c[1] * east[2] - c[2] * east[1], c[2] * east[0] - c[0] * east[2],
             c[0] * east[1] - c[1] * east[0])

    def project(v: tuple[float, float, float]) -> tuple[float, float] | None:
        z = v[0] * c[0] + v[1] * c[1] + v[2] * c[2]
        if z <= HORIZON_COS:
            return None
        return ((v[0] * east[0] + v[1] * east[1] + v[2] * east[2]) / z,
                (v[0] * north[0] + v[1] * north[1] + v[2] * north[2]) / z)

    point = project(p)
    corners = [project(_unit(*v)) for v in vertices]
    if point is None or any(corner is None for corner in corners):
        return False
    return _inside(corners, *point)  # type: ignore[arg-type]


def _inside(corners: Sequence[tuple[float, float]], x: float, y: float) -> bool:
    """Even-odd ray casting in the plane."""
    inside = False
    n = len(corners)
    for i in range(n):
        (x1, y1), (x2, y2) = corners[i], corners[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def meets_circle(vertices: Sequence[Vertex], centre: Vertex, radius: float,
                 ra: float, dec: float, circle: float) -> bool:
    """Whether the footprint and the circle of ``circle`` degrees about (ra, dec) share a point."""
    if distance(centre, (ra, dec)) > radius + circle:
        return False
    if holds(vertices, centre, radius, ra, dec):
        return True
    return bool(_edge_distance(vertices, ra, dec) <= circle)


def _edge_distance(vertices: Sequence[Vertex], ra: float, dec: float) -> float:
    """Degrees from (ra, dec) to the nearest point of the polygon's great-circle edges."""
    a = unit_vectors([v[0] for v in vertices], [v[1] for v in vertices])
    b = np.roll(a, -1, axis=0)
    p = unit_vectors(ra, dec)
    normal = np.cross(a, b)
    norm = np.linalg.norm(normal, axis=-1)
    ends = np.degrees(np.arccos(np.clip(a @ p, -1.0, 1.0)))
    best = float(ends.min())
    ok = norm > 1e-15
    n = normal[ok] / norm[ok, None]
    foot = p - (n @ p)[:, None] * n
    foot_norm = np.linalg.norm(foot, axis=-1)
    good = foot_norm > 1e-15
    foot = foot[good] / foot_norm[good, None]
    n, a_ok, b_ok = n[good], a[ok][good], b[ok][good]
    # The foot of the perpendicular counts only when it lies on the arc between a and b.
    on_arc = (np.einsum("ij,ij->i", np.cross(a_ok, foot), n) >= 0) & \
             (np.einsum("ij,ij->i", np.cross(foot, b_ok), n) >= 0)
    if on_arc.any():
        across = np.degrees(np.arcsin(np.clip(np.abs(n[on_arc] @ p), 0.0, 1.0)))
        best = min(best, float(across.min()))
    return best
