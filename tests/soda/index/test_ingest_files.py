"""`cutout ingest` on real files: the demo's DESDM tree, astropy's sample images, broken
files; incremental re-runs; on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import astropy
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.surveys.demo import build_des_demo
from soda.surveys.des import DESSurvey, tile_centre
from soda.surveys.generic import GenericSurvey

from conftest import ROOT, write_sky_image

SAMPLES = Path(astropy.__file__).parent / "io" / "fits" / "hdu" / "compressed" / "tests" / "data"
M13 = ("m13.fits", "m13_rice.fits", "m13_gzip.fits")


@pytest.fixture
def db(index_db):  # type: ignore[no-untyped-def]
    return index_db


def unique(name: str) -> str:
    """A survey name of this test's own (the PostgreSQL database is shared by the session)."""
    return f"{name}{uuid.uuid4().hex[:8]}"


def test_the_demo_tree_is_ingested_as_desdm_coadds(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "des"
    build_des_demo(root, tiles=("DES0139-4457", "DES0000+0209"), bands=("g", "r"), size=64)
    survey = unique("des")
    report = ingest(db, survey, DESSurvey, [root])
    assert (report.new, report.changed, report.unchanged, report.removed, report.bad) == (4, 0, 0, 0, [])
    assert report.images == 4
    catalogue = IndexCatalogue(db)
    image = catalogue.get(survey, "DES0139-4457_g")
    assert image is not None
    assert (image.field, image.band, image.hdus, image.shape) == ("DES0139-4457", "g", ("SCI", "MSK", "WGT"), (64, 64))
    assert image.path == root / "DES0139-4457_r4907p01_g.fits.fz"
    assert image.extra == {"reqnum": "4907", "attnum": "01"}
    assert image.pixel_scale == pytest.approx(0.263)
    assert image.footprint.centre == pytest.approx(tile_centre("DES0139-4457"), abs=1e-9)
    assert catalogue.bands(survey) == {"g": 2, "r": 2}
    assert [i.name for i in catalogue.in_field(survey, "DES0000+0209")] == ["DES0000+0209_g", "DES0000+0209_r"]
    assert [i.name for i in catalogue.at(survey, *tile_centre("DES0000+0209"))] == \
        ["DES0000+0209_g", "DES0000+0209_r"]
    # The generic layout knows nothing of DESDM: each plane is an image of its own.
    generic = unique("any")
    assert ingest(db, generic, GenericSurvey, [root]).images == 12
    sci = catalogue.get(generic, "DES0139-4457_r4907p01_g_SCI")
    assert sci is not None and sci.hdus == ("SCI",) and sci.band == "g"


def test_astropy_sample_images_are_ingested_with_their_own_wcs(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in M13:
        shutil.copy(SAMPLES / name, tmp_path / name)
    survey = unique("m13")
    report = ingest(db, survey, GenericSurvey, [tmp_path])
    assert report.bad == [] and report.images == 3
    catalogue = IndexCatalogue(db)
    plain, rice = catalogue.get(survey, "m13"), catalogue.get(survey, "m13_rice")
    assert plain is not None and rice is not None
    assert plain.hdus == ("0",) and rice.hdus == ("COMPRESSED_IMAGE",)
    assert plain.band == rice.band == "unknown"
    assert plain.shape == rice.shape == (300, 300)
    assert plain.pixel_scale == pytest.approx(0.2777 * 3.6, rel=1e-4)
    with fits.open(SAMPLES / "m13.fits") as hdul:
        wcs = WCS(hdul[0].header)
    centre = tuple(float(x) for x in wcs.pixel_to_world_values(149.5, 149.5))
    assert plain.footprint.centre == pytest.approx(centre, abs=1e-9)
    corner = tuple(float(x) for x in wcs.pixel_to_world_values(-0.5, -0.5))
    assert plain.footprint.vertices[0] == pytest.approx(corner, abs=1e-9)
    # A position on M13 finds all three images; one off it none.
    assert {i.name for i in catalogue.at(survey, *centre)} == {"m13", "m13_rice", "m13_gzip"}
    assert catalogue.at(survey, centre[0] + 0.2, centre[1]) == []


def test_bad_files_are_reported_and_skipped(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = (SAMPLES / "m13_rice.fits").read_bytes()
    (tmp_path / "truncated.fits").write_bytes(data[:len(data) // 2])
    (tmp_path / "garbage.fits").write_bytes(b"not FITS at all" * 300)
    fits.PrimaryHDU(np.zeros((8, 8), dtype=np.float32)).writeto(tmp_path / "no_wcs.fits")
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    write_sky_image(tmp_path / "good.fits", 150.0, 2.0)
    (tmp_path / "notes.txt").write_text("not a FITS name: never opened")
    survey = unique("mixed")
    report = ingest(db, survey, GenericSurvey, [tmp_path])
    reasons = {path.name: reason for path, reason in report.bad}
    assert set(reasons) == {"truncated.fits", "garbage.fits", "no_wcs.fits", "empty.fits"}
    assert reasons["truncated.fits"].startswith("truncated")
    assert reasons["garbage.fits"].startswith(("unreadable", "corrupt"))
    assert reasons["no_wcs.fits"] == "HDU 0 has no celestial WCS"
    assert reasons["empty.fits"].startswith("no image HDU")
    assert report.images == 1 and report.new == 5
    # A DES survey refuses files that are not DESDM coadds, with the reason.
    report = ingest(db, unique("des"), DESSurvey, [tmp_path / "good.fits"])
    assert [reason for _, reason in report.bad] == ["not a file of the DESSurvey layout"]
    # Unchanged bad files are reported again, not read again.
    again = ingest(db, survey, GenericSurvey, [tmp_path])
    assert (again.new, again.unchanged, again.images) == (0, 5, 0)
    assert {p.name: r for p, r in again.bad} == reasons


def test_a_rerun_takes_new_changed_and_removed_files(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    survey = unique("sky")
    a = write_sky_image(tmp_path / "a.fits", 10.0, 10.0)
    b = write_sky_image(tmp_path / "sub" / "b.fits", 20.0, 10.0)
    c = write_sky_image(tmp_path / "sub" / "c.fits", 30.0, 10.0)
    first = ingest(db, survey, GenericSurvey, [tmp_path])
    assert (first.new, first.images) == (3, 3)
    catalogue = IndexCatalogue(db)
    # b moves on the sky (rewritten, same size: the mtime tells), c goes, d comes.
    write_sky_image(b, 40.0, -10.0)
    stamp = b.stat()
    os.utime(b, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    c.unlink()
    write_sky_image(tmp_path / "d.fits", 50.0, 10.0)
    second = ingest(db, survey, GenericSurvey, [tmp_path])
    assert (second.new, second.changed, second.unchanged, second.removed, second.images) == (1, 1, 1, 1, 2)
    assert catalogue.get(survey, "c") is None
    assert catalogue.at(survey, 20.0, 10.0) == []
    assert [i.name for i in catalogue.at(survey, 40.0, -10.0)] == ["b"]
    assert [i.name for i in catalogue.at(survey, 50.0, 10.0)] == ["d"]
    # Ingesting only a sub-folder removes nothing outside it.
    third = ingest(db, survey, GenericSurvey, [tmp_path / "sub"])
    assert (third.unchanged, third.removed) == (1, 0)
    assert catalogue.get(survey, "a") is not None
    # Nothing changed: nothing read.
    fourth = ingest(db, survey, GenericSurvey, [tmp_path])
    assert (fourth.new, fourth.changed, fourth.unchanged, fourth.removed) == (0, 0, 3, 0)
    assert a.exists()


def test_two_files_naming_one_image(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_sky_image(tmp_path / "x" / "same.fits", 10.0, 10.0)
    write_sky_image(tmp_path / "y" / "same.fits", 11.0, 10.0)
    report = ingest(db, unique("dup"), GenericSurvey, [tmp_path])
    assert report.images == 1
    assert [(p.parent.name, r) for p, r in report.bad] == [("y", "names images another file already holds: same")]


def test_the_cli_ingests_and_summarises(tmp_path: Path) -> None:
    for name in M13[:2]:
        shutil.copy(SAMPLES / name, tmp_path / name)
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  =" + b" " * 100)
    site = tmp_path / "site.toml"
    site.write_text('[surveys.m13]\nfactory = "soda.surveys.generic:GenericSurvey"\nroot = "m13"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    env |= {"CUTOUT_DATA_DIR": str(tmp_path / "data"), "CUTOUT_CONFIG": str(site)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "soda.ops.cli", "ingest", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    done = run(str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"bad file {tmp_path / 'broken.fits'}: ")
    assert lines[-1].startswith("survey m13: 3 new, 0 changed, 0 unchanged, 0 removed, 1 bad files; 2 images indexed in ")
    assert "[" not in done.stderr  # no progress bar when stderr is not a terminal
    again = run("--survey", "m13", str(tmp_path / "m13.fits"))
    assert again.returncode == 0 and "0 new, 0 changed, 1 unchanged" in again.stdout
    assert run("--survey", "nope", str(tmp_path)).returncode == 1
    missing = run(str(tmp_path / "absent"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
