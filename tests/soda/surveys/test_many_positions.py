"""Many positions looked up at once (``Survey.at_many``, bulk planning): the same images
as ``Survey.at`` position by position, from lookups per field or sky cell, never per
position; and positions whose nominal tile was not ingested served by the images that
hold them."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.plan import locate_positions, plan_positions
from soda.surveys.des import DESSurvey, tile_centre, tile_for, tile_name, tile_wcs, tiles_for, unique_area
from soda.surveys.lsst import LSSTSurvey
from soda.surveys.registry import Datasets

from conftest import demo_survey, lsst_demo_root, scanned_catalogue

AUTHORITY = "demo.cutout"


def per_position(survey, ra, dec, bands):  # type: ignore[no-untyped-def]
    return [[i.dataset_id for i in survey.at(float(a), float(d), bands)] for a, d in zip(ra, dec, strict=True)]


def at_once(survey, ra, dec, bands):  # type: ignore[no-untyped-def]
    found: list[list[str]] = [[] for _ in ra]
    seen = np.zeros(len(ra), dtype=int)
    for rows, images in survey.at_many(np.asarray(ra), np.asarray(dec), bands):
        assert list(rows) == sorted(rows) and len(images) > 0
        seen[rows] += 1
        for i in rows:
            found[i] = [image.dataset_id for image in images]
    assert seen.max(initial=0) <= 1  # each position in one group at most
    return found


def around(centre: tuple[float, float], spread: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-spread, spread, n) / np.cos(np.radians(centre[1])) + centre[0]) % 360.0, \
        np.clip(rng.uniform(-spread, spread, n) + centre[1], -90, 90)


def test_the_tiling_of_many_positions_is_each_ones_tile() -> None:
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 20000), rng.uniform(-91, 31, 20000)
    # and the edges themselves: every corner of some unique areas, and RA 0 and 360
    edges = [(a, d) for name in ("DES0139-4457", "DES0000+0209", "DES2359+0001", "DES0001-0458")
             for a in unique_area(name)[:2] for d in unique_area(name)[2:]]
    ra = np.concatenate([ra, [e[0] for e in edges], [0.0, 360.0, -1e-20, np.nan, 12.0]])
    dec = np.concatenate([dec, [e[1] for e in edges], [-44.0, -44.0, -44.0, 3.0, np.inf]])
    row, column = tiles_for(ra, dec)
    got = [tile_name(int(r), int(c)) if r >= 0 else None for r, c in zip(row, column, strict=True)]
    assert got == [tile_for(float(a), float(d)) for a, d in zip(ra, dec, strict=True)]


@pytest.fixture(scope="module")
def des(demo_root: Path) -> DESSurvey:
    return demo_survey(demo_root)


@pytest.mark.parametrize("bands", [("g", "r", "i", "z", "Y"), ("r",), ("z", "g")])
def test_des_positions_at_once_are_those_one_by_one(des: DESSurvey, bands: tuple[str, ...]) -> None:
    first = des.catalogue.images[0].footprint.centre
    ra, dec = around(first, 0.1, 3000, seed=len(bands))  # on, beside and off the demo's tiles
    ra, dec = np.concatenate([ra, [1.5, 999.0]]), np.concatenate([dec, [60.0, 0.0]])
    expected = per_position(des, ra, dec, bands)
    assert any(expected) and not all(expected)
    assert at_once(des, ra, dec, bands) == expected


def test_lsst_positions_at_once_are_those_one_by_one(demo_root: Path) -> None:
    survey = LSSTSurvey(scanned_catalogue(lsst_demo_root(demo_root), "lsst", LSSTSurvey), authority=AUTHORITY,
                        skymap="demo")
    centre = survey.catalogue.images[0].footprint.centre
    ra, dec = around(centre, 0.2, 2000, seed=7)
    expected = per_position(survey, ra, dec, survey.bands)
    assert any(expected) and not all(expected)
    assert at_once(survey, ra, dec, survey.bands) == expected


class Counting:
    """The real index catalogue, counting the lookups made through it."""

    def __init__(self, catalogue: IndexCatalogue) -> None:
        self.catalogue, self.calls = catalogue, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self.catalogue, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return attr(*args, **kwargs)
        return counted


def _write_des_tile(folder: Path, tile: str, band: str, size: int, scale: float) -> None:
    """A DESDM-named coadd of ``tile``, centred on the tile's centre, ``scale``"/px."""
    wcs = tile_wcs(tile, (size, size))
    wcs.wcs.cd = [[-scale / 3600, 0.0], [0.0, scale / 3600]]
    header = wcs.to_header()
    sci = fits.ImageHDU(np.ones((size, size), np.float32), header=header, name="SCI")
    fits.HDUList([fits.PrimaryHDU(), sci]).writeto(folder / f"{tile}_r4575p01_{band}.fits")


