"""The rings sky map of soda.surveys.lsst_skymap, checked against lsst.skymap's public facts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs.utils import proj_plane_pixel_scales

from soda.surveys.lsst_skymap import DC2, DEMO, HSC_RINGS_120, PixelBox, RingsSkyMap, skymap

EPS = 1e-9  # degrees


@pytest.fixture(scope="module")
def dc2() -> RingsSkyMap:
    return skymap(DC2)


def _sky(m: RingsSkyMap, tract: int, x: float, y: float) -> tuple[float, float]:
    ra, dec = m.tract_wcs(tract).all_pix2world([[x, y]], 0)[0]
    return float(ra), float(dec)


def test_tract_9813_is_cosmos() -> None:
    # lsst.skymap's tests/test_ringsSkyMap.py pins the centre of HSC rings.120 tract 9813,
    # the COSMOS tract of the HSC SSP, at (150.2479338842975, 2.2314049586776834).
    m = skymap(HSC_RINGS_120)
    ra, dec = m.tract_centre(9813)
    assert ra == pytest.approx(150.2479338842975, abs=1e-12)
    assert dec == pytest.approx(2.2314049586776834, abs=1e-12)
    assert m.tracts_at(150.1, 2.2)[0] == 9813
    assert m.find_tract(150.1, 2.2) == 9813
    # Tract numbers do not depend on the pixel scale: DC2's tract 9813 is the same one.
    assert skymap(DC2).tract_centre(9813) == (ra, dec)


def test_tract_at_ra0_is_numbered_as_version_1(dc2: RingsSkyMap) -> None:
    # The same test pins version 0's tract 9712 at (0, 0.7438016528925696); version 1
    # (DM-14809, used by Rubin) numbers the first tract of that ring one ring-length lower.
    t = dc2.find_tract(0.0, 0.7438016528925696)
    assert t == 9712 - dc2.ring_counts[60]
    ra, dec = dc2.tract_centre(t)
    assert (ra, dec) == pytest.approx((0.0, 0.7438016528925696), abs=1e-12)


def test_dc2_tracts(dc2: RingsSkyMap) -> None:
    # The DC2 Run1.2p tracts (LSSTDESC/DC2-production patchlist.py) come in blocks of five
    # consecutive tracts, one block per ring, round RA 55, Dec -30.
    blocks = [(4429, 4433), (4636, 4640), (4848, 4852), (5062, 5066)]
    rings = [dc2.ring_of(a)[0] for a, _ in blocks]
    assert rings == [rings[0] + k for k in range(4)]
    for a, b in blocks:
        assert dc2.ring_of(a)[0] == dc2.ring_of(b)[0]
        for t in range(a, b + 1):
            ra, dec = dc2.tract_centre(t)
            assert 50 < ra < 61 and -33 < dec < -27
    # DP0.2 coadds: 7 x 7 patches (0..48) per tract; the HSC SSP's: 9 x 9.
    assert dc2.tract(4849).patches == (7, 7)
    assert skymap(HSC_RINGS_120).tract(9813).patches == (9, 9)


def test_ring_layout(dc2: RingsSkyMap) -> None:
    assert dc2.ring_size == pytest.approx(180 / 121)
    assert dc2.tract_count == sum(dc2.ring_counts) + 2
    assert dc2.ring_counts == tuple(reversed(dc2.ring_counts))  # symmetric about the equator
    for ring in (0, 60, 119):
        first = dc2.find_tract(0.0, dc2.ring_size * (ring + 1) - 90)
        assert dc2.ring_of(first) == (ring, 0)


def test_tract_wcs(dc2: RingsSkyMap) -> None:
    t = dc2.tract(4849)
    wcs = dc2.tract_wcs(4849)
    assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    assert tuple(wcs.wcs.crval) == t.centre
    assert proj_plane_pixel_scales(wcs) * 3600 == pytest.approx([0.2, 0.2], rel=1e-12)
    assert wcs.wcs.cd[0, 0] < 0 < wcs.wcs.cd[1, 1]  # RA grows to the left
    # The box starts at 0 and is a whole number of patches.
    assert (t.width, t.height) == (7 * 4000, 7 * 4000)
    # The centre is near the middle and in the tract.
    assert dc2.tract_pixel(4849, *t.centre) == pytest.approx(t.crpix, abs=1e-6)
    assert abs(t.crpix[0] - t.width / 2) <= 1 and abs(t.crpix[1] - t.height / 2) <= 1
    assert dc2.contains(4849, *t.centre)


def test_tract_holds_its_inner_region_plus_overlap(dc2: RingsSkyMap) -> None:
    # Each tract reaches half a ring plus the overlap from its centre in every direction.
    for tract in (1, 4849, 9469, 18936):
        ra, dec = dc2.tract_centre(tract)
        reach = dc2.ring_size / 2 + DC2.tract_overlap * 0.999
        for dra, ddec in ((0, reach), (0, -reach)):
            assert dc2.contains(tract, ra + dra, dec + ddec)
        assert not dc2.contains(tract, ra, dec + dc2.ring_size / 2 + 0.2)


def test_every_position_has_a_tract_that_holds_it(dc2: RingsSkyMap) -> None:
    rng = np.random.default_rng(3)
    ras = rng.uniform(0, 360, 150)
    decs = np.degrees(np.arcsin(rng.uniform(-1, 1, 150)))
    for ra, dec in zip(ras, decs):
        tracts = dc2.tracts_at(ra, dec)
        assert tracts, (ra, dec)
        assert tracts[0] == dc2.find_tract(ra, dec)
        assert all(dc2.contains(t, ra, dec) for t in tracts)


def test_order_of_preference(dc2: RingsSkyMap) -> None:
    # Between the centres of 4849 and 4850, both hold the position; the nearer comes first.
    (ra1, dec), (ra2, _) = dc2.tract_centre(4849), dc2.tract_centre(4850)
    mid = (ra1 + ra2) / 2
    assert dc2.tracts_at(mid - 0.01, dec)[:2] == [4849, 4850]
    assert dc2.tracts_at(mid + 0.01, dec)[:2] == [4850, 4849]
    # Tracts overlap only near their edges: most positions have one.
    assert dc2.tracts_at(mid - 0.3, dec) == [4849]


def test_ra_wrap(dc2: RingsSkyMap) -> None:
    t = dc2.find_tract(0.0, 0.0)
    assert dc2.tract_centre(t)[0] == 0.0
    for ra in (359.9999, 0.0, 0.0001, -0.0001, 360.0):
        assert dc2.tracts_at(ra, 0.5)[0] == t
    # Either side of RA 0, the same tract pixels continue without a jump.
    x_west, _ = dc2.tract_pixel(t, 359.999, 0.5)
    x_east, _ = dc2.tract_pixel(t, 0.001, 0.5)
    assert x_west - x_east == pytest.approx(0.002 * 3600 / 0.2, rel=1e-3)
    # The last tract of ring 60 is the western neighbour across RA 0.
    last = dc2.find_tract(360.0 - 360.0 / dc2.ring_counts[60], 0.7438)
    assert dc2.ring_of(last) == (60, dc2.ring_counts[60] - 1)
    mid = 360.0 - 180.0 / dc2.ring_counts[60]  # half way between their centres
    assert dc2.tracts_at(mid + 0.01, 0.7438)[:2] == [t, last]
    assert dc2.tracts_at(mid - 0.01, 0.7438)[:2] == [last, t]


def test_polar_caps(dc2: RingsSkyMap) -> None:
    south, north = 0, dc2.tract_count - 1
    for ra in (0.0, 123.0, 321.0, 359.9):
        assert dc2.tracts_at(ra, -90.0) == [south]
        assert dc2.tracts_at(ra, 90.0) == [north]
    assert dc2.tract(south).width == dc2.tract(south).height  # square, as explicit tracts are
    assert dc2.tract_centre(north) == (0.0, 90.0)
    # The cap reaches half a ring plus the overlap from the pole, into ring 0.
    edge = -90 + dc2.ring_size / 2 + DC2.tract_overlap
    # There ring 0 is findTract's choice (the cap ends at half a ring), the cap comes second.
    assert dc2.tracts_at(45.0, edge - 0.005) == [dc2.find_tract(45.0, edge - 0.005), south]
    assert dc2.find_tract(45.0, edge) != south and south not in dc2.tracts_at(0.0, edge + 0.03)


def test_patches_tile_the_tract(dc2: RingsSkyMap) -> None:
    rng = np.random.default_rng(5)
    t = dc2.tract(4849)
    for x, y in rng.uniform(0, t.width - 1, (200, 2)):
        ra, dec = _sky(dc2, 4849, x, y)
        index, px, py = dc2.patch_at(4849, ra, dec)
        assert dc2.patch_xy(4849, index) == (px, py)
        assert dc2.patch_index(4849, px, py) == index
        inner, outer = dc2.patch_boxes(4849, index)
        ix, iy = math.floor(x + 0.5), math.floor(y + 0.5)
        assert inner.contains(ix, iy) and outer.contains(ix, iy)
        holders = [p for p in range(49) if dc2.patch_boxes(4849, p)[0].contains(ix, iy)]
        assert holders == [index]


def test_patch_numbering_and_boxes(dc2: RingsSkyMap) -> None:
    assert dc2.patch_xy(4849, 0) == (0, 0)
    assert dc2.patch_xy(4849, 6) == (6, 0)
    assert dc2.patch_xy(4849, 7) == (0, 1)
    assert dc2.patch_xy(4849, 48) == (6, 6)
    with pytest.raises(IndexError):
        dc2.patch_xy(4849, 49)
    inner, outer = dc2.patch_boxes(4849, 24)  # (3, 3), in the middle
    assert inner == PixelBox(12000, 12000, 4000, 4000)
    assert outer == PixelBox(11900, 11900, 4200, 4200)
    inner, outer = dc2.patch_boxes(4849, 0)  # clipped at the tract's corner
    assert outer == PixelBox(0, 0, 4100, 4100)
    _, outer = dc2.patch_boxes(4849, 48)
    assert (outer.x1, outer.y1) == (28000, 28000)


def test_neighbouring_outer_boxes_overlap_by_twice_the_border(dc2: RingsSkyMap) -> None:
    _, a = dc2.patch_boxes(4849, 24)
    _, right = dc2.patch_boxes(4849, 25)
    _, up = dc2.patch_boxes(4849, 31)
    assert a.intersection(right).nx == 2 * DC2.patch_border
    assert a.intersection(up).ny == 2 * DC2.patch_border
    assert dc2.patches_in_box(4849, PixelBox(15950, 12500, 10, 10)) == [24, 25]
    assert dc2.patches_in_box(4849, PixelBox(15950, 15950, 10, 10)) == [24, 25, 31, 32]
    assert dc2.patches_in_box(4849, PixelBox(13000, 13000, 10, 10)) == [24]


def test_patch_wcs_is_the_tract_frame_shifted() -> None:
    m = skymap(DEMO)
    tract = 4849
    for patch in (0, m.patch_index(tract, 70, 70), m.patch_index(tract, 71, 70)):
        _, outer = m.patch_boxes(tract, patch)
        wcs = m.patch_wcs(tract, patch)
        assert wcs.pixel_shape == (outer.nx, outer.ny)
        for x, y in ((0, 0), (outer.nx - 1, outer.ny - 1), (17.25, 3.5)):
            here = wcs.all_pix2world([[x, y]], 0)[0]
            there = _sky(m, tract, x + outer.x0, y + outer.y0)
            assert here == pytest.approx(there, abs=EPS)


def test_demo_config_keeps_the_dc2_tracts() -> None:
    demo, dc2 = skymap(DEMO), skymap(DC2)
    assert demo.tract_count == dc2.tract_count
    assert demo.tract(4849).centre == dc2.tract(4849).centre
    assert demo.tract(4849).patches == (137, 137)


def test_bad_config() -> None:
    with pytest.raises(ValueError):
        RingsSkyMap(DC2.__class__(num_rings=0))
