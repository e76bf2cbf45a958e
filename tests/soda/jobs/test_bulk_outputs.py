"""Bulk jobs' layouts (LAYOUT=row|group|table) and the per-caller bulk limits."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.table import Table

from conftest import app_client, eventually, header_identity

UPLOAD = {"UPLOAD": "positions,param:positions"}
RA, DEC = 24.9655, -44.9583
# Three rows on one DES tile, of two sizes (the table pads the smaller), and one nowhere.
TABLE = (f"ra,dec,id,radius_arcsec\n{RA},{DEC},a,7\n{RA + 0.004},{DEC},b,4\n"
         f"{RA},{DEC + 0.004},c,7\n1.5,60,d,7\n")


def _submit(client, table: str, **params: str):  # type: ignore[no-untyped-def]
    return client.post("/bulk", data={**UPLOAD, **params},
                       files={"positions": ("positions.csv", table, "text/csv")})


def _run(client, table: str, **params: str) -> tuple[str, list[dict[str, str]]]:  # type: ignore[no-untyped-def]
    r = _submit(client, table, PHASE="RUN", **params)
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    assert eventually(lambda: (p := client.get(job + "/phase").text) in ("COMPLETED", "ERROR") and p,
                      timeout=60) == "COMPLETED"
    return job, list(csv.DictReader(io.StringIO(client.get(job + "/results/manifest.csv").text)))


def _hdus(client, job: str, name: str) -> fits.HDUList:  # type: ignore[no-untyped-def]
    r = client.get(f"{job}/results/{name}")
    assert r.status_code == 200, r.text
    return fits.open(io.BytesIO(r.content))


def _row_files(client, **params: str) -> dict[str, fits.HDUList]:  # type: ignore[no-untyped-def]
    """The row layout's file of each ok row, by id: what the other layouts must hold."""
    job, rows = _run(client, TABLE, **params)
    return {m["id"]: _hdus(client, job, m["result"]) for m in rows if m["status"] == "ok"}


def test_group_layout_one_file_per_field_with_the_rows_cuts(embedded) -> None:  # type: ignore[no-untyped-def]
    single = _row_files(embedded, FILTER="r")
    job, rows = _run(embedded, TABLE, FILTER="r", LAYOUT="group")
    assert [(m["id"], m["status"]) for m in rows] == [("a", "ok"), ("b", "ok"), ("c", "ok"), ("d", "no image")]
    [name] = {m["result"] for m in rows[:3]}
    assert name.endswith("-00000.fits") and "DES" in name and rows[3]["result"] == ""
    assert [m["extver"] for m in rows[:3]] == ["1", "2", "3"] and all(not m["table_row"] for m in rows)
    with _hdus(embedded, job, name) as hdul:
        assert hdul[0].header["NCUTOUTS"] == 3
        for m in rows[:3]:
            extver = int(m["extver"])
            mine = [h for h in hdul[1:] if h.header["EXTVER"] == extver]
            theirs = single[m["id"]][1:]
            assert [h.name for h in mine] == [h.name for h in theirs] == ["SCI", "MSK", "WGT"]
            for a, b in zip(mine, theirs, strict=True):
                assert a.header["ROW"] == int(m["row"]) and a.header["OBJID"] == m["id"]
                assert a.header["CUTNAME"] == "r" and a.header["SRCBOX"] == b.header["SRCBOX"]
                assert np.array_equal(a.data, b.data)
    # And a /sync cut of the same position is the same (row a: 7 arcsec).
    sync = embedded.get("/sync", params={"POS": f"CIRCLE {RA} {DEC} {7 / 3600}", "FILTER": "r"})
    assert sync.status_code == 200
    with _hdus(embedded, job, name) as hdul, fits.open(io.BytesIO(sync.content)) as theirs:
        assert np.array_equal(hdul["SCI", 1].data, theirs["SCI", 1].data)
        assert hdul["SCI", 1].header["DATASET"] == theirs["SCI", 1].header["DATASET"]
    # Every band there (no FILTER): a row's cuts are several EXTVERs, one per band.
    job, rows = _run(embedded, f"ra,dec,id\n{RA},{DEC},a\n{RA + 0.003},{DEC},b\n", LAYOUT="group", RADIUS="0.001")
    assert [m["extver"] for m in rows] == ["1;2;3", "4;5;6"]
    with _hdus(embedded, job, rows[0]["result"]) as hdul:
        assert sorted(h.header["CUTNAME"] for h in hdul[1:] if h.header["ROW"] == 2 and h.name == "SCI") == \
            ["g", "i", "r"]
    votable = parse_single_table(io.BytesIO(embedded.get(job + "/results/manifest.xml").content))
    assert list(votable.array["extver"]) == ["1;2;3", "4;5;6"]


