"""Whether POLYGON vertices make a usable region (DALI §3.3.7), and which way they run.

The checks are made on the tangent plane about the vertices' mean direction: the
gnomonic projection maps great circles to straight lines, so the polygon's great-circle
edges are exact straight segments there, RA wrap-around included. The cutout engine
tests pixels against the same plane (soda.engine.pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soda.sky.sphere import TangentPlane, mean_direction, same_direction, signed_area, unit_vectors

# All vertices within this angle of their mean direction, so that the gnomonic projection
# used here and by the cutout engine is valid (and every edge is a minor arc).
MAX_VERTEX_DISTANCE = 89.0

Vertex = tuple[float, float]  # (ra, dec) in degrees
Point = tuple[float, float]   # (x, y) on the tangent plane
Segment = tuple[Point, Point]


def polygon_problem(vertices: Sequence[Vertex]) -> str | None:
    """Why the vertices make no simple polygon within a hemisphere; None when they do."""
    units = _units(vertices)
    repeat = _repeated_vertex(units)
    if repeat:
        i, j = repeat
        return f"vertex {i + 1} repeats vertex {j + 1} ({vertices[i][0]:g} {vertices[i][1]:g})"
    plane = _plane(units)
    if plane is None or not plane.within(units, MAX_VERTEX_DISTANCE).all():
        return f"the polygon must lie within a hemisphere (every vertex within " \
               f"{MAX_VERTEX_DISTANCE:g} degrees of the vertices' mean direction)"
    points = _points(plane, units)
    eps = _tolerance(points)
    if all(abs(_orient(points[0], points[1], p)) <= eps for p in points[2:]):
        return "the polygon has no area (its vertices lie on one great circle)"
    crossing = _self_intersection(points)
    if crossing:
        return f"the polygon intersects itself (edges {crossing[0]} and {crossing[1]} meet)"
    return None


def is_clockwise(vertices: Sequence[Vertex]) -> bool:
    """Whether a polygon without problems runs clockwise seen with east to the right.

    DALI §3.3.7's example runs counter-clockwise in that view (RA increasing to the right).
    """
    return signed_area(*polygon_plane(vertices).project(_units(vertices))) < 0


def polygon_plane(vertices: Sequence[Vertex]) -> TangentPlane:
    """The tangent plane about a polygon's vertices: the one its checks were made on."""
    plane = _plane(_units(vertices))
    if plane is None:
        raise ValueError("the vertices have no mean direction")
    return plane


def _units(vertices: Sequence[Vertex]) -> np.ndarray:
    return unit_vectors([ra for ra, _ in vertices], [dec for _, dec in vertices])


def _plane(units: np.ndarray) -> TangentPlane | None:
    centre = mean_direction(units)
    return None if centre is None else TangentPlane.about(centre)


def _repeated_vertex(units: np.ndarray) -> tuple[int, int] | None:
    """The first vertex (0-based) that repeats an earlier one, and that earlier one."""
    same = np.tril(same_direction(units[:, None], units[None, :]), k=-1)
    pairs = np.argwhere(same)  # row-major: the lowest i first, then the lowest j
    return (int(pairs[0][0]), int(pairs[0][1])) if len(pairs) else None


def _points(plane: TangentPlane, units: np.ndarray) -> list[Point]:
    x, y = plane.project(units)
    return list(zip(x.tolist(), y.tolist(), strict=True))


# --- planar predicates on the tangent plane ----------------------------------------------

def _tolerance(points: list[Point]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    size = max(max(xs) - min(xs), max(ys) - min(ys))
    return 1e-12 * size * size


def _orient(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _self_intersection(points: list[Point]) -> tuple[int, int] | None:
    """The first pair of edges (1-based; edge k runs from vertex k to k+1) that meet."""
    n = len(points)
    eps = _tolerance(points)
    edges = [(points[k], points[(k + 1) % n]) for k in range(n)]
    for i in range(n):
        nxt = (i + 1) % n
        if _folds_back(edges[i], edges[nxt], eps):
            return i + 1, nxt + 1
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing vertex
            if _segments_meet(edges[i], edges[j], eps):
                return i + 1, j + 1
    return None


def _folds_back(first: Segment, second: Segment, eps: float) -> bool:
    """Adjacent edges that run back along each other (a zero-width spike)."""
    (a, b), (_, c) = first, second
    if abs(_orient(a, b, c)) > eps:
        return False
    return (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0


def _segments_meet(s: Segment, t: Segment, eps: float) -> bool:
    (p1, p2), (q1, q2) = s, t
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > eps and d2 < -eps) or (d1 < -eps and d2 > eps)) and \
            ((d3 > eps and d4 < -eps) or (d3 < -eps and d4 > eps)):
        return True
    return any(abs(d) <= eps and _within_box(point, seg)
               for d, point, seg in ((d1, p1, t), (d2, p2, t), (d3, q1, s), (d4, q2, s)))


def _within_box(point: Point, seg: Segment) -> bool:
    (x1, y1), (x2, y2) = seg
    return min(x1, x2) <= point[0] <= max(x1, x2) and min(y1, y2) <= point[1] <= max(y1, y2)
