"""Typed job parameters: parsed once by the API, stored as JSON, handed to the worker."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dali.errors import UsageError
from soda.ops.database import migrate, open_database, version_table
from storage import LocalStore
from uws.kinds import JobKind
from uws.notify import LocalNotifier
from uws.phases import Phase
from uws.service import UWSConfig, UWSService
from uws.store import JobStore
from uws.tables import MIGRATIONS


@dataclass(frozen=True)
class Probe:
    size: int
    label: str


CONFIG = UWSConfig(
    wait_max_seconds=5, wait_recheck_seconds=1, wait_max_per_caller=8, wait_max_total=500,
    default_execution_duration=60,
    max_execution_duration=600, default_destruction_seconds=3600, max_destruction_seconds=7200,
    trust_forwarded_headers=False, accel_redirect_prefix="", heartbeat_seconds=5,
    stale_job_seconds=30, max_job_attempts=2, requeue_after_seconds=600,
    lost_message_grace_seconds=5, transient_retries=0, retry_backoff_ms=100,
    sweep_interval_seconds=60, watchdog_interval=0.25,
    max_job_parameters=0, max_job_parameter_bytes=0, max_upload_bytes=2**20, max_uploads_at_once=2)


class Recorder:
    """A kind that records every parse and what each run was given."""

    def __init__(self) -> None:
        self.parsed: list[tuple[tuple[tuple[str, str], ...], str | None]] = []
        self.given: list[object] = []
        self.kind = JobKind(name="probe", params_type=Probe, parse=self.parse, run=self.run,
                            shown=lambda value, pairs: [("SIZE", str(value.size)), ("LABEL", value.label)])

    def parse(self, pairs: list[tuple[str, str]], owner: str | None) -> Probe:
        self.parsed.append((tuple(pairs), owner))
        values = {name.upper(): value for name, value in pairs}
        try:
            return Probe(int(values.get("SIZE", "1")), values.get("LABEL", "none"))
        except ValueError:
            raise UsageError("SIZE must be a whole number") from None

    def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.given.append(ctx.params)
        ctx.put_result("out.txt", ctx.params.label.encode() * ctx.params.size, "text/plain")


@pytest.fixture
def service(tmp_path):  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    migrate(db, [("uws", MIGRATIONS)])
    store = JobStore(db, LocalNotifier())
    recorder = Recorder()
    uws = UWSService(CONFIG, store, LocalStore(tmp_path / "results"), store.notifier)
    uws.register(recorder.kind)
    yield uws, recorder
    db.close()


def _create(uws: UWSService, recorder: Recorder, pairs: list[tuple[str, str]], owner: str | None = "ann") -> str:
    parsed = uws.parse(recorder.kind, pairs, owner)
    job = uws.create(recorder.kind, owner=owner, parameters=parsed, run_id=None,
                     execution_duration=None, destruction=None)
    return job.id


def test_the_worker_gets_what_the_api_parsed_without_parsing_again(service) -> None:  # type: ignore[no-untyped-def]
    uws, recorder = service
    job_id = _create(uws, recorder, [("size", "3"), ("label", "ab")])
    assert len(recorder.parsed) == 1
    assert uws.store.get(job_id).parameters == (("SIZE", "3"), ("LABEL", "ab"))  # what the kind shows
    uws.store.queue(job_id)
    uws.execute(recorder.kind, job_id)
    assert recorder.given == [Probe(3, "ab")]
    assert len(recorder.parsed) == 1, "the worker parsed the client's text again"
    job = uws.store.get(job_id)
    assert job.phase is Phase.COMPLETED and job.results[0].size == 6


def test_changed_parameters_are_parsed_and_stored_typed(service) -> None:  # type: ignore[no-untyped-def]
    uws, recorder = service
    job_id = _create(uws, recorder, [("SIZE", "2")])
    assert uws.set_parameters(recorder.kind, job_id, uws.parse(recorder.kind, [("SIZE", "5")], "ann"))
    uws.store.queue(job_id)
    uws.execute(recorder.kind, job_id)
    assert recorder.given == [Probe(5, "none")]


def test_a_job_stored_without_typed_parameters_is_parsed_from_its_pairs(service) -> None:  # type: ignore[no-untyped-def]
    uws, recorder = service
    job_id = uws.store.create(kind="probe", owner="bo", parameters=[("SIZE", "4")], run_id=None,
                              execution_duration=0, destruction=None).id  # as before typed parameters
    uws.store.queue(job_id)
    uws.execute(recorder.kind, job_id)
    assert recorder.given == [Probe(4, "none")]
    assert recorder.parsed == [((("SIZE", "4"),), "bo")]


def test_stored_parameters_that_no_longer_fit_the_type_are_parsed_again(service) -> None:  # type: ignore[no-untyped-def]
    uws, recorder = service
    job_id = uws.store.create(kind="probe", owner=None, parameters=[("SIZE", "7")], run_id=None,
                              execution_duration=0, destruction=None,
                              typed_parameters='{"value": {"size": "seven"}}').id
    uws.store.queue(job_id)
    uws.execute(recorder.kind, job_id)
    assert recorder.given == [Probe(7, "none")]


def test_a_bad_value_is_refused_before_the_job_exists(service) -> None:  # type: ignore[no-untyped-def]
    uws, recorder = service
    with pytest.raises(UsageError, match="SIZE"):
        uws.parse(recorder.kind, [("SIZE", "many")], None)
    assert uws.store.list(owner=None) == [] and uws.store.list(owner="ann") == []


def test_migration_adds_typed_parameters_to_a_version_2_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    assert migrate(db, [("uws", MIGRATIONS[:2])]) == {"uws": 2}
    with db.connection_context():
        db.execute_sql("ALTER TABLE uws_job DROP COLUMN typed_parameters")  # as version 2 made it
        assert "typed_parameters" not in {c.name for c in db.get_columns("uws_job")}
    assert migrate(db, [("uws", MIGRATIONS)]) == {"uws": len(MIGRATIONS)}
    with db.connection_context():
        assert "typed_parameters" in {c.name for c in db.get_columns("uws_job")}
        assert version_table(db, "uws").select().first().version == len(MIGRATIONS)
    db.close()
