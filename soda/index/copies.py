"""Square-tiled copies of a survey's indexed files (`cutout retile`), and taking them back.

The copies live in a folder of their own (by default ``<data_dir>/retiled/<survey>/``,
mirroring the file's path under the survey's root), never beside the originals, which
are not touched. Each copy is recorded in ``index_retiled`` with the original's size and
mtime at the time; the catalogue hands out the copy while they still match what the
index holds (``soda.index.catalogue``). A copy is written to a temporary file and renamed
before its row is committed, so the index never names a partial file; undoing deletes
the rows first, then the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import peewee as pw

from soda.index.retile import DEFAULT_TILE, NotRetilable, RetileResult, retile_file
from soda.index.tables import IndexTables, one_at_a_time, session
from soda.surveys.base import FITS_SUFFIXES

Say = Callable[[str], None]  # one line of progress for the operator
_PG_LOCK = 727015  # advisory lock id: one retile run of a database at a time
_OUTSIDE = "_outside"  # copies of files ingested from outside the survey's root


@dataclass
class RetileReport:
    survey: str
    made: int = 0
    current: int = 0          # copies already made with these settings, original unchanged
    removed: int = 0          # copies deleted: stale, orphaned, or all of them (undo)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # not tile-compressed...
    failed: list[tuple[Path, str]] = field(default_factory=list)
    bytes_before: int = 0     # of the files copied in this run
    bytes_after: int = 0
    seconds: float = 0.0
    undone: bool = False

    def summary(self) -> str:
        if self.undone:
            return (f"survey {self.survey}: {self.removed} copies removed, the original files are "
                    f"served again ({self.seconds:.1f} s)")
        growth = (f", {self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB "
                  f"({100 * (self.bytes_after / self.bytes_before - 1):+.1f}%)") if self.bytes_before else ""
        return (f"survey {self.survey}: {self.made} retiled, {self.current} already current, "
                f"{len(self.skipped)} skipped, {len(self.failed)} failed, {self.removed} copies removed"
                f"{growth} in {self.seconds:.1f} s")


def copy_path(folder: Path, root: Path, original: Path) -> Path:
    """Where the copy of ``original`` goes: its path under the survey's ``root``, mirrored
    under ``folder``; a file from elsewhere goes under ``_outside/<digest of its folder>``.
    The file name is always the original's (cutouts name it as SRCFILE)."""
    try:
        return folder / original.relative_to(root)
    except ValueError:
        digest = hashlib.sha256(str(original.parent).encode()).hexdigest()[:16]
        return folder / _OUTSIDE / digest / original.name


@contextlib.contextmanager
def retile_lock(db: pw.Database) -> Iterator[None]:
    """One retile run per database at a time (a run deletes the copies no row names)."""
    with one_at_a_time(db, _PG_LOCK, "retile"):
        yield


@dataclass(frozen=True)
class _Job:
    file_id: int
    original: Path
    size: int
    mtime_ns: int
    copy: Path


def _retile_one(job: _Job, tile: int, lossless: bool) -> RetileResult:
    """In a worker process: the copy of one original, which must still be the indexed file."""
    stat = job.original.stat()
    if (stat.st_size, stat.st_mtime_ns) != (job.size, job.mtime_ns):
        raise NotRetilable("changed since it was ingested (run `cutout ingest` first)")
    result = retile_file(job.original, job.copy, tile, lossless)
    stat = job.original.stat()
    if (stat.st_size, stat.st_mtime_ns) != (job.size, job.mtime_ns):
        job.copy.unlink(missing_ok=True)
        raise NotRetilable("changed while it was copied")
    return result


def _remove(path: Path, folder: Path) -> bool:
    """Delete a copy (only ever inside the copies' folder) and the folders it empties."""
    if not path.is_relative_to(folder):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    for parent in path.parents:
        if parent == folder or not parent.is_relative_to(folder):
            break
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
    return True


def _orphans(folder: Path, named: set[str]) -> list[Path]:
    """Files under the copies' folder that no row names: copies whose original left the
    index, and temporary files of an interrupted run."""
    if not folder.is_dir():
        return []
    found = []
    for parent, _, files in os.walk(folder):
        for name in files:
            path = Path(parent) / name
            ours = name.lower().endswith(FITS_SUFFIXES) or name.endswith(".retile-tmp")
            if ours and str(path) not in named:
                found.append(path)
    return sorted(found)


def _describe(result: RetileResult) -> str:
    planes = "; ".join(f"{p.name or p.hdu} {p.before} -> {p.after} {p.pixels}" for p in result.planes)
    return (f"{result.seconds:.1f} s, {result.bytes_before / 1e6:.1f} -> {result.bytes_after / 1e6:.1f} MB; "
            f"{planes}")


