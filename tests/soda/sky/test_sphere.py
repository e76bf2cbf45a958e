"""soda.sky.sphere: the spherical geometry of the whole service, against known values
and astropy's SkyCoord."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from soda.sky.sphere import (TangentPlane, circle_points, great_circle_points, mean_direction, ra_offset,
                             radec, same_point, separation, signed_area, unit_vectors)

RNG = np.random.default_rng(20240611)
ARCSEC = 1 / 3600


def random_positions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere."""
    return RNG.uniform(0, 360, n), np.degrees(np.arcsin(RNG.uniform(-1, 1, n)))


# --- separation ---------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0, 0), (90, 0), 90),
    ((0, 0), (0, 90), 90),
    ((0, 0), (180, 0), 180),          # antipodes
    ((10, 20), (190, -20), 180),
    ((0, 90), (0, -90), 180),
    ((0, 90), (123, 90), 0),          # any RA at a pole is the pole
    ((359.5, 0), (0.5, 0), 1),        # across RA 0
    ((0, 0), (360, 0), 0),
    ((45, 60), (225, 60), 60),        # over the pole
])
def test_separation_of_known_positions(a, b, expected):
    assert separation(*a, *b) == pytest.approx(expected, abs=1e-12)


def test_separation_is_accurate_at_an_arcsecond():
    assert separation(10.0, -45.0, 10.0, -45.0 + ARCSEC) == pytest.approx(ARCSEC, rel=1e-9)
    assert separation(0.0, 0.0, ARCSEC, 0.0) == pytest.approx(ARCSEC, rel=1e-9)


def test_separation_agrees_with_skycoord():
    ra1, dec1 = random_positions(500)
    ra2, dec2 = random_positions(500)
    expected = SkyCoord(ra1 * u.deg, dec1 * u.deg).separation(SkyCoord(ra2 * u.deg, dec2 * u.deg)).deg
    np.testing.assert_allclose(separation(ra1, dec1, ra2, dec2), expected, rtol=0, atol=1e-10)


def test_separation_broadcasts_one_position_against_many():
    ra, dec = random_positions(50)
    distances = separation(12.0, 34.0, ra, dec)
    assert distances.shape == (50,)
    assert distances[7] == pytest.approx(separation(12.0, 34.0, ra[7], dec[7]))


# --- unit vectors and positions -----------------------------------------------------------

