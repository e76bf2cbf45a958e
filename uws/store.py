"""All reads and writes of job rows. Every phase change is one conditional UPDATE.

A transition names the phases it may start from; the UPDATE matches only while the
row is still in one of them, so a late message or a racing request can never move a
finished job back. A successful transition is published to the notifier (WAIT); one to a
final phase is also told to the ``ended`` observers (the notices of ``uws.dispatch``),
after its UPDATE, so nothing they do is part of it or can undo it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import peewee as pw
from peewee import fn

from dali.params import Params
from dali.timestamps import utcnow
from uws.tables import JobTables
from uws.notify import Notifier
from uws.phases import ABORTABLE, FINAL, RUNNABLE, UNFINISHED, Phase
from uws.quota import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultView:
    id: str
    key: str
    mime_type: str | None
    size: int | None
    crc32: int | None = None  # of the stored bytes, when kept


@dataclass(frozen=True)
class JobView:
    """A job as the other layers see it: plain values, no lazy queries."""

    id: str
    kind: str
    owner: str | None
    run_id: str | None
    phase: Phase
    creation_time: dt.datetime
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    execution_duration: int
    destruction: dt.datetime | None
    quote: dt.datetime | None
    parameters: tuple[tuple[str, str], ...]
    error_type: str | None
    error_message: str | None
    results: tuple[ResultView, ...]
    attempts: int = 0
    claim: str | None = None
    request_id: str | None = None
    typed_parameters: str | None = None  # JSON of the kind's parsed parameters (uws.kinds)

    @staticmethod
    def of(row: pw.Model, results: Iterable[pw.Model] = ()) -> "JobView":
        return JobView(
            id=row.id, kind=row.kind, owner=row.owner, run_id=row.run_id,
            phase=Phase(row.phase), creation_time=row.creation_time,
            start_time=row.start_time, end_time=row.end_time,
            execution_duration=row.execution_duration, destruction=row.destruction,
            quote=row.quote,
            parameters=tuple((n, v) for n, v in json.loads(row.parameters)),
            error_type=row.error_type, error_message=row.error_message,
            results=tuple(ResultView(r.result_id, r.key, r.mime_type, r.size, r.crc32) for r in results),
            attempts=row.attempts, claim=row.claim, request_id=row.request_id,
            typed_parameters=row.typed_parameters)

    def result(self, result_id: str) -> ResultView | None:
        return next((r for r in self.results if r.id == result_id), None)


@dataclass(frozen=True)
class NoticeView:
    id: int
    job: str
    target: str
    link: str
    state: str
    phase: str | None
    attempts: int
    last_error: str | None
    due: dt.datetime | None = None

    @staticmethod
    def of(row: pw.Model) -> "NoticeView":
        return NoticeView(row.id, row.job, row.target, row.link, row.state, row.phase,
                          row.attempts, row.last_error, row.due)


class UnfinishedLimitReached(Exception):
    """A job was not created: its owner already has this many jobs not yet finished."""

    def __init__(self, unfinished: int) -> None:
        super().__init__(f"{unfinished} jobs not yet finished")
        self.unfinished = unfinished


def new_job_id() -> str:
    # 96 random bits: unguessable, and a legal URI path segment (UWS §2.2.1).
    return secrets.token_urlsafe(12)


class JobStore:
    def __init__(self, db: pw.Database, notifier: Notifier) -> None:
        self.db = db
        self.tables = JobTables(db)
        self.notifier = notifier
        # Called with (job id, phase) once a job reached a final phase; never raise into it.
        self.ended: list[Callable[[str, Phase], None]] = []

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Hold one connection for a unit of work; return it to the pool afterwards."""
        if not self.db.is_closed():
            yield
            return
        self.db.connect()
        try:
            yield
        finally:
            self.db.close()

    # --- reading -------------------------------------------------------------------

    def get(self, job_id: str) -> JobView | None:
        with self._session():
            row = self.tables.Job.get_or_none(self.tables.Job.id == job_id)
            if row is None:
                return None
            results = list(self.tables.Result.select().where(self.tables.Result.job == job_id).order_by(self.tables.Result.seq))
            return JobView.of(row, results)

    def list(self, *, owner: str | None, kind: str | None = None,
             phases: Iterable[Phase] | None = None, after: dt.datetime | None = None,
             last: int | None = None) -> list[JobView]:
        """UWS §2.2.2.1: filters combine with AND; ARCHIVED only when asked for."""
        query = self.tables.Job.select().where(self._owned_by(owner))
        if kind is not None:
            query = query.where(self.tables.Job.kind == kind)
        if phases:
            query = query.where(self.tables.Job.phase.in_([p.value for p in phases]))
        else:
            query = query.where(self.tables.Job.phase != Phase.ARCHIVED.value)
        if after is not None:
            query = query.where(self.tables.Job.creation_time > after)
        query = query.order_by(self.tables.Job.creation_time.desc(), self.tables.Job.id)
        if last is not None:
            query = query.limit(last)
        with self._session():
            return [JobView.of(row) for row in query]

    def existing(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        with self._session():
            return {row.id for row in self.tables.Job.select(self.tables.Job.id).where(self.tables.Job.id.in_(ids))}

    def count_active(self, kind: str) -> int:
        """Jobs of a kind that should have a message at the broker (QUEUED or EXECUTING)."""
        with self._session():
            return self.tables.Job.select().where((self.tables.Job.kind == kind) & self.tables.Job.phase.in_(
                [Phase.QUEUED.value, Phase.EXECUTING.value])).count()

    def usage(self, owner: str | None) -> "Usage":
        """Jobs QUEUED or EXECUTING, jobs not finished, and bytes of results kept, of one
        owner (None: anonymous)."""
        Job = self.tables.Job
        mine = self._owned_by(owner)
        with self._session():
            active = Job.select().where(mine & Job.phase.in_(
                [Phase.QUEUED.value, Phase.EXECUTING.value])).count()
            unfinished = Job.select().where(mine & Job.phase.in_([p.value for p in UNFINISHED])).count()
            stored = self.result_bytes(owner)
        return Usage(active_jobs=active, result_bytes=stored, unfinished_jobs=unfinished)

    def result_bytes(self, owner: str | None) -> int:
        """Bytes of results kept by one owner (None: anonymous): one query, for the job loop."""
        Result = self.tables.Result
        with self._session():
            stored = (Result.select(fn.COALESCE(fn.SUM(Result.size), 0))
                      .join(self.tables.Job).where(self._owned_by(owner)).scalar())
        return int(stored or 0)

    def _owned_by(self, owner: str | None) -> pw.Expression:
        return self.tables.Job.owner.is_null() if owner is None else self.tables.Job.owner == owner

    def count_by_phase(self) -> dict[Phase, int]:
        with self._session():
            rows = self.tables.Job.select(self.tables.Job.phase, fn.COUNT(self.tables.Job.id)).group_by(self.tables.Job.phase).tuples()
            return {Phase(phase): count for phase, count in rows}

    def phases(self, job_ids: Iterable[str]) -> dict[str, tuple[Phase, str | None]]:
        ids = list(job_ids)
        if not ids:
            return {}
        with self._session():
            rows = self.tables.Job.select(self.tables.Job.id, self.tables.Job.phase, self.tables.Job.claim).where(self.tables.Job.id.in_(ids)).tuples()
            return {job_id: (Phase(phase), claim) for job_id, phase, claim in rows}

    # --- creating and changing by the client ----------------------------------------

    def create(self, *, kind: str, owner: str | None, parameters: Params, run_id: str | None,
               execution_duration: int, destruction: dt.datetime | None,
               request_id: str | None = None, typed_parameters: str | None = None,
               max_unfinished: int = 0, notices: Iterable[str] = (), link: str = "") -> JobView:
        """A new PENDING job; with ``max_unfinished``, only while its owner has fewer jobs
        not yet finished (else UnfinishedLimitReached). The count and the insert are one
        unit per owner: two creations at once cannot both pass the limit. ``notices``: the
        targets told when it ends, ``link`` the job list's URL they show (inserted with it)."""
        # Kept at the precision the documents show, so AFTER=<a creationTime we showed>
        # excludes that job (UWS §2.2.2.1: strictly after).
        now = utcnow()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        notices = list(notices)
        with self._session(), self._owner_exclusive(owner, locked=bool(max_unfinished)), \
                (self.db.atomic() if notices else contextlib.nullcontext()):
            if max_unfinished:
                unfinished = self.tables.Job.select().where(
                    self._owned_by(owner) & self.tables.Job.phase.in_([p.value for p in UNFINISHED])).count()
                if unfinished >= max_unfinished:
                    raise UnfinishedLimitReached(unfinished)
            row = self.tables.Job.create(
                id=new_job_id(), kind=kind, owner=owner, run_id=run_id,
                phase=Phase.PENDING.value, creation_time=now,
                execution_duration=execution_duration, destruction=destruction,
                parameters=json.dumps([list(p) for p in parameters]), request_id=request_id,
                typed_parameters=typed_parameters)
            if notices:
                self.tables.Notice.insert_many(
                    [{"job": row.id, "target": t, "link": link, "state": "waiting"} for t in notices]).execute()
            return JobView.of(row)

    @contextmanager
    def _owner_exclusive(self, owner: str | None, *, locked: bool) -> Iterator[None]:
        """A transaction that no other ``_owner_exclusive`` of the same owner overlaps:
        on PostgreSQL a transaction-scoped advisory lock per owner; on SQLite BEGIN
        IMMEDIATE (the database's one write lock, taken before the first read)."""
        if not locked:
            yield
            return
        if isinstance(self.db, pw.SqliteDatabase):
            with self.db.atomic("IMMEDIATE"):
                yield
            return
        with self.db.atomic():
            key = "uws-anonymous" if owner is None else "uws-owner:" + owner  # never equal
            self.db.execute_sql("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            yield

    def set_parameters(self, job_id: str, parameters: Params, typed_parameters: str | None = None) -> bool:
        """UWS §2.1.11: parameters change only while PENDING."""
        with self._session():
            return self.tables.Job.update(parameters=json.dumps([list(p) for p in parameters]),
                                          typed_parameters=typed_parameters).where(
                (self.tables.Job.id == job_id) & (self.tables.Job.phase == Phase.PENDING.value)).execute() == 1

    def set_execution_duration(self, job_id: str, seconds: int) -> bool:
        with self._session():
            return self.tables.Job.update(execution_duration=seconds).where(
                (self.tables.Job.id == job_id) & (self.tables.Job.phase == Phase.PENDING.value)).execute() == 1

    def set_destruction(self, job_id: str, when: dt.datetime) -> bool:
        with self._session():
            return self.tables.Job.update(destruction=when).where(self.tables.Job.id == job_id).execute() == 1

    def delete(self, job_id: str) -> bool:
        with self._session():
            with self.db.atomic():
                self.tables.Result.delete().where(self.tables.Result.job == job_id).execute()
                self.tables.Notice.delete().where(self.tables.Notice.job == job_id).execute()
                gone = self.tables.Job.delete().where(self.tables.Job.id == job_id).execute() == 1
        if gone:
            self.notifier.publish(job_id)
        return gone

    # --- phase transitions -------------------------------------------------------------

    def _transition(self, job_id: str, sources: Iterable[Phase], target: Phase,
                    condition: pw.Expression | None = None, **fields: object) -> bool:
        where = (self.tables.Job.id == job_id) & self.tables.Job.phase.in_([p.value for p in sources])
        if condition is not None:
            where &= condition
        with self._session():
            changed = self.tables.Job.update(phase=target.value, **fields).where(where).execute() == 1
        if changed:
            self.notifier.publish(job_id)
            if target in FINAL:
                self._tell_ended(job_id, target)
        return changed

    def _tell_ended(self, job_id: str, phase: Phase) -> None:
        for observer in self.ended:
            try:
                observer(job_id, phase)
            except Exception:  # noqa: BLE001 - the job has ended whatever its observers do
                log.exception("after job %s ended %s", job_id, phase.value)

    def queue(self, job_id: str) -> bool:
        return self._transition(job_id, RUNNABLE, Phase.QUEUED, queued_at=utcnow())

    def unqueue(self, job_id: str) -> bool:
        """Undo ``queue`` when the message could not be sent."""
        return self._transition(job_id, [Phase.QUEUED], Phase.PENDING, queued_at=None)

    def abort(self, job_id: str, message: str | None = None) -> bool:
        fields: dict[str, object] = {"end_time": utcnow()}
        if message:
            fields.update(error_type="fatal", error_message=message)
        return self._transition(job_id, ABORTABLE, Phase.ABORTED, **fields)

    def claim(self, job_id: str, token: str) -> bool:
        """A worker takes a QUEUED job; only one of several deliveries can win."""
        now = utcnow()
        return self._transition(job_id, [Phase.QUEUED], Phase.EXECUTING, claim=token,
                                start_time=now, heartbeat=now, attempts=self.tables.Job.attempts + 1)

    def _mine(self, token: str) -> pw.Expression:
        return self.tables.Job.claim == token

    def complete(self, job_id: str, token: str) -> bool:
        return self._transition(job_id, [Phase.EXECUTING], Phase.COMPLETED, self._mine(token),
                                end_time=utcnow())

    def fail(self, job_id: str, token: str | None, error_type: str, message: str) -> bool:
        condition = self._mine(token) if token else None
        return self._transition(job_id, [Phase.EXECUTING], Phase.ERROR, condition,
                                end_time=utcnow(), error_type=error_type, error_message=message)

    def abort_running(self, job_id: str, token: str, message: str) -> bool:
        return self._transition(job_id, [Phase.EXECUTING], Phase.ABORTED, self._mine(token),
                                end_time=utcnow(), error_type="fatal", error_message=message)

    def requeue(self, job_id: str, token: str | None = None) -> bool:
        """Back to QUEUED for another delivery (transient failure, lost worker)."""
        condition = self._mine(token) if token else None
        return self._transition(job_id, [Phase.EXECUTING], Phase.QUEUED, condition,
                                queued_at=utcnow(), claim=None)

    # --- worker bookkeeping ------------------------------------------------------------

    def heartbeat(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            with self._session():
                self.tables.Job.update(heartbeat=utcnow()).where(
                    self.tables.Job.id.in_(ids) & (self.tables.Job.phase == Phase.EXECUTING.value)).execute()

    def add_result(self, job_id: str, result_id: str, key: str, mime_type: str | None,
                   size: int | None, crc32: int | None = None) -> None:
        # One statement (no read-then-write transaction): SQLite would refuse the lock
        # upgrade at once instead of waiting for a concurrent writer.
        seq = self.tables.Result.select(fn.COUNT(self.tables.Result.id)).where(self.tables.Result.job == job_id)
        with self._session():
            self.tables.Result.insert(job=job_id, result_id=result_id, key=key, mime_type=mime_type,
                          size=size, seq=seq, crc32=crc32).on_conflict(
                conflict_target=[self.tables.Result.job, self.tables.Result.result_id],
                update={self.tables.Result.key: key, self.tables.Result.mime_type: mime_type, self.tables.Result.size: size,
                        self.tables.Result.crc32: crc32},
            ).execute()

    def expired(self, now: dt.datetime, limit: int = 500) -> list[str]:
        with self._session():
            rows = self.tables.Job.select(self.tables.Job.id).where(
                self.tables.Job.destruction.is_null(False) & (self.tables.Job.destruction <= now)).limit(limit)
            return [r.id for r in rows]

    def stale_executing(self, cutoff: dt.datetime) -> list[JobView]:
        with self._session():
            rows = self.tables.Job.select().where((self.tables.Job.phase == Phase.EXECUTING.value)
                                      & (self.tables.Job.heartbeat.is_null() | (self.tables.Job.heartbeat < cutoff)))
            return [JobView.of(r) for r in rows]

    def waiting_queued(self, cutoff: dt.datetime | None = None, kind: str | None = None) -> list[JobView]:
        """QUEUED jobs (queued before ``cutoff``): their messages may have been lost."""
        query = self.tables.Job.select().where(self.tables.Job.phase == Phase.QUEUED.value)
        if kind is not None:
            query = query.where(self.tables.Job.kind == kind)
        if cutoff is not None:
            query = query.where(self.tables.Job.queued_at.is_null() | (self.tables.Job.queued_at < cutoff))
        with self._session():
            return [JobView.of(r) for r in query]

    def touch_queued(self, job_id: str) -> None:
        with self._session():
            self.tables.Job.update(queued_at=utcnow()).where(
                (self.tables.Job.id == job_id) & (self.tables.Job.phase == Phase.QUEUED.value)).execute()

    def try_lock(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew a lease; True while this holder has it."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl)
        with self._session():
            self.tables.Lock.insert(name=name, holder=holder, expires_at=now - dt.timedelta(seconds=1)
                        ).on_conflict_ignore().execute()
            return self.tables.Lock.update(holder=holder, expires_at=expires).where(
                (self.tables.Lock.name == name) & ((self.tables.Lock.holder == holder) | (self.tables.Lock.expires_at < now))
            ).execute() == 1

    # --- notices (uws.dispatch) --------------------------------------------------------

    def notices(self, job_id: str) -> list[NoticeView]:
        Notice = self.tables.Notice
        with self._session():
            return [NoticeView.of(r) for r in Notice.select().where(Notice.job == job_id).order_by(Notice.id)]

    def notice(self, notice_id: int) -> NoticeView | None:
        with self._session():
            row = self.tables.Notice.get_or_none(self.tables.Notice.id == notice_id)
            return None if row is None else NoticeView.of(row)

    def start_notices(self, job_id: str, phase: Phase) -> list[int]:
        """The job's waiting notices, now due (sending), telling ``phase``."""
        Notice = self.tables.Notice
        with self._session():
            ids = [r.id for r in Notice.select(Notice.id).where((Notice.job == job_id) & (Notice.state == "waiting"))]
            if ids:
                Notice.update(state="sending", phase=phase.value, due=utcnow()).where(
                    Notice.id.in_(ids) & (Notice.state == "waiting")).execute()
        return ids

    def claim_notice(self, notice_id: int, attempt: int, hold: dt.datetime) -> bool:
        """Attempt ``attempt`` (1 = the first) is this delivery's: only one of several
        messages for it can win. ``hold``: when it counts as lost if still unfinished."""
        Notice = self.tables.Notice
        with self._session():
            return Notice.update(attempts=attempt, due=hold).where(
                (Notice.id == notice_id) & (Notice.state == "sending") & (Notice.attempts == attempt - 1)
            ).execute() == 1

    def notice_done(self, notice_id: int, state: str, error: str | None = None) -> None:
        """delivered, or failed for good (``error``); the last failure is kept either way."""
        Notice = self.tables.Notice
        fields: dict[str, object] = {"state": state, "due": None, "finished": utcnow()}
        if error is not None:
            fields["last_error"] = error
        with self._session():
            Notice.update(**fields).where(
                (Notice.id == notice_id) & (Notice.state == "sending")).execute()

    def notice_retry(self, notice_id: int, error: str, due: dt.datetime) -> None:
        Notice = self.tables.Notice
        with self._session():
            Notice.update(due=due, last_error=error).where(
                (Notice.id == notice_id) & (Notice.state == "sending")).execute()

    def overdue_notices(self, cutoff: dt.datetime, limit: int = 500) -> list[NoticeView]:
        """Notices due before ``cutoff`` and not yet attempted again: their message was lost."""
        Notice = self.tables.Notice
        with self._session():
            return [NoticeView.of(r) for r in Notice.select().where(
                (Notice.state == "sending") & (Notice.due < cutoff)).limit(limit)]

    def unstarted_notices(self, limit: int = 500) -> list[tuple[str, Phase]]:
        """Jobs that ended with notices still waiting (their process stopped in between)."""
        Notice, Job = self.tables.Notice, self.tables.Job
        with self._session():
            rows = (Job.select(Job.id, Job.phase).join(Notice, on=(Notice.job == Job.id))
                    .where((Notice.state == "waiting") & Job.phase.in_([p.value for p in FINAL]))
                    .distinct().limit(limit).tuples())
            return [(job_id, Phase(phase)) for job_id, phase in rows]

    def ping(self) -> None:
        with self._session():
            self.db.execute_sql("SELECT 1")
