"""Footprints against POS regions (soda.sky.overlap): exact, across RA 0 and at the poles."""

from __future__ import annotations

import pytest

from soda.sky.footprint import closed, covering_circle, meets
from soda.sky.regions import Circle, Polygon, Range
from soda.sky.sphere import separation

# A 1-degree square across RA 0 (vertices in order, with edge midpoints as the index keeps them).
SQUARE = ((359.5, -0.5), (0.0, -0.5), (0.5, -0.5), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5), (359.5, 0.5),
          (359.5, 0.0))
POLAR = ((0.0, 89.0), (90.0, 89.0), (180.0, 89.0), (270.0, 89.0))  # holds the north pole


@pytest.mark.parametrize("circle, expected", [
    (Circle(0.0, 0.0, 0.01), True),         # inside
    (Circle(359.9, 0.1, 0.01), True),       # inside, west of RA 0
    (Circle(0.0, 0.0, 5.0), True),          # holds the square
    (Circle(0.6, 0.0, 0.11), True),         # reaches the east edge
    (Circle(0.6, 0.0, 0.09), False),        # stops short of it
    (Circle(359.3, 0.0, 0.21), True),       # reaches the west edge, across RA 0
    (Circle(359.3, 0.0, 0.19), False),
    (Circle(0.0, 0.71, 0.2), False),        # above the top edge (great circle bulges less than 0.01 deg)
    (Circle(0.0, 0.6, 0.11), True),
    (Circle(180.0, 0.0, 10.0), False),
])
def test_circles(circle, expected):
    assert meets(SQUARE, circle) is expected


@pytest.mark.parametrize("vertices, expected", [
    (((359.9, -0.1), (0.1, -0.1), (0.1, 0.1), (359.9, 0.1)), True),   # inside
    (((358.0, -2.0), (2.0, -2.0), (2.0, 2.0), (358.0, 2.0)), True),    # around
    (((0.4, -2.0), (0.6, -2.0), (0.6, 2.0), (0.4, 2.0)), True),        # a strip across an edge, no vertex inside
    (((1.0, -2.0), (2.0, -2.0), (2.0, 2.0), (1.0, 2.0)), False),       # beside
    (((0.6, 0.6), (1.0, 0.6), (0.6, 1.0)), False),
])
def test_polygons(vertices, expected):
    assert meets(SQUARE, Polygon(vertices)) is expected


@pytest.mark.parametrize("shape, expected", [
    (Range(0.0, 0.1, -0.1, 0.1), True),              # inside, east of RA 0
    (Range(359.0, 360.0, -0.1, 0.1), True),          # west of RA 0, up to 360
    (Range(0.0, 360.0, 0.4, 0.6), True),             # a band of Dec across the square
    (Range(0.4, 0.6, -5.0, 5.0), True),              # a strip across the east edge, no corner inside either
    (Range(1.0, 2.0, -1.0, 1.0), False),
    (Range(0.0, 360.0, 0.6, 0.7), False),
    (Range(-float("inf"), float("inf"), -float("inf"), -1.0), False),
    (Range(-float("inf"), float("inf"), -float("inf"), float("inf")), True),
])
def test_ranges(shape, expected):
    assert meets(SQUARE, shape) is expected


@pytest.mark.parametrize("shape, expected", [
    (Circle(123.0, 90.0, 0.5), True),
    (Range(10.0, 20.0, 89.5, 90.0), True),    # touches the pole the footprint holds
    (Range(10.0, 20.0, 85.0, 88.0), False),
    (Range(10.0, 20.0, 88.0, 89.5), True),    # only its top edge's stretch enters
])
def test_a_footprint_over_the_pole(shape, expected):
    assert meets(POLAR, shape) is expected


def test_covering_circles_hold_their_shapes():
    poly = Polygon(((10.0, 10.0), (12.0, 10.0), (11.0, 13.0)))
    circle = covering_circle(poly)
    assert all(separation(circle.ra, circle.dec, r, d) <= circle.radius for r, d in poly.vertices)
    box = Range(350.0, 360.0, -10.0, 10.0)
    circle = covering_circle(box)
    assert all(separation(circle.ra, circle.dec, r, d) <= circle.radius
               for r in (350.0, 355.0, 360.0) for d in (-10.0, 0.0, 10.0))
    assert covering_circle(Range(0.0, 360.0, -90.0, 90.0)).radius == 180.0
    wide = covering_circle(Range(0.0, 300.0, -10.0, 10.0))  # the far point is mid-edge, at RA 0
    assert separation(wide.ra, wide.dec, 0.0, 0.0) <= wide.radius
    assert closed(Range(-float("inf"), float("inf"), -float("inf"), 3.0)) == (0.0, 360.0, -90.0, 3.0)
