"""The service's database: opened from its URL, and one migration runner for every table.

Each component (``uws`` jobs, ``auth`` tokens and SAML requests) lists its migrations;
the runner records how far each has got in a ``<component>_schema_version`` table and
applies the rest, in order, once, even when several processes start together.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlsplit

import peewee as pw
import psycopg2
from peewee import PostgresqlDatabase
from playhouse.pool import PooledPostgresqlDatabase

from soda.ops.query_deadline import QueryDeadlines

log = logging.getLogger(__name__)

Migration = Callable[[pw.Database], None]
Component = tuple[str, Sequence[Migration]]

_PG_LOCK = 727001  # advisory lock id that serialises concurrent starts on PostgreSQL
# How long past its statement timeout a call may wait before the client cuts its connection:
# a running server has answered by then (with the statement timeout's cancellation).
_DEADLINE_MARGIN = 2.0


class _Unanswered(PostgresqlDatabase):
    """Opening a connection, refused at once for a few seconds after the server last failed
    to answer (a connection cut at its deadline, or a connect that timed out).

    The pool opens connections under its lock: without this, every request waiting for that
    lock would wait out its own connect timeout in turn behind a frozen server.
    """

    deadlines: QueryDeadlines | None
    ping_seconds: float
    _failed_at = -math.inf

    def _silent_since(self) -> float:
        cut = self.deadlines.last_cut if self.deadlines is not None else -math.inf
        return max(cut, self._failed_at)

    def _connect(self):  # type: ignore[no-untyped-def]
        if time.monotonic() - self._silent_since() < self.ping_seconds:
            raise psycopg2.OperationalError(
                "the database did not answer a moment ago; not asked again for a few seconds")
        try:
            return super()._connect()
        except psycopg2.OperationalError:
            self._failed_at = time.monotonic()
            raise


class BoundedPostgresqlDatabase(PooledPostgresqlDatabase, _Unanswered):
    """Pooled PostgreSQL whose every call ends within its deadline, even on a frozen server."""

    def __init__(self, *args: object, deadlines: QueryDeadlines | None = None,
                 ping_seconds: float = 5.0, **kwargs: object) -> None:
        self.deadlines = deadlines
        self.ping_seconds = ping_seconds
        super().__init__(*args, **kwargs)

    def _bounded(self, conn: object = None, seconds: float | None = None
                 ) -> contextlib.AbstractContextManager[None]:
        if self.deadlines is None:
            return contextlib.nullcontext()
        # Taking a connection from the pool is bounded below; opening one by connect_timeout.
        return self.deadlines.watch(conn or self.connection(), seconds)

    # The pool asks the server whether a connection still works when handing it out (a
    # round trip, under the pool's lock: a trivial one, bounded like connecting) and rolls
    # back one returned mid-transaction.
    def _is_closed(self, conn):  # type: ignore[no-untyped-def]
        if time.monotonic() - self._silent_since() < self.ping_seconds:
            return True  # the server is not answering: drop pooled connections unasked
        with self._bounded(conn, self.ping_seconds):
            return super()._is_closed(conn)

    def _can_reuse(self, conn):  # type: ignore[no-untyped-def]
        with self._bounded(conn, self.ping_seconds):
            return super()._can_reuse(conn)

    def execute_sql(self, sql, params=None):  # type: ignore[no-untyped-def]
        with self._bounded():
            return super().execute_sql(sql, params)

    def commit(self):  # type: ignore[no-untyped-def]
        with self._bounded():
            return super().commit()

    def rollback(self):  # type: ignore[no-untyped-def]
        with self._bounded():
            return super().rollback()

    def close_all(self) -> None:
        super().close_all()
        if self.deadlines is not None:
            self.deadlines.close()


class ThreadSqliteDatabase(pw.SqliteDatabase):
    """SQLite with each thread's connection kept open between units of work: opening one and
    setting its pragmas cost more than most of the queries a request makes (about a
    millisecond a request). A thread's connection ends with the thread; ``close_for_good``
    closes the calling thread's at shutdown."""

    def close(self) -> bool:
        return False

    def close_for_good(self) -> bool:
        return super().close()


def open_database(url: str, *, connect_timeout: int = 5, statement_timeout: float = 10.0) -> pw.Database:
    """A database for ``url``: sqlite:///path or postgresql://user:pass@host:port/db.

    PostgreSQL: ``connect_timeout`` (seconds) bounds opening a connection, and the server
    cancels any statement running longer than ``statement_timeout`` seconds (0: never);
    a call still unanswered a little after that (a frozen server cannot cancel anything)
    has its connection cut by the client. A database that stops answering fails requests
    instead of holding them.
    SQLite waits at most its busy timeout for a lock.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:  # sqlite://relative/path
            path = parts.netloc + parts.path
        return ThreadSqliteDatabase(
            path or ":memory:",
            pragmas={"journal_mode": "wal", "busy_timeout": 15000, "foreign_keys": 1,
                     "synchronous": "normal"},
            autoconnect=True)
    if scheme in ("postgres", "postgresql"):
        options = dict(parse_qsl(parts.query))
        server_options = options.pop("options", "")
        if statement_timeout > 0:
            server_options = f"-c statement_timeout={round(statement_timeout * 1000)} {server_options}".strip()
        if server_options:
            options["options"] = server_options
        options.setdefault("connect_timeout", str(connect_timeout))
        deadlines = QueryDeadlines(statement_timeout + _DEADLINE_MARGIN) if statement_timeout > 0 else None
        return BoundedPostgresqlDatabase(
            parts.path.lstrip("/"), deadlines=deadlines, ping_seconds=connect_timeout, user=parts.username, password=parts.password,
            host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
            max_connections=int(options.pop("max_connections", 64)),
            stale_timeout=300, timeout=10, autoconnect=True, **options)
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


def close_database(db: pw.Database) -> None:
    if isinstance(db, PooledPostgresqlDatabase):
        db.close_all()
    elif isinstance(db, ThreadSqliteDatabase):
        db.close_for_good()
    elif not db.is_closed():
        db.close()


def version_table(db: pw.Database, component: str) -> type[pw.Model]:
    class SchemaVersion(pw.Model):
        version = pw.IntegerField()

        class Meta:
            database = db
            table_name = f"{component}_schema_version"

    return SchemaVersion


def migrate(db: pw.Database, components: Sequence[Component]) -> dict[str, int]:
    """Create or upgrade every component's tables; safe from several processes at once.

    Returns the schema version of each component.
    """
    versions = {}
    with db.connection_context():
        is_pg = isinstance(db, pw.PostgresqlDatabase)
        if is_pg:
            db.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_LOCK,))
        try:
            for name, steps in components:
                versions[name] = _migrate_one(db, name, steps)
        finally:
            if is_pg:
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_LOCK,))
    return versions


def _migrate_one(db: pw.Database, name: str, steps: Sequence[Migration]) -> int:
    table = version_table(db, name)
    with db.atomic():
        db.create_tables([table], safe=True)
        row = table.select().first()
        current = row.version if row else 0
        for number, step in enumerate(steps, start=1):
            if number > current:
                log.info("applying schema migration %s %d", name, number)
                step(db)
        if row is None:
            table.create(version=len(steps))
        elif current < len(steps):
            table.update(version=len(steps)).execute()
    return len(steps)
