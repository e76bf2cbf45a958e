"""Writing audit records: cheap for the caller, never a reason for a cutout to fail.

``AuditLog.record`` appends to an in-process queue (a lock and a deque); a thread of its
own writes what is queued every ``flush_seconds`` or as soon as ``batch`` records wait, in
one INSERT per batch, and ``close`` writes the rest at shutdown. A failed write is logged
and its records dropped (counted); so are records beyond ``max_pending`` waiting while the
database does not answer, so memory stays bounded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator

import peewee as pw

from soda.audit.tables import AuditTables

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Rows deleted by one statement of a purge, and statements per purge at most: a purge of a
# long backlog takes several sweeps rather than holding one for long.
PURGE_BATCH = 10_000
PURGE_BATCHES = 100


@dataclasses.dataclass(frozen=True)
class Served:
    """One audit record: a /sync answer, an async job's results, a part of a bulk job."""

    at: dt.datetime          # naive UTC
    user: str | None         # None: anonymous
    kind: str                # sync, async, bulk
    survey: str
    format: str              # fits, png, jpeg
    cutouts: int
    bytes: int
    latency_ms: float | None = None
    status: int | None = None
    client: str | None = None
    job_id: str | None = None

    def row(self) -> tuple[object, ...]:
        """The values of ``COLUMNS``, cut to the columns' lengths."""
        return (self.at, (self.user or ANONYMOUS)[:255], self.client[:64] if self.client else None,
                self.kind[:8], self.survey[:64], self.format[:16], int(self.cutouts), int(self.bytes),
                self.latency_ms, self.status, self.job_id[:64] if self.job_id else None)


COLUMNS = ("at", "user_id", "client", "kind", "survey", "format", "cutouts", "bytes", "latency_ms", "status",
           "job_id")
# Rows of one INSERT: within SQLite's oldest limit of 999 parameters a statement.
ROWS_PER_INSERT = 999 // len(COLUMNS)


# Told how many records each flush wrote and dropped (e.g. metrics).
Observer = Callable[[int, int], None]


def format_name(extension: str) -> str:
    """A result's file extension as the audit names its format."""
    return "jpeg" if extension.lower() in ("jpg", "jpeg") else extension.lower()


@contextlib.contextmanager
def session(db: pw.Database) -> Iterator[None]:
    if not db.is_closed():
        yield
        return
    with db.connection_context():
        yield


class AuditLog:
    """The audit records of one process, written in batches by a thread of its own."""

    def __init__(self, db: pw.Database, *, enabled: bool = True, flush_seconds: float = 1.0,
                 batch: int = 500, max_pending: int = 10_000, observe: Observer | None = None) -> None:
        self.db = db
        self.tables = AuditTables(db)
        self.enabled = enabled
        self.flush_seconds = flush_seconds
        self.batch = batch
        self.max_pending = max_pending
        self.observe = observe
        self.written = 0
        self.dropped = 0
        self._pending: collections.deque[Served] = collections.deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: the thread's, or close's
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def record(self, served: Served) -> None:
        """Queue one record; never raises and never waits for the database."""
        if not self.enabled:
            return
        try:
            with self._lock:
                if self._stopped:
                    return
                if len(self._pending) >= self.max_pending:
                    self._pending.popleft()
                    self.dropped += 1
                self._pending.append(served)
                waiting = len(self._pending)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()
            if waiting >= self.batch:
                self._wake.set()
        except Exception:  # noqa: BLE001 - an audit record is never worth a failed cutout
            log.exception("audit record not queued")

    def _run(self) -> None:
        try:
            while not self._stopped:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                self.flush()
        finally:
            close = getattr(self.db, "close_for_good", None)  # SQLite: this thread's connection
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def flush(self) -> int:
        """Write every queued record now; returns how many were written."""
        total = 0
        with self._flushing:
            while True:
                with self._lock:
                    rows = [self._pending.popleft() for _ in range(min(self.batch, len(self._pending)))]
                if not rows:
                    return total
                try:
                    self._insert(rows)
                except Exception as exc:  # noqa: BLE001 - logged, never raised to a cutout
                    log.warning("audit: %d records not written: %s", len(rows), exc)
                    with self._lock:
                        self.dropped += len(rows)
                    self._observed(0, len(rows))
                    return total
                total += len(rows)
                with self._lock:
                    self.written += len(rows)
                self._observed(len(rows), 0)

    def _insert(self, rows: list[Served]) -> None:
        """Multi-row INSERTs in one transaction, written as SQL once: peewee's query
        builder took about 0.2 ms a row, longer than the database."""
        sqlite = isinstance(self.db, pw.SqliteDatabase)
        head = f'INSERT INTO "audit_served" ({", ".join(chr(34) + c + chr(34) for c in COLUMNS)}) VALUES '
        one = "(" + ", ".join([self.db.param] * len(COLUMNS)) + ")"
        with session(self.db), self.db.atomic():
            for start in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[start:start + ROWS_PER_INSERT]
                values: list[object] = []
                for served in chunk:
                    row = served.row()
                    # SQLite: the text peewee's DateTimeField writes and reads back.
                    values += (str(row[0]) if sqlite else row[0], *row[1:])
                self.db.execute_sql(head + ", ".join([one] * len(chunk)), values)

    def _observed(self, written: int, dropped: int) -> None:
        if self.observe is not None:
            with contextlib.suppress(Exception):
                self.observe(written, dropped)

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()

    def purge(self, before: dt.datetime) -> int:
        """Delete the records older than ``before`` (a bounded number per call); how many."""
        served = self.tables.Served
        deleted = 0
        with session(self.db):
            for _ in range(PURGE_BATCHES):
                oldest = served.select(served.id).where(served.at < before).order_by(served.id).limit(PURGE_BATCH)
                count = served.delete().where(served.id.in_(oldest)).execute()
                deleted += count
                if count < PURGE_BATCH:
                    break
        return deleted


def keep_until(keep_days: int, now: dt.datetime) -> dt.datetime:
    """The oldest time a record is kept at, ``keep_days`` before ``now``."""
    return now - dt.timedelta(days=keep_days)
