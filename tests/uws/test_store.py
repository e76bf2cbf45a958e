"""The job store on SQLite and on real PostgreSQL: atomic transitions, filters, leases,
migrations, and the runner's handling of late or duplicate messages."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from storage import LocalStore
from uws import UWSConfig, UWSService
from uws.kinds import JobKind
from dali.timestamps import utcnow
from soda.ops.database import migrate, open_database, version_table
from uws.tables import MIGRATIONS
from uws.notify import LocalNotifier
from uws.phases import Phase
from uws.store import JobStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = open_database(url)
    migrate(db, UWS)
    store = JobStore(db, LocalNotifier())
    with db.connection_context():
        store.tables.Job.delete().execute()  # the PostgreSQL database is shared by the session
    yield store
    db.close_all() if hasattr(db, "close_all") else db.close()


UWS = [("uws", MIGRATIONS)]


def new_job(store: JobStore, owner: str | None = "alice", **kw) -> str:
    return store.create(kind="selftest", owner=owner, parameters=[("A", "1")], run_id=None,
                        execution_duration=60, destruction=None, **kw).id


def test_migrate_is_idempotent(store):
    assert migrate(store.db, UWS) == migrate(store.db, UWS) == {"uws": len(MIGRATIONS)}


def test_migration_adds_request_id_to_a_version_1_database(store):
    SchemaVersion = version_table(store.db, "uws")
    with store.db.connection_context():
        store.db.execute_sql("ALTER TABLE uws_job DROP COLUMN request_id")
        SchemaVersion.update(version=1).execute()
        assert "request_id" not in {c.name for c in store.db.get_columns("uws_job")}
    migrate(store.db, UWS)
    with store.db.connection_context():
        assert "request_id" in {c.name for c in store.db.get_columns("uws_job")}
        assert SchemaVersion.select().first().version == len(MIGRATIONS)
    job_id = store.create(kind="k", owner=None, parameters=[], run_id=None, execution_duration=1,
                          destruction=None, request_id="req-1").id
    assert store.get(job_id).request_id == "req-1"


def test_migration_8_indexes_result_places_and_the_next_place_is_read_from_it(store):
    SchemaVersion = version_table(store.db, "uws")
    with store.db.connection_context():
        store.db.execute_sql("DROP INDEX uws_result_job_id_seq")
        SchemaVersion.update(version=7).execute()
    migrate(store.db, UWS)
    with store.db.connection_context():
        assert ["job_id", "seq"] in [i.columns for i in store.db.get_indexes("uws_result")]
        if store.db.__class__.__name__.startswith("Sqlite"):  # the planner's choice on a table of any size
            plan = " ".join(str(row) for row in store.db.execute_sql(
                "EXPLAIN QUERY PLAN SELECT MAX(seq) FROM uws_result WHERE job_id = ?", ("x",)).fetchall())
            assert "uws_result_job_id_seq" in plan


def test_claim_is_won_by_exactly_one_of_many(store):
    job_id = new_job(store)
    assert store.queue(job_id)
    wins = []
    barrier = threading.Barrier(8)

    def contender(n: int) -> None:
        barrier.wait()
        if store.claim(job_id, f"token-{n}"):
            wins.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get(job_id).phase is Phase.EXECUTING
    assert store.get(job_id).attempts == 1


def test_finished_job_never_moves_back(store):
    job_id = new_job(store)
    store.queue(job_id)
    assert store.claim(job_id, "t1")
    assert store.complete(job_id, "t1")
    # A late or duplicated message, a late abort or a late failure change nothing.
    assert not store.claim(job_id, "t2")
    assert not store.queue(job_id)
    assert not store.abort(job_id)
    assert not store.fail(job_id, "t1", "fatal", "Error: late")
    assert not store.requeue(job_id, "t1")
    assert store.get(job_id).phase is Phase.COMPLETED


def test_only_the_claim_holder_finishes(store):
    job_id = new_job(store)
    store.queue(job_id)
    store.claim(job_id, "t1")
    assert store.requeue(job_id, "t1")
    assert store.claim(job_id, "t2")
    assert not store.complete(job_id, "t1")  # the lost worker woke up late
    assert store.complete(job_id, "t2")


def test_abort_wins_over_completion(store):
    job_id = new_job(store)
    store.queue(job_id)
    store.claim(job_id, "t1")
    assert store.abort(job_id)
    assert not store.complete(job_id, "t1")
    assert store.get(job_id).phase is Phase.ABORTED


def test_parameters_change_only_while_pending(store):
    job_id = new_job(store)
    assert store.set_parameters(job_id, [("B", "2")])
    assert store.get(job_id).parameters == (("B", "2"),)
    store.queue(job_id)
    assert not store.set_parameters(job_id, [("C", "3")])
    assert not store.set_execution_duration(job_id, 5)


def _spaced_job(store: JobStore, owner: str | None = "alice") -> str:
    time.sleep(0.002)  # creation times are kept to the millisecond the documents show
    return new_job(store, owner)


def test_list_filters(store):
    ids = [_spaced_job(store) for _ in range(4)]
    other = new_job(store, owner="bob")
    anonymous = new_job(store, owner=None)
    store.queue(ids[1])
    store.abort(ids[2])
    Job = store.tables.Job
    Job.update(phase=Phase.ARCHIVED.value).where(Job.id == ids[3]).execute()
    mine = [j.id for j in store.list(owner="alice")]
    assert set(mine) == {ids[0], ids[1], ids[2]}  # ARCHIVED hidden, bob's not listed
    assert [j.id for j in store.list(owner="bob")] == [other]
    assert [j.id for j in store.list(owner=None)] == [anonymous]
    assert {j.id for j in store.list(owner="alice", phases=[Phase.QUEUED, Phase.ABORTED])} == {ids[1], ids[2]}
    assert [j.id for j in store.list(owner="alice", phases=[Phase.ARCHIVED])] == [ids[3]]
    created = store.get(ids[1]).creation_time
    after = {j.id for j in store.list(owner="alice", after=created)}
    assert after == {ids[2]}
    last = store.list(owner="alice", last=2)
    assert [j.id for j in last] == [ids[2], ids[1]]  # newest first
    assert [j.id for j in store.list(owner="alice", last=1, phases=[Phase.PENDING])] == [ids[0]]


def test_lease_is_exclusive_until_it_expires(store):
    assert store.try_lock("sweep", "a", ttl=0.5)
    assert not store.try_lock("sweep", "b", ttl=0.5)
    assert store.try_lock("sweep", "a", ttl=0.5)  # renewal
    time.sleep(0.6)
    assert store.try_lock("sweep", "b", ttl=0.5)
    assert not store.try_lock("sweep", "a", ttl=0.5)


def test_expired_and_stale_queries(store):
    gone = new_job(store)
    kept = new_job(store)
    store.set_destruction(gone, utcnow() - dt.timedelta(seconds=1))
    store.set_destruction(kept, utcnow() + dt.timedelta(hours=1))
    assert store.expired(utcnow()) == [gone]
    store.queue(kept)
    store.claim(kept, "t")
    assert store.stale_executing(utcnow() - dt.timedelta(seconds=60)) == []
    assert [j.id for j in store.stale_executing(utcnow() + dt.timedelta(seconds=1))] == [kept]


def _service(store: JobStore, tmp_path, run) -> tuple[UWSService, JobKind]:  # type: ignore[no-untyped-def]
    config = UWSConfig(
        wait_max_seconds=60, wait_recheck_seconds=5, wait_max_per_caller=8, wait_max_total=500,
        default_execution_duration=600,
        max_execution_duration=3600, default_destruction_seconds=7 * 86400,
        max_destruction_seconds=30 * 86400, trust_forwarded_headers=True, accel_redirect_prefix="",
        heartbeat_seconds=5, stale_job_seconds=30, max_job_attempts=2, requeue_after_seconds=600,
        lost_message_grace_seconds=5, transient_retries=3, retry_backoff_ms=2000,
        sweep_interval_seconds=60, watchdog_interval=0.25,
        max_job_parameters=0, max_job_parameter_bytes=0, max_upload_bytes=2**20, max_uploads_at_once=2)
    service = UWSService(config, store, LocalStore(tmp_path / "results"), store.notifier)
    kind = JobKind("probe", params_type=list, parse=lambda pairs, owner: pairs, run=run)
    service.register(kind)
    return service, kind


def test_runner_drops_duplicate_and_late_messages(store, tmp_path):
    runs = []
    service, kind = _service(store, tmp_path, lambda ctx: runs.append(ctx.job_id))
    job_id = store.create(kind="probe", owner=None, parameters=[], run_id=None,
                          execution_duration=0, destruction=None).id
    store.queue(job_id)
    service.execute(kind, job_id)
    service.execute(kind, job_id)  # the same message delivered twice
    assert runs == [job_id]
    assert store.get(job_id).phase is Phase.COMPLETED


def test_runner_records_results_and_error_kinds(store, tmp_path):
    from dali.errors import UsageError

    def run(ctx):  # type: ignore[no-untyped-def]
        ctx.put_result("a.txt", b"hello", "text/plain")
        raise UsageError("bad input found late")

    service, kind = _service(store, tmp_path, run)
    job_id = store.create(kind="probe", owner=None, parameters=[], run_id=None,
                          execution_duration=0, destruction=None).id
    store.queue(job_id)
    service.execute(kind, job_id)
    job = store.get(job_id)
    assert job.phase is Phase.ERROR
    assert (job.error_type, job.error_message) == ("fatal", "UsageError: bad input found late")
    assert [(r.id, r.size, r.mime_type) for r in job.results] == [("a.txt", 5, "text/plain")]
    assert (tmp_path / "results" / "jobs" / job_id / "a.txt").read_bytes() == b"hello"
    service.destroy(job_id)
    assert store.get(job_id) is None
    assert not (tmp_path / "results" / "jobs" / job_id).exists()


def test_sweep_deletes_orphaned_result_folders(store, tmp_path):
    import os

    service, kind = _service(store, tmp_path, lambda ctx: None)
    kept = store.create(kind="probe", owner=None, parameters=[], run_id=None,
                        execution_duration=0, destruction=None).id
    for job_id in (kept, "gone-job-1", "gone-job-fresh"):
        service.storage.put_bytes(f"jobs/{job_id}/a.txt", b"x")
    old = time.time() - 3600
    for name in (kept, "gone-job-1"):
        os.utime(tmp_path / "results" / "jobs" / name, (old, old))
    report = service.sweep()
    assert report.orphans == 1
    assert sorted(service.storage.children("jobs")) == sorted([kept, "gone-job-fresh"])  # fresh: grace period


def test_results_store_failure_is_transient(store, tmp_path):
    def run(ctx):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    service, kind = _service(store, tmp_path, run)
    job_id = store.create(kind="probe", owner=None, parameters=[], run_id=None,
                          execution_duration=0, destruction=None).id
    store.queue(job_id)
    service.execute(kind, job_id)  # no Dramatiq message here: no retries left, so ERROR transient
    job = store.get(job_id)
    assert (job.phase, job.error_type) == (Phase.ERROR, "transient")
    assert job.error_message == "ServiceUnavailable: the results store failed (No space left on device)"


def test_notices_from_creation_to_delivery(store):
    """uws_notice: made with the job, due when it ends (its observers told after the
    update), one claim per attempt, overdue ones found, gone with the job."""
    told = []
    store.ended.append(lambda job_id, phase: told.append((job_id, phase)))
    job_id = new_job(store, notices=["mailto:a@example.org", "https://8.8.8.8/h"], link="https://svc/async")
    other = new_job(store)
    with store.db.connection_context():
        store.tables.Notice.delete().where(store.tables.Notice.job != job_id).execute()  # shared PostgreSQL
    first, second = store.notices(job_id)
    assert (first.state, first.link, second.target) == ("waiting", "https://svc/async", "https://8.8.8.8/h")
    assert store.unstarted_notices() == []
    assert store.queue(job_id) and store.claim(job_id, "t") and store.complete(job_id, "t")
    assert told == [(job_id, Phase.COMPLETED)]  # once, for the final phase only
    assert store.unstarted_notices() == [(job_id, Phase.COMPLETED)]  # nothing scheduled them
    assert store.start_notices(job_id, Phase.COMPLETED) == [first.id, second.id]
    assert store.start_notices(job_id, Phase.COMPLETED) == []
    hold = utcnow() + dt.timedelta(seconds=60)
    assert store.claim_notice(first.id, 1, hold)
    assert not store.claim_notice(first.id, 1, hold)  # a duplicate message
    assert not store.claim_notice(first.id, 3, hold)  # not the next attempt
    store.notice_retry(first.id, "451 later", utcnow() - dt.timedelta(seconds=5))
    assert [n.id for n in store.overdue_notices(utcnow())] == [first.id, second.id]
    assert store.claim_notice(first.id, 2, hold)
    store.notice_done(first.id, "delivered")
    done = store.notice(first.id)
    assert (done.state, done.attempts, done.last_error) == ("delivered", 2, "451 later")
    assert [n.id for n in store.overdue_notices(utcnow())] == [second.id]
    assert store.delete(job_id) and store.notices(job_id) == [] and store.notice(second.id) is None
    assert store.get(other) is not None


def test_many_results_are_recorded_in_order_and_a_result_again_keeps_its_place(store):
    from uws.store import NewResult

    job_id = new_job(store)
    store.add_result(job_id, "first.txt", f"jobs/{job_id}/first.txt", "text/plain", 1, 11)
    store.add_results(job_id, [NewResult(f"r{n}.fits", f"jobs/{job_id}/r{n}.fits", "application/fits", n, n)
                               for n in range(5)], chunk=2)
    store.add_results(job_id, [NewResult("r1.fits", f"jobs/{job_id}/r1.fits", "image/fits", 100, 7),
                               NewResult("last.txt", f"jobs/{job_id}/last.txt", None, 3)])
    store.add_results(job_id, [])
    results = store.get(job_id).results
    assert [r.id for r in results] == ["first.txt", *(f"r{n}.fits" for n in range(5)), "last.txt"]
    again = results[2]
    assert (again.mime_type, again.size, again.crc32) == ("image/fits", 100, 7)
    assert [(r.size, r.crc32) for r in results[3:6]] == [(2, 2), (3, 3), (4, 4)]
    assert store.result_bytes("alice") == 1 + 0 + 100 + 2 + 3 + 4 + 3
