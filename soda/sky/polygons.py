"""Whether POLYGON vertices make a usable region (DALI §3.3.7), and which way they run.

The checks are made on the tangent plane about the vertices' mean direction: the
gnomonic projection maps great circles to straight lines, so the polygon's great-circle
edges are exact straight segments there, RA wrap-around included. The cutout engine
tests pixels against the same plane (soda.engine.pixels).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from soda.sky.sphere import TangentPlane, mean_direction, same_direction, signed_area, unit_vectors

# All vertices within this angle of their mean direction, so that the gnomonic projection
# used here and by the cutout engine is valid (and every edge is a minor arc).
MAX_VERTEX_DISTANCE = 89.0

Vertex = tuple[float, float]  # (ra, dec) in degrees
Point = tuple[float, float]   # (x, y) on the tangent plane


def polygon_problem(vertices: Sequence[Vertex]) -> str | None:
    """Why the vertices make no simple polygon within a hemisphere; None when they do."""
    return check_polygon(vertices)[0]


def check_polygon(vertices: Sequence[Vertex]) -> tuple[str | None, bool]:
    """``polygon_problem`` and, for a polygon without one, ``is_clockwise``: in one pass."""
    units = _units(vertices)
    repeat = _repeated_vertex(units)
    if repeat:
        i, j = repeat
        return f"vertex {i + 1} repeats vertex {j + 1} ({vertices[i][0]:g} {vertices[i][1]:g})", False
    plane = _plane(units)
    if plane is None or not plane.within(units, MAX_VERTEX_DISTANCE).all():
        return (f"the polygon must lie within a hemisphere (every vertex within "
                f"{MAX_VERTEX_DISTANCE:g} degrees of the vertices' mean direction)"), False
    x, y = plane.project(units)
    points = list(zip(x.tolist(), y.tolist(), strict=True))
    eps = _tolerance(points)
    if all(abs(_orient(points[0], points[1], p)) <= eps for p in points[2:]):
        return "the polygon has no area (its vertices lie on one great circle)", False
    crossing = _self_intersection(points)
    if crossing:
        return f"the polygon intersects itself (edges {crossing[0]} and {crossing[1]} meet)", False
    return None, signed_area(x, y) < 0


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


# --- planar predicates on the tangent plane ----------------------------------------------

def _tolerance(points: list[Point]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    size = max(max(xs) - min(xs), max(ys) - min(ys))
    return 1e-12 * size * size


def _orient(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _self_intersection(points: list[Point]) -> tuple[int, int] | None:
    """The first pair of edges (1-based; edge k runs from vertex k to k+1) that meet.

    Every pair of edges that are not adjacent is tested at once with numpy: the same
    predicates as a loop over the pairs, in milliseconds for hundreds of vertices. "First"
    is the loop's order: the lowest edge i, its fold-back onto edge i+1 before any later j.
    """
    n = len(points)
    eps = _tolerance(points)
    i, j, following = _pairs(n)
    x0, y0 = np.array(points).T           # edge k runs from (x0, y0)[k] to (x1, y1)[k]
    x1, y1 = x0[following], y0[following]
    folds = np.flatnonzero(_folds_back(x0, y0, x1, y1, x1[following], y1[following], eps))
    meets = np.flatnonzero(_segments_meet(x0[i], y0[i], x1[i], y1[i], x0[j], y0[j], x1[j], y1[j], eps))
    if len(folds) and (not len(meets) or folds[0] <= i[meets[0]]):
        return int(folds[0]) + 1, (int(folds[0]) + 1) % n + 1
    if len(meets):
        return int(i[meets[0]]) + 1, int(j[meets[0]]) + 1
    return None


@functools.lru_cache(maxsize=16)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges (i, j), i < j, that share no vertex, in loop order (i first); and the
    index of each vertex's successor around the ring."""
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # adjacent through the closing vertex
    return i[keep], j[keep], (np.arange(n) + 1) % n


def _cross(ox: np.ndarray, oy: np.ndarray, ax: np.ndarray, ay: np.ndarray,
           bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """_orient on arrays of points."""
    return (ax - ox) * (by - oy) - (ay - oy) * (bx - ox)


def _folds_back(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
                cx: np.ndarray, cy: np.ndarray, eps: float) -> np.ndarray:
    """Adjacent edges a->b, b->c that run back along each other (a zero-width spike)."""
    back = (bx - ax) * (cx - bx) + (by - ay) * (cy - by) < 0
    return (np.abs(_cross(ax, ay, bx, by, cx, cy)) <= eps) & back


def _segments_meet(px1: np.ndarray, py1: np.ndarray, px2: np.ndarray, py2: np.ndarray,
                   qx1: np.ndarray, qy1: np.ndarray, qx2: np.ndarray, qy2: np.ndarray,
                   eps: float) -> np.ndarray:
    """Whether each segment p1-p2 meets q1-q2: they cross, or an end point touches the other."""
    d1, d2 = _cross(qx1, qy1, qx2, qy2, px1, py1), _cross(qx1, qy1, qx2, qy2, px2, py2)
    d3, d4 = _cross(px1, py1, px2, py2, qx1, qy1), _cross(px1, py1, px2, py2, qx2, qy2)
    meet = (((d1 > eps) & (d2 < -eps)) | ((d1 < -eps) & (d2 > eps))) & \
           (((d3 > eps) & (d4 < -eps)) | ((d3 < -eps) & (d4 > eps)))
    # An end point on the other segment's line touches it when it lies within that
    # segment's box; such pairs are rare, so the boxes are tested for them only.
    p, q = (px1, py1, px2, py2), (qx1, qy1, qx2, qy2)
    for d, point, seg in ((d1, p[:2], q), (d2, p[2:], q), (d3, q[:2], p), (d4, q[2:], p)):
        near = np.flatnonzero(np.abs(d) <= eps)
        if len(near):
            meet[near] |= _within_box(*(c[near] for c in point + seg))
    return meet


def _within_box(x: np.ndarray, y: np.ndarray, x1: np.ndarray, y1: np.ndarray,
                x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """Whether each point (x, y) lies in the bounding box of segment (x1, y1)-(x2, y2)."""
    return ((np.minimum(x1, x2) <= x) & (x <= np.maximum(x1, x2))
            & (np.minimum(y1, y2) <= y) & (y <= np.maximum(y1, y2)))
