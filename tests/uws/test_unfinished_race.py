"""The unfinished-job limit holds exactly under concurrent creations, on SQLite and on
real PostgreSQL: the count and the insert are one unit per owner (it was count, then
insert, so two creations at once could both pass)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from conf import Settings
from dali.errors import ServiceUnavailable
from soda.ops.database import migrate, open_database
from soda.ops.runtime import uws_config
from storage import LocalStore
from uws import UWSService
from uws.notify import LocalNotifier
from uws.phases import UNFINISHED
from uws.quota import Allowance
from uws.selftest import SELFTEST
from uws.store import JobStore, UnfinishedLimitReached
from uws.tables import MIGRATIONS

THREADS = 8
LIMIT = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[JobStore]:  # type: ignore[no-untyped-def]
    url = (f"sqlite:///{tmp_path / 'jobs.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    db = open_database(url)
    migrate(db, [("uws", MIGRATIONS)])
    yield JobStore(db, LocalNotifier())
    db.close_all() if hasattr(db, "close_all") else db.close()


def create(store: JobStore, owner: str | None) -> str:
    return store.create(kind="selftest", owner=owner, parameters=[], run_id=None, execution_duration=1,
                        destruction=None, max_unfinished=LIMIT).id


def unfinished(store: JobStore, owner: str | None) -> int:
    Job = store.tables.Job
    mine = Job.owner.is_null() if owner is None else Job.owner == owner
    with store.db.connection_context():
        return Job.select().where(mine & Job.phase.in_([p.value for p in UNFINISHED])).count()


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_creations_never_pass_the_limit(store: JobStore, round_: int) -> None:
    owners = [f"racer-{round_}-{threading.get_ident()}-{n}" for n in range(2)] + [None]
    with store.db.connection_context():
        store.tables.Job.delete().where(store.tables.Job.owner.is_null()).execute()
    start = threading.Barrier(THREADS * len(owners))
    made: list[str | None] = []
    refused: list[str | None] = []
    lock = threading.Lock()

    def racer(owner: str | None) -> None:
        start.wait()
        try:
            create(store, owner)
            outcome = made
        except UnfinishedLimitReached as exc:
            assert exc.unfinished == LIMIT
            outcome = refused
        finally:
            store.db.close()  # each thread's own connection
        with lock:
            outcome.append(owner)

    threads = [threading.Thread(target=racer, args=(owner,)) for owner in owners for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    for owner in owners:
        assert made.count(owner) == LIMIT and refused.count(owner) == THREADS - LIMIT, owner
        assert unfinished(store, owner) == LIMIT


def test_the_service_answers_the_limit_with_429(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    service = UWSService(uws_config(Settings()), JobStore(db, LocalNotifier()), LocalStore(tmp_path / "r"),
                         LocalNotifier())
    allowance = Allowance(max_unfinished_jobs=1, retry_after_seconds=7)
    parsed = service.parse(SELFTEST, [], "ann")
    service.create(SELFTEST, owner="ann", parameters=parsed, run_id=None, execution_duration=None,
                   destruction=None, allowance=allowance)
    with pytest.raises(ServiceUnavailable) as refused:
        service.create(SELFTEST, owner="ann", parameters=parsed, run_id=None, execution_duration=None,
                       destruction=None, allowance=allowance)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "7"}
    assert "ann has 1 jobs not yet finished" in refused.value.message
    db.close()
