"""`cutout retile` in the index: square-tiled copies of a survey's files served in place of
the originals while current, stale once the original changes, and undone; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soda.engine.cutout import cut
from soda.index.catalogue import IndexCatalogue
from soda.index.copies import copy_path, retile_survey, undo_survey
from soda.index.ingest import ingest
from soda.index.retile import tilings
from soda.output.fits import fits_cutouts
from soda.sky.regions import Circle
from soda.surveys.demo import build_des_demo
from soda.surveys.des import DESSurvey, tile_centre

TILE, OTHER = "DES0139-4457", "DES0000+0209"


@pytest.fixture
def db(index_db):  # type: ignore[no-untyped-def]
    return index_db


@pytest.fixture
def survey(db, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An ingested DES-like survey of two tiles in one band, 96 pixels a side; its name
    is this test's own (the PostgreSQL database is shared by the session)."""
    root = build_des_demo(tmp_path / "des", tiles=(TILE, OTHER), bands=("r",), size=96)
    name = f"des{uuid.uuid4().hex[:8]}"
    assert ingest(db, name, DESSurvey, [root]).images == 2
    return name, root, tmp_path / "retiled" / name


def des(db, name: str) -> DESSurvey:  # type: ignore[no-untyped-def]
    return DESSurvey(IndexCatalogue(db), "test.cutout", name=name)


def one_cut(db, name: str):  # type: ignore[no-untyped-def]
    image = des(db, name).by_id(f"ivo://test.cutout/{name}?{TILE}_r")
    assert image is not None
    result = cut(image, Circle(*tile_centre(TILE), 0.002))
    assert result is not None
    return result


def test_the_catalogue_serves_current_copies_under_the_original_names(db, survey) -> None:  # type: ignore[no-untyped-def]
    name, root, folder = survey
    before = one_cut(db, name)
    lines: list[str] = []
    report = retile_survey(db, name, root, folder, tile=32, say=lines.append)
    assert (report.made, report.current, report.failed, report.skipped) == (2, 0, [], [])
    assert len(lines) == 2 and lines[0].startswith("[1/2] ") and "RICE_1 1x96 -> RICE_1 32x32" in lines[0]
    catalogue = IndexCatalogue(db)
    image = catalogue.get(name, f"{TILE}_r")
    assert image is not None
    original = root / f"{TILE}_r4907p01_r.fits.fz"
    # The file stays the original (downloads, ObsCore); its pixels are cut from the copy.
    assert image.path == original
    assert image.pixels == copy_path(folder, root, original) == folder / original.name
    assert [t.tile for t in tilings(image.pixels)] == [(32, 32)] * 3
    # Every lookup hands out the copy.
    centre = tile_centre(TILE)
    assert [(i.path, i.pixels) for i in catalogue.at(name, *centre)] == [(original, image.pixels)]
    assert image.pixels in [i.pixels for i in catalogue.overlapping(name, *centre, 2.0)]
    assert [i.pixels for i in catalogue.in_field(name, TILE)] == [image.pixels]
    assert catalogue.first(name) is not None and catalogue.first(name).pixels.parent == folder  # type: ignore[union-attr]
    assert [i.pixels for i in catalogue.search([name], *centre, 2.0, 10)] == [image.pixels]
    # A cut reads the copy: the mask exactly, the quantised science plane within its steps.
    after = one_cut(db, name)
    assert after.image.source == image.pixels and after.image.path == original and after.box == before.box
    assert np.array_equal(after.planes[1].data, before.planes[1].data)
    sci_old, sci_new = before.planes[0].data, after.planes[0].data
    with fits.open(image.pixels) as copy:
        assert np.array_equal(sci_new, copy["SCI"].data[before.box.y0:before.box.y1, before.box.x0:before.box.x1])
    assert not np.array_equal(sci_new, sci_old) and np.max(np.abs(sci_new - sci_old)) < 0.5
    assert [p.header for p in after.planes] == [p.header for p in before.planes]
    # What clients see names the original file.
    with fits.open(__import__("io").BytesIO(fits_cutouts([after]))) as out:
        assert out[1].header["SRCFILE"] == original.name
        assert out[1].header["DATASET"] == f"ivo://test.cutout/{name}?{TILE}_r"
    # Idempotent: nothing to do the second time.
    again = retile_survey(db, name, root, folder, tile=32)
    assert (again.made, again.current, again.removed) == (0, 2, 0)


