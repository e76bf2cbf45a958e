"""The incremental walk: FITS files -> the index, new, changed and removed files only.

A file is read again only when its size or mtime changed. Files that were indexed under
a walked folder (or named themselves) and are gone are removed. A bad file is recorded
with its reason and reported, never fatal. Work is committed in batches, so a long
ingest does not hold the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import peewee as pw

from soda.index.cells import footprint_cells
from soda.index.scan import BadFile, scan_file
from soda.index.tables import IndexTables, one_at_a_time, session
from soda.surveys.base import FITS_SUFFIXES, Survey
from soda.surveys.catalogue import CatalogueImage

Progress = Callable[[int, int], None]  # (files done, files in all)
_BATCH = 200
_PG_LOCK = 727014  # advisory lock id: one ingest of a database at a time


@dataclass
class IngestReport:
    survey: str
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    bad: list[tuple[Path, str]] = field(default_factory=list)
    images: int = 0  # images indexed from the new and changed files
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"survey {self.survey}: {self.new} new, {self.changed} changed, "
                f"{self.unchanged} unchanged, {self.removed} removed, {len(self.bad)} bad files; "
                f"{self.images} images indexed in {self.seconds:.1f} s")


def fits_files(root: Path) -> Iterator[Path]:
    """FITS files under a folder (or the file itself), sorted; hidden names are skipped."""
    if not root.is_dir():
        yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(FITS_SUFFIXES):
                yield Path(folder) / name


@contextlib.contextmanager
def ingest_lock(db: pw.Database) -> Iterator[None]:
    """One ingest at a time per database, across processes (and hosts, on PostgreSQL)."""
    with one_at_a_time(db, _PG_LOCK, "ingest"):
        yield


def _store(tables: IndexTables, file_id: int, images: Sequence[CatalogueImage]) -> None:
    for image in images:
        fp = image.footprint
        row = tables.Image.create(
            file=file_id, survey=image.survey, name=image.name, field=image.field, band=image.band,
            path=str(image.path), hdus=json.dumps(list(image.hdus)), ny=image.shape[0],
            nx=image.shape[1], pixel_scale=image.pixel_scale,
            vertices=json.dumps([list(v) for v in fp.vertices]), ra=fp.centre[0], dec=fp.centre[1],
            radius=fp.radius, extra=json.dumps(dict(image.extra)))
        cells = footprint_cells(fp.vertices, fp.centre, fp.radius)
        tables.Cell.insert_many([(row.id, c) for c in cells],
                                fields=[tables.Cell.image, tables.Cell.cell]).execute()


def _forget(tables: IndexTables, file_ids: Sequence[int]) -> None:
    if not file_ids:
        return
    images = tables.Image.select(tables.Image.id).where(tables.Image.file.in_(list(file_ids)))
    tables.Cell.delete().where(tables.Cell.image.in_(images)).execute()
    tables.Image.delete().where(tables.Image.file.in_(list(file_ids))).execute()


def _under(path: str, roots: Sequence[Path]) -> bool:
    return any(path == str(root) or path.startswith(str(root).rstrip(os.sep) + os.sep) for root in roots)


def ingest(db: pw.Database, survey: str, layout: type[Survey], paths: Sequence[Path],
           band_map: Mapping[str, str] | None = None, progress: Progress | None = None) -> IngestReport:
    """Bring the survey's part of the index up to date with the files under ``paths``."""
    started = time.monotonic()
    tables = IndexTables(db)
    report = IngestReport(survey)
    band_map = dict(band_map or {})
    roots = [Path(os.path.abspath(p)) for p in paths]
    files = [f for root in roots for f in fits_files(root)]
    with session(db):
        known = {row.path: row for row in tables.File.select().where(tables.File.survey == survey)}
        seen: set[str] = set()
        for start in range(0, len(files), _BATCH):
            with db.atomic():
                for path in files[start:start + _BATCH]:
                    _one(tables, survey, layout, band_map, path, known, seen, report)
            if progress:
                progress(min(start + _BATCH, len(files)), len(files))
        gone = [row.id for p, row in known.items() if p not in seen and _under(p, roots)]
        with db.atomic():
            _forget(tables, gone)
            if gone:
                tables.File.delete().where(tables.File.id.in_(gone)).execute()
            if report.new or report.changed or gone:
                # Fresh statistics, so the planner keeps using the cell index.
                for table in ("index_file", "index_image", "index_cell"):
                    db.execute_sql(f"ANALYZE {table}")
        report.removed = len(gone)
    if progress and not files:
        progress(0, 0)
    report.seconds = time.monotonic() - started
    return report


def _one(tables: IndexTables, survey: str, layout: type[Survey], band_map: Mapping[str, str],
         path: Path, known: dict[str, pw.Model], seen: set[str], report: IngestReport) -> None:
    key = str(path)
    if key in seen:
        return
    seen.add(key)
    try:
        stat = path.stat()
    except OSError as exc:
        report.bad.append((path, f"unreadable: {exc.strerror or exc}"))
        return
    row = known.get(key)
    if row is not None and row.size == stat.st_size and row.mtime_ns == stat.st_mtime_ns:
        report.unchanged += 1
        if row.problem:
            report.bad.append((path, row.problem))
        return
    try:
        images = scan_file(path, survey, layout, band_map)
        problem = None
    except BadFile as exc:
        images, problem = [], str(exc)
    if row is None:
        report.new += 1
        row = tables.File.create(survey=survey, path=key, size=stat.st_size,
                                 mtime_ns=stat.st_mtime_ns, problem=problem)
    else:
        report.changed += 1
        _forget(tables, [row.id])
        tables.File.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns, problem=problem).where(
            tables.File.id == row.id).execute()
    if problem:
        report.bad.append((path, problem))
        return
    taken = {name for (name,) in tables.Image.select(tables.Image.name).where(
        (tables.Image.survey == survey) & tables.Image.name.in_([i.name for i in images])).tuples()}
    if taken:
        # Two files naming the same image: the first ingested keeps it.
        reason = f"names images another file already holds: {', '.join(sorted(taken))}"
        tables.File.update(problem=reason).where(tables.File.id == row.id).execute()
        report.bad.append((path, reason))
        return
    _store(tables, row.id, images)
    report.images += len(images)
