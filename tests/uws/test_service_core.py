"""The UWS service core (uws/service.py over uws/store.py) without HTTP: creation with
the server's limits, RUN, execution in the test thread, the error kinds a job can end
with, destruction and the sweep. SQLite in tmp_path, Dramatiq's stub broker.
(tests/uws/test_store.py covers the store's transitions and duplicate messages.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import peewee as pw
import pytest

from conf import load_settings
from conftest import free_port
from dali.errors import MultiValuedParamNotSupported, ServiceError, ServiceUnavailable, UsageError
from dali.timestamps import utcnow
from storage import LocalStore
from uws import UWSConfig, UWSService, context
from soda.ops.database import migrate, open_database
from soda.ops.runtime import uws_config
from uws.broker import make_broker
from uws.kinds import JobContext, JobKind
from uws.notify import LocalNotifier
from uws.quota import Allowance
from uws.phases import Phase
from uws.selftest import SELFTEST
from uws.store import JobStore
from uws.tables import MIGRATIONS

DAY = 86400


def config_with(**changes) -> UWSConfig:  # type: ignore[no-untyped-def]
    """The UWS configuration the shipped settings give, with ``changes``."""
    return dataclasses.replace(uws_config(load_settings(environ={})), **changes)


def new_store(path) -> JobStore:  # type: ignore[no-untyped-def]
    """A job store on a fresh SQLite file (the only place that knows how one is opened)."""
    db = open_database(f"sqlite:///{path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    return JobStore(db, LocalNotifier())


@dataclass
class World:
    service: UWSService
    store: JobStore
    broker: object
    results: object  # the results folder

    def job(self, kind: JobKind = SELFTEST, parameters=(), owner="alice", **kw):  # type: ignore[no-untyped-def]
        parsed = self.service.parse(kind, list(parameters), owner)
        return self.service.create(kind, owner=owner, parameters=parsed, run_id=kw.pop("run_id", None),
                                   execution_duration=kw.pop("execution_duration", None),
                                   destruction=kw.pop("destruction", None), **kw)

    def queued(self, kind: JobKind = SELFTEST, parameters=(), **kw) -> str:  # type: ignore[no-untyped-def]
        job = self.job(kind, parameters, **kw)
        assert self.service.run(job)
        return job.id

    def messages(self, kind: JobKind = SELFTEST) -> int:
        return self.broker.queues[kind.queue].qsize()  # type: ignore[attr-defined]


def _boom(ctx: JobContext) -> None:
    raise KeyError("/srv/secret/path.fits")


def _multi(ctx: JobContext) -> None:
    raise MultiValuedParamNotSupported("X was given 2 times; it takes one value")


def _empty_unavailable(ctx: JobContext) -> None:
    raise ServiceUnavailable("the archive is down")


def _database_gone(ctx: JobContext) -> None:
    # What the driver raises when the server goes away mid-call (peewee wraps psycopg2's).
    raise pw.OperationalError("server closed the connection unexpectedly")


GONE = JobKind("gone", params_type=list, parse=lambda p, owner: p, run=_database_gone)
CRASH = JobKind("crash", params_type=list, parse=lambda p, owner: p, run=_boom)
MULTI = JobKind("multi", params_type=list, parse=lambda p, owner: p, run=_multi)
DOWN = JobKind("down", params_type=list, parse=lambda p, owner: p, run=_empty_unavailable)


def build(tmp_path, **config) -> World:  # type: ignore[no-untyped-def]
    store = new_store(tmp_path)
    service = UWSService(config_with(**config), store, LocalStore(tmp_path / "results"), store.notifier)
    for kind in (SELFTEST, CRASH, MULTI, DOWN, GONE):
        service.register(kind)
    broker = make_broker(None, "unit")
    service.attach(broker)
    return World(service, store, broker, tmp_path / "results" / "jobs")


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    w = build(tmp_path)
    yield w
    w.broker.close()  # type: ignore[attr-defined]
    w.store.db.close()


# --- creation and the server's limits ---------------------------------------------------------

def test_create_is_pending_with_the_defaults(world):
    token = context.request_id.set("req-42")
    try:
        before = utcnow()
        job = world.job(parameters=[("RESULTS", "2")], run_id="my run")
    finally:
        context.request_id.reset(token)
    assert job.phase is Phase.PENDING
    assert (job.kind, job.owner, job.run_id, job.parameters) == ("selftest", "alice", "my run", (("RESULTS", "2"),))
    assert job.execution_duration == 600
    assert before <= job.destruction - dt.timedelta(days=7) <= utcnow()
    stored = world.store.get(job.id)
    assert stored.request_id == "req-42"
    assert (stored.start_time, stored.end_time, stored.results, stored.attempts) == (None, None, (), 0)
    assert world.messages() == 0


@pytest.mark.parametrize(("asked", "kept"), [(None, 600), (1, 1), (3600, 3600), (3601, 3600), (0, 3600)])
def test_execution_duration_is_clamped_to_the_maximum(world, asked, kept):
    assert world.job(execution_duration=asked).execution_duration == kept


def test_unlimited_duration_when_the_service_allows_it(tmp_path):
    service = build(tmp_path, max_execution_duration=0).service
    assert service.clamp_duration(0) == 0
    assert service.clamp_duration(10**9) == 10**9


def test_destruction_is_clamped_to_the_tighter_limit(world):
    creation = dt.datetime(2026, 1, 31, 12, 0, 0)
    clamp = world.service.clamp_destruction
    soon = creation + dt.timedelta(hours=2)
    assert clamp(creation, soon) == soon
    assert clamp(creation, creation + dt.timedelta(days=90)) == creation + dt.timedelta(days=30)
    assert clamp(creation, creation + dt.timedelta(days=90), 3600) == creation + dt.timedelta(hours=1)
    assert clamp(creation, soon, 3600) == creation + dt.timedelta(hours=1)
    assert clamp(creation, creation + dt.timedelta(minutes=5), 3600) == creation + dt.timedelta(minutes=5)
    assert clamp(creation, creation + dt.timedelta(days=90), 90 * DAY) == creation + dt.timedelta(days=30)


def test_create_applies_the_callers_destruction_limit(world):
    far = utcnow() + dt.timedelta(days=365)
    capped = world.job(destruction=far, allowance=Allowance(max_destruction_seconds=3600))
    assert abs((capped.destruction - capped.creation_time).total_seconds() - 3600) < 1
    default = world.job(allowance=Allowance(max_destruction_seconds=3600))  # the 7-day default is above the caller's limit
    assert abs((default.destruction - default.creation_time).total_seconds() - 3600) < 1
    service_limit = world.job(destruction=far)
    assert abs((service_limit.destruction - service_limit.creation_time).total_seconds() - 30 * DAY) < 1
    early = utcnow() + dt.timedelta(minutes=10)
    assert world.job(destruction=early, allowance=Allowance(max_destruction_seconds=3600)).destruction == early


def test_a_kind_is_registered_once(world):
    with pytest.raises(ValueError, match="job kind 'selftest' registered twice"):
        world.service.register(SELFTEST)


# --- RUN and execution --------------------------------------------------------------------------

def test_run_queues_and_sends_one_message(world):
    job = world.job()
    assert world.service.run(job)
    assert world.store.get(job.id).phase is Phase.QUEUED
    assert world.messages() == 1
    assert not world.service.run(job)  # no longer runnable: no second message
    assert world.messages() == 1


def test_run_with_the_queue_unreachable_leaves_the_job_pending(tmp_path):
    store = new_store(tmp_path)
    service = UWSService(config_with(), store, LocalStore(tmp_path / "results"), store.notifier)
    service.register(SELFTEST)
    broker = make_broker(f"redis://127.0.0.1:{free_port()}/0", "unit")  # nothing listens there
    service.attach(broker)
    job = service.create(SELFTEST, owner=None, parameters=service.parse(SELFTEST, [], None), run_id=None,
                         execution_duration=None,
                         destruction=None)
    with pytest.raises(ServiceUnavailable) as caught:
        service.run(job)
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "10"}
    assert "the job stays PENDING" in caught.value.message
    assert store.get(job.id).phase is Phase.PENDING
    broker.close()


def test_execute_completes_and_writes_results_through_the_store(world):
    job_id = world.queued(parameters=[("RESULTS", "2"), ("SIZE", "10")])
    world.service.execute(SELFTEST, job_id)
    job = world.store.get(job_id)
    assert job.phase is Phase.COMPLETED
    assert job.attempts == 1 and job.error_type is None
    assert job.start_time is not None and job.end_time is not None and job.start_time <= job.end_time
    assert [(r.id, r.key, r.mime_type, r.size) for r in job.results] == [
        ("result-1.txt", f"jobs/{job_id}/result-1.txt", "text/plain", 10),
        ("result-2.txt", f"jobs/{job_id}/result-2.txt", "text/plain", 10)]
    assert (world.results / job_id / "result-2.txt").read_bytes() == f"selftest job {job_id}"[:10].encode()
    assert world.store.usage("alice").result_bytes == 20


def test_usage_error_is_fatal_with_its_text(world):
    job_id = world.queued(parameters=[("FAIL", "usage")])
    world.service.execute(SELFTEST, job_id)
    job = world.store.get(job_id)
    assert (job.phase, job.error_type) == (Phase.ERROR, "fatal")
    assert job.error_message == "UsageError: this selftest job was asked to fail with a usage error"
    assert job.results == ()


def test_multivalued_and_service_errors_are_fatal(world):
    multi = world.queued(MULTI)
    world.service.execute(MULTI, multi)
    assert (world.store.get(multi).error_type, world.store.get(multi).error_message) == \
        ("fatal", "MultiValuedParamNotSupported: X was given 2 times; it takes one value")
    fatal = world.queued(parameters=[("FAIL", "fatal")])
    world.service.execute(SELFTEST, fatal)
    job = world.store.get(fatal)
    assert (job.phase, job.error_type, job.error_message) == \
        (Phase.ERROR, "fatal", "Error: this selftest job was asked to fail fatally")


def test_service_unavailable_without_a_message_is_transient(world):
    # Run outside a Dramatiq worker there is no message to deliver again: no retry.
    job_id = world.queued(DOWN)
    world.service.execute(DOWN, job_id)
    job = world.store.get(job_id)
    assert (job.phase, job.error_type) == (Phase.ERROR, "transient")
    assert job.error_message == "ServiceUnavailable: the archive is down"
    assert job.attempts == 1


def test_a_database_failure_inside_a_job_is_transient_not_an_incident(world):
    job_id = world.queued(GONE)
    world.service.execute(GONE, job_id)
    job = world.store.get(job_id)
    assert (job.phase, job.error_type) == (Phase.ERROR, "transient")
    assert job.error_message == "ServiceUnavailable: the job database did not answer"


def test_unexpected_exception_is_an_incident_without_its_details(world, caplog):
    job_id = world.queued(CRASH)
    with caplog.at_level(logging.ERROR, logger="uws.service"):
        world.service.execute(CRASH, job_id)
    job = world.store.get(job_id)
    assert (job.phase, job.error_type) == (Phase.ERROR, "fatal")
    match = re.fullmatch(r"Error: internal failure while running the job, logged as incident ([0-9a-f]{12})",
                         job.error_message)
    assert match, job.error_message
    for leak in ("Traceback", "KeyError", "/srv/secret", "File "):
        assert leak not in job.error_message
    # The operators get the details under the same incident id.
    [record] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_execute_drops_a_job_that_is_not_queued(world):
    runs: list[str] = []
    probe = JobKind("probe", params_type=list, parse=lambda p, owner: p, run=lambda ctx: runs.append(ctx.job_id))
    world.service.register(probe)
    pending = world.job(probe).id
    world.service.execute(probe, pending)
    assert world.store.get(pending).phase is Phase.PENDING
    aborted = world.job(probe).id
    world.store.queue(aborted)
    assert world.store.abort(aborted)
    world.service.execute(probe, aborted)
    assert world.store.get(aborted).phase is Phase.ABORTED
    world.service.execute(probe, "no-such-job")
    assert runs == []
    ran = world.job(probe).id
    world.store.queue(ran)
    world.service.execute(probe, ran)
    assert runs == [ran]


def test_job_context_holds_the_parsed_parameters_and_refuses_bad_result_ids(world):
    seen: dict[str, object] = {}

    def run(ctx: JobContext) -> None:
        seen["parameters"] = ctx.params
        with pytest.raises(ServiceError, match="invalid result id '../escape'"):
            ctx.put_result("../escape", b"x", "text/plain")
        with ctx.result_writer("streamed.bin", "application/octet-stream") as fh:
            fh.write(b"abc")
            fh.write(b"def")

    kind = JobKind("context", params_type=list, parse=lambda p, owner: p, run=run)
    world.service.register(kind)
    job_id = world.job(kind, [("POS", "a"), ("other", "b"), ("pos", "c")]).id
    world.store.queue(job_id)  # registered after attach: no actor, so queued by hand
    world.service.execute(kind, job_id)
    assert seen["parameters"] == [["POS", "a"], ["other", "b"], ["pos", "c"]]  # as JSON keeps them
    job = world.store.get(job_id)
    assert job.phase is Phase.COMPLETED
    assert [(r.id, r.size) for r in job.results] == [("streamed.bin", 6)]
    assert not (world.results / "escape").exists()


# --- destruction and the sweep ----------------------------------------------------------------------

def test_destroy_removes_the_row_and_the_result_files(world):
    job_id = world.queued(parameters=[("RESULTS", "3")])
    world.service.execute(SELFTEST, job_id)
    assert len(list((world.results / job_id).iterdir())) == 3
    assert world.service.destroy(job_id)
    assert world.store.get(job_id) is None
    assert not (world.results / job_id).exists()
    assert not world.service.destroy(job_id)
    queued = world.queued()
    assert world.service.destroy(queued)  # aborted first, then forgotten
    assert world.store.get(queued) is None


def test_sweep_destroys_expired_jobs_only(world):
    reports = []
    world.service.sweep_observers.append(reports.append)
    gone = world.queued(parameters=[("RESULTS", "1")])
    world.service.execute(SELFTEST, gone)
    kept = world.job().id
    world.store.set_destruction(gone, utcnow() - dt.timedelta(seconds=1))
    report = world.service.sweep()
    assert (report.destroyed, report.requeued, report.failed) == (1, 0, 0)
    assert reports == [report]
    assert world.store.get(gone) is None
    assert not (world.results / gone).exists()
    assert world.store.get(kept).phase is Phase.PENDING


def test_sweep_recovers_a_stale_executing_job_then_gives_up(tmp_path):
    world = build(tmp_path, stale_job_seconds=0, max_job_attempts=2)
    job_id = world.queued()
    assert world.store.claim(job_id, "lost-worker-1")  # a worker took it, then died
    time.sleep(0.01)  # its heartbeat is now older than stale_job_seconds
    report = world.service.sweep()
    assert (report.requeued, report.resent, report.failed) == (1, 1, 0)
    job = world.store.get(job_id)
    assert (job.phase, job.claim, job.attempts) == (Phase.QUEUED, None, 1)
    assert world.messages() == 2  # RUN's message and the re-sent one
    assert world.store.claim(job_id, "lost-worker-2")
    time.sleep(0.01)
    report = world.service.sweep()
    assert (report.requeued, report.failed) == (0, 1)
    job = world.store.get(job_id)
    assert (job.phase, job.error_type, job.attempts) == (Phase.ERROR, "transient", 2)
    assert job.error_message == ("ServiceUnavailable: the worker running this job was lost 2 times; "
                                 "submit the job again")
    assert world.service.sweep().failed == 0  # finished jobs are left alone
    world.broker.close()  # type: ignore[attr-defined]


def test_sweep_leaves_live_jobs_alone(world):
    job_id = world.queued()
    assert world.store.claim(job_id, "live-worker")  # heartbeat just now; stale after 30 s
    report = world.service.sweep()
    assert (report.requeued, report.failed, report.destroyed) == (0, 0, 0)
    assert world.store.get(job_id).phase is Phase.EXECUTING


def test_recover_after_restart_resends_every_active_job(world):
    queued = world.queued()
    executing = world.queued()
    world.store.claim(executing, "before-the-restart")
    assert world.messages() == 2
    report = world.service.recover_after_restart()
    assert report.requeued == 1 and report.failed == 0
    assert report.resent >= 2
    assert world.messages() == 2 + report.resent
    assert world.store.get(executing).phase is Phase.QUEUED
    assert world.store.get(executing).attempts == 1
    assert world.store.get(queued).phase is Phase.QUEUED
    for job_id in (queued, executing):
        world.service.execute(SELFTEST, job_id)
        world.service.execute(SELFTEST, job_id)  # a duplicate message: dropped
    assert [world.store.get(j).phase for j in (queued, executing)] == [Phase.COMPLETED] * 2
    assert [len(world.store.get(j).results) for j in (queued, executing)] == [1, 1]


def test_recover_after_restart_sends_each_job_once(world):
    world.queued()
    executing = world.queued()
    world.store.claim(executing, "before-the-restart")
    report = world.service.recover_after_restart()
    assert (report.requeued, report.resent) == (1, 2)
    assert world.messages() == 4


# --- retries through a real Dramatiq worker (threads, stub broker) -----------------------------------

def test_transient_failures_are_retried_then_reported(tmp_path):
    import dramatiq

    world = build(tmp_path, retry_backoff_ms=10, transient_retries=1, sweep_interval_seconds=60)
    worker = dramatiq.Worker(world.broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        recovers = world.queued(parameters=[("FAIL", "transient"), ("FAIL_TIMES", "1")])
        never = world.queued(parameters=[("FAIL", "transient")])
        world.broker.join(SELFTEST.queue, timeout=10_000, fail_fast=False)  # type: ignore[attr-defined]
    finally:
        worker.stop()
    ok = world.store.get(recovers)
    assert (ok.phase, ok.attempts, ok.error_type) == (Phase.COMPLETED, 2, None)
    assert [r.id for r in ok.results] == ["result-1.txt"]
    failed = world.store.get(never)
    assert (failed.phase, failed.error_type, failed.attempts) == (Phase.ERROR, "transient", 2)
    assert failed.error_message == "ServiceUnavailable: this selftest job was asked to fail transiently"
    world.broker.close()  # type: ignore[attr-defined]


# --- the selftest kind's parameters ------------------------------------------------------------------

def test_selftest_validation():
    pairs = [("duration", "0.5"), ("results", "3"), ("Fail", "crash")]
    parsed = SELFTEST.parse(pairs, None)
    assert (parsed.duration, parsed.results, parsed.size, parsed.fail) == (0.5, 3, 64, "crash")
    assert SELFTEST.shown(parsed, pairs) == [("DURATION", "0.5"), ("RESULTS", "3"), ("FAIL", "crash")]
    validate = SELFTEST.parse
    for pairs, error, fragment in [
        ([("COLOUR", "red")], UsageError, "unknown parameter 'COLOUR'"),
        ([("SIZE", "1"), ("size", "2")], MultiValuedParamNotSupported, "SIZE was given twice"),
        ([("RESULTS", "101")], UsageError, "RESULTS must be between 0 and 100, not 101"),
        ([("RESULTS", "1.5")], UsageError, "RESULTS must be a number, not '1.5'"),
        ([("DURATION", "nan")], UsageError, "DURATION must be between 0.0 and 3600.0"),
        ([("FAIL", "USAGE")], UsageError, "FAIL must be one of usage, fatal, transient, crash"),
    ]:
        with pytest.raises(error) as caught:
            validate(pairs, "alice")
        assert fragment in caught.value.message
