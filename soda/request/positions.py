"""Position tables: the rows of a bulk cutout job (CSV, VOTable, FITS table, or Parquet
when ``pyarrow`` is installed), read into columns of positions.

(Parquet is read with pyarrow alone: its columns carry no units, so a unit there comes from
the column's name.) Columns are found by name, leniently (case, spaces and punctuation ignored, common
aliases: ``RAJ2000``, ``s_ra``, ``DEJ2000``, ``objid``, ``filter``, ...), or in a VOTable
by UCD (``pos.eq.ra``, ``pos.eq.dec``). Units are honoured: a column's own unit (FITS
TUNIT, VOTable ``unit``, an astropy unit string) or else a unit in its name
(``radius_arcsec``); without either, positions and sizes are in degrees (DALI 1.1 §3.3).
RA may be in hours (unit ``h``/``hourangle``) and both coordinates may be sexagesimal
text (``12:34:56.7``, ``-12 34 56``: RA in hours, Dec in degrees).

``size`` is the side of the square cut (its circle's diameter), ``radius`` the circle's
radius. A bad row (no RA, a Dec beyond a pole, a negative size, ...) is listed with its
row number and why, never fatal; only a table that cannot be read at all, has no RA/Dec
columns, or has more rows than the limit is refused (UsageError).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.table import Table

from dali.errors import UsageError

ROLES = ("ra", "dec", "size", "radius", "id", "band")
# Normalised names (lower case, letters and digits only) of each role, best first.
ALIASES: dict[str, tuple[str, ...]] = {
    "ra": ("ra", "radeg", "raj2000", "raicrs", "ra2000", "sra", "alpha", "rightascension", "raj2000deg"),
    "dec": ("dec", "decdeg", "dej2000", "decj2000", "deicrs", "decicrs", "de", "dec2000", "sdec", "delta",
            "declination"),
    "size": ("size", "side", "width", "fov", "boxsize", "cutoutsize"),
    "radius": ("radius", "rad", "r", "searchradius", "cutoutradius"),
    "id": ("id", "name", "objid", "objectid", "sourceid", "source", "object", "target", "label"),
    "band": ("band", "filter", "bands", "filters"),
}
_UCDS = {"ra": ("pos.eq.ra;meta.main", "pos.eq.ra"), "dec": ("pos.eq.dec;meta.main", "pos.eq.dec")}
_NAME_UNITS = (("arcsec", u.arcsec), ("asec", u.arcsec), ("arcmin", u.arcmin), ("amin", u.arcmin),
               ("deg", u.deg), ("rad", u.rad))
MAX_ID = 200  # characters of an id or band value
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class PositionTable:
    """The good rows as columns (``row``: 1-based row numbers in the input), the bad rows
    with why, and which input column gave each role."""

    row: np.ndarray                     # int64
    ra: np.ndarray                      # float64 degrees, [0, 360)
    dec: np.ndarray                     # float64 degrees
    radius: np.ndarray                  # float64 degrees; NaN: the job's default
    id: list[str | None]
    band: list[str | None]
    bad: list[tuple[int, str]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    format: str = ""

    def __len__(self) -> int:
        return len(self.row)

    @property
    def total(self) -> int:
        return len(self.row) + len(self.bad)


def sniff(data: bytes) -> str:
    """The table's format from its first bytes: fits, parquet, votable or csv."""
    head = data[:2048].lstrip()
    if data.startswith(b"SIMPLE  ="):
        return "fits"
    if data.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"<") and b"VOTABLE" in head.upper():
        return "votable"
    return "csv"


def read_positions(data: bytes, max_rows: int, *, max_radius: float = 180.0) -> PositionTable:
    """The position table in ``data`` (any of the formats above), of at most ``max_rows`` rows."""
    kind = sniff(data)
    _check_columns(data, kind)
    table = _read(data, kind, max_rows)
    try:
        return _positions(table, kind, max_rows, max_radius)
    except (ValueError, TypeError, IndexError, KeyError) as exc:  # a column of an unforeseen kind
        raise UsageError(f"the position table's columns cannot be read as positions: {_short(exc)}") from None


