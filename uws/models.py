"""Persistence of jobs with peewee: tables, database binding, schema migrations.

SQLite (embedded default) and PostgreSQL (production) are both chosen by URL. All
times are stored as naive UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import peewee as pw
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema
from playhouse.pool import PooledPostgresqlDatabase

log = logging.getLogger(__name__)

database_proxy = pw.DatabaseProxy()


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Job(BaseModel):
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

    class Meta:
        table_name = "uws_job"


class Result(BaseModel):
    job = pw.ForeignKeyField(Job, backref="results", on_delete="CASCADE")
    result_id = pw.CharField(max_length=128)
    key = pw.CharField(max_length=512)
    mime_type = pw.CharField(max_length=128, null=True)
    size = pw.BigIntegerField(null=True)
    seq = pw.IntegerField()

    class Meta:
        table_name = "uws_result"
        indexes = ((("job", "result_id"), True),)


class Lock(BaseModel):
    """A lease that lets one process of many run the scheduled sweeps."""

    name = pw.CharField(primary_key=True, max_length=64)
    holder = pw.CharField(max_length=64)
    expires_at = pw.DateTimeField()

    class Meta:
        table_name = "uws_lock"


class SchemaVersion(BaseModel):
    version = pw.IntegerField()

    class Meta:
        table_name = "uws_schema_version"


def _v1(db: pw.Database) -> None:
    db.create_tables([Job, Result, Lock])  # creates today's columns on a new database


def _v2(db: pw.Database) -> None:
    """uws_job.request_id, for databases made before it existed."""
    if "request_id" not in {c.name for c in db.get_columns("uws_job")}:
        migrate_schema(SchemaMigrator.from_database(db).add_column("uws_job", "request_id", Job.request_id))


# Append migrations here; never edit one that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_v1, _v2]


def open_database(url: str) -> pw.Database:
    """A database for ``url``: sqlite:///path or postgresql://user:pass@host:port/db."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:  # sqlite://relative/path
            path = parts.netloc + parts.path
        return pw.SqliteDatabase(
            path or ":memory:",
            pragmas={"journal_mode": "wal", "busy_timeout": 15000, "foreign_keys": 1,
                     "synchronous": "normal"},
            autoconnect=True)
    if scheme in ("postgres", "postgresql"):
        options = dict(parse_qsl(parts.query))
        return PooledPostgresqlDatabase(
            parts.path.lstrip("/"), user=parts.username, password=parts.password,
            host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
            max_connections=int(options.pop("max_connections", 64)),
            stale_timeout=300, timeout=10, connect_timeout=5, autoconnect=True, **options)
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


def bind(db: pw.Database) -> None:
    database_proxy.initialize(db)


def migrate(db: pw.Database) -> int:
    """Create or upgrade the schema; safe to run from several processes at once."""
    bind(db)
    with db.connection_context():
        is_pg = isinstance(db, pw.PostgresqlDatabase)
        if is_pg:  # serialise concurrent starts of several processes
            db.execute_sql("SELECT pg_advisory_lock(727001)")
        try:
            with db.atomic():
                db.create_tables([SchemaVersion], safe=True)
                row = SchemaVersion.select().first()
                current = row.version if row else 0
                for number, step in enumerate(MIGRATIONS, start=1):
                    if number > current:
                        log.info("applying schema migration %d", number)
                        step(db)
                if row is None:
                    SchemaVersion.create(version=len(MIGRATIONS))
                elif current < len(MIGRATIONS):
                    SchemaVersion.update(version=len(MIGRATIONS)).execute()
        finally:
            if is_pg:
                db.execute_sql("SELECT pg_advisory_unlock(727001)")
    return len(MIGRATIONS)
