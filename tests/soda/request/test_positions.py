"""Position tables of bulk jobs: every format, lenient column names, units, bad rows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.io.votable import from_table, writeto
from astropy.table import Table

from dali.errors import UsageError
from soda.request.positions import read_positions, sniff


def _fits(table: Table) -> bytes:
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(out)
    return out.getvalue()


def _votable(table: Table) -> bytes:
    out = io.BytesIO()
    writeto(from_table(table), out)
    return out.getvalue()


def test_csv_with_plain_names_in_degrees() -> None:
    t = read_positions(b"ra,dec,radius,id,band\n10.5,-20.25,0.01,a,r\n359.9,89.5,,b,\n", 10)
    assert t.format == "csv" and len(t) == 2 and not t.bad
    assert t.ra.tolist() == [10.5, 359.9] and t.dec.tolist() == [-20.25, 89.5]
    assert t.radius[0] == 0.01 and np.isnan(t.radius[1])  # empty: the job's default
    assert t.id == ["a", "b"] and t.band == ["r", None]
    assert t.row.tolist() == [1, 2]


@pytest.mark.parametrize("header", ["RAJ2000,DEJ2000", "s_ra;s_dec", "RA_ICRS\tDE_ICRS", "Ra (deg)|Dec (deg)"])
def test_common_column_names_are_recognised(header: str) -> None:
    sep = next(c for c in ",;\t|" if c in header)
    t = read_positions(f"{header}\n1{sep}2\n".encode(), 10)
    assert (t.ra.tolist(), t.dec.tolist()) == ([1.0], [2.0])


def test_units_in_names_and_hours_and_sexagesimal() -> None:
    t = read_positions(b"ra,dec,size_arcsec\n12:30:00,-30:15:00,36\n1.5,2.5,72\n", 10)
    assert t.ra[0] == pytest.approx(187.5) and t.dec[0] == pytest.approx(-30.25)
    assert t.radius.tolist() == pytest.approx([18 / 3600, 36 / 3600])  # size is the side


def test_fits_table_units_are_honoured() -> None:
    columns = [fits.Column("RA", "D", unit="h", array=[1.0, 2.0]),  # FITS has hours, not hour angles
               fits.Column("DEC", "D", unit="arcsec", array=[3600.0, -7200.0]),
               fits.Column("RADIUS", "E", unit="arcmin", array=[1.0, 2.0]),
               fits.Column("OBJID", "K", array=[5, 6])]
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(out)
    t = read_positions(out.getvalue(), 10)
    assert t.format == "fits"
    assert t.ra.tolist() == pytest.approx([15.0, 30.0]) and t.dec.tolist() == pytest.approx([1.0, -2.0])
    assert t.radius.tolist() == pytest.approx([1 / 60, 2 / 60]) and t.id == ["5", "6"]


def test_votable_columns_found_by_ucd() -> None:
    table = Table({"alpha_thing": [10.0], "beta_thing": [-5.0]})
    table["alpha_thing"].meta["ucd"] = "pos.eq.ra;meta.main"
    table["beta_thing"].meta["ucd"] = "pos.eq.dec;meta.main"
    table["alpha_thing"].unit = u.deg
    data = _votable(table)
    assert sniff(data) == "votable"
    t = read_positions(data, 10)
    assert (t.ra.tolist(), t.dec.tolist()) == ([10.0], [-5.0])
    assert t.columns["ra"] == "alpha_thing"


def test_bad_rows_are_reported_not_fatal() -> None:
    text = (b"ra,dec,radius\n"
            b"10,20,0.01\n"      # 1 good
            b"x,20,0.01\n"       # 2 not a number
            b"10,95,0.01\n"      # 3 beyond a pole
            b"10,,0.01\n"        # 4 no dec
            b"10,20,-1\n"        # 5 negative radius
            b"370,20,0.01\n"     # 6 RA 370 wraps to 10
            b"1e9,20,0.01\n")    # 7 not an angle
    t = read_positions(text, 10)
    assert t.row.tolist() == [1, 6] and t.ra.tolist() == [10.0, 10.0]
    reasons = dict(t.bad)
    assert sorted(reasons) == [2, 3, 4, 5, 7]
    assert "not" in reasons[2] and "pole" in reasons[3] and "no Dec" in reasons[4]
    assert "radius" in reasons[5] and "RA" in reasons[7]
    assert t.total == 7


def test_too_many_rows_is_refused_before_reading() -> None:
    body = b"ra,dec\n" + b"1,2\n" * 11
    with pytest.raises(UsageError, match="11 rows; a job takes at most 10"):
        read_positions(body, 10)
    big = Table({"ra": np.zeros(11), "dec": np.zeros(11)})
    with pytest.raises(UsageError, match="at most 10"):
        read_positions(_fits(big), 10)


@pytest.mark.parametrize("body, message", [
    (b"x,y\n1,2\n", "needs RA and Dec columns"),
    (b"SIMPLE  =                    T" + b" " * 50 + b"garbage", "cannot be read as FITS"),
    (b"<VOTABLE><broken", "cannot be read as VOTABLE"),
    (b"PAR1\x00\x00", "cannot be read as PARQUET"),
    (b"\xff\xfe\x00r\x00a", "not UTF-8"),
])
def test_unreadable_tables_are_labelled(body: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        read_positions(body, 10)


def test_ids_must_be_short_plain_text() -> None:
    t = read_positions(b"ra,dec,id\n1,2," + b"a" * 201 + b"\n1,2,ok\n", 10)
    assert t.id == ["ok"] and t.bad[0][0] == 1


def test_a_million_rows_read_in_columns() -> None:
    n = 1_000_000
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-90, 90, n)
    body = ("ra,dec\n" + "\n".join(f"{a:.6f},{d:.6f}" for a, d in zip(ra, dec, strict=True))).encode()
    t = read_positions(body, n)
    assert len(t) == n and not t.bad
    assert np.allclose(t.ra, ra, atol=1e-6) and np.allclose(t.dec, dec, atol=1e-6)


def test_parquet_tables_with_pyarrow(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = Table({"RA_ICRS": [10.0, 20.0] * u.deg, "DE_ICRS": [1.0, -2.0] * u.deg, "name": ["x", "y"]})
    path = tmp_path / "t.parquet"
    table.write(path, format="parquet")
    data = path.read_bytes()
    assert sniff(data) == "parquet"
    t = read_positions(data, 10)
    assert (t.ra.tolist(), t.dec.tolist(), t.id) == ([10.0, 20.0], [1.0, -2.0], ["x", "y"])


def test_parquet_without_pyarrow_is_a_labelled_refusal(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    path = tmp_path / "t.parquet"
    Table({"ra": [1.0], "dec": [2.0]}).write(path, format="parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as where it is not installed
    with pytest.raises(UsageError, match="Parquet tables need pyarrow"):
        read_positions(path.read_bytes(), 10)


def test_too_many_columns_are_refused_before_reading() -> None:
    header = ",".join(["ra", "dec"] + [f"c{n}" for n in range(200)])
    with pytest.raises(UsageError, match="202 columns; at most 100"):
        read_positions(f"{header}\n".encode() + b"1,2" + b",0" * 200 + b"\n", 10)
    wide = Table({f"c{n}": [1.0] for n in range(150)})
    with pytest.raises(UsageError, match="150 columns"):
        read_positions(_fits(wide), 10)
    with pytest.raises(UsageError, match="150 columns"):
        read_positions(_votable(wide), 10)


def test_array_valued_columns_are_refused() -> None:
    table = Table({"ra": np.array([[1.0, 2.0]]), "dec": [3.0]})
    with pytest.raises(UsageError, match="holds arrays"):
        read_positions(_votable(table), 10)


@pytest.mark.parametrize("kind", ["csv", "fits"])  # XML cannot carry control characters
def test_ids_with_control_characters_or_too_long_are_bad_rows(kind: str) -> None:
    ids = ["ok", "a\x01b", "x" * 201, "  padded  ", "", "tab\tinside", "y" * 200]
    table = Table({"ra": [1.0] * len(ids), "dec": [2.0] * len(ids), "id": ids})
    data = {"csv": lambda: ("ra,dec,id\n" + "".join(f"1,2,{i}\n" for i in ids)).encode(),
            "fits": lambda: _fits(table)}[kind]()
    if kind == "csv":  # a tab inside a CSV value is a value of its own row; the others are whole
        data = data.replace(b"tab\tinside", b"tab\x0binside")
    t = read_positions(data, 100)
    assert [row for row, _ in t.bad] == [2, 3, 6]
    assert all("control characters" in why for _, why in t.bad)
    assert t.id == ["ok", "padded", None, "y" * 200]
    assert t.row.tolist() == [1, 4, 5, 7]


def test_integer_ids_are_text() -> None:
    t = read_positions(b"ra,dec,objid\n1,2,17\n3,4,-5\n", 10)
    assert t.id == ["17", "-5"] and not t.bad
