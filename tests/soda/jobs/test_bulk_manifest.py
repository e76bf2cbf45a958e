"""A bulk job's manifest (soda.jobs.bulk): the same rows as CSV and as a VOTable that
validates against the VOTable 1.4 schema and reads back to the same values."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
from astropy.io.votable import parse_single_table

from conftest import assert_votable
from soda.jobs.bulk import COLUMNS, RowOutcome, manifest_csv, manifest_votable

ROWS = [
    RowOutcome(1, "a&<b>'\"", 24.125, -44.5, 0.001, "ok", "part-00000/0000001_a.fits"),
    RowOutcome(2, "", math.nan, math.nan, math.nan, "bad row", error="RA 999 is not between 0 and 360 ü"),
    RowOutcome(3, "c", 1e-300, 89.99999999999999, 0.5, "ok", "DES0139-4457-00001.fits", extver="1;2;3"),
    RowOutcome(4, "d d", 359.9999999, -90.0, 0.01, "no image", error="no survey of this service has an image"),
    RowOutcome(5, "e", 10.0, 0.0, 0.01, "ok", "DES-00002.fits", table_row="7;8"),
]


def test_the_votable_manifest_validates_and_holds_what_the_csv_holds() -> None:
    body = manifest_votable(ROWS)
    root = assert_votable(body)
    assert root.get("version") == "1.4"
    table = parse_single_table(io.BytesIO(body))
    assert [f.name for f in table.fields] == list(COLUMNS)
    assert [f.unit for f in table.fields][2:5] == ["deg"] * 3
    from_csv = list(csv.DictReader(io.StringIO(manifest_csv(ROWS).decode())))
    for row, line, r in zip(table.array, from_csv, ROWS, strict=True):
        assert int(row["row"]) == r.row == int(line["row"])
        for name in ("id", "status", "result", "error", "extver", "table_row"):
            assert str(row[name]) == getattr(r, name) == line[name]
        for name in ("ra", "dec", "radius"):
            value = getattr(r, name)
            if math.isfinite(value):
                assert float(row[name]) == value  # every digit kept
            else:
                assert np.ma.is_masked(row[name]) or math.isnan(row[name])


def test_text_xml_or_ucs_2_cannot_hold_is_replaced_in_the_votable_only() -> None:
    odd = [RowOutcome(1, "a\uffffb\ufffec\U0001f600", 1.0, 2.0, 0.1, "failed", error="bad \ud800 id \u00e9")]
    table = parse_single_table(io.BytesIO(manifest_votable(odd)))
    assert [f.datatype for f in table.fields if f.name in ("id", "error")] == ["unicodeChar", "unicodeChar"]
    assert str(table.array["id"][0]) == "a\ufffdb\ufffdc\ufffd"
    assert str(table.array["error"][0]) == "bad \ufffd id \u00e9"
    line = manifest_csv(odd).decode().splitlines()[1]
    assert "a\uffffb\ufffec\U0001f600" in line  # the CSV keeps what was given


def test_an_empty_manifest_is_a_valid_table_without_rows() -> None:
    body = manifest_votable([])
    assert_votable(body)
    assert len(parse_single_table(io.BytesIO(body)).array) == 0
