"""Audit records written by real /sync requests, async jobs and bulk jobs (the app's own
Dramatiq workers), on SQLite and on real PostgreSQL; /stats.json for operators only; a
failed audit write never fails a cutout; the sweeps and `cutout audit purge` purge by age."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator

import httpx
import pytest

from conftest import app_client, assert_uws, eventually, header_identity
from dali.timestamps import utcnow
from soda.audit.records import AuditLog, Served
from soda.audit.tables import AuditTables
from soda.ops.cli import main
from soda.ops.runtime import Runtime

DES = (24.9655, -44.9583)
DID = "ivo://demo.cutout/des?DES0139-4457_r"
UWS_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path, demo_root) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    env = {} if request.param == "sqlite" else {"CUTOUT_DATABASE_URL": request.getfixturevalue("postgres_url")}
    with app_client(tmp_path / "data", demo_root, identify=header_identity, CUTOUT_ANONYMOUS_ASYNC="open",
                    CUTOUT_ANONYMOUS_RATE_LIMIT="0", CUTOUT_TRUSTED_PROXIES="127.0.0.1", **env) as client:
        with runtime_of(client).db.connection_context():
            AuditTables(runtime_of(client).db).Served.delete().execute()  # PostgreSQL is shared by the session
        yield client


def runtime_of(client: httpx.Client) -> Runtime:
    return client.app_state.runtime  # type: ignore[attr-defined,no-any-return]


def rows(client: httpx.Client) -> list:  # type: ignore[type-arg]
    runtime = runtime_of(client)
    runtime.audit.flush()
    table = AuditTables(runtime.db).Served
    with runtime.db.connection_context():
        return list(table.select().order_by(table.id))


def finished(client: httpx.Client, job: str, user: str) -> str:
    return eventually(lambda: (p := client.get(job + "/phase", headers={"X-Test-User": user}).text)
                      in ("COMPLETED", "ERROR") and p, timeout=60)


def result_sizes(client: httpx.Client, job: str, user: str) -> dict[str, int]:
    doc = assert_uws(client.get(job, headers={"X-Test-User": user}).content)
    return {r.get("id"): int(r.get("size")) for r in doc.iterfind("uws:results/uws:result", UWS_NS)}


def test_each_answered_sync_request_is_one_record(service: httpx.Client) -> None:
    started = utcnow()
    fits = service.get("/sync", params={"POS": f"CIRCLE {DES[0]} {DES[1]} 0.002", "FILTER": ["g", "r"]},
                       headers={"X-Test-User": "alice", "X-Forwarded-For": "198.51.100.7"})
    png = service.get("/sync", params={"ID": DID, "CIRCLE": f"{DES[0]} {DES[1]} 0.002",
                                       "RESPONSEFORMAT": "image/jpeg"})
    empty = service.get("/sync", params={"ID": DID, "CIRCLE": "24.9655 -40 0.01"})  # no pixels of it
    bad = service.get("/sync", params={"ID": DID, "CIRCLE": "bad"}, headers={"X-Test-User": "alice"})
    assert (fits.status_code, png.status_code, empty.status_code, bad.status_code) == (200, 200, 204, 400)
    found = rows(service)
    assert len(found) == 3  # the refused request cut nothing
    a, b, c = found
    assert (a.user_id, a.client, a.kind, a.survey, a.format, a.cutouts, a.bytes, a.status) == (
        "alice", "198.51.100.7", "sync", "des", "fits", 2, len(fits.content), 200)
    assert (b.user_id, b.client, b.format, b.cutouts, b.bytes) == ("anonymous", "127.0.0.1", "jpeg", 1,
                                                                   len(png.content))
    assert (c.cutouts, c.bytes, c.status, c.survey) == (0, 0, 204, "des")
    for record in found:
        assert started <= record.at <= utcnow() and record.latency_ms > 0 and record.job_id is None


def test_an_async_job_is_one_record_of_its_results(service: httpx.Client) -> None:
    r = service.post("/async", data={"POS": [f"CIRCLE {DES[0]} {DES[1]} 0.002", "CIRCLE 1.5 60 0.01"],
                                     "FILTER": ["g", "r"], "PHASE": "RUN"}, headers={"X-Test-User": "bob"})
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    assert finished(service, job, "bob") == "COMPLETED"
    sizes = result_sizes(service, job, "bob")
    cut = {k: v for k, v in sizes.items() if k.endswith(".fits")}
    assert len(cut) == 2 and len(sizes) == 4  # two positions x two bands; one position off every survey
    [record] = rows(service)
    assert (record.user_id, record.kind, record.survey, record.format, record.cutouts, record.bytes,
            record.job_id, record.client) == ("bob", "async", "des", "fits", 2, sum(cut.values()),
                                              job.rsplit("/", 1)[1], None)
    assert record.latency_ms > 0


def test_a_bulk_job_is_one_record_per_part_never_per_row(service: httpx.Client) -> None:
    ra, dec = DES
    table = (f"ra,dec,id\n{ra},{dec},a\n{ra + 0.01},{dec},b\n{ra - 0.01},{dec},c\n1.5,60,nowhere\n"
             f"53.8444,-29.0193,lsst\n")
    r = service.post("/bulk", data={"UPLOAD": "positions,param:positions", "FILTER": "r", "RADIUS": "0.001",
                                    "PHASE": "RUN"},
                     files={"positions": ("positions.csv", table, "text/csv")}, headers={"X-Test-User": "carol"})
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    assert finished(service, job, "carol") == "COMPLETED"
    sizes = result_sizes(service, job, "carol")
    found = rows(service)
    assert len(found) == 2  # two parts: the DES tile's three rows and the LSST patch's one
    by_survey = {record.survey: record for record in found}
    assert sorted(by_survey) == ["des", "lsst"]
    assert (by_survey["des"].cutouts, by_survey["lsst"].cutouts) == (3, 1)
    assert {(r.user_id, r.kind, r.format, r.job_id) for r in found} == {("carol", "bulk", "fits", job.rsplit("/", 1)[1])}
    # The parts' bytes: their FITS files and their manifest lines; not the job's own manifests.
    parts = {k: v for k, v in sizes.items() if k.endswith(".fits") or k.startswith("manifest-part-")}
    assert sum(r.bytes for r in found) == sum(parts.values()) and len(parts) == 4 + 2


def test_stats_json_for_operators(service: httpx.Client) -> None:
    service.get("/sync", params={"POS": f"CIRCLE {DES[0]} {DES[1]} 0.002", "FILTER": "r"},
                headers={"X-Test-User": "alice"})
    runtime_of(service).audit.flush()
    r = service.get("/stats.json", params={"days": "2"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    stats = r.json()
    assert stats["days"] == 2 and [d["day"] for d in stats["per_day"]] == [
        (utcnow().date() - dt.timedelta(days=1)).isoformat(), utcnow().date().isoformat()]
    assert stats["totals"]["cutouts"] == 1 and stats["totals"]["requests"] == 1
    assert stats["top_users"] == [{"user": "alice", "cutouts": 1, "bytes": stats["totals"]["bytes"]}]
    assert stats["latency_ms"]["count"] == 1 and stats["latency_ms"]["p50"] == stats["latency_ms"]["max"] > 0
    assert set(stats) == {"since", "until", "days", "totals", "per_day", "by_survey", "by_format", "by_kind",
                          "jobs_by_phase", "top_users", "latency_ms"}
    assert service.get("/stats.json").json()["days"] == 30
    metrics = service.get("/metrics").text
    assert 'cutout_audit_records_total{outcome="written"}' in metrics


@pytest.mark.parametrize("days", ["0", "367", "abc", "1.5", "-3", "", "٣", "1" * 5000])  # int() refuses > 4300 digits
def test_stats_json_refuses_a_bad_days_with_a_labelled_400(service: httpx.Client, days: str) -> None:
    r = service.get("/stats.json", params={"days": days})
    assert r.status_code == 400 and r.text.startswith("UsageError: ") and "days must be" in r.text


def test_stats_json_refuses_two_days(service: httpx.Client) -> None:
    r = service.get("/stats.json", params={"days": ["1", "2"]})
    assert r.status_code == 400 and r.text.startswith("UsageError: days takes one value")


def test_stats_json_is_refused_to_callers_who_are_not_operators(service: httpx.Client) -> None:
    r = service.get("/stats.json", headers={"X-Forwarded-For": "203.0.113.7", "X-Test-User": "alice"})
    assert r.status_code == 403 and r.text.startswith("AuthorizationError: ") and "operators" in r.text
    assert service.get("/stats.json", params={"days": "bad"}, headers={"X-Forwarded-For": "203.0.113.7"}
                       ).status_code == 403  # who asks is checked first


def test_a_failed_audit_write_does_not_fail_the_cutout(service: httpx.Client, caplog) -> None:  # type: ignore[no-untyped-def]
    runtime = runtime_of(service)
    runtime.audit.flush()
    dropped = runtime.audit.dropped
    with runtime.db.connection_context():
        runtime.db.execute_sql("ALTER TABLE audit_served RENAME TO audit_served_away")
    try:
        with caplog.at_level(logging.WARNING, logger="soda.audit.records"):
            r = service.get("/sync", params={"ID": DID, "CIRCLE": f"{DES[0]} {DES[1]} 0.002"})
            assert r.status_code == 200 and r.content.startswith(b"SIMPLE")
            runtime.audit.flush()
        assert runtime.audit.dropped == dropped + 1 and "audit: 1 records not written" in caplog.text
    finally:
        with runtime.db.connection_context():
            runtime.db.execute_sql("ALTER TABLE audit_served_away RENAME TO audit_served")
    assert service.get("/sync", params={"ID": DID, "CIRCLE": f"{DES[0]} {DES[1]} 0.002"}).status_code == 200
    assert len(rows(service)) == 1  # written again once the table is back


def test_the_sweep_purges_records_older_than_the_days_kept(service: httpx.Client) -> None:
    runtime = runtime_of(service)
    now = utcnow()
    for age in (91, 89, 0):  # audit_keep_days is 90 by default
        runtime.audit.record(Served(now - dt.timedelta(days=age), "old", "sync", "des", "fits", 1, 1))
    runtime.audit.flush()
    # all three written; the app's own scheduled sweep may have purged the oldest already
    assert {now - dt.timedelta(days=89), now} <= {r.at for r in rows(service)}
    runtime.uws.sweep()
    assert sorted(r.at for r in rows(service)) == [now - dt.timedelta(days=89), now]


def test_keeping_no_days_records_nothing(tmp_path, demo_root) -> None:  # type: ignore[no-untyped-def]
    with app_client(tmp_path / "data", demo_root, CUTOUT_AUDIT_KEEP_DAYS="0") as client:
        runtime = runtime_of(client)
        writer = AuditLog(runtime.db)
        writer.record(Served(utcnow() - dt.timedelta(days=1), "old", "sync", "des", "fits", 1, 1))
        writer.close()
        assert client.get("/sync", params={"ID": DID, "CIRCLE": f"{DES[0]} {DES[1]} 0.002"}).status_code == 200
        assert runtime.audit.flush() == 0
        runtime.uws.sweep()  # what was kept from before is deleted
        assert rows(client) == []


def test_cutout_audit_purge(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from soda.audit.tables import MIGRATIONS
    from soda.ops.database import close_database, migrate, open_database

    for name in [n for n in os.environ if n.startswith("CUTOUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUTOUT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    db = open_database(f"sqlite:///{tmp_path / 'data' / 'cutout.sqlite'}")
    migrate(db, [("audit", MIGRATIONS)])
    writer, now = AuditLog(db), utcnow()
    for age in (100, 40, 10, 0):
        writer.record(Served(now - dt.timedelta(days=age, minutes=1), "u", "sync", "des", "fits", 1, 1))
    writer.close()
    assert main(["audit", "purge"]) == 0 and "1 audit records older than 90 days deleted" in capsys.readouterr().out
    assert main(["audit", "purge", "--days", "30"]) == 0 and "1 audit records" in capsys.readouterr().out
    assert main(["audit", "purge", "--days", "-1"]) == 2
    table = AuditTables(db).Served
    with db.connection_context():
        assert table.select().count() == 2
    assert main(["audit", "purge", "--days", "0"]) == 0 and "2 audit records" in capsys.readouterr().out
    close_database(db)
