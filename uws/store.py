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
from collections.abc import Callable, Iterable, Iterator, Sequence
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
class NewResult:
    """A result written to the results store, to be recorded (``JobStore.add_results``)."""

    result_id: str
    key: str
    mime_type: str | None
    size: int | None
    crc32: int | None = None


@dataclass(frozen=True)
class Progress:
    """How far a parted job is (``uws.parts``): counts only grow as parts end."""

    parts: int        # parts planned
    parts_ended: int  # parts done or failed for good
    total: int        # units in all parts
    done: int         # units done, in ended parts
    failed: int       # units failed, in ended parts


@dataclass(frozen=True)
class PartView:
    job: str
    kind: str
    seq: int
    key: str
    units: int
    state: str  # queued, running, done, failed
    attempts: int
    claim: str | None
    done: int
    failed: int
    error: str | None

    @staticmethod
    def of(row: pw.Model, kind: str) -> "PartView":
        return PartView(row.job, kind, row.seq, row.key, row.units, row.state, row.attempts,
                        row.claim, row.done, row.failed, row.error)


PART_UNFINISHED = ("queued", "running")
FINISHING = "f:"  # prefix of the claim of the worker finishing a parted job


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
    parts: int | None = None  # a parted job's number of parts (None: not parted)
    progress: Progress | None = None  # a parted job's, when read with ``JobStore.get``

    @staticmethod
    def of(row: pw.Model, results: Iterable[pw.Model] = (),
           progress: Progress | None = None) -> "JobView":
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
            typed_parameters=row.typed_parameters, parts=row.parts, progress=progress)

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