def test_unit_vectors_of_the_axes():
    np.testing.assert_allclose(unit_vectors(0, 0), [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(unit_vectors(90, 0), [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(unit_vectors(0, 90), [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(unit_vectors(0, -90), [0, 0, -1], atol=1e-15)


def test_unit_vectors_have_length_one_and_stack_on_the_last_axis():
    ra, dec = random_positions(100)
    vectors = unit_vectors(ra, dec)
    assert vectors.shape == (100, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-15)


def test_radec_round_trips_positions():
    ra, dec = random_positions(1000)
    back_ra, back_dec = radec(unit_vectors(ra, dec))
    assert separation(ra, dec, back_ra, back_dec).max() < 1e-9 * ARCSEC
    np.testing.assert_allclose(back_dec, dec, atol=1e-12)


def test_radec_accepts_vectors_of_any_length():
    ra, dec = radec(np.array([0.0, 5.0, 5.0]))
    assert (float(ra), float(dec)) == pytest.approx((90.0, 45.0))


@pytest.mark.parametrize("ra", [0.0, 360.0, -1e-14, 359.9999999999999])
def test_radec_gives_ra_in_0_to_360_excluding_360(ra):
    back_ra, _ = radec(unit_vectors(ra, 0.0))
    assert 0.0 <= float(back_ra) < 360.0
    assert min(float(back_ra), 360.0 - float(back_ra)) < 1e-9


def test_radec_at_the_poles():
    _, dec = radec(unit_vectors([17.0, 250.0], [90.0, -90.0]))
    np.testing.assert_allclose(dec, [90.0, -90.0])


@pytest.mark.parametrize(("ra", "ra0", "expected"), [
    (10, 5, 5), (5, 10, -5), (359, 1, -2), (1, 359, 2), (180, 0, -180), (0, 0, 0),
])
def test_ra_offset_wraps_into_minus_180_to_180(ra, ra0, expected):
    assert float(ra_offset(ra, ra0)) == pytest.approx(expected)


# --- same point and mean direction --------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "same"), [
    ((10, 20), (10, 20), True),
    ((0, 5), (360, 5), True),           # RA 0 is RA 360
    ((0, 90), (200, 90), True),         # any RA at a pole
    ((13, -90), (77, -90), True),
    ((10, 20), (10, 20 + ARCSEC), False),
    ((0, 90), (0, 90 - ARCSEC), False),
])
def test_same_point(a, b, same):
    assert same_point(a, b) is same


def test_mean_direction_across_ra_zero():
    ra, dec = radec(mean_direction(unit_vectors([359.0, 1.0], [0.0, 0.0])))
    assert min(float(ra), 360 - float(ra)) == pytest.approx(0.0, abs=1e-12)
    assert float(dec) == pytest.approx(0.0, abs=1e-12)


def test_mean_direction_of_points_round_a_pole_is_the_pole():
    _, dec = radec(mean_direction(unit_vectors([0.0, 120.0, 240.0], [80.0, 80.0, 80.0])))
    assert float(dec) == pytest.approx(90.0)


def test_mean_direction_of_vectors_that_cancel_out_is_none():
    assert mean_direction(unit_vectors([0.0, 120.0, 240.0], [0.0, 0.0, 0.0])) is None
    assert mean_direction(unit_vectors([10.0, 190.0], [30.0, -30.0])) is None


# --- the tangent plane --------------------------------------------------------------------

def plane_at(ra: float, dec: float) -> TangentPlane:
    return TangentPlane.about(unit_vectors(ra, dec))


@pytest.mark.parametrize(("ra", "dec"), [(0.0, 0.0), (359.9, 10.0), (123.4, -56.7), (0.0, 90.0), (210.0, -90.0)])
def test_the_centre_projects_to_the_origin_and_the_axes_are_orthonormal(ra, dec):
    plane = plane_at(ra, dec)
    x, y = plane.project(plane.centre)
    assert (float(x), float(y)) == pytest.approx((0.0, 0.0), abs=1e-15)
    axes = np.stack([plane.east, plane.north, plane.centre])
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-15)


@pytest.mark.parametrize(("ra", "dec"), [(0.0, 0.0), (359.9, 10.0), (123.4, -56.7), (45.0, 89.0)])
def test_east_is_positive_x_and_north_positive_y(ra, dec):
    plane = plane_at(ra, dec)
    step = 0.01
    east_x, east_y = plane.project(unit_vectors((ra + step) % 360.0, dec))
    north_x, north_y = plane.project(unit_vectors(ra, dec + step))
    assert east_x > 0 and abs(east_y) < 1e-3 * east_x
    assert north_y > 0 and abs(north_x) < 1e-9


def test_projection_is_gnomonic_distance_from_the_centre_is_tan_of_the_angle():
    plane = plane_at(30.0, -20.0)
    ra, dec = random_positions(500)
    vectors = unit_vectors(ra, dec)
    front = plane.in_front(vectors)
    x, y = plane.project(vectors[front])
    expected = np.tan(np.radians(separation(30.0, -20.0, ra[front], dec[front])))
    np.testing.assert_allclose(np.hypot(x, y), expected, rtol=1e-9)


@pytest.mark.parametrize(("ra", "dec"), [(0.0, 0.0), (0.2, -3.0), (180.0, 45.0), (10.0, 90.0), (300.0, -90.0)])
def test_project_and_deproject_round_trip(ra, dec):
    plane = plane_at(ra, dec)
    others_ra, others_dec = random_positions(2000)
    near = separation(ra, dec, others_ra, others_dec) < 80.0
    vectors = unit_vectors(others_ra[near], others_dec[near])
    back = plane.deproject(*plane.project(vectors))
    np.testing.assert_allclose(back, vectors, atol=1e-13)
    x, y = RNG.uniform(-3, 3, (2, 100))
    bx, by = plane.project(plane.deproject(x, y))
    np.testing.assert_allclose(bx, x, atol=1e-12)
    np.testing.assert_allclose(by, y, atol=1e-12)


def test_a_great_circle_projects_to_a_straight_line():
    plane = plane_at(0.0, 0.0)
    ra, dec = great_circle_points((350.0, -20.0), (15.0, 30.0), 50)
    x, y = plane.project(unit_vectors(ra, dec))
    cross = (x[1:] - x[0]) * (y[-1] - y[0]) - (y[1:] - y[0]) * (x[-1] - x[0])
    np.testing.assert_allclose(cross, 0.0, atol=1e-12)


def test_in_front_and_within():
    plane = plane_at(0.0, 0.0)
    vectors = unit_vectors([0.0, 60.0, 88.9, 91.0, 180.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, -89.5])
    assert plane.in_front(vectors).tolist() == [True, True, True, False, False, True]
    assert plane.within(vectors, 88.8).tolist() == [True, True, False, False, False, False]
    assert plane.within(vectors, 89.6).tolist() == [True, True, True, False, False, True]
    np.testing.assert_allclose(plane.cos_distance(vectors[:2]), [1.0, 0.5])


# --- signed area --------------------------------------------------------------------------

def test_signed_area_of_a_square_in_both_directions():
    assert signed_area([0, 1, 1, 0], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert signed_area([0, 0, 1, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)


def test_signed_area_does_not_depend_on_the_starting_vertex_or_the_origin():
    x, y = np.array([2.0, 5.0, 4.0, 1.5]), np.array([1.0, 2.0, 6.0, 3.0])
    area = signed_area(x, y)
    assert area > 0
    assert signed_area(np.roll(x, 1), np.roll(y, 1)) == pytest.approx(area)
    assert signed_area(x + 100, y - 7) == pytest.approx(area)


@pytest.mark.parametrize(("ra", "dec"), [(10.0, 10.0), (0.0, 0.0), (359.99, -30.0), (0.0, 89.99), (77.0, -90.0)])
def test_dali_example_order_has_positive_area_on_the_tangent_plane(ra, dec):
    """DALI §3.3.7's example order, counter-clockwise with RA increasing to the right,
    wherever it is put: across RA 0 and at the poles too."""
    square = [(-0.1, -0.1), (0.1, -0.1), (0.1, 0.1), (-0.1, 0.1)]  # (east, north) offsets
    plane = plane_at(ra, dec)
    vectors = plane.deproject([e for e, _ in square], [n for _, n in square])
    vra, vdec = radec(vectors)
    again = TangentPlane.about(mean_direction(unit_vectors(vra, vdec)))
    assert signed_area(*again.project(unit_vectors(vra, vdec))) > 0
    assert signed_area(*again.project(unit_vectors(vra[::-1], vdec[::-1]))) < 0


# --- points along great circles and circles -----------------------------------------------

@pytest.mark.parametrize(("start", "end"), [
    ((10.0, 10.0), (12.0, 11.0)),
    ((359.5, -1.0), (0.5, 1.0)),       # across RA 0
    ((0.0, 89.0), (180.0, 89.0)),      # over the north pole
    ((45.0, 90.0), (100.0, 80.0)),     # from the pole
    ((20.0, -30.0), (20.0, -30.0 + ARCSEC)),
])
def test_great_circle_points_are_evenly_spaced_on_the_arc(start, end):
    n = 25
    ra, dec = great_circle_points(start, end, n)
    assert ra.shape == dec.shape == (n,)
    assert ((ra >= 0) & (ra < 360)).all()
    assert separation(*start, ra[0], dec[0]) < 1e-9 * ARCSEC
    length = separation(*start, *end)
    steps = separation(ra[:-1], dec[:-1], ra[1:], dec[1:])
    np.testing.assert_allclose(steps, length / n, rtol=1e-7, atol=1e-12)
    assert separation(ra[-1], dec[-1], *end) == pytest.approx(length / n, rel=1e-7, abs=1e-12)
    normal = np.cross(unit_vectors(*start), unit_vectors(*end))
    if np.linalg.norm(normal) > 1e-9:
        np.testing.assert_allclose(unit_vectors(ra, dec) @ (normal / np.linalg.norm(normal)), 0.0, atol=1e-12)


def test_great_circle_over_the_pole_passes_through_it():
    _, dec = great_circle_points((0.0, 89.0), (180.0, 89.0), 2)
    assert dec[1] == pytest.approx(90.0)


def test_great_circle_of_one_point_repeats_it():
    ra, dec = great_circle_points((33.0, -12.0), (33.0, -12.0), 4)
    np.testing.assert_allclose(ra, 33.0)
    np.testing.assert_allclose(dec, -12.0)


@pytest.mark.parametrize(("ra", "dec", "radius"), [
    (10.0, 20.0, 0.5),
    (0.1, 0.0, 1.0),        # across RA 0
    (359.9, -45.0, 2.0),
    (0.0, 90.0, 0.3),       # centred on a pole
    (123.0, -90.0, 5.0),
    (30.0, 88.0, 5.0),      # round a pole
    (200.0, 10.0, 120.0),   # larger than a hemisphere
])
def test_circle_points_lie_on_the_circle_and_go_round_it(ra, dec, radius):
    n = 64
    pra, pdec = circle_points(ra, dec, radius, n)
    assert pra.shape == pdec.shape == (n,)
    assert ((pra >= 0) & (pra < 360)).all()
    np.testing.assert_allclose(separation(ra, dec, pra, pdec), radius, rtol=1e-9)
    steps = separation(pra, pdec, np.roll(pra, -1), np.roll(pdec, -1))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)  # evenly spaced
    chord = 2 * math.degrees(math.asin(math.sin(math.radians(radius)) * math.sin(math.pi / n)))
    assert steps[0] == pytest.approx(chord, rel=1e-6)


def test_circle_points_start_north_and_turn_east():
    ra, dec = circle_points(100.0, 0.0, 1.0, 4)
    np.testing.assert_allclose(ra, [100.0, 101.0, 100.0, 99.0], atol=1e-9)
    np.testing.assert_allclose(dec, [1.0, 0.0, -1.0, 0.0], atol=1e-9)


def test_circle_points_agree_with_skycoord_directional_offset():
    centre = SkyCoord(250.0 * u.deg, -60.0 * u.deg)
    angles = np.linspace(0, 360, 12, endpoint=False)
    expected = centre.directional_offset_by(angles * u.deg, 3 * u.deg)
    ra, dec = circle_points(250.0, -60.0, 3.0, 12)
    assert separation(ra, dec, expected.ra.deg, expected.dec.deg).max() < 1e-9 * ARCSEC


@pytest.mark.parametrize("ra, dec, radius", [(10.0, 20.0, 0.01), (359.99, -44.9, 0.5), (0.0, 89.9999, 0.3),
                                             (123.0, 90.0, 1.0), (45.0, -90.0, 2.0), (200.0, 0.0, 60.0)])
def test_circle_points_are_those_astropy_offsets_give(ra: float, dec: float, radius: float) -> None:
    from astropy.coordinates import offset_by

    from soda.sky.sphere import circle_points

    got_ra, got_dec = circle_points(ra, dec, radius, 64)
    headings = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    want_ra, want_dec = offset_by(np.radians(ra), np.radians(dec), headings, np.radians(radius))
    assert np.allclose(got_dec, want_dec.degree, atol=1e-9)
    # RA is undefined at a pole only; elsewhere equal modulo 360.
    on_sphere = np.abs(got_dec) < 90 - 1e-9
    diff = (got_ra - want_ra.degree + 180.0) % 360.0 - 180.0
    assert np.allclose(diff[on_sphere], 0.0, atol=1e-8)
    assert np.allclose(separation(ra, dec, got_ra, got_dec), radius, atol=1e-9)
