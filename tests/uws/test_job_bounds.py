"""Every resource a job creation can consume is bounded, and no job is left behind
(generic UWS, with the selftest kind on SQLite): jobs not yet finished, the parameters a
job stores, the result space while a job runs, and a creation the queue cannot take."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from conf import load_settings
from conftest import free_port
from dali.errors import UsageError
from dali.http import EXCEPTION_HANDLERS
from soda.ops.database import migrate, open_database
from soda.ops.runtime import uws_config
from storage import LocalStore
from uws.broker import make_broker
from uws.kinds import JobKind
from uws.notify import LocalNotifier
from uws.phases import Phase
from uws.quota import Allowance, Usage
from uws.routes import JobRoutes
from uws.selftest import SELFTEST
from uws.service import UWSService
from uws.store import JobStore
from uws.tables import MIGRATIONS


class Someone:
    def __init__(self, user_id: str | None) -> None:
        self.user_id = user_id
        self.anonymous = user_id is None


async def by_header(request):  # type: ignore[no-untyped-def]
    return Someone(request.headers.get("x-user") or None)


def make_service(tmp_path, allowance=None, broker_url=None, **config):  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    store = JobStore(db, LocalNotifier())
    service = UWSService(dataclasses.replace(uws_config(load_settings(environ={})), **config),
                         store, LocalStore(tmp_path / "results"), store.notifier,
                         **({"allowance": allowance} if allowance else {}))
    service.register(SELFTEST)
    broker = make_broker(broker_url, "unit")
    service.attach(broker)
    return service, broker


@pytest.fixture
def bounded(tmp_path) -> Iterator[tuple[UWSService, TestClient]]:  # type: ignore[no-untyped-def]
    """Two unfinished jobs for anonymous callers together, three for each user."""
    def allowance(caller) -> Allowance:  # type: ignore[no-untyped-def]
        return Allowance(max_unfinished_jobs=2 if caller.anonymous else 3, retry_after_seconds=7)
    service, broker = make_service(tmp_path, allowance)
    app = Starlette(routes=JobRoutes(service, SELFTEST, "/selftest", by_header, allowance).routes(),
                    exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        yield service, client
    broker.close()
    service.store.db.close()


# --- jobs not yet finished ---------------------------------------------------------------------

def test_usage_counts_every_phase_that_is_not_final(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path)
    store = service.store
    ids = [store.create(kind="selftest", owner="ann", parameters=[], run_id=None,
                        execution_duration=1, destruction=None).id for _ in range(7)]
    for job_id, phase in zip(ids, [Phase.QUEUED, Phase.EXECUTING, Phase.HELD, Phase.SUSPENDED,
                                   Phase.COMPLETED, Phase.ERROR]):
        store.tables.Job.update(phase=phase.value).where(store.tables.Job.id == job_id).execute()
    usage = store.usage("ann")
    assert (usage.unfinished_jobs, usage.active_jobs) == (5, 2)  # PENDING, QUEUED, EXECUTING, HELD, SUSPENDED
    assert store.usage(None).unfinished_jobs == 0
    broker.close()


def test_check_create_at_under_and_over() -> None:
    from uws.quota import check_create

    allowance = Allowance(max_unfinished_jobs=3, retry_after_seconds=9)
    check_create(allowance, Usage(active_jobs=0, result_bytes=0, unfinished_jobs=2), "ann")
    with pytest.raises(Exception) as caught:
        check_create(allowance, Usage(active_jobs=0, result_bytes=0, unfinished_jobs=3), "ann")
    assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "9"}  # type: ignore[attr-defined]
    assert "unfinished job limit reached: ann has 3 jobs" in caught.value.message  # type: ignore[attr-defined]
    check_create(Allowance(), Usage(active_jobs=0, result_bytes=0, unfinished_jobs=10**6), "ann")


def test_pending_jobs_count_against_the_anonymous_limit(bounded) -> None:  # type: ignore[no-untyped-def]
    service, client = bounded
    made = [client.post("/selftest", data={"SIZE": "1"}) for _ in range(2)]
    assert [r.status_code for r in made] == [303, 303]
    refused = client.post("/selftest", data={"SIZE": "1"})
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "7"
    assert "unfinished job limit reached: anonymous callers together has 2 jobs" in refused.text
    # With PHASE=RUN too, and nothing was created.
    assert client.post("/selftest", data={"PHASE": "RUN"}).status_code == 429
    assert service.store.usage(None).unfinished_jobs == 2
    # A user has a count of their own.
    assert client.post("/selftest", headers={"x-user": "ann"}).status_code == 303
    # Deleting one frees a place.
    client.delete(made[0].headers["location"])
    assert client.post("/selftest", data={"SIZE": "1"}).status_code == 303


def test_a_users_held_and_suspended_jobs_count_too(bounded) -> None:  # type: ignore[no-untyped-def]
    service, client = bounded
    ann = {"x-user": "ann"}
    ids = [client.post("/selftest", headers=ann).headers["location"].rsplit("/", 1)[1] for _ in range(3)]
    table = service.store.tables.Job
    table.update(phase=Phase.HELD.value).where(table.id == ids[0]).execute()
    table.update(phase=Phase.SUSPENDED.value).where(table.id == ids[1]).execute()
    assert client.post("/selftest", headers=ann).status_code == 429
    table.update(phase=Phase.COMPLETED.value).where(table.id == ids[2]).execute()
    assert client.post("/selftest", headers=ann).status_code == 303


# --- the parameters a job stores ------------------------------------------------------------

def test_the_count_of_stored_parameters_is_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path, max_job_parameters=3)
    service.parse(SELFTEST, [("RESULTS", "1"), ("SIZE", "2"), ("DURATION", "0")], None)
    with pytest.raises(UsageError) as caught:
        service.parse(SELFTEST, [("RESULTS", "1"), ("SIZE", "2"), ("DURATION", "0"), ("FAIL_TIMES", "1")], None)
    assert caught.value.status == 400
    assert "4 parameters and max_job_parameters is 3" in caught.value.message
    broker.close()


def test_the_bytes_of_stored_parameters_are_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    echo = JobKind("echo", params_type=list, parse=lambda pairs, owner: [], run=lambda ctx: None)
    service, broker = make_service(tmp_path, max_job_parameter_bytes=20)
    service.register(echo)
    assert service.parse(echo, [("JUNK", "x" * 16)], None).shown == [("JUNK", "x" * 16)]  # 20 bytes
    with pytest.raises(UsageError) as caught:
        service.parse(echo, [("JUNK", "x" * 17)], None)
    assert "21 bytes and max_job_parameter_bytes is 20" in caught.value.message
    # What the kind shows is what is stored and counted: a kind that keeps only what it
    # reads stores none of the junk.
    reads_nothing = JobKind("quiet", params_type=list, parse=lambda pairs, owner: [],
                            run=lambda ctx: None, shown=lambda value, pairs: [])
    service.register(reads_nothing)
    assert service.parse(reads_nothing, [("JUNK", "x" * 10**6)], None).shown == []
    broker.close()


def test_parameters_posted_later_are_bounded_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path, max_job_parameter_bytes=40)
    app = Starlette(routes=JobRoutes(service, SELFTEST, "/selftest", by_header).routes(),
                    exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        job = client.post("/selftest", data={"SIZE": "1"}).headers["location"]
        r = client.post(job + "/parameters", data={"SIZE": "0" * 40 + "1"})
        assert r.status_code == 400 and "max_job_parameter_bytes is 40" in r.text
    broker.close()


# --- result space while a job runs ---------------------------------------------------------------

@pytest.mark.parametrize("quota,done", [(50, 5), (49, 4), (10, 1), (9, 0)])
def test_a_job_stops_where_its_results_would_pass_the_quota(tmp_path, quota, done) -> None:  # type: ignore[no-untyped-def]
    asked: list[str | None] = []

    def allowance(caller) -> Allowance:  # type: ignore[no-untyped-def]
        asked.append(caller.user_id)
        return Allowance(max_result_bytes=quota)
    service, broker = make_service(tmp_path, allowance)
    job = service.create(SELFTEST, owner="ann", parameters=service.parse(SELFTEST, [("RESULTS", "5"), ("SIZE", "10")], "ann"),
                         run_id=None, execution_duration=None, destruction=None)
    assert service.run(job)
    service.execute(SELFTEST, job.id)
    finished = service.store.get(job.id)
    assert asked == ["ann"]
    assert [r.id for r in finished.results] == [f"result-{i}.txt" for i in range(1, done + 1)]
    kept = sorted(p.name for p in (tmp_path / "results" / "jobs" / job.id).glob("*"))
    assert kept == [f"result-{i}.txt" for i in range(1, done + 1)]  # the refused one is deleted
    assert service.store.usage("ann").result_bytes == 10 * done <= quota
    if done == 5:
        assert finished.phase is Phase.COMPLETED
    else:
        assert (finished.phase, finished.error_type) == (Phase.ERROR, "fatal")
        assert finished.error_message.startswith(
            f"UsageError: result space quota reached: ann would keep {10 * done + 10} bytes")
    broker.close()


def test_other_jobs_of_the_owner_count_while_a_job_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path, lambda caller: Allowance(max_result_bytes=35))
    ids = []
    for _ in range(2):
        job = service.create(SELFTEST, owner="ann", parameters=service.parse(SELFTEST, [("RESULTS", "2"), ("SIZE", "10")], "ann"),
                             run_id=None, execution_duration=None, destruction=None)
        service.run(job)
        ids.append(job.id)
    for job_id in ids:
        service.execute(SELFTEST, job_id)
    first, second = (service.store.get(i) for i in ids)
    assert first.phase is Phase.COMPLETED and len(first.results) == 2
    assert second.phase is Phase.ERROR and len(second.results) == 1
    broker.close()


# --- a creation the queue cannot take ------------------------------------------------------------

def test_a_create_and_run_the_queue_cannot_take_leaves_no_job(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    app = Starlette(routes=JobRoutes(service, SELFTEST, "/selftest", by_header).routes(),
                    exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        r = client.post("/selftest", data={"PHASE": "RUN"})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "10"
        assert r.text.startswith("ServiceUnavailable: the job queue is not reachable; no job was created")
        assert "location" not in r.headers
        assert service.store.usage(None).unfinished_jobs == 0
        assert service.store.list(owner=None) == []
        # Without PHASE=RUN the job is made (the caller is told where) and stays PENDING.
        made = client.post("/selftest")
        assert made.status_code == 303
        assert [j.phase for j in service.store.list(owner=None)] == [Phase.PENDING]
    broker.close()


class RecordingStore(LocalStore):
    """The local store, recording every key opened for writing."""

    def __init__(self, root) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.opened: list[str] = []

    def writer(self, key: str):  # type: ignore[no-untyped-def]
        self.opened.append(key)
        return super().writer(key)


def test_a_result_that_cannot_fit_is_refused_before_it_is_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, broker = make_service(tmp_path, lambda caller: Allowance(max_result_bytes=25))
    service.storage = store = RecordingStore(tmp_path / "results")
    job = service.create(SELFTEST, owner="ann", parameters=service.parse(SELFTEST, [("RESULTS", "5"), ("SIZE", "10")], "ann"),
                         run_id=None, execution_duration=None, destruction=None)
    assert service.run(job)
    service.execute(SELFTEST, job.id)
    finished = service.store.get(job.id)
    assert (finished.phase, [r.id for r in finished.results]) == (Phase.ERROR, ["result-1.txt", "result-2.txt"])
    # The third (30 bytes with it, over 25) was never opened: a job cannot overshoot the
    # quota by a whole result before it is checked.
    assert store.opened == [f"jobs/{job.id}/result-1.txt", f"jobs/{job.id}/result-2.txt"]
    broker.close()