class KindLimitReached(Exception):
    """A job was not created: its creator already has this many unfinished jobs of its kind."""

    def __init__(self, unfinished: int) -> None:
        super().__init__(f"{unfinished} jobs of this kind not yet finished")
        self.unfinished = unfinished


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

    def get(self, job_id: str, *, results: bool = True) -> JobView | None:
        """The job with its results (``results=False``: without them, e.g. for a part of a
        job that has many) and, if parted, its progress."""
        with self._session():
            row = self.tables.Job.get_or_none(self.tables.Job.id == job_id)
            if row is None:
                return None
            listed = list(self.tables.Result.select().where(self.tables.Result.job == job_id)
                          .order_by(self.tables.Result.seq, self.tables.Result.id)) if results else []
            progress = self._progress(job_id, row.parts) if row.parts is not None else None
            return JobView.of(row, listed, progress)

    def _progress(self, job_id: str, parts: int) -> Progress:
        Part = self.tables.Part
        ended = Part.state.not_in(PART_UNFINISHED)
        total, done, failed, parts_ended = Part.select(
            fn.COALESCE(fn.SUM(Part.units), 0), fn.COALESCE(fn.SUM(Part.done), 0),
            fn.COALESCE(fn.SUM(Part.failed), 0),
            fn.COALESCE(fn.SUM(pw.Case(None, [(ended, 1)], 0)), 0),
        ).where(Part.job == job_id).tuples().get()
        return Progress(parts=parts, parts_ended=int(parts_ended), total=int(total),
                        done=int(done), failed=int(failed))

    def list(self, *, owner: str | None, kind: str | None = None,
             phases: Iterable[Phase] | None = None, after: dt.datetime | None = None,
             last: int | None = None, skip: int = 0) -> list[JobView]:
        """UWS §2.2.2.1: filters combine with AND; ARCHIVED only when asked for. ``skip``
        leaves out that many of the newest first (a page of a list)."""
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
        if skip:
            query = query.offset(skip)
        with self._session():
            return [JobView.of(row) for row in query]

    def result_totals(self, job_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Each job's number of results and their bytes, in one query (a job list page)."""
        ids = list(job_ids)
        if not ids:
            return {}
        Result = self.tables.Result
        with self._session():
            rows = (Result.select(Result.job, fn.COUNT(Result.result_id), fn.COALESCE(fn.SUM(Result.size), 0))
                    .where(Result.job.in_(ids)).group_by(Result.job).tuples())
            return {job: (int(count), int(size)) for job, count, size in rows}

    def existing(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        with self._session():
            return {row.id for row in self.tables.Job.select(self.tables.Job.id).where(self.tables.Job.id.in_(ids))}

    def count_active(self, kind: str) -> int:
        """Jobs of a kind that should have a message at the broker's job queue (QUEUED or
        EXECUTING; a parted job's message is done once its parts are planned)."""
        with self._session():
            return self.tables.Job.select().where((self.tables.Job.kind == kind) & self.tables.Job.phase.in_(
                [Phase.QUEUED.value, Phase.EXECUTING.value]) & self.tables.Job.parts.is_null()).count()

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
               max_unfinished: int = 0, notices: Iterable[str] = (), link: str = "",
               client: str | None = None, max_unfinished_of_kind: int = 0) -> JobView:
        """A new PENDING job; with ``max_unfinished``, only while its owner has fewer jobs
        not yet finished (else UnfinishedLimitReached). The count and the insert are one
        unit per owner: two creations at once cannot both pass the limit. ``notices``: the
        targets told when it ends, ``link`` the job list's URL they show (inserted with it).
        ``client``: an anonymous creator's address, kept with the job; with
        ``max_unfinished_of_kind``, only while the creator (a user, or an anonymous caller at
        that address) has fewer unfinished jobs of this kind (else KindLimitReached), counted
        in the same unit."""
        # Kept at the precision the documents show, so AFTER=<a creationTime we showed>
        # excludes that job (UWS §2.2.2.1: strictly after).
        now = utcnow()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        notices = list(notices)
        if owner is not None:
            client = None
        with self._session(), self._owner_exclusive(owner, locked=bool(max_unfinished or max_unfinished_of_kind)), \
                (self.db.atomic() if notices else contextlib.nullcontext()):
            if max_unfinished_of_kind:
                of_kind = self.count_unfinished_of_kind(kind, owner, client)
                if of_kind >= max_unfinished_of_kind:
                    raise KindLimitReached(of_kind)
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
                typed_parameters=typed_parameters, client=client)
            if notices:
                self.tables.Notice.insert_many(
                    [{"job": row.id, "target": t, "link": link, "state": "waiting"} for t in notices]).execute()
            return JobView.of(row)

    def count_unfinished_of_kind(self, kind: str, owner: str | None, client: str | None) -> int:
        """Jobs of a kind not yet finished of one user, or of the anonymous callers at one
        client address (``owner`` None; ``client`` None: those whose address was not kept)."""
        Job = self.tables.Job
        whose = self._owned_by(owner)
        if owner is None:
            whose &= Job.client.is_null() if client is None else Job.client == client
        with self._session():
            return Job.select().where(whose & (Job.kind == kind)
                                      & Job.phase.in_([p.value for p in UNFINISHED])).count()

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
                self.tables.Part.delete().where(self.tables.Part.job == job_id).execute()
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
        # upgrade at once instead of waiting for a concurrent writer. The place after the
        # job's last result is read from the index on (job, seq), whatever their number.
        Result = self.tables.Result
        seq = Result.select(fn.COALESCE(fn.MAX(Result.seq), -1) + 1).where(Result.job == job_id)
        with self._session():
            Result.insert(job=job_id, result_id=result_id, key=key, mime_type=mime_type,
                          size=size, seq=seq, crc32=crc32).on_conflict(
                conflict_target=[Result.job, Result.result_id],
                update={Result.key: key, Result.mime_type: mime_type, Result.size: size, Result.crc32: crc32},
            ).execute()

    def add_results(self, job_id: str, results: Sequence[NewResult], chunk: int = 200) -> None:
        """Many results of one job recorded at once (as ``add_result`` each): one
        statement per ``chunk`` of them, each listed after the job's results so far in
        the order given. A result id already there is replaced, keeping its place.

        The places follow the job's last one, read from the index on (job, seq) before
        each chunk: a job's millionth result costs what its first did (counting the job's
        results for each made it cost a job of 100,000 results 4 ms a row). Two parts of
        a job recording at once may give places twice; the listing orders ties by id."""
        Result = self.tables.Result
        for start in range(0, len(results), chunk):
            rows = results[start:start + chunk]
            with self._session():
                last = Result.select(fn.MAX(Result.seq)).where(Result.job == job_id).scalar()
                first = 0 if last is None else int(last) + 1
                Result.insert_many([(job_id, r.result_id, r.key, r.mime_type, r.size, first + n, r.crc32)
                                    for n, r in enumerate(rows)],
                                   fields=[Result.job, Result.result_id, Result.key, Result.mime_type,
                                           Result.size, Result.seq, Result.crc32]).on_conflict(
                    conflict_target=[Result.job, Result.result_id],
                    update={Result.key: pw.EXCLUDED.key, Result.mime_type: pw.EXCLUDED.mime_type,
                            Result.size: pw.EXCLUDED.size, Result.crc32: pw.EXCLUDED.crc32},
                ).execute()

    def expired(self, now: dt.datetime, limit: int = 500) -> list[str]:
        with self._session():
            rows = self.tables.Job.select(self.tables.Job.id).where(
                self.tables.Job.destruction.is_null(False) & (self.tables.Job.destruction <= now)).limit(limit)
            return [r.id for r in rows]

    def stale_executing(self, cutoff: dt.datetime) -> list[JobView]:
        with self._session():
            # A parted job has no one thread to keep it alive: its parts are judged instead.
            rows = self.tables.Job.select().where((self.tables.Job.phase == Phase.EXECUTING.value)
                                      & self.tables.Job.parts.is_null()
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

    # --- parts of parted jobs (uws.kinds.Part) ------------------------------------------

    def plan_parts(self, job_id: str, token: str, parts: Iterable[tuple[str, int]],
                   batch: int = 500) -> bool:
        """Store a claimed job's parts, all queued, and mark it parted: one transaction,
        only while ``token`` still holds the job."""
        Job, Part = self.tables.Job, self.tables.Part
        rows = [{"job": job_id, "seq": seq, "key": key, "units": units, "state": "queued",
                 "queued_at": utcnow()} for seq, (key, units) in enumerate(parts)]
        with self._session(), self.db.atomic() as transaction:
            if Job.update(parts=len(rows)).where(
                    (Job.id == job_id) & (Job.phase == Phase.EXECUTING.value) & self._mine(token)
                    & Job.parts.is_null()).execute() != 1:
                transaction.rollback()
                return False
            for start in range(0, len(rows), batch):
                Part.insert_many(rows[start:start + batch]).execute()
        self.notifier.publish(job_id)
        return True

    def _executing(self, job_id: str | pw.Expression) -> pw.Expression:
        Job = self.tables.Job
        return pw.fn.EXISTS(Job.select(Job.id).where((Job.id == job_id) & (Job.phase == Phase.EXECUTING.value)))

    def claim_part(self, job_id: str, seq: int, token: str) -> PartView | None:
        """A worker takes a queued part of an EXECUTING job; only one delivery can win."""
        Part = self.tables.Part
        now = utcnow()
        with self._session():
            if Part.update(state="running", claim=token, attempts=Part.attempts + 1, heartbeat=now,
                           started=now).where(
                    (Part.job == job_id) & (Part.seq == seq) & (Part.state == "queued")
                    & self._executing(job_id)).execute() != 1:
                return None
            row = Part.get((Part.job == job_id) & (Part.seq == seq))
            kind = self.tables.Job.get_by_id(job_id).kind
        return PartView.of(row, kind)

    def end_part(self, job_id: str, seq: int, token: str, state: str, done: int, failed: int,
                 error: str | None = None) -> bool:
        """The part ran (``done``) or failed for good (``failed``), while ``token`` held it."""
        Part = self.tables.Part
        with self._session():
            ended = Part.update(state=state, done=done, failed=failed, error=error, ended=utcnow(),
                                heartbeat=None).where(
                (Part.job == job_id) & (Part.seq == seq) & (Part.state == "running")
                & (Part.claim == token)).execute() == 1
        if ended:
            self.notifier.publish(job_id)  # progress: WAIT callers see it at their next look
        return ended

    def requeue_part(self, job_id: str, seq: int, token: str) -> bool:
        """Back to queued for another delivery (transient failure, lost worker)."""
        Part = self.tables.Part
        with self._session():
            return Part.update(state="queued", claim=None, heartbeat=None, queued_at=utcnow()).where(
                (Part.job == job_id) & (Part.seq == seq) & (Part.state == "running")
                & (Part.claim == token)).execute() == 1

    def part_heartbeat(self, tokens: Iterable[str]) -> None:
        claims = list(tokens)
        if claims:
            Part = self.tables.Part
            with self._session():
                Part.update(heartbeat=utcnow()).where(
                    Part.claim.in_(claims) & (Part.state == "running")).execute()

    def running_parts(self, tokens: Iterable[str]) -> set[str]:
        """Which of these claims still hold a running part."""
        claims = list(tokens)
        if not claims:
            return set()
        Part = self.tables.Part
        with self._session():
            return {row.claim for row in Part.select(Part.claim).where(
                Part.claim.in_(claims) & (Part.state == "running"))}

    def parts(self, job_id: str) -> list[PartView]:
        Part = self.tables.Part
        with self._session():
            job = self.tables.Job.get_or_none(self.tables.Job.id == job_id)
            if job is None:
                return []
            return [PartView.of(row, job.kind) for row in
                    Part.select().where(Part.job == job_id).order_by(Part.seq)]

    def claim_finish(self, job_id: str, token: str) -> bool:
        """One worker takes the finishing of a parted job whose parts have all ended;
        ``token`` (starting with ``FINISHING``) then holds the job."""
        Job, Part = self.tables.Job, self.tables.Part
        unfinished = Part.select(Part.id).where((Part.job == job_id) & Part.state.in_(PART_UNFINISHED))
        with self._session():
            return Job.update(claim=token, heartbeat=utcnow()).where(
                (Job.id == job_id) & (Job.phase == Phase.EXECUTING.value) & Job.parts.is_null(False)
                & (Job.claim.is_null() | ~Job.claim.startswith(FINISHING))
                & ~pw.fn.EXISTS(unfinished)).execute() == 1

    def reopen_finish(self, job_id: str, token: str, cutoff: dt.datetime) -> bool:
        """A finishing whose worker stopped sending heartbeats before ``cutoff`` may be
        claimed again."""
        Job = self.tables.Job
        with self._session():
            return Job.update(claim=None).where(
                (Job.id == job_id) & (Job.phase == Phase.EXECUTING.value) & (Job.claim == token)
                & (Job.heartbeat.is_null() | (Job.heartbeat < cutoff))).execute() == 1

    def stale_parts(self, cutoff: dt.datetime) -> list[PartView]:
        """Running parts of EXECUTING jobs without a heartbeat since ``cutoff``."""
        Job, Part = self.tables.Job, self.tables.Part
        with self._session():
            rows = (Part.select(Part, Job.kind.alias("job_kind")).join(Job, on=(Job.id == Part.job))
                    .where((Job.phase == Phase.EXECUTING.value) & (Part.state == "running")
                           & (Part.heartbeat.is_null() | (Part.heartbeat < cutoff))))
            return [PartView.of(row, row.job_kind) for row in rows.objects()]

    def waiting_parts(self, cutoff: dt.datetime | None = None, limit: int = 10_000) -> list[PartView]:
        """Queued parts of EXECUTING jobs, queued before ``cutoff``: their message may be lost."""
        Job, Part = self.tables.Job, self.tables.Part
        query = (Part.select(Part, Job.kind.alias("job_kind")).join(Job, on=(Job.id == Part.job))
                 .where((Job.phase == Phase.EXECUTING.value) & (Part.state == "queued")))
        if cutoff is not None:
            query = query.where(Part.queued_at.is_null() | (Part.queued_at < cutoff))
        with self._session():
            return [PartView.of(row, row.job_kind) for row in query.order_by(Part.job, Part.seq).limit(limit).objects()]

    def touch_parts(self, job_id: str, seqs: Iterable[int]) -> None:
        Part = self.tables.Part
        with self._session():
            Part.update(queued_at=utcnow()).where(
                (Part.job == job_id) & Part.seq.in_(list(seqs)) & (Part.state == "queued")).execute()

    def unfinished_parted(self, cutoff: dt.datetime) -> list[JobView]:
        """Parted EXECUTING jobs whose parts have all ended but which nobody finishes: not
        claimed, or claimed by a worker without a heartbeat since ``cutoff``."""
        Job, Part = self.tables.Job, self.tables.Part
        unfinished = Part.select(Part.id).where((Part.job == Job.id) & Part.state.in_(PART_UNFINISHED))
        with self._session():
            rows = Job.select().where(
                (Job.phase == Phase.EXECUTING.value) & Job.parts.is_null(False) & ~pw.fn.EXISTS(unfinished)
                & (Job.claim.is_null() | ~Job.claim.startswith(FINISHING)
                   | Job.heartbeat.is_null() | (Job.heartbeat < cutoff)))
            return [JobView.of(row) for row in rows]

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
