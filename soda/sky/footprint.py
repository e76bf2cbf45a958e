"""Image footprints on the sphere: whether one holds a position or meets a sky region.

A footprint is a polygon of great-circle edges round an image (corners and edge midpoints,
in pixel order, as the image index holds them), with its centre and radius.

- The index's lookups (``holds``, ``meets_circle``, ``distance``; run once per candidate
  image of every cutout) test on the tangent plane about the image's centre, in plain
  floats, after a cheap test against its radius: a TAN image's pixel rows are great
  circles, which that projection keeps straight, so the polygon is exact there for TAN
  images and a close approximation for other projections.
- SIA 2.0's POS shapes (§2.1.1: CIRCLE, POLYGON and RANGE, DALI §3.3.5-3.3.7) are tested
  by ``meets``, on the sphere, RA wrap-around and poles included: two regions meet when
  one holds a point of the other or their edges cross; ``covering_circle`` is what the
  index is asked for before ``meets``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from soda.sky.polygons import polygon_plane
from soda.sky.regions import Circle, Polygon, Range, Shape
from soda.sky.sphere import DEGENERATE, HORIZON_COS, mean_direction, radec, separation, unit_vectors

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
    return _inside_plane(corners, *point)  # type: ignore[arg-type]


def holds_many(vertices: Sequence[Vertex], centre: Vertex, radius: float,
               ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``holds`` for many positions at once (arrays of degrees): a boolean array."""
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    out = np.zeros(ra.shape, dtype=bool)
    if not ra.size:
        return out
    c = np.array(_unit(*centre))
    p = unit_vectors(ra, dec)
    cross = np.linalg.norm(np.cross(p, c), axis=-1)
    near = np.degrees(np.arctan2(cross, p @ c)) <= radius
    if not near.any():
        return out
    ex, ey = -c[1], c[0]
    norm = math.hypot(ex, ey)
    east = np.array((ex / norm, ey / norm, 0.0) if norm >= 1e-12 else (0.0, 1.0, 0.0))
    north = np.cross(c, east)
    corners = np.array([_unit(*v) for v in vertices])
    cz = corners @ c
    if (cz <= HORIZON_COS).any():
        return out
    vx, vy = (corners @ east) / cz, (corners @ north) / cz
    points = p[near]
    z = points @ c
    front = z > HORIZON_COS
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = (points @ east) / z, (points @ north) / z
        inside = np.zeros(len(points), dtype=bool)
        n = len(vx)
        for k in range(n):
            x1, y1, x2, y2 = vx[k], vy[k], vx[(k + 1) % n], vy[(k + 1) % n]
            if y1 == y2:
                continue  # never crossed: (y1 > y) == (y2 > y)
            inside ^= ((y1 > y) != (y2 > y)) & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    out[np.flatnonzero(near)] = inside & front
    return out


def _inside_plane(corners: Sequence[tuple[float, float]], x: float, y: float) -> bool:
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


# --- SIA's POS shapes ------------------------------------------------------------------


def meets(footprint: Sequence[Vertex], shape: Shape) -> bool:
    """Whether the footprint polygon and the region share at least one point."""
    if isinstance(shape, Circle):
        return _meets_circle(footprint, shape)
    if isinstance(shape, Polygon):
        return _meets_polygon(footprint, shape.vertices)
    return _meets_range(footprint, shape)


def covering_circle(shape: Shape) -> Circle:
    """A circle holding the whole region: what an index is asked for before ``meets``."""
    if isinstance(shape, Circle):
        return shape
    if isinstance(shape, Polygon):
        centre = mean_direction(_units(shape.vertices))
        assert centre is not None  # parsed polygons lie within a hemisphere
        ra, dec = (float(x) for x in radec(centre))
        far = max(float(separation(ra, dec, r, d)) for r, d in shape.vertices)
        return Circle(ra, dec, min(180.0, far * 1.0001 + 1e-9))
    ra1, ra2, dec1, dec2 = closed(shape)
    ra, dec = (ra1 + ra2) / 2, (dec1 + dec2) / 2
    # Along a parallel edge the distance from the centre grows towards the corners (the RA
    # offset is at most 180 degrees); along a meridian edge the farthest point is the one
    # nearest the centre's antipode.
    far = max(float(separation(ra, dec, r, d)) for r in (ra1, ra2) for d in (dec1, dec2))
    antipode = -unit_vectors(ra, dec)
    for a, b in _meridian_arcs(ra1, ra2, dec1, dec2):
        far = max(far, 180.0 - math.degrees(_arc_distance(antipode, a, b)))
    return Circle(ra, dec, min(180.0, far * 1.0001 + 1e-9))