@pytest.fixture
def wide_tile(index_db, tmp_path: Path):  # type: ignore[no-untyped-def]
    """DES0139-4457 alone in the index, its image wider than the tile's unique area (as
    real tiles are: they overlap by an arcminute; here by much more), in r and g."""
    folder = tmp_path / "des"
    folder.mkdir()
    for band in ("r", "g"):
        _write_des_tile(folder, "DES0139-4457", band, 200, 18.0)  # 1 degree a side
    name = f"des{uuid.uuid4().hex[:8]}"
    report = ingest(index_db, name, DESSurvey, [folder])
    assert report.bad == [] and report.images == 2
    return DESSurvey(IndexCatalogue(index_db), AUTHORITY, name=name)


def test_beyond_its_unique_area_a_tile_serves_what_its_image_holds(wide_tile: DESSurvey) -> None:
    ra0, dec0 = tile_centre("DES0139-4457")
    ra1, ra2, dec1, dec2 = unique_area("DES0139-4457")
    # Just outside each edge of the unique area: other tiles' (not ingested), inside the image.
    outside = [(ra1 - 0.05, dec0), (ra2 + 0.05, dec0), (ra0, dec1 - 0.05), (ra0, dec2 + 0.05)]
    for ra, dec in outside:
        assert tile_for(ra, dec) != "DES0139-4457"
        assert [i.dataset_id for i in wide_tile.at(ra, dec, ("r",))] == [
            f"ivo://{AUTHORITY}/{wide_tile.name}?DES0139-4457_r"]
    far = (ra0, dec0 + 0.6)  # beyond the image too
    assert wide_tile.at(*far, ("r",)) == []
    ra = np.array([ra0, *(p[0] for p in outside), far[0]])
    dec = np.array([dec0, *(p[1] for p in outside), far[1]])
    assert at_once(wide_tile, ra, dec, ("r", "g", "i")) == per_position(wide_tile, ra, dec, ("r", "g", "i"))
    assert [len(x) for x in at_once(wide_tile, ra, dec, ("r", "g", "i"))] == [2, 2, 2, 2, 2, 0]


def test_planning_many_positions_looks_images_up_per_field_not_per_position(wide_tile: DESSurvey) -> None:
    counting = Counting(wide_tile.catalogue)  # type: ignore[arg-type]
    wide_tile.catalogue = counting  # type: ignore[assignment]
    datasets = Datasets({wide_tile.name: wide_tile}, AUTHORITY)
    calls = []
    for n in (100, 5000):
        ra, dec = around(tile_centre("DES0139-4457"), 0.45, n, seed=n)  # inside the tile and past its edges
        counting.calls = 0
        groups, problems = plan_positions(datasets, ra, dec, [0.001] * n, [()] * n)
        calls.append(counting.calls)
        served = sum(len(g.members) for g in groups)
        assert served + len(problems) == n and served > n / 2
        assert {g.field for g in groups} == {f"{wide_tile.name}:DES0139-4457"}
        located, unserved = locate_positions(datasets, ra, dec, [("r",)] * n)
        assert sorted(np.concatenate([g.rows for g in located]).tolist() + unserved.tolist()) == list(range(n))
    # a handful of tiles' images in five bands, and a few cell lookups: not one per position
    assert calls[1] <= calls[0] + 5 and calls[1] < 100, calls
