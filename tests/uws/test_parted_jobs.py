"""Parted jobs (uws/parts.py): a job split into parts that run as separate messages, with
the self-test kind's PARTS. The service over SQLite and Dramatiq's stub broker, its
messages run by a real Dramatiq worker or in the test thread; and the embedded app over
HTTP for the job document's progress and the results listed while the job runs."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator

import dramatiq
import pytest

from conftest import assert_uws, eventually, uws_text
from dali.errors import UsageError
from dali.timestamps import utcnow
from storage import LocalStore
from uws import UWSService
from uws.broker import make_broker
from uws.parts import FINISH
from uws.phases import Phase
from uws.selftest import SELFTEST, parse
from uws.xml import PROGRESS_NS

from test_service_core import World, config_with, new_store
from test_store import new_job, store  # noqa: F401 - the fixture, on SQLite and PostgreSQL

NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "p": PROGRESS_NS}


def make_world(tmp_path, **config) -> World:  # type: ignore[no-untyped-def]
    store = new_store(tmp_path)
    settings = {"retry_backoff_ms": 10, "sweep_interval_seconds": 60, "watchdog_interval": 0.05,
                "heartbeat_seconds": 0.1, **config}
    service = UWSService(config_with(**settings), store, LocalStore(tmp_path / "results"), store.notifier)
    service.register(SELFTEST)
    broker = make_broker(None, "parts")
    service.attach(broker)
    return World(service, store, broker, tmp_path / "results" / "jobs")


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    w = make_world(tmp_path)
    yield w
    w.broker.close()  # type: ignore[attr-defined]
    w.store.db.close()


@pytest.fixture
def worker(world) -> Iterator[dramatiq.Worker]:
    running = dramatiq.Worker(world.broker, worker_threads=2, worker_timeout=20)
    running.start()
    yield running
    running.stop()


def finished(world: World, job_id: str, timeout: float = 20):  # type: ignore[no-untyped-def]
    return eventually(lambda: (job := world.store.get(job_id)) and job.phase not in
                      (Phase.QUEUED, Phase.EXECUTING) and job, timeout=timeout)


def result_ids(world: World, job_id: str) -> set[str]:
    job = world.store.get(job_id)
    assert job is not None
    return {r.id for r in job.results}


def parts_messages(world: World) -> int:
    return world.broker.queues[SELFTEST.parts_queue].qsize()  # type: ignore[attr-defined]


def planned(world: World, **params: str) -> str:
    """A parted job, claimed and planned in the test thread: its parts wait in their queue."""
    job_id = world.queued(parameters=list(params.items()))
    world.service.execute(SELFTEST, job_id)
    job = world.store.get(job_id)
    assert job is not None and job.phase == Phase.EXECUTING
    return job_id


# --- through a real worker ------------------------------------------------------------------

def test_parts_run_as_separate_messages_and_the_job_completes(world, worker):
    job_id = world.queued(parameters=[("PARTS", "4"), ("UNITS", "5")])
    job = finished(world, job_id)
    assert job.phase == Phase.COMPLETED and job.error_message is None
    assert job.parts == 4
    assert job.progress.total == 20 and job.progress.done == 20 and job.progress.failed == 0
    assert job.progress.parts_ended == 4
    names = result_ids(world, job_id)
    assert names == {f"part-{n}-run-1.txt" for n in range(4)} | {f"part-{n}.txt" for n in range(4)} | {
        "manifest.txt"}
    manifest = (world.results / job_id / "manifest.txt").read_text()
    assert manifest == "".join(f"part {n}: done 5 failed 0\n" for n in range(4))
    assert [p.state for p in world.store.parts(job_id)] == ["done"] * 4


def test_a_part_failing_with_a_usage_error_fails_alone(world, worker):
    job_id = world.queued(parameters=[("PARTS", "3"), ("FAIL_PART", "1")])
    job = finished(world, job_id)
    assert job.phase == Phase.COMPLETED
    assert (job.progress.done, job.progress.failed, job.progress.parts_ended) == (20, 10, 3)
    assert "part-1.txt" not in result_ids(world, job_id)
    assert (world.results / job_id / "manifest.txt").read_text() == (
        "part 0: done 10 failed 0\npart 1: failed: UsageError: part 1 of this selftest job was asked to fail\n"
        "part 2: done 10 failed 0\n")
    failed = world.store.parts(job_id)[1]
    assert failed.state == "failed" and "asked to fail" in (failed.error or "")


def test_a_transient_part_failure_is_retried(world, worker):
    job_id = world.queued(parameters=[("PARTS", "2"), ("FLAKY_PART", "0")])
    job = finished(world, job_id)
    assert job.phase == Phase.COMPLETED and job.progress.done == 20
    assert {"part-0-run-1.txt", "part-0-run-2.txt", "part-0.txt", "part-1-run-1.txt"} <= result_ids(world, job_id)
    assert "part-1-run-2.txt" not in result_ids(world, job_id)
    assert [p.attempts for p in world.store.parts(job_id)] == [2, 1]


def test_a_transient_part_failure_without_retries_left_fails_for_good(tmp_path):
    world = make_world(tmp_path, transient_retries=0)
    runner = dramatiq.Worker(world.broker, worker_threads=1, worker_timeout=20)
    runner.start()
    try:
        job_id = world.queued(parameters=[("PARTS", "2"), ("FLAKY_PART", "0"), ("UNITS", "3")])
        job = finished(world, job_id)
    finally:
        runner.stop()
        world.broker.close()  # type: ignore[attr-defined]
    assert job.phase == Phase.COMPLETED
    assert (job.progress.done, job.progress.failed) == (3, 3)
    part = world.store.parts(job_id)[0]
    assert part.state == "failed" and "transiently" in (part.error or "")


def test_zero_parts_finish_at_once(world, worker):
    job_id = world.queued(parameters=[("PARTS", "0")])
    job = finished(world, job_id)
    assert job.phase == Phase.COMPLETED
    assert (job.parts, job.progress.total, job.progress.parts_ended) == (0, 0, 0)
    assert result_ids(world, job_id) == {"manifest.txt"}


def test_a_job_without_parts_runs_whole(world, worker):
    job_id = world.queued(parameters=[("RESULTS", "2")])
    job = finished(world, job_id)
    assert job.phase == Phase.COMPLETED and job.parts is None and job.progress is None
    assert result_ids(world, job_id) == {"result-1.txt", "result-2.txt"}


def test_abort_interrupts_running_parts(world, worker, caplog):
    caplog.set_level(logging.INFO, logger="uws")
    job_id = world.queued(parameters=[("PARTS", "2"), ("PART_DURATION", "30")])
    eventually(lambda: [p.state for p in world.store.parts(job_id)] == ["running", "running"])
    t0 = time.monotonic()
    assert world.store.abort(job_id)
    eventually(lambda: caplog.text.count(f"of job {job_id} interrupted") == 2, timeout=5)
    assert time.monotonic() - t0 < 5
    assert world.store.get(job_id).phase == Phase.ABORTED
    assert not {"part-0.txt", "part-1.txt"} & result_ids(world, job_id)


def test_execution_duration_bounds_the_parts(world, worker):
    job_id = world.queued(parameters=[("PARTS", "1"), ("PART_DURATION", "30")], execution_duration=1)
    job = finished(world, job_id, timeout=10)
    assert job.phase == Phase.ABORTED and "executionDuration exceeded" in job.error_message
    assert (job.end_time - job.start_time).total_seconds() < 3


# --- messages run in the test thread -------------------------------------------------------------

def test_the_plan_sends_one_message_per_part_and_leaves_the_job_executing(world):
    job_id = planned(world, PARTS="3")
    assert parts_messages(world) == 3
    job = world.store.get(job_id)
    assert job.parts == 3 and job.progress.total == 30 and job.progress.parts_ended == 0
    # Its job message is done: the lost-message check must not expect one.
    assert world.store.count_active(SELFTEST.name) == 0
    # A duplicate of the job's message does nothing: the job is not QUEUED.
    world.service.execute(SELFTEST, job_id)
    assert parts_messages(world) == 3 and len(world.store.parts(job_id)) == 3


def test_a_duplicate_part_message_does_nothing(world):
    job_id = planned(world, PARTS="2")
    world.service.parted.run(SELFTEST, job_id, 0)
    world.service.parted.run(SELFTEST, job_id, 0)
    assert [p.attempts for p in world.store.parts(job_id)] == [1, 0]
    assert world.store.get(job_id).phase == Phase.EXECUTING
    world.service.parted.run(SELFTEST, job_id, 1)
    assert world.store.get(job_id).phase == Phase.COMPLETED


def age(world: World, job_id: str, seconds: float) -> None:
    """Make the heartbeats of the job and of its running parts ``seconds`` old."""
    old = utcnow() - dt.timedelta(seconds=seconds)
    Job, Part = world.store.tables.Job, world.store.tables.Part
    with world.store.db.connection_context():
        Job.update(heartbeat=old).where(Job.id == job_id).execute()
        Part.update(heartbeat=old).where((Part.job == job_id) & (Part.state == "running")).execute()


def test_a_lost_worker_costs_only_its_part(world):
    job_id = planned(world, PARTS="3")
    assert world.store.claim_part(job_id, 1, "killed-worker") is not None  # then SIGKILL
    world.service.parted.run(SELFTEST, job_id, 0)
    world.service.parted.run(SELFTEST, job_id, 2)
    assert world.store.get(job_id).progress.parts_ended == 2
    before = parts_messages(world)
    age(world, job_id, 3600)
    report = world.service.sweep()
    assert (report.parts_requeued, report.requeued) == (1, 0)  # the part, never the whole job
    assert parts_messages(world) == before + 1
    job = world.store.get(job_id)
    assert job.phase == Phase.EXECUTING and job.attempts == 1
    world.service.parted.run(SELFTEST, job_id, 1)
    job = world.store.get(job_id)
    assert job.phase == Phase.COMPLETED and job.progress.done == 30
    runs = sorted(name for name in result_ids(world, job_id) if "-run-" in name)
    assert runs == ["part-0-run-1.txt", "part-1-run-2.txt", "part-2-run-1.txt"]


def test_a_part_lost_too_often_fails_for_good_and_the_job_finishes(world):
    job_id = planned(world, PARTS="2", UNITS="4")
    world.service.parted.run(SELFTEST, job_id, 0)
    for attempt in range(world.service.config.max_job_attempts):
        assert world.store.claim_part(job_id, 1, f"killed-{attempt}") is not None
        age(world, job_id, 3600)
        world.service.sweep()
    part = world.store.parts(job_id)[1]
    assert part.state == "failed" and "lost" in part.error
    # The sweep sent a finish message: run it as a worker would.
    world.service.parted.run(SELFTEST, job_id, FINISH)
    job = world.store.get(job_id)
    assert job.phase == Phase.COMPLETED
    assert (job.progress.done, job.progress.failed) == (4, 4)


def test_a_lost_finishing_is_claimed_again(world):
    job_id = planned(world, PARTS="1")
    part = world.store.claim_part(job_id, 0, "t")
    assert world.store.end_part(job_id, 0, "t", "done", 10, 0)
    assert world.store.claim_finish(job_id, "f:dead-worker")  # then SIGKILL
    assert not world.store.claim_finish(job_id, "f:another")
    assert part is not None
    world.service.sweep()  # fresh heartbeat: left alone
    assert world.store.get(job_id).claim == "f:dead-worker"
    age(world, job_id, 3600)
    assert world.service.sweep().parts_resent == 1
    world.service.parted.run(SELFTEST, job_id, FINISH)
    assert world.store.get(job_id).phase == Phase.COMPLETED
    assert "manifest.txt" in result_ids(world, job_id)


def test_abort_stops_queued_parts_and_delete_removes_them(world):
    job_id = planned(world, PARTS="2")
    assert world.store.abort(job_id)
    world.service.parted.run(SELFTEST, job_id, 0)
    assert [p.state for p in world.store.parts(job_id)] == ["queued", "queued"]
    assert result_ids(world, job_id) == set()
    assert world.service.sweep().parts_resent == 0
    assert world.service.destroy(job_id)
    Part = world.store.tables.Part
    with world.store.db.connection_context():
        assert Part.select().where(Part.job == job_id).count() == 0


def test_restart_sends_the_parts_again(world):
    job_id = planned(world, PARTS="2")
    assert world.store.claim_part(job_id, 0, "before-restart") is not None
    world.broker.flush_all()  # type: ignore[attr-defined]
    report = world.service.recover_after_restart()
    assert (report.parts_requeued, report.parts_resent) == (1, 2)
    assert report.requeued == 0
    for index in (0, 1):
        world.service.parted.run(SELFTEST, job_id, index)
    assert world.store.get(job_id).phase == Phase.COMPLETED


def test_planning_a_job_no_longer_held_stores_nothing(world):
    job_id = world.queued(parameters=[("PARTS", "2")])
    assert world.store.claim(job_id, "mine")
    assert not world.store.plan_parts(job_id, "not-mine", [("a", 1)])
    assert world.store.parts(job_id) == [] and world.store.get(job_id).parts is None


# --- over HTTP: the job document while the job runs ----------------------------------------------

def test_progress_and_results_show_while_the_job_runs(embedded):
    r = embedded.post("/selftest", data={"PARTS": "8", "UNITS": "3", "PART_DURATION": "0.3", "PHASE": "RUN"})
    assert r.status_code == 303, r.text
    url = r.headers["location"]
    seen: list[tuple[int, int, int]] = []
    partial = False
    end = time.monotonic() + 30
    while time.monotonic() < end:
        doc = assert_uws(embedded.get(url).content)
        phase = uws_text(doc, "uws:phase")
        progress = doc.find("uws:jobInfo/p:progress", NS)
        if phase in ("EXECUTING", "COMPLETED") and progress is not None:
            counts = (int(progress.get("done")), int(progress.get("failed")), int(progress.get("partsDone")))
            assert progress.get("total") == "24" and progress.get("parts") == "8"
            seen.append(counts)
            results = doc.findall("uws:results/uws:result", NS)
            if phase == "EXECUTING" and results and counts[0] < 24:
                partial = True
                assert float(progress.get("rate")) >= 0
                if counts[0]:
                    assert progress.get("eta", "").endswith("Z")
                href = results[0].get("{http://www.w3.org/1999/xlink}href")
                assert embedded.get(href).status_code == 200
        if phase == "COMPLETED":
            break
        assert phase in ("QUEUED", "EXECUTING")
        time.sleep(0.05)
    assert seen and seen[-1] == (24, 0, 8)
    assert seen == sorted(seen), "progress went backwards"
    assert len(set(seen)) > 2, "progress was never seen moving"
    assert partial, "no result was listed while the job ran"
    assert doc.find("uws:jobInfo/p:progress", NS).get("eta") is None


# --- the store's part rows, on SQLite and PostgreSQL ------------------------------------------------

def test_part_rows_from_plan_to_finishing(store):
    job_id = new_job(store)
    assert store.queue(job_id) and store.claim(job_id, "job-token")
    assert store.plan_parts(job_id, "job-token", [("a", 2), ("b", 3), ("c", 5)])
    assert not store.plan_parts(job_id, "job-token", [("again", 1)])  # planned once
    assert store.count_active("selftest") == 0
    view = store.get(job_id)
    assert view.parts == 3 and view.progress.total == 10 and view.progress.parts_ended == 0
    a = store.claim_part(job_id, 0, "ta")
    assert a is not None and (a.key, a.units, a.attempts, a.state) == ("a", 2, 1, "running")
    assert store.claim_part(job_id, 0, "again") is None
    assert store.running_parts(["ta", "nobody"]) == {"ta"}
    assert not store.end_part(job_id, 0, "not-mine", "done", 2, 0)
    assert store.end_part(job_id, 0, "ta", "done", 1, 1)
    assert store.claim_part(job_id, 1, "tb") and store.requeue_part(job_id, 1, "tb")
    assert [p.state for p in store.parts(job_id)] == ["done", "queued", "queued"]
    assert [p.seq for p in store.waiting_parts()] == [1, 2]
    assert not store.claim_finish(job_id, "f:early")  # parts remain
    for seq, token in ((1, "tb2"), (2, "tc")):
        assert store.claim_part(job_id, seq, token)
    old = utcnow() - dt.timedelta(seconds=60)
    with store.db.connection_context():
        store.tables.Part.update(heartbeat=old).where(store.tables.Part.claim == "tc").execute()
    assert [(p.seq, p.kind) for p in store.stale_parts(utcnow() - dt.timedelta(seconds=30))] == [(2, "selftest")]
    assert store.end_part(job_id, 1, "tb2", "done", 3, 0)
    assert store.end_part(job_id, 2, "tc", "failed", 0, 5, "lost")
    view = store.get(job_id)
    assert (view.progress.done, view.progress.failed, view.progress.parts_ended) == (4, 6, 3)
    assert [j.id for j in store.unfinished_parted(utcnow())] == [job_id]
    assert store.claim_finish(job_id, "f:one") and not store.claim_finish(job_id, "f:two")
    assert store.unfinished_parted(utcnow() - dt.timedelta(seconds=30)) == []  # its heartbeat is fresh
    assert not store.reopen_finish(job_id, "f:one", utcnow() - dt.timedelta(seconds=30))
    assert store.reopen_finish(job_id, "f:one", utcnow() + dt.timedelta(seconds=1))
    assert store.claim_finish(job_id, "f:two") and store.complete(job_id, "f:two")
    assert store.claim_part(job_id, 0, "late") is None
    assert store.delete(job_id) and store.parts(job_id) == []
    with store.db.connection_context():
        assert store.tables.Part.select().where(store.tables.Part.job == job_id).count() == 0


def test_parts_of_a_job_that_is_not_executing_are_never_claimed(store):
    job_id = new_job(store)
    assert store.queue(job_id) and store.claim(job_id, "t")
    assert store.plan_parts(job_id, "t", [("a", 1)])
    assert store.abort(job_id)
    assert store.claim_part(job_id, 0, "p") is None
    assert store.waiting_parts() == [] and store.stale_parts(utcnow()) == []


# --- the self-test kind's part parameters -----------------------------------------------------

@pytest.mark.parametrize(("pairs", "text"), [
    ([("PARTS", "1001")], "PARTS must be between 0 and 1000"),
    ([("UNITS", "0")], "UNITS must be between 1 and 1000000"),
    ([("FAIL_PART", "x")], "FAIL_PART must be a number"),
    ([("PART_DURATION", "-1")], "PART_DURATION must be between"),
])
def test_selftest_part_parameters_are_checked(pairs, text):
    with pytest.raises(UsageError, match=text):
        parse(pairs)


def test_selftest_part_parameters_are_typed():
    parsed = parse([("parts", "3"), ("Units", "7"), ("PART_DURATION", "0.5"), ("FLAKY_PART", "2")])
    assert (parsed.parts, parsed.units, parsed.part_duration, parsed.flaky_part, parsed.fail_part) == (
        3, 7, 0.5, 2, None)
    assert parse([]).parts is None  # without PARTS the job runs whole
