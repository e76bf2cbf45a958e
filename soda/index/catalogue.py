"""The image catalogue (``soda.surveys.catalogue.ImageCatalogue``) over the index tables.

A position finds its candidate images by its HEALPix cell (an index lookup), then each
candidate's footprint is tested exactly on the sphere; a circle by its cells' ranges.

An image whose file has a current square-tiled copy (``index_retiled``, made by
`cutout retile`: the original's size and mtime unchanged since) is handed out with the
copy as the file its pixels are cut from (``pixels``); its ``path`` stays the original,
which downloads serve and ObsCore describes. A stale copy (its original changed and was
ingested again) is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from operator import or_
from pathlib import Path

import numpy as np
import peewee as pw

from soda.index.cells import cell_of, cells_of, circle_ranges
from soda.index.tables import IndexTables, session
from soda.sky.footprint import distance, holds, holds_many, meets_circle
from soda.surveys.catalogue import CatalogueImage, Footprint


_COLUMNS = ("survey", "name", "field", "band", "path", "hdus", "ny", "nx", "pixel_scale",
            "vertices", "ra", "dec", "radius", "extra", "pixels")
# Every lookup reads the columns so, ``pixels`` being the copy's path when the file has a
# current one (its original has the path, size and mtime it had when copied), else NULL.
# Both joins are lookups by key (index_retiled by file, index_file by id), whatever the
# tables' size.
_FROM = ("SELECT " + ", ".join("CASE WHEN f.id IS NULL THEN NULL ELSE r.path END" if c == "pixels"
                                else f"i.{c}" for c in _COLUMNS)
         + " FROM index_image i LEFT JOIN index_retiled r ON r.file_id = i.file_id"
         + " LEFT JOIN index_file f ON f.id = r.file_id AND f.path = r.original"
         + " AND f.size = r.size AND f.mtime_ns = r.mtime_ns")


_CHUNK = 500  # values of one IN (...) list: well within SQLite's and PostgreSQL's bounds


def as_image(row: Sequence[object]) -> CatalogueImage:
    """An image from a row of ``_COLUMNS``."""
    (survey, name, field, band, path, hdus, ny, nx, scale, vertices, ra, dec, radius, extra, pixels) = row
    return CatalogueImage(
        survey=str(survey), name=str(name), field=str(field), band=str(band), path=Path(str(path)),
        hdus=tuple(json.loads(str(hdus))), shape=(int(ny), int(nx)),  # type: ignore[call-overload]
        pixel_scale=float(scale),  # type: ignore[arg-type]
        footprint=Footprint(vertices=tuple((float(a), float(d)) for a, d in json.loads(str(vertices))),
                            centre=(float(ra), float(dec)), radius=float(radius)),  # type: ignore[arg-type]
        extra=json.loads(str(extra)), pixels=None if pixels is None else Path(str(pixels)))


def _nearest(images: Iterable[CatalogueImage], ra: float, dec: float) -> list[CatalogueImage]:
    return sorted(images, key=lambda i: (distance(i.footprint.centre, (ra, dec)), i.name))


class IndexCatalogue:
    """The ingested images of every survey, read from the service's database."""

    def __init__(self, db: pw.Database) -> None:
        self.tables = IndexTables(db)
        self.db = db
        # The lookups of every request, written out (peewee's query building costs more
        # than the query). A position takes two: its cell's images by the cell index, then
        # those images by id. As one join, planners took the survey's index and scanned
        # every image of the survey; so does a survey condition beside the ids (it is
        # tested here instead).
        self._get_sql = f"{_FROM} WHERE i.survey = ? AND i.name = ?"
        self._cell_sql = "SELECT image_id FROM index_cell WHERE cell = ?"
        self._by_id_sql = f"{_FROM} WHERE i.id IN "
        self._with_id_sql = _FROM.replace("SELECT ", "SELECT i.id, ", 1) + " WHERE i.id IN"
        # An ingest adds or removes files (their count and largest id change; ids are not
        # reused while a larger one remains) or changes one (its size or mtime, which is
        # how the ingest told it changed): the remainder keeps the sum within 64 bits.
        self._version_sql = ("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(size), 0), "
                             "COALESCE(SUM(mtime_ns % 1000000007), 0) FROM index_file WHERE survey = ?")
        self._images_sql = "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM index_image WHERE survey = ?"

    def _select(self) -> pw.ModelSelect:
        Image, Retiled = self.tables.Image, self.tables.Retiled
        File = self.tables.File.alias("f")
        current = ((File.id == Retiled.file) & (File.path == Retiled.original)
                   & (File.size == Retiled.size) & (File.mtime_ns == Retiled.mtime_ns))
        pixels = pw.Case(None, [(File.id.is_null(), None)], Retiled.path)
        return (Image.select(*(pixels if c == "pixels" else getattr(Image, c) for c in _COLUMNS))
                .join(Retiled, pw.JOIN.LEFT_OUTER, on=(Retiled.file == Image.file))
                .join(File, pw.JOIN.LEFT_OUTER, on=current))

    def _rows(self, query: pw.ModelSelect) -> list[CatalogueImage]:
        with session(self.db):
            return [as_image(row) for row in query.tuples()]

    def get(self, survey: str, name: str) -> CatalogueImage | None:
        p = self.db.param
        with session(self.db):
            row = self.db.execute_sql(self._get_sql.replace("?", p), (survey, name)).fetchone()
        return None if row is None else as_image(row)

    def at(self, survey: str, ra: float, dec: float) -> list[CatalogueImage]:
        p = self.db.param
        with session(self.db):
            ids = [row[0] for row in self.db.execute_sql(self._cell_sql.replace("?", p), (cell_of(ra, dec),))]
            if not ids:
                return []
            sql = self._by_id_sql.replace("?", p) + "(" + ", ".join([p] * len(ids)) + ")"
            rows = self.db.execute_sql(sql, ids).fetchall()
        # Only the images that hold the position are read in full.
        v, c, r = _COLUMNS.index("vertices"), _COLUMNS.index("ra"), _COLUMNS.index("radius")
        return _nearest((as_image(row) for row in rows if row[0] == survey and holds(
            json.loads(row[v]), (row[c], row[c + 1]), row[r], ra, dec)), ra, dec)

    def holding(self, survey: str, ra: np.ndarray, dec: np.ndarray) -> list[tuple[CatalogueImage, np.ndarray]]:
        """Positions grouped by their cells: one lookup per ``_CHUNK`` cells, not per
        position; each candidate image's footprint tested on its cells' positions at once."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        if not ra.size:
            return []
        cells, where = np.unique(cells_of(ra, dec), return_inverse=True)
        order = np.argsort(where, kind="stable")  # positions by cell
        bounds = np.searchsorted(where[order], np.arange(len(cells) + 1))
        p = self.db.param
        cells_of_image: dict[int, list[int]] = {}
        rows: list[Sequence[object]] = []
        with session(self.db):
            for start in range(0, len(cells), _CHUNK):
                chunk = [int(c) for c in cells[start:start + _CHUNK]]
                sql = (f"SELECT cell, image_id FROM index_cell WHERE cell IN ({', '.join([p] * len(chunk))})")
                for cell, image in self.db.execute_sql(sql, chunk):
                    cells_of_image.setdefault(int(image), []).append(int(cell))
            ids = sorted(cells_of_image)
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                sql = f"{self._with_id_sql} ({', '.join([p] * len(chunk))}) AND i.survey = ?"
                rows += self.db.execute_sql(sql.replace("?", p), [*chunk, survey]).fetchall()
        found = []
        for row in sorted(rows, key=lambda r: str(r[2])):  # by name
            image = as_image(row[1:])
            mine = np.searchsorted(cells, cells_of_image[int(row[0])])  # type: ignore[call-overload]
            candidates = np.sort(np.concatenate([order[bounds[k]:bounds[k + 1]] for k in mine]))
            held = holds_many(image.footprint.vertices, image.footprint.centre, image.footprint.radius,
                              ra[candidates], dec[candidates])
            if held.any():
                found.append((image, candidates[held]))
        return found

    def overlapping(self, survey: str, ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        return self._meeting([survey], ra, dec, radius)

    def _meeting(self, surveys: Sequence[str], ra: float, dec: float, radius: float) -> list[CatalogueImage]:
        Image, Cell = self.tables.Image, self.tables.Cell
        ranges = circle_ranges(ra, dec, radius)
        in_cells = reduce(or_, [(Cell.cell >= low) & (Cell.cell < high) for low, high in ranges])
        ids = Cell.select(Cell.image).where(in_cells)
        images = self._rows(self._select().where(Image.survey.in_(list(surveys)) & Image.id.in_(ids)))
        return _nearest((i for i in images if meets_circle(
            i.footprint.vertices, i.footprint.centre, i.footprint.radius, ra, dec, radius)), ra, dec)

    def in_field(self, survey: str, field: str) -> list[CatalogueImage]:
        Image = self.tables.Image
        return self._rows(self._select().where((Image.survey == survey) & (Image.field == field))
                          .order_by(Image.band))

    def bands(self, survey: str) -> Mapping[str, int]:
        Image = self.tables.Image
        with session(self.db):
            rows = (Image.select(Image.band, pw.fn.COUNT(Image.id).alias("n"))
                    .where(Image.survey == survey).group_by(Image.band).order_by(Image.band).tuples())
            return {band: int(n) for band, n in rows}

    def version(self, survey: str) -> str:
        p = self.db.param
        with session(self.db):
            # psycopg2 reads a bare % as the start of a placeholder: it must be written %%.
            sql = self._version_sql.replace("%", "%%") if p == "%s" else self._version_sql
            files = self.db.execute_sql(sql.replace("?", p), (survey,)).fetchone()
            images = self.db.execute_sql(self._images_sql.replace("?", p), (survey,)).fetchone()
        return ":".join(str(int(v)) for v in (*files, *images))

    def first(self, survey: str) -> CatalogueImage | None:
        Image = self.tables.Image
        rows = self._rows(self._select().where(Image.survey == survey).order_by(Image.name).limit(1))
        return rows[0] if rows else None

    def search(self, surveys: Sequence[str], ra: float, dec: float, radius: float,
               limit: int) -> list[CatalogueImage]:
        return self._meeting(surveys, ra, dec, radius)[:max(0, limit)]
