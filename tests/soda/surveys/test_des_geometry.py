"""The DES tiling computed by soda.surveys.des, checked against real DES tiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs.utils import proj_plane_pixel_scales

from soda.surveys.des import tile_centre, tile_for, tile_wcs, unique_area

# Real tiles and centres: the first from the DES Y3/Y6 tile tables, the second from the
# corners of DES0121-1832 in NOIRLab's des_dr2 SIA table.
KNOWN_CENTRES = {
    "DES0000+0209": (0.0131, 2.1583),
    "DES0121-1832": (20.4180, -18.5444),
}
# Names of real DES tiles (DESDM scripts, DES DR2 file names); all must come out of the rules.
REAL_NAMES = [
    "DES0139-4457", "DES0000-0207", "DES0002+0001", "DES2359+0001", "DES2356+0001",
    "DES2354+0001", "DES0002+0043", "DES2359+0043", "DES2356+0043", "DES2354+0043",
    "DES0001-0458", "DES0003-0458", "DES0005-0041", "DES0052+0500", "DES0144-4831",
    "DES2246-4457", "DES2250-4457", "DES2254-4457", "DES2247-4414", "DES2251-4414",
    "DES2247-4331", "DES2251-4331", "DES0101-4831", "DES0105-4831", "DES0058-4914",
    "DES0102-4914", "DES0106-4914", "DES0059-4957", "DES0103-4957",
]
EPS = 1e-9  # degrees


def _centre_name_check(name: str) -> None:
    ra, dec = tile_centre(name)
    assert tile_for(ra, dec) == name


@pytest.mark.parametrize("name", sorted(KNOWN_CENTRES))
def test_known_centres(name: str) -> None:
    ra, dec = tile_centre(name)
    want_ra, want_dec = KNOWN_CENTRES[name]
    assert ra == pytest.approx(want_ra, abs=1e-4)
    assert dec == pytest.approx(want_dec, abs=1e-4)


def test_des0139_4457() -> None:
    ra, dec = tile_centre("DES0139-4457")
    # Row 105 from +30 deg, RA 275 + 109 steps; Data Lab finds it at (25, -45).
    assert dec == pytest.approx(-(44 + 57.5 / 60), abs=1e-9)
    assert ra == pytest.approx(24.96552, abs=1e-4)
    assert tile_for(25.0, -45.0) == "DES0139-4457"


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_names_exist_and_round_trip(name: str) -> None:
    _centre_name_check(name)


def test_names_truncate_not_round() -> None:
    # DES0139-4457 is centred at 01h39.86m, -44d57.5': rounding would give DES0140-4458.
    ra, dec = tile_centre("DES0139-4457")
    assert (ra / 15 - 1) * 60 > 39.5
    with pytest.raises(ValueError):
        tile_centre("DES0140-4458")


@pytest.mark.parametrize("bad", ["DES0000+0210", "DES9999+9999", "des0000+0209", "DES0000+209", ""])
def test_unknown_names_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        tile_centre(bad)


def test_rows_step_2570_arcsec() -> None:
    _, d1 = tile_centre("DES0000+0209")
    _, d2 = tile_centre("DES0002+0001")
    assert (d1 - d2) * 3600 == pytest.approx(3 * 2570, abs=1e-6)


def test_unique_area_is_centre_plus_minus_half_step() -> None:
    ra_min, ra_max, dec_min, dec_max = unique_area("DES0139-4457")
    ra, dec = tile_centre("DES0139-4457")
    step = (2570 / 3600) / math.cos(math.radians(dec))
    assert ra_max - ra_min == pytest.approx(step, abs=1e-9)
    assert (ra_min + ra_max) / 2 == pytest.approx(ra, abs=1e-9)
    assert dec_max - dec_min == pytest.approx(2570 / 3600, abs=1e-12)
    assert (dec_min + dec_max) / 2 == pytest.approx(dec, abs=1e-12)


def test_unique_area_crossing_ra_zero() -> None:
    ra_min, ra_max, _, _ = unique_area("DES0000+0209")
    assert ra_min > 359 and ra_max < 1  # crosses RA 0: ra_min > ra_max
    assert tile_for(359.99, 2.16) == "DES0000+0209"
    assert tile_for(0.01, 2.16) == "DES0000+0209"
    assert tile_for(-0.01, 2.16) == "DES0000+0209"
    assert tile_for(360.01, 2.16) == "DES0000+0209"


@pytest.mark.parametrize("name", ["DES0139-4457", "DES0000+0209", "DES0002+0001", "DES2359+0043"])
def test_edges_belong_inside_and_to_the_neighbours(name: str) -> None:
    ra_min, ra_max, dec_min, dec_max = unique_area(name)
    ra, dec = tile_centre(name)
    # Just inside each edge: this tile. The lower edges themselves are inside (half-open).
    assert tile_for(ra_min, dec) == name
    assert tile_for(ra_min + EPS, dec) == name
    assert tile_for(ra_max - EPS, dec) == name
    assert tile_for(ra, dec_min) == name
    assert tile_for(ra, dec_min + EPS) == name
    assert tile_for(ra, dec_max - EPS) == name
    # Just outside: the neighbour, whose unique area starts (or ends) exactly there.
    east, west = tile_for(ra_max, dec), tile_for(ra_min - EPS, dec)
    north, south = tile_for(ra, dec_max), tile_for(ra, dec_min - EPS)
    for other in (east, west, north, south):
        assert other is not None and other != name
    assert unique_area(east)[0] == ra_max
    assert unique_area(west)[1] == ra_min
    assert unique_area(north)[2] == dec_max
    assert unique_area(south)[3] == dec_min
    assert tile_centre(north)[1] > dec > tile_centre(south)[1]


def _inside(ra: float, dec: float, area: tuple[float, float, float, float]) -> bool:
    ra_min, ra_max, dec_min, dec_max = area
    ra = ra % 360.0
    in_ra = ra_min <= ra < ra_max if ra_min <= ra_max else (ra >= ra_min or ra < ra_max)
    return in_ra and dec_min <= dec < dec_max


def _row_members(dec: float) -> set[str]:
    """Every tile of the row at ``dec``, found by probing every 0.25 deg of RA (tiles are
    at least 0.71 deg wide), and finely west of RA 275, where the row's last tile is cut
    short by the seam."""
    probes = np.concatenate([np.arange(0.0, 360.0, 0.25), np.arange(268.0, 275.0, 0.002)])
    return {tile_for(float(ra), dec) for ra in probes} - {None}


def _width(area: tuple[float, float, float, float]) -> float:
    return (area[1] - area[0]) % 360.0


def test_every_position_has_exactly_one_owner() -> None:
    rng = np.random.default_rng(1234)
    ras = np.concatenate([rng.uniform(0, 360, 150), rng.uniform(-0.5, 0.5, 50) % 360])
    decs = np.concatenate([rng.uniform(-75, 29.5, 150), rng.uniform(-3, 3, 50)])
    rows: dict[float, set[str]] = {}
    for ra, dec in zip(ras, decs):
        owner = tile_for(float(ra), float(dec))
        assert owner is not None
        row_dec = tile_centre(owner)[1]
        if row_dec not in rows:
            rows[row_dec] = _row_members(float(dec))
        owners = [n for n in rows[row_dec] if _inside(ra, dec, unique_area(n))]
        assert owners == [owner]
    # In each row the unique areas add up to the whole circle: no gap, no overlap.
    for members in rows.values():
        assert sum(_width(unique_area(n)) for n in members) == pytest.approx(360.0, abs=1e-9)
        assert len({unique_area(n)[2:] for n in members}) == 1


def test_row_seam_at_ra_275_closes_the_ring() -> None:
    # The last tile of a row ends where tile 0 (centred on RA 275) begins.
    first = tile_for(275.0, 2.16)
    ra_min = unique_area(first)[0]
    last = tile_for(ra_min - EPS, 2.16)
    assert last != first
    assert unique_area(last)[1] == ra_min
    assert tile_centre(first)[0] == pytest.approx(275.0)


def test_outside_the_tiled_rows() -> None:
    assert tile_for(10.0, 31.0) is None
    assert tile_for(10.0, -89.9) is None
    assert tile_for(float("nan"), 0.0) is None
    assert tile_for(10.0, 30.0) is not None


def test_wcs_centre_and_pixel_scale() -> None:
    for shape in ((10000, 10000), (256, 256), (300, 200)):
        wcs = tile_wcs("DES0139-4457", shape)
        ny, nx = shape
        assert list(wcs.wcs.crpix) == [(nx + 1) / 2, (ny + 1) / 2]
        # The centre pixel (1-based (n+1)/2 = 0-based (n-1)/2) is the tile centre.
        ra, dec = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
        want = tile_centre("DES0139-4457")
        assert ra == pytest.approx(want[0], abs=1e-10)
        assert dec == pytest.approx(want[1], abs=1e-10)
        scales = proj_plane_pixel_scales(wcs) * 3600
        assert scales == pytest.approx([0.263, 0.263], abs=1e-12)
        assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    full = tile_wcs("DES0000+0209")
    assert list(full.wcs.crpix) == [5000.5, 5000.5]
    # North up, east left.
    ra0, dec0 = full.pixel_to_world_values(4999.5, 4999.5)
    ra1, dec1 = full.pixel_to_world_values(5099.5, 5099.5)
    assert dec1 > dec0 and (ra1 - ra0 + 180) % 360 - 180 < 0


def test_a_full_tile_covers_its_unique_area() -> None:
    for name in ("DES0139-4457", "DES0000+0209", "DES0059-4957"):
        wcs = tile_wcs(name)
        ra_min, ra_max, dec_min, dec_max = unique_area(name)
        corners_ra = [ra_min, ra_max, ra_min, ra_max]
        corners_dec = [dec_min, dec_min, dec_max, dec_max]
        x, y = wcs.world_to_pixel_values(corners_ra, corners_dec)
        assert np.all((x > -0.5) & (x < 9999.5) & (y > -0.5) & (y < 9999.5))
