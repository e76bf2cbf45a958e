"""Parted jobs: a job split into parts that any worker runs on its own (``uws.kinds.Part``).

The job's own message claims the job and asks its kind for the plan (``parts``); the
parts are stored (``uws_part``, all queued) and one message per part goes to the kind's
parts queue, and the job stays EXECUTING. A part's message claims its part (queued →
running, only while the job is EXECUTING), runs it under the watchdog (heartbeats, abort,
the job's execution duration) and stores its report. Whoever ends the last part claims
the finishing (one conditional update), runs the kind's ``finish`` and completes the job.

Liveness is judged part by part: a running part whose heartbeat stops (its worker was
killed) is queued again by the sweep, up to ``max_job_attempts`` runs, then failed for
good; the other parts' work is kept. A finishing whose worker died is claimed again.
A finish message is a part message with ``FINISH`` for its index.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import peewee as pw
from dramatiq.middleware import CurrentMessage

from dali.errors import MultiValuedParamNotSupported, ServiceError, ServiceUnavailable, UsageError
from dali.timestamps import utcnow
from storage.protocol import ResultStore
from uws import context
from uws.kinds import MAX_PART_KEY, JobContext, JobInterrupted, JobKind, Part, PartReport
from uws.phases import Phase
from uws.quota import Allowance, Owner
from uws.store import FINISHING, JobStore, JobView, PartView
from uws.worker import JobWatchdog

log = logging.getLogger(__name__)

FINISH = -1  # the index a finish message carries instead of a part's


def message_key(job_id: str, index: int) -> str:
    """A part's message, as ``held`` names it."""
    return f"{job_id}:{index}"

TRANSIENT = (ServiceUnavailable, OSError, pw.OperationalError, pw.InterfaceError)


@dataclass
class PartsReport:
    """What a sweep did to parts."""

    requeued: int = 0  # parts of a lost worker queued again
    failed: int = 0    # parts failed for good (lost too often)
    resent: int = 0    # part and finish messages sent again


