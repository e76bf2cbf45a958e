"""The audit table on SQLite and on real PostgreSQL: batched writes, purges by age, and
the statistics of /stats.json checked against records of known values."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import peewee as pw
import pytest

from conftest import eventually
from soda.audit import records
from soda.audit.records import AuditLog, Served, keep_until
from soda.audit.statistics import period, usage
from soda.audit.tables import MIGRATIONS, AuditTables
from soda.ops.database import close_database, migrate, open_database

NOW = dt.datetime(2026, 12, 1, 6, 30, 15)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[pw.Database]:  # type: ignore[no-untyped-def]
    url = (f"sqlite:///{tmp_path / 'audit.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    database = open_database(url)
    migrate(database, [("audit", MIGRATIONS)])
    with database.connection_context():
        AuditTables(database).Served.delete().execute()  # the PostgreSQL database is shared by the session
    yield database
    close_database(database)


def served(at: dt.datetime, user: str | None = "alice", kind: str = "sync", survey: str = "des",
           fmt: str = "fits", cutouts: int = 1, size: int = 100, latency: float | None = 10.0,
           job: str | None = None) -> Served:
    return Served(at, user, kind, survey, fmt, cutouts, size, latency_ms=latency,
                  status=200 if kind == "sync" else None, client="127.0.0.1" if kind == "sync" else None,
                  job_id=job)


def write(db: pw.Database, rows: list[Served]) -> AuditLog:
    log = AuditLog(db, batch=7)  # several batches
    for row in rows:
        log.record(row)
    assert log.flush() == len(rows) and log.dropped == 0
    log.close()
    return log


def test_records_are_written_in_batches_with_every_field(db) -> None:  # type: ignore[no-untyped-def]
    at = NOW.replace(microsecond=123456)
    write(db, [served(at, None, fmt="png", size=5, latency=2.5)] +
          [served(NOW, job=f"j{i}", kind="bulk", latency=None) for i in range(20)])
    table = AuditTables(db).Served
    with db.connection_context():
        assert table.select().count() == 21
        first = table.select().where(table.user_id == "anonymous").get()
    assert (first.at, first.kind, first.survey, first.format, first.cutouts, first.bytes, first.latency_ms,
            first.status, first.client, first.job_id) == (at, "sync", "des", "png", 1, 5, 2.5, 200, "127.0.0.1", None)


def test_the_writer_thread_writes_queued_records_by_itself(db) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db, flush_seconds=0.1)
    log.record(served(NOW))
    table = AuditTables(db).Served

    def written() -> int:
        with db.connection_context():
            return table.select().count()
    assert eventually(written, timeout=10) == 1
    log.record(served(NOW))
    log.close()  # writes what is left
    assert written() == 2 and log.written == 2
    log.record(served(NOW))  # after close: ignored, never raised
    assert log.flush() == 0


def test_closing_writes_what_waits(db) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(db, flush_seconds=3600)  # the thread would not write for an hour
    for _ in range(3):
        log.record(served(NOW))
    log.close()
    with db.connection_context():
        assert AuditTables(db).Served.select().count() == 3


def test_a_failed_write_is_logged_and_dropped_never_raised(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'none.sqlite'}")  # no audit table
    seen: list[tuple[int, int]] = []
    log = AuditLog(db, observe=lambda w, d: seen.append((w, d)), max_pending=3)
    for _ in range(5):
        log.record(served(NOW))  # beyond max_pending: the oldest go
    assert log.dropped == 2
    with caplog.at_level(logging.WARNING, logger="soda.audit.records"):
        assert log.flush() == 0
    assert log.dropped == 5 and log.written == 0 and seen == [(0, 3)]
    assert "audit: 3 records not written" in caplog.text
    log.close()
    close_database(db)


def test_purge_deletes_records_older_than_the_days_kept(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(records, "PURGE_BATCH", 3)  # several statements
    old = [served(NOW - dt.timedelta(days=91, hours=i)) for i in range(10)]
    kept = [served(NOW - dt.timedelta(days=89)), served(NOW)]
    log = write(db, old + kept)
    assert log.purge(keep_until(90, NOW)) == 10
    assert log.purge(keep_until(90, NOW)) == 0
    table = AuditTables(db).Served
    with db.connection_context():
        assert sorted(r.at for r in table.select()) == [k.at for k in kept]
    assert log.purge(keep_until(0, NOW + dt.timedelta(seconds=1))) == 2  # 0 days: nothing kept


def test_a_purge_is_bounded_per_call(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(records, "PURGE_BATCH", 2)
    monkeypatch.setattr(records, "PURGE_BATCHES", 2)
    log = write(db, [served(NOW - dt.timedelta(days=200)) for _ in range(7)])
    assert [log.purge(NOW), log.purge(NOW), log.purge(NOW)] == [4, 3, 0]


def test_the_period_is_whole_utc_days_ending_today() -> None:
    since, days = period(3, NOW)
    assert since == dt.datetime(2026, 11, 29) and days == [dt.date(2026, 11, d) for d in (29, 30)] + [dt.date(2026, 12, 1)]
    assert period(1, NOW)[0] == dt.datetime(2026, 12, 1)


def test_statistics_of_known_records(db) -> None:  # type: ignore[no-untyped-def]
    day = dt.timedelta(days=1)
    rows = [
        # /sync latencies 1..100 ms today: nearest-rank p50 = 50, p90 = 90, p99 = 99
        *[served(NOW - dt.timedelta(minutes=i), "alice", fmt="png" if i % 4 == 0 else "fits", cutouts=1,
                 size=10, latency=float(i)) for i in range(1, 101)],
        # two days ago: a bulk job of two parts by bob, an async job by carol, an anonymous /sync (204)
        served(NOW - 2 * day, "bob", "bulk", "lsst", cutouts=500, size=5000, latency=9000.0, job="b1"),
        served(NOW - 2 * day, "bob", "bulk", "lsst", cutouts=300, size=3000, latency=7000.0, job="b1"),
        served(NOW - 2 * day, "carol", "async", "des", cutouts=4, size=40, latency=500.0, job="a1"),
        served(NOW - 2 * day, None, cutouts=0, size=0, latency=1000.0),
        # before the period (3 days): not counted
        served(NOW - 4 * day, "dave", cutouts=1000, size=1, latency=99999.0),
    ]
    write(db, rows)
    stats = usage(db, 3, NOW, {"COMPLETED": 2, "EXECUTING": 1, "ERROR": 0})
    assert stats["since"] == "2026-11-29T00:00:00Z" and stats["until"] == "2026-12-01T06:30:15Z"
    assert stats["days"] == 3
    assert stats["totals"] == {"cutouts": 100 + 800 + 4, "bytes": 1000 + 8000 + 40, "requests": 101 + 2,
                               "users": 4}
    assert stats["per_day"] == [
        {"day": "2026-11-29", "cutouts": 804, "bytes": 8040},
        {"day": "2026-11-30", "cutouts": 0, "bytes": 0},  # a day with nothing
        {"day": "2026-12-01", "cutouts": 100, "bytes": 1000}]
    assert stats["by_survey"] == [{"survey": "lsst", "cutouts": 800, "bytes": 8000},
                                  {"survey": "des", "cutouts": 104, "bytes": 1040}]
    assert stats["by_format"] == [{"format": "fits", "cutouts": 879, "bytes": 8790},
                                  {"format": "png", "cutouts": 25, "bytes": 250}]
    assert stats["by_kind"] == [{"kind": "bulk", "cutouts": 800, "bytes": 8000},
                                {"kind": "sync", "cutouts": 100, "bytes": 1000},
                                {"kind": "async", "cutouts": 4, "bytes": 40}]
    assert stats["jobs_by_phase"] == [{"phase": "COMPLETED", "jobs": 2}, {"phase": "EXECUTING", "jobs": 1}]
    assert stats["top_users"] == [{"user": "bob", "cutouts": 800, "bytes": 8000},
                                  {"user": "alice", "cutouts": 100, "bytes": 1000},
                                  {"user": "carol", "cutouts": 4, "bytes": 40},
                                  {"user": "anonymous", "cutouts": 0, "bytes": 0}]
    assert stats["latency_ms"] == {"count": 101, "p50": 51.0, "p90": 91.0, "p99": 100.0, "max": 1000.0}


def test_latency_percentiles_by_nearest_rank(db) -> None:  # type: ignore[no-untyped-def]
    write(db, [served(NOW, latency=float(i)) for i in range(1, 101)])
    assert usage(db, 1, NOW, {})["latency_ms"] == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0,
                                                   "max": 100.0}


def test_top_users_are_at_most_ten_most_cutouts_first(db) -> None:  # type: ignore[no-untyped-def]
    write(db, [served(NOW, f"user{i:02d}", cutouts=i, size=1) for i in range(1, 13)] +
          [served(NOW, "tied-a", cutouts=5, size=9), served(NOW, "tied-b", cutouts=5, size=9)])
    top = usage(db, 1, NOW, {})["top_users"]
    assert [u["user"] for u in top] == [f"user{i:02d}" for i in range(12, 5, -1)] + ["tied-a", "tied-b", "user05"]


def test_statistics_without_records(db) -> None:  # type: ignore[no-untyped-def]
    stats = usage(db, 2, NOW, {})
    assert stats["totals"] == {"cutouts": 0, "bytes": 0, "requests": 0, "users": 0}
    assert [d["cutouts"] for d in stats["per_day"]] == [0, 0]
    assert stats["by_survey"] == stats["by_format"] == stats["top_users"] == stats["jobs_by_phase"] == []
    assert [k["kind"] for k in stats["by_kind"]] == ["sync", "async", "bulk"]
    assert stats["latency_ms"] == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