def _positions(table: Table, kind: str, max_rows: int, max_radius: float) -> PositionTable:
    if len(table) > max_rows:
        raise UsageError(f"the position table has {len(table)} rows; a job takes at most {max_rows}")
    columns = _roles(table)
    for role, name in columns.items():
        if getattr(table[name], "ndim", 1) != 1:
            raise UsageError(f"column {name!r} ({role}) holds arrays; it must hold one value a row")
    if "ra" not in columns or "dec" not in columns:
        raise UsageError(
            f"the position table needs RA and Dec columns (named e.g. ra/dec, RAJ2000/DEJ2000, s_ra/s_dec); "
            f"it has {', '.join(table.colnames[:20]) or 'none'}")
    n = len(table)
    problems: list[str | None] = [None] * n
    ra = _angles(table[columns["ra"]], "ra", problems)
    dec = _angles(table[columns["dec"]], "dec", problems)
    radius = np.full(n, np.nan)
    if "radius" in columns:
        radius = _sizes(table[columns["radius"]], columns["radius"], "radius", problems, max_radius)
    elif "size" in columns:
        radius = _sizes(table[columns["size"]], columns["size"], "size", problems, 2 * max_radius) / 2
    ids = _texts(table[columns["id"]], "id", problems) if "id" in columns else [None] * n
    bands = _texts(table[columns["band"]], "band", problems) if "band" in columns else [None] * n
    with np.errstate(invalid="ignore"):
        off_sky = ~((ra >= -360.0) & (ra <= 720.0)) | ~((dec >= -90.0) & (dec <= 90.0))
    for i in np.flatnonzero(off_sky):
        if problems[i] is None:
            problems[i] = (f"RA {ra[i]:g} is not an angle on the sky (degrees)" if not -360.0 <= ra[i] <= 720.0
                           else f"Dec {dec[i]:g} is beyond a pole (degrees, -90 to 90)")
    bad = [(i, p) for i, p in enumerate(problems) if p is not None]
    good = np.ones(n, dtype=bool)
    good[[i for i, _ in bad]] = False
    rows = np.arange(1, n + 1, dtype=np.int64)
    if bad:
        ids = [v for v, ok in zip(ids, good.tolist(), strict=True) if ok]
        bands = [v for v, ok in zip(bands, good.tolist(), strict=True) if ok]
    return PositionTable(
        row=rows[good], ra=np.mod(ra[good], 360.0), dec=dec[good], radius=radius[good], id=ids, band=bands,
        bad=[(i + 1, p) for i, p in bad], columns=columns, format=kind)


# --- reading ---------------------------------------------------------------------------

def _read(data: bytes, kind: str, max_rows: int) -> Table:
    if kind == "csv":
        _check_lines(data, max_rows)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # units astropy does not know, VOTable quirks
            if kind == "fits":
                return Table.read(io.BytesIO(data), format="fits", hdu=_first_table(data))
            if kind == "votable":
                return Table.read(io.BytesIO(data), format="votable")
            if kind == "parquet":
                return _parquet(data)
            return _csv(data)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad upload
        raise UsageError(f"the position table cannot be read as {kind.upper()}: {_short(exc)}") from None


MAX_COLUMNS = 100  # a table of positions needs a handful; reading thousands costs seconds


def _check_columns(data: bytes, kind: str) -> None:
    """Too many columns refused before the table is read (each costs the reader time)."""
    if kind == "csv":
        header = data[:data.find(b"\n") if b"\n" in data else len(data)]
        count = max(header.count(c) for c in (b",", b"\t", b";", b"|", b" ")) + 1
    elif kind == "votable":
        count = data.count(b"<FIELD")
    elif kind == "fits":
        count = max((int(m) for m in re.findall(rb"TFIELDS = +(\d+)", data[:2880 * 20])), default=0)
    else:
        return
    if count > MAX_COLUMNS:
        raise UsageError(f"the position table has {count} columns; at most {MAX_COLUMNS} are read "
                         f"(ra, dec, size or radius, id, band are what it needs)")


