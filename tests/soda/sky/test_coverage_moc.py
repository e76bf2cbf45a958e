"""Coverage MOCs from footprints (soda.sky.coverage): in and out, RA 0, the serialisations."""

from __future__ import annotations

import json
from io import BytesIO

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from mocpy import MOC

from soda.sky.coverage import footprint_moc, moc_fits, moc_json, outside
from soda.sky.footprint import meets
from soda.sky.regions import Circle

# A 1-degree square across RA 0, and a small one far away.
ACROSS_ZERO = ((359.5, -0.5), (0.5, -0.5), (0.5, 0.5), (359.5, 0.5))
SOUTH = ((24.5, -45.5), (25.5, -45.5), (25.5, -44.5), (24.5, -44.5))


@pytest.fixture(scope="module")
def moc() -> MOC:
    return footprint_moc([ACROSS_ZERO, SOUTH], max_order=10)


@pytest.mark.parametrize("ra, dec", [(0.0, 0.0), (359.6, 0.4), (0.4, -0.4), (360.0, 0.0), (25.0, -45.0),
                                     (24.51, -45.49)])
def test_every_position_inside_a_footprint_is_inside(moc, ra, dec):
    assert not outside(moc, ra, dec)


@pytest.mark.parametrize("ra, dec", [(1.0, 0.0), (359.0, 0.0), (0.0, 1.0), (180.0, 0.0), (25.0, -47.0),
                                     (0.0, 90.0)])
def test_positions_far_from_the_footprints_are_outside(moc, ra, dec):
    assert outside(moc, ra, dec)


def test_outside_is_never_said_of_a_point_of_a_footprint(moc):
    """Sound: random points inside the footprints (by exact geometry) are all inside the MOC."""
    rng = np.random.default_rng(1)
    ras = rng.uniform(-0.6, 0.6, 2000) % 360.0
    decs = rng.uniform(-0.6, 0.6, 2000)
    for ra, dec in zip(ras, decs, strict=True):
        if meets(ACROSS_ZERO, Circle(float(ra), float(dec), 1e-9)):
            assert not outside(moc, float(ra), float(dec)), (ra, dec)


def test_the_moc_is_close_to_the_footprints(moc):
    """At order 10 (3.4 arcmin cells) the two squares' MOC is not much more than their 2 deg²."""
    sky = 4 * np.pi * (180 / np.pi) ** 2
    area = moc.sky_fraction * sky
    assert 2.0 <= area < 2.6, area


def test_no_footprints_make_an_empty_moc():
    empty = footprint_moc([], max_order=8)
    assert empty.empty() and outside(empty, 0.0, 0.0)


def test_fits_is_moc_2_and_reads_back(moc):
    body = moc_fits(moc)
    with fits.open(BytesIO(body)) as hdul:
        header = hdul[1].header
        assert header["MOCVERS"] == "2.0" and header["MOCDIM"] == "SPACE"
        assert header["MOCORD_S"] == 10 and header["COORDSYS"] == "C"
        assert header["ORDERING"] == "NUNIQ" and header["TTYPE1"] == "UNIQ"
    assert MOC.from_fits(BytesIO(body)) == moc


def test_json_reads_back(moc):
    doc = json.loads(moc_json(moc))
    assert set(doc) <= {str(o) for o in range(11)}
    assert MOC.from_json(doc) == moc
    assert MOC.from_json(doc).contains_lonlat([0.0] * u.deg, [0.0] * u.deg)[0]
