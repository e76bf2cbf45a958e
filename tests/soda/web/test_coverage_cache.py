"""The coverage map cache follows the image index: a re-ingest that moves an image's
footprint, with the same number of images per band, makes a new map."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import write_sky_image
from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS
from soda.ops.database import close_database, migrate, open_database
from soda.sky.coverage import outside
from soda.surveys.generic import GenericSurvey
from soda.surveys.in_memory import InMemoryCatalogue
from soda.web.coverage import CoverageMaps


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'index.sqlite'}")
    migrate(db, [("images", MIGRATIONS)])
    yield db
    close_database(db)


def test_a_reingest_that_moves_a_footprint_changes_the_map(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "images"
    write_sky_image(folder / "a.fits", 10.0, 5.0, size=128, scale=2.0)
    write_sky_image(folder / "b.fits", 30.0, 5.0, size=128, scale=2.0)
    assert ingest(index, "sky", GenericSurvey, [folder]).new == 2
    catalogue, maps = IndexCatalogue(index), CoverageMaps(max_order=10)
    before, version = catalogue.bands("sky"), catalogue.version("sky")
    first = maps.moc(catalogue, "sky")
    assert maps.moc(catalogue, "sky") is first  # kept while nothing changed
    assert not outside(first, 30.0, 5.0) and outside(first, 50.0, 5.0)
    # b.fits (the file with the larger id: SQLite gives its images back the same ids)
    # now lies elsewhere; the same images per band.
    write_sky_image(folder / "b.fits", 50.0, 5.0, size=128, scale=2.0)
    os.utime(folder / "b.fits", ns=(1, 1))
    assert ingest(index, "sky", GenericSurvey, [folder]).changed == 1
    assert catalogue.bands("sky") == before and catalogue.version("sky") != version
    moved = maps.moc(catalogue, "sky")
    assert moved != first and outside(moved, 30.0, 5.0) and not outside(moved, 50.0, 5.0)
    assert not outside(moved, 10.0, 5.0)
    assert ingest(index, "sky", GenericSurvey, [folder]).unchanged == 2
    assert maps.moc(catalogue, "sky") is moved


def test_an_in_memory_catalogue_changed_in_place_has_another_version(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_sky_image(tmp_path / "images" / "a.fits", 10.0, 5.0, size=128, scale=2.0)
    ingest(index, "sky", GenericSurvey, [tmp_path / "images"])
    [image] = IndexCatalogue(index).search(["sky"], 10.0, 5.0, 1.0, 10)
    memory = InMemoryCatalogue([image])
    version = memory.version("sky")
    assert memory.version("sky") == version and memory.version("other") != version
    memory.images.clear()
    assert memory.version("sky") != version
