"""Which images hold a position, from the index: edges, overlaps, RA 0 and the poles."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS
from soda.ops.database import close_database, migrate, open_database
from soda.surveys.generic import GenericSurvey

from conftest import write_sky_image

SIZE, SCALE = 100, 36.0  # 100 pixels of 36": one degree a side


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sky(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A survey of one-degree images: two overlapping, one across RA 0, one on each pole,
    one rotated by 30 degrees."""
    folder = tmp_path_factory.mktemp("sky")
    write_sky_image(folder / "west.fits", 100.0, 20.0, SIZE, SCALE)
    write_sky_image(folder / "east.fits", 100.6, 20.0, SIZE, SCALE)
    write_sky_image(folder / "seam.fits", 0.1, -5.0, SIZE, SCALE)
    write_sky_image(folder / "north.fits", 45.0, 89.8, SIZE, SCALE)
    write_sky_image(folder / "south.fits", 200.0, -90.0, SIZE, SCALE)
    write_sky_image(folder / "tilted.fits", 250.0, -30.0, SIZE, SCALE, rotation=30.0)
    url = (f"sqlite:///{folder / 'index.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    db = open_database(url)
    migrate(db, [("images", MIGRATIONS)])
    survey = f"sky{uuid.uuid4().hex[:8]}"
    report = ingest(db, survey, GenericSurvey, [folder])
    assert report.bad == [] and report.images == 6
    yield IndexCatalogue(db), survey, folder
    close_database(db)


def names(found) -> list[str]:  # type: ignore[no-untyped-def]
    return [image.name for image in found]


def edge(folder: Path, name: str, x: float, y: float) -> tuple[float, float]:
    """The sky position of pixel (x, y) (0-based; the edges are at -0.5 and SIZE - 0.5)."""
    with fits.open(folder / f"{name}.fits") as hdul:
        ra, dec = WCS(hdul[0].header).pixel_to_world_values(x, y)
    return float(ra), float(dec)


@pytest.mark.parametrize("x, y", [(-0.5, 50), (99.5, 50), (50, -0.5), (50, 99.5), (-0.5, -0.5)])
def test_just_inside_and_just_outside_an_edge(sky, x: float, y: float) -> None:  # type: ignore[no-untyped-def]
    catalogue, survey, folder = sky
    step = 0.01  # pixels: 0.36 arcsec
    inward = (x + (step if x < 0 else -step if x > 99 else 0), y + (step if y < 0 else -step if y > 99 else 0))
    outward = (x - (inward[0] - x), y - (inward[1] - y))
    assert names(catalogue.at(survey, *edge(folder, "tilted", *inward))) == ["tilted"]
    assert catalogue.at(survey, *edge(folder, "tilted", *outward)) == []


def test_overlapping_images_nearest_centre_first(sky) -> None:  # type: ignore[no-untyped-def]
    catalogue, survey, _ = sky
    assert names(catalogue.at(survey, 100.25, 20.0)) == ["west", "east"]
    assert names(catalogue.at(survey, 100.35, 20.0)) == ["east", "west"]
    assert names(catalogue.at(survey, 99.8, 20.0)) == ["west"]
    assert names(catalogue.overlapping(survey, 101.3, 20.0, 0.2)) == ["east"]
    assert names(catalogue.overlapping(survey, 101.3, 20.0, 0.8)) == ["east", "west"]
    assert names(catalogue.search([survey], 100.32, 20.0, 0.01, limit=1)) == ["east"]


def test_an_image_across_ra_0(sky) -> None:  # type: ignore[no-untyped-def]
    catalogue, survey, _ = sky
    for ra in (359.7, 359.99, 0.0, 0.3, 360.0 - 1e-9):
        assert names(catalogue.at(survey, ra, -5.0)) == ["seam"], ra
    assert catalogue.at(survey, 359.5, -5.0) == [] and catalogue.at(survey, 0.7, -5.0) == []
    assert names(catalogue.overlapping(survey, 359.0, -5.0, 0.6)) == ["seam"]
    assert catalogue.overlapping(survey, 359.0, -5.0, 0.5) == []


def test_images_on_the_poles(sky) -> None:  # type: ignore[no-untyped-def]
    catalogue, survey, _ = sky
    # The north image holds the pole and positions at every RA around it.
    for ra in (0.0, 90.0, 180.0, 270.0, 359.9):
        assert names(catalogue.at(survey, ra, 89.9)) == ["north"], ra
    assert names(catalogue.at(survey, 123.0, 90.0)) == ["north"]
    assert catalogue.at(survey, 225.0, 89.2) == []  # beyond the corner opposite the centre's side
    for ra in (0.0, 120.0, 240.0):
        assert names(catalogue.at(survey, ra, -89.6)) == ["south"], ra
    assert names(catalogue.at(survey, 0.0, -90.0)) == ["south"]
    assert catalogue.at(survey, 0.0, -89.0) == []
    assert names(catalogue.overlapping(survey, 10.0, -88.5, 1.0)) == ["south"]


def test_misses_and_wide_circles(sky) -> None:  # type: ignore[no-untyped-def]
    catalogue, survey, _ = sky
    assert catalogue.at(survey, 150.0, 0.0) == []
    assert catalogue.at("no-such-survey", 100.0, 20.0) == []
    # A circle wider than a hemisphere finds every image (searched by coarse cells).
    assert sorted(names(catalogue.overlapping(survey, 0.0, 0.0, 170.0))) == \
        ["east", "north", "seam", "south", "tilted", "west"]


def test_positions_agree_with_the_wcs(sky) -> None:  # type: ignore[no-untyped-def]
    """Random positions near the tilted image: held exactly when its WCS puts them on a pixel."""
    catalogue, survey, folder = sky
    with fits.open(folder / "tilted.fits") as hdul:
        wcs = WCS(hdul[0].header)
    rng = np.random.default_rng(4)
    for ra, dec in zip(rng.uniform(249.0, 251.0, 300), rng.uniform(-31.0, -29.0, 300)):
        x, y = wcs.world_to_pixel_values(ra, dec)
        inside = bool(-0.5 < x < SIZE - 0.5 and -0.5 < y < SIZE - 0.5)
        assert (names(catalogue.at(survey, ra, dec)) == ["tilted"]) is inside, (ra, dec, x, y)


def test_many_positions_at_once_hold_what_each_holds(sky) -> None:  # type: ignore[no-untyped-def]
    """``holding`` and the generic survey's ``at_many``: one lookup per cell, not per
    position; the same images, nearest first, as ``at`` one by one, at RA 0 and the poles too."""
    catalogue, survey, _ = sky
    rng = np.random.default_rng(11)
    centres = [(100.3, 20.0), (0.1, -5.0), (45.0, 89.8), (200.0, -90.0), (250.0, -30.0), (10.0, 10.0)]
    ra = np.concatenate([(c[0] + rng.uniform(-1.2, 1.2, 150)) % 360.0 for c in centres])
    dec = np.concatenate([np.clip(c[1] + rng.uniform(-0.8, 0.8, 150), -90, 90) for c in centres])
    held: list[list[str]] = [[] for _ in ra]
    for image, rows in catalogue.holding(survey, ra, dec):
        for i in rows:
            held[i].append(image.name)
    one_by_one = [names(catalogue.at(survey, float(a), float(d))) for a, d in zip(ra, dec, strict=True)]
    assert [sorted(h) for h in held] == [sorted(o) for o in one_by_one]
    assert sum(map(len, one_by_one)) > 300 and any(len(o) == 2 for o in one_by_one)
    generic = GenericSurvey(catalogue, "demo.cutout", survey)
    found = [[] for _ in ra]  # type: list[list[str]]
    for rows, images in generic.at_many(ra, dec, generic.bands):
        for i in rows:
            found[i] = [image.dataset_id for image in images]
    assert found == [[i.dataset_id for i in generic.at(float(a), float(d), generic.bands)]
                     for a, d in zip(ra, dec, strict=True)]
