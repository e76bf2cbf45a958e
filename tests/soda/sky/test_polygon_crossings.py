"""soda.sky.polygons' self-intersection check, all pairs at once, against the plain loop
over the pairs it replaced: the same first pair of edges for every polygon."""

from __future__ import annotations

import math
import random

import pytest

from soda.sky.polygons import _self_intersection, polygon_problem

Point = tuple[float, float]


def _orient(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _in_box(p: Point, a: Point, b: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _loop(points: list[Point]) -> tuple[int, int] | None:
    """The reference: every pair in turn, in the order the answer is defined by."""
    n = len(points)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    eps = 1e-12 * max(max(xs) - min(xs), max(ys) - min(ys)) ** 2
    edges = [(points[k], points[(k + 1) % n]) for k in range(n)]
    for i in range(n):
        (a, b), (_, c) = edges[i], edges[(i + 1) % n]
        if abs(_orient(a, b, c)) <= eps and (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0:
            return i + 1, (i + 1) % n + 1
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            (p1, p2), (q1, q2) = edges[i], edges[j]
            d1, d2, d3, d4 = _orient(q1, q2, p1), _orient(q1, q2, p2), _orient(p1, p2, q1), _orient(p1, p2, q2)
            if (d1 * d2 < 0 and abs(d1) > eps and abs(d2) > eps
                    and d3 * d4 < 0 and abs(d3) > eps and abs(d4) > eps):
                return i + 1, j + 1
            if any(abs(d) <= eps and _in_box(p, *s) for d, p, s in
                   ((d1, p1, (q1, q2)), (d2, p2, (q1, q2)), (d3, q1, (p1, p2)), (d4, q2, (p1, p2)))):
                return i + 1, j + 1
    return None


@pytest.mark.parametrize("grid", [True, False], ids=["on a grid (touching, collinear)", "anywhere"])
def test_the_first_crossing_is_the_loops(grid: bool) -> None:
    rng = random.Random(13)
    found = 0
    for _ in range(1000):
        n = rng.randint(3, 12)
        if grid:
            points = [(float(rng.randint(0, 4)), float(rng.randint(0, 4))) for _ in range(n)]
        else:
            points = [(rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(n)]
        expected = _loop(points)
        found += expected is not None
        assert _self_intersection(points) == expected, points
    assert 100 < found < 1000  # both answers were exercised


def test_a_crossing_between_the_last_edges_of_a_large_polygon_is_found() -> None:
    n = 200
    ring = [(10 + 0.5 * math.cos(2 * math.pi * k / n), 10 + 0.5 * math.sin(2 * math.pi * k / n)) for k in range(n)]
    assert polygon_problem(ring) is None
    ring[-3], ring[-2] = ring[-2], ring[-3]  # edges 197 and 199 now cross
    assert polygon_problem(ring) == "the polygon intersects itself (edges 197 and 199 meet)"
