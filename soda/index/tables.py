"""The index tables (peewee), bound to one database, and their schema migrations.

``index_file``: every file an ingest walked, with its size and mtime (how a re-run tells
a changed file) and, for a bad file, why. ``index_image``: the images of the good files.
``index_cell``: the HEALPix cells (nested, order ``CELL_ORDER``) each image's footprint
may touch, indexed on the cell, so a position finds its images without a scan.
``index_retiled``: the square-tiled copies `cutout retile` made of indexed files, with the
original's size and mtime when it was copied (the copy serves only while they still match).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee as pw

from soda.surveys.locks import exclusive

# Order 8: cells of about 0.23 degrees, so a DES tile (0.73 degrees a side) covers a few
# dozen, a small image one to four.
CELL_ORDER = 8


@contextlib.contextmanager
def session(db: pw.Database) -> Iterator[None]:
    """One connection for a unit of work (the pool's, on PostgreSQL), or the one this
    thread already holds."""
    if not db.is_closed():
        yield
        return
    db.connect()
    try:
        yield
    finally:
        db.close()


@contextlib.contextmanager
def one_at_a_time(db: pw.Database, pg_lock: int, name: str) -> Iterator[None]:
    """One holder per database at a time, across processes: a PostgreSQL advisory lock
    (``pg_lock``, across hosts too), else a lock file beside the SQLite file (``.<name>-lock``)."""
    if isinstance(db, pw.PostgresqlDatabase):
        with session(db):
            db.execute_sql("SELECT pg_advisory_lock(%s)", (pg_lock,))
            try:
                yield
            finally:
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (pg_lock,))
        return
    database = str(db.database)
    if database in ("", ":memory:"):
        yield
        return
    with exclusive(Path(f"{database}.{name}-lock")):
        yield


class IndexTables:
    """index_file, index_image and index_cell as peewee models of one database."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db

        class Base(pw.Model):
            class Meta:
                database = db
                legacy_table_names = False

        class File(Base):
            survey = pw.CharField(max_length=64)
            path = pw.TextField()
            size = pw.BigIntegerField()
            mtime_ns = pw.BigIntegerField()
            problem = pw.TextField(null=True)  # why the file is bad; null when good

            class Meta:
                table_name = "index_file"
                indexes = ((("survey", "path"), True),)

        class Image(Base):
            file = pw.ForeignKeyField(File, backref="images", on_delete="CASCADE")
            survey = pw.CharField(max_length=64)
            name = pw.CharField(max_length=255)
            field = pw.CharField(max_length=255)
            band = pw.CharField(max_length=64)
            path = pw.TextField()
            hdus = pw.TextField()  # JSON list, science first
            ny = pw.IntegerField()
            nx = pw.IntegerField()
            pixel_scale = pw.DoubleField()  # arcsec per pixel
            vertices = pw.TextField()  # JSON [[ra, dec], ...] round the edge
            ra = pw.DoubleField()
            dec = pw.DoubleField()
            radius = pw.DoubleField()  # degrees, centre to farthest vertex
            extra = pw.TextField()  # JSON object

            class Meta:
                table_name = "index_image"
                indexes = ((("survey", "name"), True), (("survey", "field"), False),
                           (("survey", "band"), False))

        class Cell(Base):
            image = pw.ForeignKeyField(Image, backref="cells", on_delete="CASCADE")
            cell = pw.BigIntegerField(index=True)

            class Meta:
                table_name = "index_cell"
                primary_key = pw.CompositeKey("cell", "image")

        class Retiled(Base):
            file = pw.ForeignKeyField(File, unique=True, on_delete="CASCADE")
            original = pw.TextField()  # the original's path, size and mtime when copied
            size = pw.BigIntegerField()
            mtime_ns = pw.BigIntegerField()
            path = pw.TextField()  # the copy
            copy_size = pw.BigIntegerField()
            tile = pw.IntegerField()  # pixels on a side
            lossless = pw.BooleanField()  # quantised floats stored unquantised

            class Meta:
                table_name = "index_retiled"

        self.File = File
        self.Image = Image
        self.Cell = Cell
        self.Retiled = Retiled

    @property
    def models(self) -> list[type[pw.Model]]:
        return [self.File, self.Image, self.Cell, self.Retiled]


def _v1(db: pw.Database) -> None:
    tables = IndexTables(db)
    db.create_tables([tables.File, tables.Image, tables.Cell])


def _v2(db: pw.Database) -> None:
    db.create_tables([IndexTables(db).Retiled])


MIGRATIONS: list[Callable[[pw.Database], None]] = [_v1, _v2]
