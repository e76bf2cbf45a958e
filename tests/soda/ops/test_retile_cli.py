"""``cutout retile``: square-tiled copies of the demo survey made, reported, served and undone
from the command line, while the service runs."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from astropy.io import fits

from soda.index.catalogue import IndexCatalogue
from soda.index.retile import tilings
from soda.ops.cli import main
from soda.ops.database import close_database, open_database
from soda.surveys.des import tile_centre


@pytest.fixture
def data_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    for name in [n for n in os.environ if n.startswith("CUTOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUTOUT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def served_paths(data_dir) -> set:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{data_dir / 'cutout.sqlite'}")
    try:
        catalogue = IndexCatalogue(db)
        return {i.pixels or i.path for field in ("DES0139-4457", "DES0000+0209") for i in catalogue.in_field("des", field)}
    finally:
        close_database(db)


def test_retile_the_demo_survey_then_undo(data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo-data", "--size", "64"]) == 0
    assert main(["ingest", "--survey", "des"]) == 0
    capsys.readouterr()
    assert main(["retile", "--survey", "des", "--tile", "32", "--jobs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(line.startswith(f"[{n}/6] DES") for n, line in enumerate(lines[:6], start=1))
    assert "SCI RICE_1 1x64 -> RICE_1 32x32 requantised (<= 0.5" in lines[0]
    assert "MSK RICE_1 1x64 -> RICE_1 32x32 exact" in lines[0]
    assert lines[6].startswith("survey des: 6 retiled, 0 already current, 0 skipped, 0 failed, 0 copies removed")
    copies = served_paths(data_dir)
    assert len(copies) == 6 and {p.parent for p in copies} == {data_dir / "retiled" / "des"}
    assert all(t.tile == (32, 32) for p in copies for t in tilings(p))
    # Every survey by default; the current copies are left alone.
    assert main(["retile", "--tile", "32"]) == 0
    out = capsys.readouterr().out
    assert "survey des: 0 retiled, 6 already current" in out and "survey lsst: 0 retiled" in out
    assert main(["retile", "--survey", "des", "--undo"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split("/")[-1] for line in lines[:6]] == sorted(p.name for p in copies)
    assert all(line.startswith("removed ") for line in lines[:6])
    assert lines[6].startswith("survey des: 6 copies removed, the original files are served again")
    assert {p.parent for p in served_paths(data_dir)} == {data_dir / "demo" / "des"}


def test_unknown_surveys_and_bad_options_are_refused(data_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["retile", "--survey", "des", "--survey", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert "cutout retile: no survey 'nowhere' is configured (surveys: des, lsst)" in err
    for args, message in ((["--tile", "8"], "from 16 to 65536, not '8'"), (["--tile", "big"], "not 'big'"),
                          (["--jobs", "0"], "at least 1, not '0'")):
        with pytest.raises(SystemExit) as exit_:
            main(["retile", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (data_dir / "retiled").exists()


def test_a_running_service_cuts_from_the_copies_at_once_and_from_the_originals_after_undo(
        embedded, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for name in [n for n in os.environ if n.startswith("CUTOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUTOUT_DATA_DIR", str(tmp_path / "data"))  # the service's own
    ra, dec = tile_centre("DES0139-4457")
    params = {"ID": "ivo://demo.cutout/des?DES0139-4457_r", "CIRCLE": f"{ra + 0.01} {dec - 0.02} 0.01"}

    def planes() -> list[fits.ImageHDU]:
        response = embedded.get("/sync", params=params)
        assert response.status_code == 200, response.text
        with fits.open(io.BytesIO(response.content)) as hdul:
            return [fits.ImageHDU(h.data.copy(), h.header.copy()) for h in hdul[1:]]

    before = planes()
    assert main(["retile", "--survey", "des"]) == 0
    after = planes()
    for old, new in zip(before, after):
        for key in ("SRCFILE", "DATASET", "SRCBOX", "EXTNAME", "CRPIX1", "CRVAL1"):
            assert new.header[key] == old.header[key]
    assert before[0].header["SRCFILE"] == "DES0139-4457_r4907p01_r.fits.fz"
    assert np.array_equal(after[1].data, before[1].data)  # MSK
    # SCI is quantised again: a copy's pixels, none far from the original's.
    assert not np.array_equal(after[0].data, before[0].data)
    assert np.max(np.abs(after[0].data - before[0].data)) < 0.5
    # The whole image (DataLink #this) is still the survey's own file, byte for byte.
    whole = embedded.get("/files", params={"ID": params["ID"]})
    assert whole.status_code == 200
    assert whole.content == (tmp_path / "data" / "demo" / "des" / "DES0139-4457_r4907p01_r.fits.fz").read_bytes()
    assert main(["retile", "--survey", "des", "--undo"]) == 0
    for old, new in zip(before, planes()):
        assert np.array_equal(new.data, old.data)
