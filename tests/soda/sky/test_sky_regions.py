"""soda.sky.regions.centre and soda.sky.polygons: positions and orientation of regions,
across RA 0 and at the poles."""

from __future__ import annotations

import math

import pytest

from soda.sky.polygons import is_clockwise, polygon_plane, polygon_problem
from soda.sky.regions import Circle, Polygon, Range, centre
from soda.sky.sphere import separation

DALI_EXAMPLE = [(10.0, 10.0), (10.2, 10.0), (10.2, 10.2), (10.0, 10.2)]  # DALI §3.3.7


def test_centre_of_a_circle_is_its_centre():
    assert centre(Circle(12.5, -30.0, 1.0)) == (12.5, -30.0)


@pytest.mark.parametrize(("shape", "expected"), [
    (Range(10, 20, -5, 5), (15, 0)),
    (Range(0, 270, 10, 20), (135, 15)),      # wider than 180 degrees: still the middle
    (Range(0, 360, -90, 90), (180, 0)),
])
def test_centre_of_a_range_is_the_middle_of_its_intervals(shape, expected):
    assert centre(shape) == pytest.approx(expected)


def test_a_range_with_an_open_bound_has_no_centre():
    assert centre(Range(-math.inf, 20, -5, 5)) is None


def test_centre_of_a_polygon_across_ra_zero():
    ra, dec = centre(Polygon(((359.5, -1), (0.5, -1), (0.5, 1), (359.5, 1))))
    assert min(ra, 360 - ra) == pytest.approx(0.0, abs=1e-9)
    assert dec == pytest.approx(0.0, abs=1e-9)


def test_centre_of_a_polygon_round_a_pole_is_the_pole():
    _, dec = centre(Polygon(((0, 80), (120, 80), (240, 80))))
    assert dec == pytest.approx(90.0)


def test_centre_of_a_polygon_is_the_centre_of_its_tangent_plane():
    polygon = Polygon(((24.7, -45), (24.9, -45), (24.9, -44.8), (24.8, -44.9), (24.7, -44.8)))
    ra, dec = centre(polygon)
    x, y = polygon_plane(polygon.vertices).project(polygon_plane(polygon.vertices).centre)
    assert (float(x), float(y)) == pytest.approx((0.0, 0.0), abs=1e-15)
    assert separation(ra, dec, 24.8, -44.9) < 0.1


@pytest.mark.parametrize("vertices", [
    DALI_EXAMPLE,
    [(359.5, -1.0), (0.5, -1.0), (0.5, 1.0), (359.5, 1.0)],    # across RA 0
    [(0.0, 80.0), (120.0, 80.0), (240.0, 80.0)],               # round the north pole
    [(240.0, -80.0), (120.0, -80.0), (0.0, -80.0)],            # round the south pole
    [(45.0, 89.0), (135.0, 89.0), (225.0, 89.0), (315.0, 89.0)],
])
def test_dali_order_is_counter_clockwise_and_its_reverse_clockwise(vertices):
    assert polygon_problem(vertices) is None
    assert not is_clockwise(vertices)
    assert is_clockwise(vertices[::-1])


@pytest.mark.parametrize(("vertices", "problem"), [
    ([(1, 1), (2, 1), (1, 1), (2, 1)], "vertex 3 repeats vertex 1 (1 1)"),
    ([(1, 1), (2, 1), (2, 2), (2, 1)], "vertex 4 repeats vertex 2 (2 1)"),
    ([(0, 5), (1, 5), (360, 5)], "vertex 3 repeats vertex 1 (360 5)"),          # RA 0 is RA 360
    ([(0, 90), (0, 80), (90, 80), (180, 90)], "vertex 4 repeats vertex 1 (180 90)"),  # one pole
    ([(0, 0), (120, 0), (240, 0)], "the polygon must lie within a hemisphere"),
    ([(0, 10), (100, 10), (200, 10)], "the polygon must lie within a hemisphere"),
    ([(10, 0), (11, 0), (12, 0)], "the polygon has no area"),
    ([(10, 0), (11, 1), (11, 0), (10, 1)], "the polygon intersects itself (edges 1 and 3 meet)"),
])
def test_polygon_problems(vertices, problem):
    assert polygon_problem(vertices).startswith(problem)
