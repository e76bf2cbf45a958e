"""The job tables (peewee), bound to one database, and their schema migrations.

SQLite (embedded default) and PostgreSQL (production) are both fine. All times are
stored as naive UTC datetimes. ``JobTables(db)`` makes model classes bound to ``db``
alone: there is no module-level database, so two services in one process each talk
to their own.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema


class JobTables:
    """uws_job, uws_result, uws_lock, uws_notice and uws_part as peewee models of one
    database."""

    def __init__(self, db: pw.Database) -> None:
        self.db = db

        class Base(pw.Model):
            class Meta:
                database = db
                legacy_table_names = False

        class Job(Base):
            id = pw.CharField(primary_key=True, max_length=32)
            kind = pw.CharField(max_length=64, index=True)
            owner = pw.CharField(max_length=255, null=True, index=True)
            run_id = pw.CharField(max_length=64, null=True)
            phase = pw.CharField(max_length=16, index=True)
            creation_time = pw.DateTimeField(index=True)
            start_time = pw.DateTimeField(null=True)
            end_time = pw.DateTimeField(null=True)
            execution_duration = pw.IntegerField()
            destruction = pw.DateTimeField(null=True, index=True)
            quote = pw.DateTimeField(null=True)
            parameters = pw.TextField()  # JSON list of [name, value] pairs, in the order given
            error_type = pw.CharField(max_length=16, null=True)  # "fatal" | "transient"
            error_message = pw.TextField(null=True)
            # Execution bookkeeping (not part of the UWS representation).
            queued_at = pw.DateTimeField(null=True)
            heartbeat = pw.DateTimeField(null=True)
            attempts = pw.IntegerField(default=0)
            claim = pw.CharField(max_length=64, null=True)
            request_id = pw.CharField(max_length=64, null=True)  # of the HTTP request that created it
            # The kind's parsed parameters as JSON (uws.kinds), read by the worker.
            typed_parameters = pw.TextField(null=True)
            # A parted job (uws.parts): how many parts it was split into; None: not parted
            # (or not yet planned).
            parts = pw.IntegerField(null=True)
            # An anonymous creator's client address, for a kind's limit per anonymous caller
            # (uws.kinds.KindLimit); None for a user's job (its owner says whose).
            client = pw.CharField(max_length=64, null=True)

            class Meta:
                table_name = "uws_job"

        class Result(Base):
            job = pw.ForeignKeyField(Job, backref="results", on_delete="CASCADE")
            result_id = pw.CharField(max_length=128)
            key = pw.CharField(max_length=512)
            mime_type = pw.CharField(max_length=128, null=True)
            size = pw.BigIntegerField(null=True)
            seq = pw.IntegerField()
            # CRC-32 of the stored bytes, for archives of the results (uws.archive); null
            # for results stored before it was kept.
            crc32 = pw.BigIntegerField(null=True)

            class Meta:
                table_name = "uws_result"
                indexes = ((("job", "result_id"), True), (("job", "seq"), False))

        class Lock(Base):
            """A lease that lets one process of many run the scheduled sweeps."""

            name = pw.CharField(primary_key=True, max_length=64)
            holder = pw.CharField(max_length=64)
            expires_at = pw.DateTimeField()

            class Meta:
                table_name = "uws_lock"

        class Notice(Base):
            """One notice to send when a job ends (NOTIFY, ``uws.notices``), and how its
            delivery went."""

            job = pw.CharField(max_length=32, index=True)
            target = pw.TextField()  # mailto:... or https://...
            link = pw.TextField()    # the job list's public URL: the job's is link/<id>
            # waiting (the job runs), sending (due or retrying), delivered, failed
            state = pw.CharField(max_length=16, index=True)
            phase = pw.CharField(max_length=16, null=True)  # the final phase it tells
            attempts = pw.IntegerField(default=0)
            due = pw.DateTimeField(null=True)  # while sending: when the next attempt is due
            last_error = pw.TextField(null=True)
            finished = pw.DateTimeField(null=True)

            class Meta:
                table_name = "uws_notice"

        class Part(Base):
            """One part of a parted job (``uws.parts``): run by any worker, on its own."""

            job = pw.CharField(max_length=32, index=True)
            seq = pw.IntegerField()  # 0, 1, ... in the order the kind planned them
            key = pw.TextField()     # the kind's own description of the part
            units = pw.IntegerField()
            state = pw.CharField(max_length=16, index=True)  # queued, running, done, failed
            attempts = pw.IntegerField(default=0)
            claim = pw.CharField(max_length=64, null=True)
            queued_at = pw.DateTimeField(null=True)
            heartbeat = pw.DateTimeField(null=True)
            started = pw.DateTimeField(null=True)
            ended = pw.DateTimeField(null=True)
            done = pw.IntegerField(default=0)    # units done, once ended
            failed = pw.IntegerField(default=0)  # units failed, once ended
            error = pw.TextField(null=True)      # why the part failed for good, if it did

            class Meta:
                table_name = "uws_part"
                indexes = ((("job", "seq"), True),)

        self.Job = Job
        self.Result = Result
        self.Lock = Lock
        self.Notice = Notice
        self.Part = Part


def _v1(db: pw.Database) -> None:
    tables = JobTables(db)
    db.create_tables([tables.Job, tables.Result, tables.Lock])  # today's columns on a new database


def _add_job_column(db: pw.Database, name: str) -> None:
    """Add a column of today's uws_job to a database made before it existed."""
    if name not in {c.name for c in db.get_columns("uws_job")}:
        field = JobTables(db).Job._meta.fields[name]
        migrate_schema(SchemaMigrator.from_database(db).add_column("uws_job", name, field))


def _v2(db: pw.Database) -> None:
    """uws_job.request_id, for databases made before it existed."""
    _add_job_column(db, "request_id")


def _v3(db: pw.Database) -> None:
    """uws_job.typed_parameters: a job's parameters as its kind parsed them."""
    _add_job_column(db, "typed_parameters")


def _v4(db: pw.Database) -> None:
    """uws_notice: the notices to send when jobs end."""
    db.create_tables([JobTables(db).Notice])


def _v5(db: pw.Database) -> None:
    """uws_part and uws_job.parts: jobs split into parts run by any worker."""
    _add_job_column(db, "parts")
    db.create_tables([JobTables(db).Part])


def _v6(db: pw.Database) -> None:
    """uws_result.crc32: each result's checksum, kept for archives of a job's results."""
    if "crc32" not in {c.name for c in db.get_columns("uws_result")}:
        field = JobTables(db).Result._meta.fields["crc32"]
        migrate_schema(SchemaMigrator.from_database(db).add_column("uws_result", "crc32", field))


def _v7(db: pw.Database) -> None:
    """uws_job.client: an anonymous creator's address, for limits per anonymous caller."""
    _add_job_column(db, "client")


def _v8(db: pw.Database) -> None:
    """An index on uws_result (job, seq): a job's next result place read from it, not
    counted over its results (a job may have a million)."""
    db.execute_sql("CREATE INDEX IF NOT EXISTS uws_result_job_id_seq ON uws_result (job_id, seq)")


# Append migrations here; never edit one that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