def _check_lines(data: bytes, max_rows: int) -> None:
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if lines - 1 > max_rows:  # one header line
        raise UsageError(f"the position table has {lines - 1} rows; a job takes at most {max_rows}")


def _csv(data: bytes) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the position table is not UTF-8 text, FITS, VOTable or Parquet") from None
    first = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";", "|"), key=first.count)
    if first.count(delimiter) == 0:
        delimiter = " "  # a single column, or columns separated by blanks
    from astropy.io import ascii

    return ascii.read(text, format="basic", delimiter=delimiter, guess=False, fast_reader=True,
                      comment="#")


def _first_table(data: bytes) -> int:
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdul:
        for index, hdu in enumerate(hdul):
            if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
                return index
    raise UsageError("the FITS file holds no table (a BINTABLE or TABLE extension)")


def _parquet(data: bytes) -> Table:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("Parquet tables need pyarrow, which this service does not have; "
                         "send CSV, VOTable or FITS") from None
    import pyarrow.parquet as pq  # astropy's own Parquet reader needs pandas besides

    arrow = pq.read_table(io.BytesIO(data))
    return Table({name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names})


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


# --- columns ---------------------------------------------------------------------------

def normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _roles(table: Table) -> dict[str, str]:
    """Input column name of each role found."""
    found: dict[str, str] = {}
    by_ucd = {str(table[c].meta.get("ucd", "")).lower(): c for c in table.colnames}
    for role, ucds in _UCDS.items():
        for ucd in ucds:
            if ucd in by_ucd:
                found[role] = by_ucd[ucd]
                break
    names = {normalised(c): c for c in reversed(table.colnames)}  # first of equal names wins
    for role, aliases in ALIASES.items():
        if role in found:
            continue
        for alias in aliases:
            if alias in names and names[alias] not in found.values():
                found[role] = names[alias]
                break
        else:  # a name with its unit in it: ra_deg, radius_arcsec, size_arcmin
            for norm, original in names.items():
                stem = _unit_suffix(norm)[0]
                if stem in aliases and original not in found.values():
                    found[role] = original
                    break
    return found


def _unit_suffix(norm: str) -> tuple[str, u.UnitBase | None]:
    for suffix, unit in _NAME_UNITS:
        if norm.endswith(suffix) and len(norm) > len(suffix):
            return norm[: -len(suffix)], unit
    return norm, None


def _unit(column: object, name: str) -> u.UnitBase | None:
    unit = getattr(column, "unit", None)
    if unit is not None and not isinstance(unit, u.UnrecognizedUnit):
        return unit
    return _unit_suffix(normalised(name))[1]