def retile_survey(db: pw.Database, survey: str, root: Path, folder: Path, tile: int = DEFAULT_TILE,
                  lossless: bool = False, jobs: int = 1, say: Say | None = None) -> RetileReport:
    """Make a current square-tiled copy of every good file the index holds for ``survey``
    (those with one already are left alone), in ``folder``; remove stale and orphaned copies."""
    started = time.monotonic()
    say = say or (lambda _: None)
    tables = IndexTables(db)
    File, Retiled = tables.File, tables.Retiled
    report = RetileReport(survey)
    root, folder = Path(os.path.abspath(root)), Path(os.path.abspath(folder))
    with retile_lock(db):
        with session(db):
            files = list(File.select().where((File.survey == survey) & File.problem.is_null())
                         .order_by(File.path))
            rows = {r.file_id: r for r in Retiled.select().join(File).where(File.survey == survey)}
        todo: list[_Job] = []
        for f in files:
            row = rows.get(f.id)
            if row is not None and (row.original, row.size, row.mtime_ns, row.tile, row.lossless) == (
                    f.path, f.size, f.mtime_ns, tile, lossless) and _intact(Path(row.path), row.copy_size):
                report.current += 1
                continue
            todo.append(_Job(f.id, Path(f.path), f.size, f.mtime_ns, copy_path(folder, root, Path(f.path))))
        for n, (job, outcome) in enumerate(_run(todo, tile, lossless, jobs), start=1):
            name = job.original.name
            prefix = f"[{n}/{len(todo)}] {name}"
            old = rows.get(job.file_id)
            if isinstance(outcome, RetileResult):
                _record(db, tables, job, outcome, tile, lossless)
                if old is not None and Path(old.path) != job.copy and _remove(Path(old.path), folder):
                    report.removed += 1
                report.made += 1
                report.bytes_before += outcome.bytes_before
                report.bytes_after += outcome.bytes_after
                say(f"{prefix}: {_describe(outcome)}")
                continue
            if old is not None:  # a stale copy of a file that cannot be copied now
                with session(db):
                    Retiled.delete().where(Retiled.id == old.id).execute()
                if _remove(Path(old.path), folder):
                    report.removed += 1
            if isinstance(outcome, NotRetilable):
                report.skipped.append((job.original, str(outcome)))
                say(f"{prefix}: skipped, {outcome}")
            else:
                report.failed.append((job.original, f"{type(outcome).__name__}: {outcome}"))
                say(f"{prefix}: FAILED, {type(outcome).__name__}: {outcome}")
        report.removed += _remove_orphans(db, tables, folder)
    report.seconds = time.monotonic() - started
    return report


def undo_survey(db: pw.Database, survey: str, folder: Path, say: Say | None = None) -> RetileReport:
    """Forget every copy of ``survey`` (the originals serve again at once), then delete them."""
    started = time.monotonic()
    say = say or (lambda _: None)
    tables = IndexTables(db)
    File, Retiled = tables.File, tables.Retiled
    report = RetileReport(survey, undone=True)
    folder = Path(os.path.abspath(folder))
    with retile_lock(db):
        with session(db), db.atomic():
            rows = list(Retiled.select().join(File).where(File.survey == survey))
            Retiled.delete().where(Retiled.id.in_([r.id for r in rows])).execute()
        for row in rows:
            if _remove(Path(row.path), folder):
                report.removed += 1
                say(f"removed {row.path}")
        report.removed += _remove_orphans(db, tables, folder)
    report.seconds = time.monotonic() - started
    return report


def _intact(copy: Path, size: int) -> bool:
    try:
        return copy.stat().st_size == size
    except OSError:
        return False


def _record(db: pw.Database, tables: IndexTables, job: _Job, result: RetileResult, tile: int,
            lossless: bool) -> None:
    Retiled = tables.Retiled
    values = dict(original=str(job.original), size=job.size, mtime_ns=job.mtime_ns, path=str(job.copy),
                  copy_size=result.bytes_after, tile=tile, lossless=lossless)
    with session(db), db.atomic():
        if not Retiled.update(**values).where(Retiled.file == job.file_id).execute():
            Retiled.create(file=job.file_id, **values)


def _remove_orphans(db: pw.Database, tables: IndexTables, folder: Path) -> int:
    with session(db):
        named = {path for (path,) in tables.Retiled.select(tables.Retiled.path).tuples()}
    return sum(_remove(path, folder) for path in _orphans(folder, named))


def _run(todo: Sequence[_Job], tile: int, lossless: bool,
         jobs: int) -> Iterator[tuple[_Job, RetileResult | Exception]]:
    """Each job with its outcome, in order; ``jobs`` processes at a time (one: in this one)."""
    if jobs <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                yield job, _retile_one(job, tile, lossless)
            except Exception as exc:  # noqa: BLE001 - a damaged file can fail anywhere in astropy
                yield job, exc
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures: list[Future[RetileResult]] = [pool.submit(_retile_one, job, tile, lossless) for job in todo]
        for job, future in zip(todo, futures):
            try:
                yield job, future.result()
            except Exception as exc:  # noqa: BLE001 - a damaged file can fail anywhere in astropy
                yield job, exc
