"""Bulk jobs (/bulk): a position table uploaded with the job, one FITS per row, a manifest."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table

from conftest import app_client, assert_uws, eventually, uws_text

UPLOAD = {"UPLOAD": "positions,param:positions"}
DES = (24.9655, -44.9583)


def _submit(client, table: bytes | str, **params: str):  # type: ignore[no-untyped-def]
    return client.post("/bulk", data={**UPLOAD, **params}, files={"positions": ("positions.csv", table, "text/csv")})


def _finished(client, job: str) -> str:  # type: ignore[no-untyped-def]
    return eventually(lambda: (p := client.get(job + "/phase").text) in ("COMPLETED", "ERROR") and p, timeout=60)


def _manifest(client, job: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return list(csv.DictReader(io.StringIO(client.get(job + "/results/manifest.csv").text)))


def test_a_table_of_positions_makes_one_file_per_row_and_a_manifest(embedded) -> None:  # type: ignore[no-untyped-def]
    ra, dec = DES
    table = (f"RAJ2000,DEJ2000,radius_arcsec,objid\n{ra},{dec},10,a\n{ra + 0.01},{dec},5,b\n"
             f"1.5,60,10,nowhere\n999,0,10,bad\n")
    r = _submit(embedded, table, PHASE="RUN", FILTER="r")
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    assert _finished(embedded, job) == "COMPLETED"
    doc = assert_uws(embedded.get(job).content)
    assert uws_text(doc, "uws:parameters/uws:parameter") == "positions,param:positions"
    rows = _manifest(embedded, job)
    assert [(m["row"], m["id"], m["status"]) for m in rows] == [
        ("1", "a", "ok"), ("2", "b", "ok"), ("3", "nowhere", "no image"), ("4", "", "bad row")]
    assert "RA 999" in rows[3]["error"] and "no survey" in rows[2]["error"]
    # Each row's file is the cut a single /sync request makes of the same position.
    for m, arcsec in ((rows[0], 10), (rows[1], 5)):
        body = embedded.get(f"{job}/results/{m['result']}").content
        single = embedded.get("/sync", params={"POS": f"CIRCLE {m['ra']} {m['dec']} {arcsec / 3600}", "FILTER": "r"})
        assert single.status_code == 200
        with fits.open(io.BytesIO(body)) as mine, fits.open(io.BytesIO(single.content)) as theirs:
            assert [h.name for h in mine] == [h.name for h in theirs]
            for a, b in zip(mine[1:], theirs[1:], strict=True):
                assert np.array_equal(a.data, b.data)
                assert a.header["DATASET"] == b.header["DATASET"] and a.header["SRCBOX"] == b.header["SRCBOX"]
    votable = parse_single_table(io.BytesIO(embedded.get(job + "/results/manifest.xml").content))
    assert list(votable.array["status"]) == ["ok", "ok", "no image", "bad row"]


def test_every_band_there_without_filter(embedded) -> None:  # type: ignore[no-untyped-def]
    ra, dec = DES
    job = _submit(embedded, f"ra,dec\n{ra},{dec}\n", PHASE="RUN", RADIUS="0.002").headers["location"]
    assert _finished(embedded, job) == "COMPLETED"
    [row] = _manifest(embedded, job)
    with fits.open(io.BytesIO(embedded.get(f"{job}/results/{row['result']}").content)) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 3  # g, r, i
        assert sorted({h.header["CUTNAME"] for h in hdul[1:]}) == ["g", "i", "r"]


@pytest.mark.parametrize("params, files, message", [
    ({}, {"positions": b"ra,dec\n1,2\n"}, "needs its position table"),
    ({"UPLOAD": "positions,http://example.org/t.csv"}, {"positions": b"ra,dec\n1,2\n"}, "fetches no other URL"),
    ({"UPLOAD": "positions,param:other"}, {"positions": b"ra,dec\n1,2\n"}, "does not carry"),
    (UPLOAD, {"positions": b"x,y\n1,2\n"}, "needs RA and Dec"),
    (UPLOAD, {"positions": b"ra,dec\n999,2\n"}, "no usable row"),
    ({**UPLOAD, "RADIUS": "-1"}, {"positions": b"ra,dec\n1,2\n"}, "RADIUS must be between"),
    ({**UPLOAD, "RESPONSEFORMAT": "image/png"}, {"positions": b"ra,dec\n1,2\n"}, "makes FITS files"),
    (UPLOAD, {"positions": b"ra,dec\n1,2\n", "second": b"x"}, "at most 1 files"),
])
def test_bad_bulk_requests_are_refused_before_a_job_exists(embedded, params, files, message) -> None:  # type: ignore[no-untyped-def]
    before = embedded.get("/bulk").content
    r = embedded.post("/bulk", data=params, files={k: ("t.csv", v, "text/csv") for k, v in files.items()})
    assert r.status_code == 400, r.text
    assert r.text.startswith("UsageError: ") and message in r.text
    assert embedded.get("/bulk").content == before


def test_files_are_refused_where_no_job_takes_them(embedded) -> None:  # type: ignore[no-untyped-def]
    r = embedded.post("/async", data={"POS": "CIRCLE 1 2 0.1"}, files={"t": ("t.csv", b"ra,dec\n1,2\n", "text/csv")})
    assert r.status_code == 400 and "file upload" in r.text
    r = embedded.post("/sync", data={"POS": "CIRCLE 1 2 0.1"}, files={"t": ("t.csv", b"ra,dec\n1,2\n", "text/csv")})
    assert r.status_code == 400 and "file upload" in r.text


def test_row_and_size_limits(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    table = "ra,dec\n" + "24.9655,-44.9583\n" * 6
    with app_client(tmp_path / "d", demo_root, CUTOUT_ANONYMOUS_BULK_MAX_ROWS="5",
                    CUTOUT_MAX_UPLOAD_BYTES="2000") as client:
        r = _submit(client, table)
        assert r.status_code == 400 and "6 rows; a job takes at most 5" in r.text
        big = "ra,dec\n" + "24.9655,-44.9583\n" * 200  # 3.4 kB
        r = _submit(client, big)
        assert r.status_code == 413, r.text
        # The larger body is for job lists whose jobs take files only.
        r = client.post("/async", data={"POS": "CIRCLE 1 2 0.1"}, files={"t": ("t.csv", big, "text/csv")})
        assert r.status_code == 400
    with app_client(tmp_path / "e", demo_root, CUTOUT_ANONYMOUS_BULK_MAX_ROWS="0") as client:
        r = _submit(client, "ra,dec\n1,2\n")
        assert r.status_code == 400 and "at most 0" in r.text


def test_the_upload_is_kept_with_the_job_and_gone_with_it(embedded) -> None:  # type: ignore[no-untyped-def]
    ra, dec = DES
    job = _submit(embedded, f"ra,dec\n{ra},{dec}\n").headers["location"]
    job_id = job.rsplit("/", 1)[1]
    storage = embedded.app_state.runtime.storage
    kept = storage.local_path(f"jobs/{job_id}/uploads/positions")
    assert kept is not None and kept.read_bytes() == f"ra,dec\n{ra},{dec}\n".encode()
    assert embedded.delete(job).status_code in (200, 204, 303)
    assert not kept.exists()


def test_a_bulk_job_runs_in_parts_by_field_with_progress(embedded) -> None:  # type: ignore[no-untyped-def]
    ra, dec = DES
    # Two DES tiles and a row nowhere: two parts (one per tile), the third row unserved.
    table = f"ra,dec,id\n{ra},{dec},a\n{ra + 0.005},{dec},b\n0.0131,2.1583,c\n1.5,60,d\n"
    job = _submit(embedded, table, PHASE="RUN", FILTER="r", RADIUS="0.002").headers["location"]
    assert _finished(embedded, job) == "COMPLETED"
    doc = assert_uws(embedded.get(job).content)
    progress = doc.find("{http://www.ivoa.net/xml/UWS/v1.0}jobInfo")[0]
    assert progress.get("total") == "3" and progress.get("done") == "3" and progress.get("failed") == "0"
    assert progress.get("parts") == "2" and progress.get("partsDone") == "2"
    results = {r.get("id") for r in doc.iter("{http://www.ivoa.net/xml/UWS/v1.0}result")}
    assert {"manifest-part-00000.csv", "manifest-part-00001.csv", "manifest-unserved.csv",
            "manifest.csv", "manifest.xml"} <= results
    rows = _manifest(embedded, job)
    assert [(m["id"], m["status"]) for m in rows] == [("a", "ok"), ("b", "ok"), ("c", "ok"), ("d", "no image")]
    assert rows[2]["result"] == "0000003_c.fits"


def test_upload_from_a_result_of_ones_own_job(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    ra, dec = DES
    with app_client(tmp_path / "d", demo_root) as client:
        first = _submit(client, f"ra,dec,id\n{ra},{dec},a\n{ra + 0.002},{dec},b\n", PHASE="RUN", RADIUS="0.002")
        job = first.headers["location"]
        assert _finished(client, job) == "COMPLETED"
        # The first job's manifest is a position table (ra, dec, id): a second job takes it by URL.
        r = client.post("/bulk", data={"UPLOAD": f"positions,{job}/results/manifest.csv", "PHASE": "RUN",
                                       "RADIUS": "0.002"})
        assert r.status_code == 303, r.text
        second = r.headers["location"]
        assert _finished(client, second) == "COMPLETED"
        assert [m["id"] for m in _manifest(client, second)] == ["a", "b"]
        for url, message in ((f"{job}/results/nothing.csv", "no result of a job of yours"),
                             ("http://example.org/t.csv", "fetches no other URL"),
                             (f"{job.replace(job.rsplit('/', 1)[1], 'x' * 16)}/results/manifest.csv",
                              "no result of a job of yours")):
            r = client.post("/bulk", data={"UPLOAD": f"positions,{url}"})
            assert r.status_code == 400 and message in r.text, r.text


def test_file_field_names_are_plain(embedded) -> None:  # type: ignore[no-untyped-def]
    for field in ("../x", ".hidden", "a/b", "x" * 65):
        r = embedded.post("/bulk", data={"UPLOAD": f"positions,param:{field}"},
                          files={field: ("t.csv", b"ra,dec\n1,2\n", "text/csv")})
        assert r.status_code == 400 and "field name" in r.text, (field, r.text)