class PartedExecution:
    """Runs the plan, the parts and the finishing of parted jobs (in worker threads)."""

    def __init__(self, store: JobStore, storage: ResultStore, watchdog: JobWatchdog,
                 allowance: Callable[[Owner], Allowance], params: Callable[[JobKind, JobView], object],
                 send: Callable[[str, str, int], None], *, transient_retries: int,
                 max_attempts: int,
                 held: Callable[[str, set[str]], set[str] | None] = lambda kind, among: None) -> None:
        self.store = store
        self.storage = storage
        self.watchdog = watchdog
        self.allowance = allowance
        self.params = params
        self.send = send  # (kind name, job id, part index or FINISH)
        # Which of a kind's part messages (``message_key``) the broker holds for delivery;
        # None: it cannot say.
        self.held = held
        self.transient_retries = transient_retries
        self.max_attempts = max_attempts

    def context(self, kind: JobKind, job: JobView) -> JobContext:
        return JobContext(job, self.params(kind, job), self.store, self.storage,
                          self.allowance(Owner(job.owner)))

    # --- the plan (in the job's own message, claimed with ``token``) -----------------

    def plan(self, kind: JobKind, ctx: JobContext, token: str) -> list[Part] | None:
        """Ask the kind for the parts and store them; None: the kind runs this job whole."""
        assert kind.parts is not None
        planned = kind.parts(ctx)
        if planned is None:
            return None
        parts = list(planned)
        for part in parts:
            if len(part.key) > MAX_PART_KEY or part.units < 0:
                raise ServiceError(f"job kind {kind.name} planned a part with a key of "
                                   f"{len(part.key)} characters or {part.units} units")
        if not self.store.plan_parts(ctx.job_id, token, [(p.key, p.units) for p in parts]):
            raise JobInterrupted  # aborted, deleted or taken over while planning
        log.info("job %s split into %d parts (%d units)", ctx.job_id, len(parts),
                 sum(p.units for p in parts))
        return parts

    def start(self, kind: JobKind, job_id: str, parts: Sequence[Part]) -> None:
        """Send the planned parts' messages; with none, finish at once."""
        if not parts:
            self.finish(kind, job_id)
            return
        for index in range(len(parts)):
            try:
                self.send(kind.name, job_id, index)
            except Exception as exc:  # noqa: BLE001 - the sweep sends the queued parts again
                log.warning("job %s: could not send part %d (%s); the sweep will", job_id, index, exc)
                return

    # --- one part (any worker) -------------------------------------------------------

    def run(self, kind: JobKind, job_id: str, index: int) -> None:
        if index == FINISH:
            self.finish(kind, job_id)
            return
        token = uuid.uuid4().hex
        part = self.store.claim_part(job_id, index, token)
        if part is None:
            log.info("part %d of job %s is not queued (ended, taken, or the job is no longer "
                     "EXECUTING); message dropped", index, job_id)
            return
        try:
            self._run_claimed(kind, part, token)
        except JobInterrupted:
            log.info("part %d of job %s interrupted", index, job_id)
            return
        self.finish(kind, job_id)

    def _run_claimed(self, kind: JobKind, part: PartView, token: str) -> None:
        assert kind.run_part is not None
        job = self.store.get(part.job, results=False)  # a part never reads the others' results
        if job is None or job.phase != Phase.EXECUTING:
            return
        context.request_id.set(job.request_id)  # the logs of every part carry the creating request's id
        self.watchdog.track_part(job.id, token, _seconds_left(job))
        try:
            try:
                report = kind.run_part(self.context(kind, job),
                                       Part(part.key, part.units, index=part.seq, attempt=part.attempts))
            finally:
                self.watchdog.untrack_part(token)
        except JobInterrupted:
            raise
        except (UsageError, MultiValuedParamNotSupported) as exc:
            self._fail(part, token, exc.text)
        except TRANSIENT as caught:
            exc = caught if isinstance(caught, ServiceUnavailable) else ServiceUnavailable(str(caught))
            message = CurrentMessage.get_current_message()
            retries = message.options.get("retries", 0) if message is not None else 0
            if (message is not None and retries < self.transient_retries
                    and self.store.requeue_part(part.job, part.seq, token)):
                log.warning("part %d of job %s: transient failure (%s), retry %d",
                            part.seq, part.job, exc.text, retries + 1)
                raise exc from caught  # the Retries middleware sends the message again
            self._fail(part, token, exc.text)
        except ServiceError as exc:
            log.error("part %d of job %s failed: %s", part.seq, part.job, exc.text)
            self._fail(part, token, exc.text)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("part %d of job %s failed unexpectedly (incident %s)", part.seq, part.job, incident)
            self._fail(part, token, f"Error: internal failure while running the part, logged as "
                                    f"incident {incident}")
        else:
            self.store.end_part(part.job, part.seq, token, "done", max(report.done, 0),
                                max(report.failed, 0))

    def _fail(self, part: PartView, token: str, error: str) -> None:
        self.store.end_part(part.job, part.seq, token, "failed", 0, part.units, error)

    # --- the finishing (one worker, once every part has ended) -----------------------

    def finish(self, kind: JobKind, job_id: str) -> None:
        token = FINISHING + uuid.uuid4().hex
        if not self.store.claim_finish(job_id, token):
            return
        try:
            self._finish_claimed(kind, job_id, token)
        except JobInterrupted:
            log.info("finishing of job %s interrupted", job_id)

    def _finish_claimed(self, kind: JobKind, job_id: str, token: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        ended = [(Part(p.key, p.units, index=p.seq, attempt=p.attempts, error=p.error),
                  PartReport(p.done, p.failed) if p.state == "done" else None)
                 for p in self.store.parts(job_id)]
        left = _seconds_left(job)
        self.watchdog.track(job_id, token, 0 if left is None else max(left, 0.001))
        try:
            try:
                if kind.finish is not None:
                    kind.finish(self.context(kind, job), ended)
            finally:
                self.watchdog.untrack(job_id)
        except JobInterrupted:
            raise
        except (UsageError, MultiValuedParamNotSupported) as exc:
            self.store.fail(job_id, token, "fatal", exc.text)
        except TRANSIENT as caught:
            text = caught.text if isinstance(caught, ServiceUnavailable) else str(caught)
            self.store.fail(job_id, token, "transient", text)
        except ServiceError as exc:
            self.store.fail(job_id, token, "fatal", exc.text)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("finishing job %s failed unexpectedly (incident %s)", job_id, incident)
            self.store.fail(job_id, token, "fatal",
                            f"Error: internal failure while finishing the job, logged as incident {incident}")
        else:
            self.store.complete(job_id, token)
            log.info("job %s: all parts ended; completed", job_id)

    # --- recovery (the sweeps) -------------------------------------------------------

    def recover(self, stale: dt.datetime, grace: dt.datetime | None,
                overdue: dt.datetime | None) -> PartsReport:
        """Parts whose worker stopped sending heartbeats before ``stale``; queued parts
        whose message is lost (as for jobs: queued before ``grace`` and not held by the
        broker, or queued before ``overdue`` whatever it says; None: every one);
        finishings nobody holds."""
        report = PartsReport()
        sent: set[tuple[str, int]] = set()
        for part in self.store.stale_parts(stale):
            if part.claim is None:
                continue
            if part.attempts < self.max_attempts:
                if self.store.requeue_part(part.job, part.seq, part.claim):
                    log.warning("part %d of job %s lost its worker; re-queued (attempt %d)",
                                part.seq, part.job, part.attempts + 1)
                    report.requeued += 1
                    report.resent += self._send(part.kind, part.job, part.seq)
                    sent.add((part.job, part.seq))
            elif self.store.end_part(part.job, part.seq, part.claim, "failed", 0, part.units,
                                     f"ServiceUnavailable: the worker running this part was lost "
                                     f"{part.attempts} times"):
                report.failed += 1
                report.resent += self._send(part.kind, part.job, FINISH)
        waiting = [p for p in self.store.waiting_parts(grace) if (p.job, p.seq) not in sent]
        if grace is not None and waiting:
            waiting = self._lost(waiting, overdue)
        by_job: dict[str, list[int]] = {}
        for part in waiting:
            by_job.setdefault(part.job, []).append(part.seq)
        for part in waiting:
            report.resent += self._send(part.kind, part.job, part.seq)
        for job_id, seqs in by_job.items():
            self.store.touch_parts(job_id, seqs)
        for job in self.store.unfinished_parted(stale):
            if job.claim and job.claim.startswith(FINISHING):
                if not self.store.reopen_finish(job.id, job.claim, stale):
                    continue
                log.warning("job %s lost the worker finishing it; finishing again", job.id)
            report.resent += self._send(job.kind, job.id, FINISH)
        return report

    def _lost(self, waiting: list[PartView], overdue: dt.datetime | None) -> list[PartView]:
        late = {(p.job, p.seq) for p in self.store.waiting_parts(overdue)}
        lost = []
        for kind in {p.kind for p in waiting}:
            mine = [p for p in waiting if p.kind == kind]
            held = self.held(kind, {message_key(p.job, p.seq) for p in mine})
            lost += [p for p in mine if (p.job, p.seq) in late
                     or (held is not None and message_key(p.job, p.seq) not in held)]
        return lost

    def _send(self, kind: str, job_id: str, index: int) -> int:
        try:
            self.send(kind, job_id, index)
            return 1
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("could not re-send part %d of job %s: %s", index, job_id, exc)
            return 0


def _seconds_left(job: JobView) -> float | None:
    """What remains of the job's execution duration (counted from its start); None: no limit."""
    if job.execution_duration <= 0 or job.start_time is None:
        return None
    return job.execution_duration - (utcnow() - job.start_time).total_seconds()