def test_table_layout_one_row_per_cutout_padded_with_its_shape_and_wcs(embedded) -> None:  # type: ignore[no-untyped-def]
    single = _row_files(embedded, FILTER="r")
    job, rows = _run(embedded, TABLE, FILTER="r", LAYOUT="table")
    assert [m["status"] for m in rows] == ["ok", "ok", "ok", "no image"]
    assert [m["table_row"] for m in rows[:3]] == ["1", "2", "3"] and all(not m["extver"] for m in rows)
    body = embedded.get(f"{job}/results/{rows[0]['result']}").content
    table = Table.read(io.BytesIO(body), format="fits", hdu=1)
    assert list(table["id"]) == ["a", "b", "c"] and list(table["row"]) == [1, 2, 3]
    assert list(table["band"]) == ["r", "r", "r"]
    assert table["SCI"].shape[1:] == (int(max(table["NAXIS2"])), int(max(table["NAXIS1"])))
    with fits.open(io.BytesIO(body)) as hdul:
        assert "TDIM" in " ".join(hdul[1].header.keys())  # the 2-d columns say their shape
    shapes = set()
    for m in rows[:3]:
        t = table[int(m["table_row"]) - 1]
        ny, nx = int(t["NAXIS2"]), int(t["NAXIS1"])
        shapes.add((ny, nx))
        theirs = single[m["id"]]
        for plane in ("SCI", "MSK", "WGT"):
            assert np.array_equal(np.ma.getdata(t[plane])[:ny, :nx], theirs[plane].data)
        sci = np.ma.getdata(t["SCI"])  # astropy masks the NaN padding as it reads
        assert np.isnan(sci[ny:, :]).all() and np.isnan(sci[:, nx:]).all()
        header = theirs["SCI"].header
        assert t["CRPIX1"] == pytest.approx(header["CRPIX1"]) and t["CRPIX2"] == pytest.approx(header["CRPIX2"])
        assert t["CRVAL1"] == pytest.approx(header["CRVAL1"]) and t["CTYPE1"] == header["CTYPE1"]
        scale = header.get("CD1_1", header.get("CDELT1"))
        assert t["CD1_1"] == pytest.approx(scale)
    assert len(shapes) > 1  # row b is smaller (and c one row taller than a): padded


@pytest.mark.parametrize("params, message", [
    ({"LAYOUT": "mosaic"}, "LAYOUT must be row"),
    ({"RESPONSEFORMAT": "application/x-votable+xml"}, "LAYOUT=row|group|table"),
])
def test_a_bad_layout_is_refused(embedded, params, message) -> None:  # type: ignore[no-untyped-def]
    r = _submit(embedded, f"ra,dec\n{RA},{DEC}\n", **params)
    assert r.status_code == 400 and r.text.startswith("UsageError: ") and message in r.text
    ok = _submit(embedded, f"ra,dec\n{RA},{DEC}\n", LAYOUT="table", RESPONSEFORMAT="application/fits")
    assert ok.status_code == 303


def test_the_pixels_of_a_bulk_job_are_limited_per_caller(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    table = "ra,dec\n" + f"{RA},{DEC}\n" * 10
    # 10 rows of 0.005 deg (0.263"/pixel: 138 pixels across) in one band: 190,440 pixels.
    with app_client(tmp_path / "d", demo_root, identify=header_identity,
                    CUTOUT_ANONYMOUS_BULK_MAX_PIXELS="150000", CUTOUT_BULK_MAX_PIXELS="200000") as client:
        r = _submit(client, table, FILTER="r", RADIUS="0.005")
        assert r.status_code == 400 and r.text.startswith("UsageError: ")
        assert "about 1.9e+05 pixels" in r.text and "for anonymous callers" in r.text
        assert _submit(client, table, FILTER="r", RADIUS="0.004").status_code == 303  # smaller stamps
        user = client.post("/bulk", data={**UPLOAD, "FILTER": "r", "RADIUS": "0.005"}, headers={"X-Test-User": "ann"},
                           files={"positions": ("p.csv", table, "text/csv")})
        assert user.status_code == 303, user.text
        # Without FILTER every band of the survey counts (g, r, i: three times as many).
        user = client.post("/bulk", data={**UPLOAD, "RADIUS": "0.005"}, headers={"X-Test-User": "ann"},
                           files={"positions": ("p.csv", table, "text/csv")})
        assert user.status_code == 400 and "split the table" in user.text


def test_unfinished_bulk_jobs_are_limited_per_caller(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    table = f"ra,dec\n{RA},{DEC}\n"
    with app_client(tmp_path / "d", demo_root, identify=header_identity,
                    CUTOUT_ANONYMOUS_BULK_MAX_ACTIVE_JOBS="1", CUTOUT_BULK_MAX_ACTIVE_JOBS="2") as client:
        first = _submit(client, table)  # PENDING: it counts until it ends
        assert first.status_code == 303
        r = _submit(client, table)
        assert r.status_code == 429 and r.headers["retry-after"] and "bulk job limit reached" in r.text
        assert client.post("/async", data={"POS": f"CIRCLE {RA} {DEC} 0.001"}).status_code == 303  # other jobs
        ann = {"X-Test-User": "ann"}
        for expected in (303, 303, 429):
            r = client.post("/bulk", data=UPLOAD, headers=ann, files={"positions": ("p.csv", table, "text/csv")})
            assert r.status_code == expected, r.text
        assert client.delete(first.headers["location"]).status_code in (200, 204, 303)
        assert _submit(client, table).status_code == 303