def _floats(column: object) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A column as floats (NaN where missing or unreadable), its mask of missing values, and
    the rows whose text is not a number."""
    values = np.ma.asarray(column)
    mask = np.ma.getmaskarray(values)
    if values.dtype.kind in "fiu":
        return np.ma.asarray(values, dtype=float).filled(np.nan), mask, []
    out = np.full(len(values), np.nan)
    unreadable = []
    for i, v in enumerate(values.tolist()):
        text = str(v).strip()
        if not mask[i] and text:
            try:
                out[i] = float(text)
            except ValueError:
                unreadable.append(i)
    return out, mask, unreadable


def _in_degrees(values: np.ndarray, unit: u.UnitBase | None, name: str) -> np.ndarray:
    if unit is None:
        return values
    try:
        return (values * unit).to_value(u.deg)
    except u.UnitConversionError:
        raise UsageError(f"column {name!r} has unit {unit}, not an angle") from None


def _numbers(column: object, problems: list[str | None], what: str) -> np.ndarray:
    """Floats of a column; NaN and a problem where a value is missing or not a number."""
    out, mask, _ = _floats(column)
    for i in np.flatnonzero(mask | ~np.isfinite(out)):
        if problems[i] is None:
            problems[i] = f"no {what}" if mask[i] else f"{what} is not a number"
    return out


def _angles(column: object, role: str, problems: list[str | None]) -> np.ndarray:
    name = getattr(column, "name", role)
    values = np.ma.asarray(column)
    what = "RA" if role == "ra" else "Dec"
    if values.dtype.kind in "US" or values.dtype == object:
        return _text_angles(values, role, problems)
    out = _numbers(column, problems, what)
    unit = _unit(column, name)
    if role == "ra" and unit == u.hour:  # FITS and VOUnit have hours of time, not hour angles
        unit = u.hourangle
    return _in_degrees(out, unit, name)


def _text_angles(values: np.ma.MaskedArray, role: str, problems: list[str | None]) -> np.ndarray:
    """Decimal or sexagesimal text: RA in hours when sexagesimal, Dec in degrees."""
    what = "RA" if role == "ra" else "Dec"
    mask = np.ma.getmaskarray(values)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values.tolist()):
        if mask[i]:
            problems[i] = problems[i] or f"no {what}"
            continue
        text = str(v).strip()
        try:
            out[i] = float(text)
            continue
        except ValueError:
            pass
        try:
            out[i] = Angle(text, unit=u.hourangle if role == "ra" else u.deg).to_value(u.deg)
        except (ValueError, u.UnitsError):
            problems[i] = problems[i] or f"{what} {text[:40]!r} is not an angle"
    return out


def _sizes(column: object, name: str, role: str, problems: list[str | None], largest: float) -> np.ndarray:
    values, _, unreadable = _floats(column)
    for i in unreadable:
        problems[i] = problems[i] or f"{role} {str(np.ma.asarray(column)[i])[:40]!r} is not a number"
    out = _in_degrees(values, _unit(column, name), name)
    for i in np.flatnonzero(np.isfinite(out)):  # an empty size: the job's default
        if not 0 < out[i] <= largest and problems[i] is None:
            problems[i] = f"{role} {out[i]:g} deg is not between 0 and {largest:g}"
    return out


def _texts(column: object, role: str, problems: list[str | None]) -> list[str | None]:
    values = np.ma.asarray(column)
    mask = np.ma.getmaskarray(values)
    data = np.asarray(np.ma.getdata(values))
    if data.dtype.kind == "S":
        data = np.char.decode(data, "utf-8", "replace")
    elif data.dtype.kind in "iub":
        data = data.astype(str)
    if data.dtype.kind != "U" or data.ndim != 1:
        return _texts_one_by_one(values, mask, role, problems)
    # Whole columns at once: a million ids are checked in C, not one by one in Python.
    text = np.char.strip(data)
    width = text.dtype.itemsize // 4
    points = text.view(np.uint32).reshape(len(text), width) if width else np.zeros((len(text), 1), np.uint32)
    control = (((points > 0) & (points < 32)) | (points == 127)).any(axis=1)
    control |= ((points[:, :-1] == 0) & (points[:, 1:] != 0)).any(axis=1)  # a NUL within the text
    bad = ~mask & (control | (np.char.str_len(text) > MAX_ID))
    for i in np.flatnonzero(bad):
        problems[i] = problems[i] or f"{role} is longer than {MAX_ID} characters or holds control characters"
    return [None if masked or not t else t for t, masked in zip(text.tolist(), mask.tolist(), strict=True)]


def _texts_one_by_one(values: np.ma.MaskedArray, mask: np.ndarray, role: str,
                      problems: list[str | None]) -> list[str | None]:
    out: list[str | None] = []
    for i, v in enumerate(values.tolist()):
        if mask[i]:
            out.append(None)
            continue
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        text = text.strip()
        if len(text) > MAX_ID or _CONTROL.search(text):
            problems[i] = problems[i] or f"{role} is longer than {MAX_ID} characters or holds control characters"
        out.append(text or None)
    return out