def test_a_changed_original_makes_its_copy_stale_until_retiled(db, survey) -> None:  # type: ignore[no-untyped-def]
    name, root, folder = survey
    retile_survey(db, name, root, folder, tile=32)
    original = root / f"{TILE}_r4907p01_r.fits.fz"
    with fits.open(original, mode="update") as hdul:  # the survey reprocessed the tile
        hdul["MSK"].data = hdul["MSK"].data | 8
    os.utime(original, ns=(original.stat().st_atime_ns, original.stat().st_mtime_ns + 10**9))
    catalogue = IndexCatalogue(db)
    # Until the ingest sees the change, the index (and the copy) stand for the old file.
    assert catalogue.get(name, f"{TILE}_r").pixels.parent == folder  # type: ignore[union-attr]
    assert ingest(db, name, DESSurvey, [root]).changed == 1
    assert catalogue.get(name, f"{TILE}_r").pixels is None  # type: ignore[union-attr]
    assert np.all(one_cut(db, name).planes[1].data & 8)
    assert catalogue.get(name, f"{OTHER}_r").pixels.parent == folder  # type: ignore[union-attr]
    report = retile_survey(db, name, root, folder, tile=32)
    assert (report.made, report.current) == (1, 1)
    served = one_cut(db, name)
    assert served.image.source.parent == folder and np.all(served.planes[1].data & 8)


def test_other_settings_remake_the_copies_and_lossless_ones_match_the_originals(db, survey) -> None:  # type: ignore[no-untyped-def]
    name, root, folder = survey
    before = one_cut(db, name)
    retile_survey(db, name, root, folder, tile=32)
    report = retile_survey(db, name, root, folder, tile=48, lossless=True)
    assert (report.made, report.current) == (2, 0)
    after = one_cut(db, name)
    assert [t.tile for t in tilings(after.image.source)] == [(48, 48)] * 3
    for old, new in zip(before.planes, after.planes):
        assert np.array_equal(old.data, new.data)


def test_undo_serves_the_originals_again_and_deletes_the_copies(db, survey) -> None:  # type: ignore[no-untyped-def]
    name, root, folder = survey
    before = one_cut(db, name)
    retile_survey(db, name, root, folder, tile=32)
    (folder / ".DES0139-4457_r4907p01_r.fits.fz.123.retile-tmp").write_bytes(b"half")  # a killed run's
    lines: list[str] = []
    report = undo_survey(db, name, folder, say=lines.append)
    assert report.removed == 3 and len(lines) == 2
    assert not folder.exists() or list(folder.rglob("*")) == []
    catalogue = IndexCatalogue(db)
    assert {(i.pixels or i.path).parent for i in catalogue.in_field(name, TILE) + catalogue.in_field(name, OTHER)} == {root}
    after = one_cut(db, name)
    assert after.image.source.parent == root and after.image.pixels is None
    for old, new in zip(before.planes, after.planes):
        assert np.array_equal(old.data, new.data)
    assert undo_survey(db, name, folder).removed == 0


def test_copies_of_files_gone_from_the_index_are_removed(db, survey) -> None:  # type: ignore[no-untyped-def]
    name, root, folder = survey
    retile_survey(db, name, root, folder, tile=32)
    gone = root / f"{OTHER}_r4920p02_r.fits.fz"
    gone.unlink()
    assert ingest(db, name, DESSurvey, [root]).removed == 1
    report = retile_survey(db, name, root, folder, tile=32)
    assert (report.made, report.current, report.removed) == (0, 1, 1)
    assert [p.name for p in folder.iterdir()] == [f"{TILE}_r4907p01_r.fits.fz"]


def test_files_that_need_no_copy_are_skipped(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import astropy

    from soda.surveys.generic import GenericSurvey

    samples = Path(astropy.__file__).parent / "io" / "fits" / "hdu" / "compressed" / "tests" / "data"
    root = tmp_path / "m13"
    root.mkdir()
    for sample in ("m13.fits", "m13_rice.fits"):
        shutil.copy(samples / sample, root / sample)
    name = f"m13{uuid.uuid4().hex[:8]}"
    ingest(db, name, GenericSurvey, [root])
    folder = tmp_path / "retiled"
    report = retile_survey(db, name, root, folder, tile=64)
    assert report.made == 1 and [(p.name, why) for p, why in report.skipped] == \
        [("m13.fits", "no tile-compressed image HDU")]
    catalogue = IndexCatalogue(db)
    assert catalogue.get(name, "m13").pixels is None  # type: ignore[union-attr]
    assert catalogue.get(name, "m13_rice").pixels == folder / "m13_rice.fits"  # type: ignore[union-attr]
    assert catalogue.get(name, "m13_rice").path == root / "m13_rice.fits"  # type: ignore[union-attr]


def test_the_survey_version_changes_with_its_files_on_both_databases(db, survey) -> None:  # type: ignore[no-untyped-def]
    """The version the coverage maps are cached under (it once failed on PostgreSQL: psycopg2
    took the % of its SQL for a placeholder)."""
    name, root, _ = survey
    catalogue = IndexCatalogue(db)
    first = catalogue.version(name)
    assert first == catalogue.version(name) and first.startswith("2:")
    path = next(root.rglob("*.fits*"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert ingest(db, name, DESSurvey, [root]).images >= 0
    assert catalogue.version(name) != first