def _meridian_arcs(ra1: float, ra2: float, dec1: float,
                   dec2: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """A RANGE's meridian edges as minor great-circle arcs (split at the equator)."""
    arcs = []
    for ra in (ra1, ra2):
        for low, high in ((dec1, min(dec2, 0.0)), (max(dec1, 0.0), dec2)):
            if low < high:
                arcs.append((unit_vectors(ra, low), unit_vectors(ra, high)))
    return arcs


def closed(shape: Range) -> tuple[float, float, float, float]:
    """A RANGE's bounds with open ends (DALI -Inf/+Inf) replaced by the sky's own."""
    return (max(shape.ra_min, 0.0), min(shape.ra_max, 360.0),
            max(shape.dec_min, -90.0), min(shape.dec_max, 90.0))


# --- vectors ---------------------------------------------------------------------------

def _units(vertices: Sequence[Vertex]) -> np.ndarray:
    return unit_vectors([v[0] for v in vertices], [v[1] for v in vertices])


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    return math.atan2(float(np.linalg.norm(np.cross(u, v))), float(np.dot(u, v)))


def _edges(units: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(units[k], units[(k + 1) % len(units)]) for k in range(len(units))]


def _on_arc(p: np.ndarray, a: np.ndarray, b: np.ndarray, normal: np.ndarray) -> bool:
    """Whether a point of the arc's great circle lies on the minor arc a -> b."""
    return float(np.dot(np.cross(a, p), normal)) >= -1e-15 and float(np.dot(np.cross(p, b), normal)) >= -1e-15


def _arc_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Radians from a point to the nearest point of the minor arc a -> b."""
    normal = np.cross(a, b)
    norm = float(np.linalg.norm(normal))
    ends = min(_angle(p, a), _angle(p, b))
    if norm < DEGENERATE:
        return ends
    normal /= norm
    foot = p - np.dot(p, normal) * normal
    foot_norm = float(np.linalg.norm(foot))
    if foot_norm < DEGENERATE:
        return ends
    foot /= foot_norm
    if _on_arc(foot, a, b, normal):
        return min(ends, math.asin(min(1.0, abs(float(np.dot(p, normal))))))
    return ends


def _arcs_cross(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> bool:
    n1, n2 = np.cross(a, b), np.cross(c, d)
    if np.linalg.norm(n1) < DEGENERATE or np.linalg.norm(n2) < DEGENERATE:
        return False
    line = np.cross(n1, n2)
    norm = float(np.linalg.norm(line))
    if norm < DEGENERATE:
        return False  # one great circle: shared stretches are found by the containment tests
    line /= norm
    return any(_on_arc(p, a, b, n1) and _on_arc(p, c, d, n2) for p in (line, -line))


def _inside(vertices: Sequence[Vertex], points: np.ndarray) -> np.ndarray:
    """Which points lie inside a polygon within a hemisphere (even-odd rule on the tangent
    plane about its vertices, where its great-circle edges are straight lines)."""
    plane = polygon_plane(vertices)
    vx, vy = plane.project(_units(vertices))
    front = plane.in_front(points)
    x, y = plane.project(points)
    inside = np.zeros(len(points), dtype=bool)
    n = len(vx)
    for k in range(n):
        x1, y1, x2, y2 = vx[k], vy[k], vx[(k + 1) % n], vy[(k + 1) % n]
        with np.errstate(divide="ignore", invalid="ignore"):
            crosses = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / (y2 - y1) + x1)
        inside ^= crosses
    return inside & front


# --- the three shapes ------------------------------------------------------------------

def _meets_circle(footprint: Sequence[Vertex], circle: Circle) -> bool:
    centre = unit_vectors(circle.ra, circle.dec)
    if _inside(footprint, centre[None, :])[0]:
        return True
    return _edge_distance(footprint, circle.ra, circle.dec) <= circle.radius


def _meets_polygon(footprint: Sequence[Vertex], vertices: Sequence[Vertex]) -> bool:
    mine, theirs = _units(footprint), _units(vertices)
    if _inside(vertices, mine).any() or _inside(footprint, theirs).any():
        return True
    return any(_arcs_cross(a, b, c, d) for a, b in _edges(mine) for c, d in _edges(theirs))


def _in_range(ra: np.ndarray, dec: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    ra1, ra2, dec1, dec2 = bounds
    at_pole = np.abs(dec) >= 90.0 - 1e-12  # every RA is the pole's
    return (at_pole | ((ra >= ra1) & (ra <= ra2)) | ((ra == 0.0) & (ra2 >= 360.0))) & \
        (dec >= dec1) & (dec <= dec2)


def _meets_range(footprint: Sequence[Vertex], shape: Range) -> bool:
    bounds = ra1, ra2, dec1, dec2 = closed(shape)
    units = _units(footprint)
    ras, decs = radec(units)
    if _in_range(ras, decs, bounds).any():
        return True
    corners = unit_vectors([ra1, ra1, ra2, ra2], [dec1, dec2, dec1, dec2])
    if _inside(footprint, corners).any():
        return True
    edges = _edges(units)
    # The range's meridian edges are great-circle arcs.
    for m1, m2 in _meridian_arcs(ra1, ra2, dec1, dec2):
        if any(_arcs_cross(a, b, m1, m2) for a, b in edges):
            return True
    # Its parallels are small circles: where does each footprint edge reach their Dec?
    for dec in (dec1, dec2):
        if abs(dec) >= 90.0:
            continue
        for a, b in edges:
            for point in _arc_at_dec(a, b, dec):
                pra, pdec = radec(point)
                if _in_range(np.atleast_1d(pra), np.atleast_1d(pdec), bounds).any():
                    return True
    return False


def _arc_at_dec(a: np.ndarray, b: np.ndarray, dec: float) -> list[np.ndarray]:
    """The points of the minor arc a -> b at this declination."""
    theta = _angle(a, b)
    ortho = b - np.dot(a, b) * a
    norm = float(np.linalg.norm(ortho))
    if norm < DEGENERATE:
        return []
    u = ortho / norm
    # z(t) = a_z cos t + u_z sin t = amplitude * cos(t - phase), for t in [0, theta]
    amplitude = math.hypot(float(a[2]), float(u[2]))
    target = math.sin(math.radians(dec))
    if amplitude < DEGENERATE or abs(target) > amplitude:
        return []
    phase = math.atan2(float(u[2]), float(a[2]))
    offset = math.acos(max(-1.0, min(1.0, target / amplitude)))
    points = []
    for t in (phase + offset, phase - offset):
        t %= 2 * math.pi
        if t <= theta + 1e-12:
            points.append(a * math.cos(t) + u * math.sin(t))
    return points
