"""The UWS service: job kinds, their Dramatiq actors, and the operations on jobs.

Routes (``uws.routes``) and worker middleware (``uws.worker``) call into this; it is
the one place that knows how a job is created, run, finished, aborted and destroyed.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dramatiq
import peewee as pw
from dramatiq.middleware import CurrentMessage
from pydantic import ValidationError

from dali.errors import (
    MultiValuedParamNotSupported,
    ServiceError,
    ServiceUnavailable,
    UsageError,
)
from dali.params import Params
from dali.timestamps import utcnow
from storage.protocol import ResultStore
from uws import context
from uws.broker import held_job_ids, unacked_messages
from uws.dispatch import Dispatcher
from uws.kinds import JobContext, JobInterrupted, JobKind, Uploads, upload_key
from uws.notices import NAME as NOTIFY
from uws.notices import NoticeConfig, parse_targets
from uws.notify import Notifier
from uws.parts import PartedExecution, message_key
from uws.quota import UNLIMITED, Allowance, AllowanceFor, Owner, Usage, check_create, owner_name, unlimited
from uws.store import JobStore, JobView, KindLimitReached, UnfinishedLimitReached
from uws.worker import JobWatchdog, Scheduler

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True)
class UWSConfig:
    """How the UWS layer behaves; the caller builds it from its own settings (durations in
    seconds)."""

    wait_max_seconds: float
    # WAIT is woken by notifications; this re-check only guards against a lost one.
    wait_recheck_seconds: float
    # Blocking WAITs held at once per caller and per job list; beyond them a WAIT returns
    # at once (0: no limit).
    wait_max_per_caller: int
    wait_max_total: int
    default_execution_duration: int
    max_execution_duration: int  # 0: clients may ask for unlimited
    default_destruction_seconds: int
    max_destruction_seconds: int
    trust_forwarded_headers: bool
    # When set (e.g. "/_results"), result downloads are handed to nginx by X-Accel-Redirect.
    accel_redirect_prefix: str
    heartbeat_seconds: float
    stale_job_seconds: float
    max_job_attempts: int
    requeue_after_seconds: float
    lost_message_grace_seconds: float
    transient_retries: int
    retry_backoff_ms: int
    sweep_interval_seconds: float
    watchdog_interval: float
    # What a job stores of its client's parameters (as its kind shows them); 0: no limit.
    max_job_parameters: int
    max_job_parameter_bytes: int
    max_upload_bytes: int  # the files of one job together
    max_uploads_at_once: int  # job creations with files read at once, per job list and process


@dataclass(frozen=True)
class Parsed(Generic[P]):
    shown: Params  # what the UWS parameters document lists
    value: P       # what the worker gets
    files: Uploads = field(default_factory=dict)  # kept with the job (JobContext.upload)


@dataclass
class SweepReport:
    destroyed: int = 0
    orphans: int = 0
    requeued: int = 0
    failed: int = 0
    resent: int = 0
    notices: int = 0  # notices sent again (lost messages)
    parts_requeued: int = 0  # parts of parted jobs whose worker was lost, queued again
    parts_failed: int = 0    # ... failed for good (lost max_job_attempts times)
    parts_resent: int = 0    # part and finish messages sent again
    others: dict[str, int] = field(default_factory=dict)  # rows deleted by each sweep hook


# A sweep of the application's own (e.g. expired logins), run with the job sweeps under
# the same lease: given the time of the sweep, it returns how many rows it deleted.
SweepHook = Callable[[dt.datetime], int]


class UWSService:
    def __init__(self, config: UWSConfig, store: JobStore, storage: ResultStore,
                 notifier: Notifier, allowance: AllowanceFor = unlimited,
                 notices: NoticeConfig | None = None) -> None:
        self.config = config
        self.allowance = allowance  # the owner's result space is enforced while a job runs
        self.store = store
        self.storage = storage
        self.notifier = notifier
        self.kinds: dict[str, JobKind] = {}
        self.actors: dict[str, dramatiq.Actor[Any, Any]] = {}
        self.watchdog = JobWatchdog(store, interval=config.watchdog_interval,
                                    heartbeat_seconds=config.heartbeat_seconds)
        self.scheduler = Scheduler(self.sweep, self._lease, interval=config.sweep_interval_seconds)
        self.sweep_observers: list[Callable[[SweepReport], None]] = []  # e.g. metrics
        self.sweep_hooks: dict[str, SweepHook] = {}
        # NOTIFY: notices when a job ends (None: the service sends none).
        self.notices = notices
        self.dispatcher = Dispatcher(notices, store) if notices is not None else None
        self.part_actors: dict[str, dramatiq.Actor[Any, Any]] = {}
        self.parted = PartedExecution(store, storage, self.watchdog, lambda owner: self.allowance(owner),
                                      self._params, self._send_part,
                                      transient_retries=config.transient_retries,
                                      max_attempts=config.max_job_attempts, held=self._held_parts)

    # --- set-up ------------------------------------------------------------------------

    def register(self, kind: JobKind) -> None:
        if kind.name in self.kinds:
            raise ValueError(f"job kind {kind.name!r} registered twice")
        self.kinds[kind.name] = kind

    def attach(self, broker: dramatiq.Broker) -> None:
        """Add the worker middleware to ``broker`` and declare one actor per kind."""
        broker.add_middleware(self.watchdog)
        broker.add_middleware(self.scheduler)
        if self.dispatcher is not None:
            self.dispatcher.attach(broker)
        options = {
            "throws": (JobInterrupted,),
            "retry_when": self._should_retry,
            "min_backoff": self.config.retry_backoff_ms,
            "max_backoff": self.config.retry_backoff_ms * 30,
        }
        for kind in self.kinds.values():
            self.actors[kind.name] = dramatiq.Actor(
                self._actor_body(kind), broker=broker, actor_name=kind.actor_name,
                queue_name=kind.queue, priority=0, options=dict(options))
            if kind.parted:
                self.part_actors[kind.name] = dramatiq.Actor(
                    self._parts_body(kind), broker=broker, actor_name=kind.parts_actor_name,
                    queue_name=kind.parts_queue, priority=0, options=dict(options))

    def parts_queues(self) -> list[str]:
        """The queues of the parted kinds' parts: a worker should take one message of them
        per thread at a time (``uws.broker.start_worker``), so the parts of a job spread
        over the workers instead of waiting in the first one that polled."""
        return [kind.parts_queue for kind in self.kinds.values() if kind.parted]

    def _actor_body(self, kind: JobKind):  # type: ignore[no-untyped-def]
        def run_job(job_id: str) -> None:
            self.execute(kind, job_id)
        run_job.__name__ = kind.actor_name
        return run_job

    def _parts_body(self, kind: JobKind):  # type: ignore[no-untyped-def]
        def run_part(job_id: str, index: int) -> None:
            self.parted.run(kind, job_id, index)
        run_part.__name__ = kind.parts_actor_name
        return run_part

    def _send_part(self, kind: str, job_id: str, index: int) -> None:
        self.part_actors[kind].send(job_id, index)

    def _held_parts(self, kind: str, among: set[str]) -> set[str] | None:
        actor = self.part_actors.get(kind)
        if actor is None:
            return None
        return held_job_ids(actor.broker, self.kinds[kind].parts_queue, self.config.stale_job_seconds,
                            among, key=lambda args: message_key(str(args[0]), int(args[1])))

    def _should_retry(self, retries: int, exc: BaseException) -> bool:
        return isinstance(exc, ServiceUnavailable) and retries < self.config.transient_retries

    # --- client operations -------------------------------------------------------------

    def clamp_duration(self, seconds: int) -> int:
        """UWS §2.1.4: the server may limit the client's value; 0 means unlimited."""
        limit = self.config.max_execution_duration
        if limit and (seconds == 0 or seconds > limit):
            return limit
        return seconds

    def clamp_destruction(self, creation: dt.datetime, when: dt.datetime,
                          limit_seconds: int = 0) -> dt.datetime:
        """UWS §2.1.5: the server may override the client's destruction time.

        ``limit_seconds`` is the caller's own, tighter limit (anonymous jobs), if any.
        """
        seconds = self.config.max_destruction_seconds
        if limit_seconds:
            seconds = min(seconds, limit_seconds)
        return min(when, creation + dt.timedelta(seconds=seconds))

    def parse(self, kind: JobKind[P], pairs: Params, owner: str | None, files: Uploads | None = None) -> Parsed[P]:
        """The client's parameters (and files, for a kind that takes them), checked and
        typed by the kind (raises UsageError)."""
        if kind.parse_uploads is not None:
            value = kind.parse_uploads(pairs, files or {}, owner)
        elif files:
            raise UsageError(f"{kind.name} jobs take no files ({', '.join(sorted(files))} sent)")
        else:
            value = kind.parse(pairs, owner)
        shown = kind.shown(value, pairs)
        self.check_stored_parameters(shown)
        return Parsed(shown, value, dict(files or {}))

    def parse_notices(self, values: list[str], anonymous: bool) -> list[str]:
        """The job's NOTIFY targets, checked against what the service allows (UsageError)."""
        return parse_targets(values, self.notices, anonymous)

    def notice_link(self, request_list_url: str, path: str) -> str:
        """The URL of the job list at ``path`` that notices show: under the service's public
        URL when it has one, else as the creating request saw it."""
        public = self.notices.public_url if self.notices is not None else ""
        return public.rstrip("/") + path if public else request_list_url

    def check_stored_parameters(self, shown: Params) -> None:
        """What a job keeps of its parameters is bounded, whatever its kind shows."""
        count, most = len(shown), self.config.max_job_parameters
        if most and count > most:
            raise UsageError(f"this job has {count} parameters and max_job_parameters is {most}; "
                             f"split it into several jobs")
        size = sum(len(name.encode()) + len(value.encode()) for name, value in shown)
        most = self.config.max_job_parameter_bytes
        if most and size > most:
            raise UsageError(f"this job's parameters hold {size} bytes and max_job_parameter_bytes "
                             f"is {most}; send shorter values or split it into several jobs")

    def create(self, kind: JobKind[P], *, owner: str | None, parameters: Parsed[P],
               run_id: str | None, execution_duration: int | None,
               destruction: dt.datetime | None, allowance: Allowance = UNLIMITED,
               notices: list[str] | None = None, link: str = "", client: str | None = None) -> JobView:
        """A new PENDING job, refused (429) when its owner has ``max_unfinished_jobs`` jobs
        not yet finished, or as many of its kind as the kind's ``unfinished_limit`` allows
        (an anonymous caller's counted by ``client``, their address): checked with the
        insert, as one unit per owner. ``notices``: its checked NOTIFY targets
        (``parse_notices``), shown with its parameters; ``link``: the job list's URL they
        show."""
        now = utcnow()
        duration = self.clamp_duration(
            self.config.default_execution_duration if execution_duration is None else execution_duration)
        default_end = now + dt.timedelta(seconds=self.config.default_destruction_seconds)
        end = self.clamp_destruction(now, destruction or default_end, allowance.max_destruction_seconds)
        shown = list(parameters.shown) + [(NOTIFY, target) for target in notices or ()]
        if notices:
            self.check_stored_parameters(shown)
        limit = kind.unfinished_limit(owner) if kind.unfinished_limit is not None else None
        try:
            job = self.store.create(kind=kind.name, owner=owner, parameters=shown,
                                    run_id=run_id, execution_duration=duration, destruction=end,
                                    request_id=context.request_id.get(),
                                    typed_parameters=kind.dump(parameters.value),
                                    max_unfinished=allowance.max_unfinished_jobs,
                                    notices=notices or (), link=link, client=client,
                                    max_unfinished_of_kind=limit.most if limit is not None else 0)
        except KindLimitReached as exc:
            assert limit is not None
            raise limit.refusal(exc.unfinished) from None
        except UnfinishedLimitReached as exc:
            check_create(allowance, Usage(active_jobs=0, result_bytes=0, unfinished_jobs=exc.unfinished),
                         owner_name(owner))
            raise  # check_create raised already; this keeps type checkers sure
        try:
            for name, data in parameters.files.items():
                with self.storage.writer(upload_key(job.id, name)) as fh:
                    fh.write(data)
        except OSError as exc:
            self.destroy(job.id)  # nothing the client sent is kept half
            raise ServiceUnavailable("the job's files cannot be stored now; no job was created, "
                                     "send the request again later", headers={"Retry-After": "30"}) from exc
        return job

    def set_parameters(self, kind: JobKind[P], job_id: str, parameters: Parsed[P]) -> bool:
        """UWS §2.1.11: False when the job has left PENDING."""
        return self.store.set_parameters(job_id, parameters.shown, kind.dump(parameters.value))

    def run(self, job: JobView) -> bool:
        """PHASE=RUN: PENDING → QUEUED and a message to the workers. False if not runnable."""
        if not self.store.queue(job.id):
            return False
        try:
            self.send(job)
        except Exception as exc:  # noqa: BLE001 - any broker failure
            # Put the job back so the client can send RUN again; nothing it gave is lost.
            self.store.unqueue(job.id)
            log.error("could not queue job %s: %s", job.id, exc)
            raise ServiceUnavailable("the job queue is not reachable; the job stays PENDING, "
                                     "send PHASE=RUN again later", headers={"Retry-After": "10"}) from None
        return True

    def send(self, job: JobView) -> None:
        self.actors[job.kind].send(job.id)

    def destroy(self, job_id: str) -> bool:
        """UWS §2.1.5: abort if running, delete the results, forget the job."""
        self.store.abort(job_id)
        gone = self.store.delete(job_id)
        self.storage.delete_prefix(f"jobs/{job_id}")
        return gone

    # --- execution (in a worker thread) ------------------------------------------------

    def execute(self, kind: JobKind, job_id: str) -> None:
        token = uuid.uuid4().hex
        if not self.store.claim(job_id, token):
            log.info("job %s is not QUEUED (aborted, deleted or taken); message dropped", job_id)
            return
        try:
            self._execute_claimed(kind, job_id, token)
        except JobInterrupted:
            log.info("job %s interrupted", job_id)

    def _execute_claimed(self, kind: JobKind, job_id: str, token: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        context.request_id.set(job.request_id)  # the worker's logs carry the creating request's id
        log.info("job %s (%s) started, attempt %d", job_id, kind.name, job.attempts)
        self.watchdog.track(job_id, token, job.execution_duration)
        planned = None  # the parts of a parted job (uws.parts)
        try:
            try:
                ctx = JobContext(job, self._params(kind, job), self.store, self.storage,
                                 self.allowance(Owner(job.owner)))
                if kind.parted and kind.name in self.part_actors:
                    planned = self.parted.plan(kind, ctx, token)
                if planned is None:
                    kind.run(ctx)
            finally:
                self.watchdog.untrack(job_id)
        except JobInterrupted:
            raise
        except (UsageError, MultiValuedParamNotSupported) as exc:
            self.store.fail(job_id, token, "fatal", exc.text)
        # OSError: the results store (full, unmounted); a database error: the job database
        # stopped answering while the job wrote to it (a restart, a freeze cut at its deadline).
        except (ServiceUnavailable, OSError, pw.OperationalError, pw.InterfaceError) as caught:
            exc = _unavailable(caught)
            message = CurrentMessage.get_current_message()
            retries = message.options.get("retries", 0) if message is not None else 0
            retry = message is not None and self._should_retry(retries, exc)  # no message: no redelivery
            if retry and self.store.requeue(job_id, token):
                log.warning("job %s: transient failure (%s), retry %d", job_id, exc.text, retries + 1)
                raise exc from caught  # the Retries middleware sends the message again after a backoff
            self.store.fail(job_id, token, "transient", exc.text)
        except ServiceError as exc:
            log.error("job %s failed: %s", job_id, exc.text)
            self.store.fail(job_id, token, "fatal", exc.text)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("job %s failed unexpectedly (incident %s)", job_id, incident)
            self.store.fail(job_id, token, "fatal",
                            f"Error: internal failure while running the job, logged as incident {incident}")
        else:
            if planned is None:
                self.store.complete(job_id, token)
            else:  # the job stays EXECUTING until its parts have ended
                self.parted.start(kind, job_id, planned)

    def _params(self, kind: JobKind[P], job: JobView) -> P:
        """The job's parameters as its kind parsed them at creation.

        A job stored without them (made before they were kept, or by an older version
        whose parameter type differs) is parsed again from its pairs.
        """
        if job.typed_parameters:
            try:
                return kind.load(job.typed_parameters)
            except ValidationError:
                log.warning("job %s: stored parameters no longer fit %s; parsing them again",
                            job.id, kind.name)
        return kind.parse([(n, v) for n, v in job.parameters if n.upper() != NOTIFY], job.owner)

    # --- scheduled work (one worker at a time) ----------------------------------------

    def _lease(self, holder: str, ttl: float) -> bool:
        return self.store.try_lock("uws-sweep", holder, ttl)

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = utcnow()
        for job_id in self.store.expired(now):
            report.destroyed += self.destroy(job_id)
        stale = now - dt.timedelta(seconds=self.config.stale_job_seconds)
        for job in self.store.stale_executing(stale):
            self._recover(job, report)
        self._recover_parts(stale, now - dt.timedelta(seconds=self.config.lost_message_grace_seconds),
                            now - dt.timedelta(seconds=self.config.requeue_after_seconds), report)
        self._resend_lost_messages(now, report)
        report.orphans = self._delete_orphans()
        if self.dispatcher is not None:
            try:
                report.notices = self.dispatcher.resend_lost(now)
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("sweep of notices failed")
        for name, hook in self.sweep_hooks.items():
            try:
                deleted = hook(now)
            except Exception:  # noqa: BLE001 - the job sweeps are done; the next sweep tries again
                log.exception("sweep %s failed", name)
                continue
            if deleted:
                report.others[name] = deleted
        if report != SweepReport():
            log.info("sweep: %s", report)
        for observe in self.sweep_observers:
            observe(report)
        return report

    def _resend_lost_messages(self, now: dt.datetime, report: SweepReport) -> None:
        """QUEUED jobs whose message will not be delivered: lost (a Redis restart loses
        them) or taken off the queue by a worker that died before claiming the job
        (Dramatiq prefetches messages; a dead worker's stay in Redis for its own, much
        longer heartbeat timeout).

        Where the broker can say which jobs it holds for delivery (waiting, delayed, or
        taken by a worker that sent a heartbeat within stale_job_seconds), any other job
        QUEUED for lost_message_grace_seconds is sent again; elsewhere (or when the broker
        cannot count them), fewer messages than active jobs means some were lost and every
        QUEUED job is sent again after the same grace, and otherwise a job QUEUED for
        requeue_after_seconds is. A duplicate is harmless: only one delivery can claim the
        job.
        """
        grace = now - dt.timedelta(seconds=self.config.lost_message_grace_seconds)
        fallback = now - dt.timedelta(seconds=self.config.requeue_after_seconds)
        for kind in self.kinds.values():
            actor = self.actors.get(kind.name)
            if actor is None:
                continue
            candidates = self.store.waiting_queued(grace, kind.name)
            held = held_job_ids(actor.broker, kind.queue, self.config.stale_job_seconds,
                                {job.id for job in candidates})
            if held is not None:
                overdue = {job.id for job in self.store.waiting_queued(fallback, kind.name)}
                waiting = [job for job in candidates if job.id not in held or job.id in overdue]
            else:
                count = unacked_messages(actor.broker, kind.queue)
                lost = count is not None and count < self.store.count_active(kind.name)
                waiting = candidates if lost else self.store.waiting_queued(fallback, kind.name)
            for job in waiting:
                self.store.touch_queued(job.id)
                self._resend(job, report)

    def _delete_orphans(self, grace_seconds: float = 60.0) -> int:
        """Result folders whose job is gone (a result written after its job was deleted)."""
        names = self.storage.children("jobs")
        alive = self.store.existing(names)
        deleted = 0
        for name in names:
            if name not in alive and self.storage.age(f"jobs/{name}") > grace_seconds:
                self.storage.delete_prefix(f"jobs/{name}")
                deleted += 1
        return deleted

    def _recover(self, job: JobView, report: SweepReport) -> None:
        """A job whose worker stopped sending heartbeats (killed, host lost)."""
        if job.attempts < self.config.max_job_attempts:
            if self.store.requeue(job.id, job.claim):
                log.warning("job %s lost its worker; re-queued (attempt %d)", job.id, job.attempts + 1)
                report.requeued += 1
                self._resend(job, report)
        elif self.store.fail(job.id, job.claim, "transient",
                             f"ServiceUnavailable: the worker running this job was lost "
                             f"{job.attempts} times; submit the job again"):
            report.failed += 1

    def _recover_parts(self, stale: dt.datetime, grace: dt.datetime | None, overdue: dt.datetime | None,
                       report: SweepReport) -> None:
        """Parts of parted jobs: a lost worker's part is run again, not the whole job."""
        if not self.part_actors:
            return
        try:
            parts = self.parted.recover(stale, grace, overdue)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.exception("sweep of job parts failed")
            return
        report.parts_requeued += parts.requeued
        report.parts_failed += parts.failed
        report.parts_resent += parts.resent

    def _resend(self, job: JobView, report: SweepReport) -> None:
        if job.kind not in self.actors:
            return
        try:
            self.send(job)
            report.resent += 1
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("could not re-send job %s: %s", job.id, exc)

    def recover_after_restart(self) -> SweepReport:
        """Embedded shape: nothing survives the process, so every active job is re-sent."""
        report = SweepReport()
        recovered = set()
        for job in self.store.stale_executing(utcnow() + dt.timedelta(days=1)):
            self._recover(job, report)  # re-queued and sent, or failed
            recovered.add(job.id)
        for job in self.store.waiting_queued():
            if job.id not in recovered:
                self._resend(job, report)
        later = utcnow() + dt.timedelta(days=1)
        self._recover_parts(later, None, None, report)
        if self.dispatcher is not None:
            report.notices = self.dispatcher.resend_all()
        return report


def _unavailable(caught: Exception) -> ServiceUnavailable:
    """A failure that may not recur, as the transient error a job can end with."""
    if isinstance(caught, ServiceUnavailable):
        return caught
    if isinstance(caught, OSError):
        return ServiceUnavailable(f"the results store failed ({caught.strerror or caught})")
    return ServiceUnavailable("the job database did not answer")
