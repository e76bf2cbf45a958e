"""Notices sent when jobs end: scheduled as Dramatiq messages, delivered with retries.

When a job reaches a final phase (whoever moved it: its worker, the watchdog, a sweep,
its owner's abort), the store tells ``Dispatcher.job_ended``, after the job's own update:
its waiting notices become due and one message per notice goes to the ``uws-notify``
queue (Redis keeps them in the distributed shape). The job is never held or failed by
them. The actor claims an attempt (only one message per attempt can), sends
(``uws.delivery``) and records the outcome in ``uws_notice``; a failure is tried again
after ``NoticeConfig.retry_delay`` by a delayed message, up to ``max_attempts``, and is
then given up with a log line. The sweeps send again what a lost message or a stopped
process left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq

from dali.timestamps import isoformat, utcnow
from uws.delivery import DeliveryFailed, Ending, post_webhook, send_mail, webhook_body, webhook_headers
from uws.notices import NoticeConfig
from uws.phases import Phase
from uws.store import JobStore, JobView, NoticeView

log = logging.getLogger(__name__)

QUEUE = "uws-notify"


class Dispatcher:
    def __init__(self, config: NoticeConfig, store: JobStore) -> None:
        self.config = config
        self.store = store
        self.actor: dramatiq.Actor[Any, Any] | None = None
        # Told the outcome of every attempt: "delivered", "retried" or "failed" (metrics).
        self.observers: list[Callable[[str], None]] = []
        store.ended.append(self.job_ended)

    def attach(self, broker: dramatiq.Broker) -> None:
        def uws_notify(notice_id: int, attempt: int) -> None:
            self.deliver(notice_id, attempt)
        # Retries are ours (the attempt counter in the database), not Dramatiq's.
        self.actor = dramatiq.Actor(uws_notify, broker=broker, actor_name="uws_notify",
                                    queue_name=QUEUE, priority=0, options={"max_retries": 0})

    # --- scheduling ------------------------------------------------------------------------

    def job_ended(self, job_id: str, phase: Phase) -> None:
        for notice_id in self.store.start_notices(job_id, phase):
            self._send(notice_id, 1)

    def _send(self, notice_id: int, attempt: int, delay_seconds: float = 0) -> None:
        if self.actor is None:
            return
        try:
            self.actor.send_with_options(args=(notice_id, attempt),
                                         delay=int(delay_seconds * 1000) or None)
        except Exception as exc:  # noqa: BLE001 - the broker is down: the sweeps send it later
            log.warning("notice %s: could not queue attempt %d (%s); the sweeps will", notice_id, attempt, exc)

    def resend_lost(self, now: dt.datetime) -> int:
        """Notices whose next attempt is overdue (a lost message, a stopped worker) and
        those of jobs that ended without scheduling them; how many were sent."""
        sent = 0
        for job_id, phase in self.store.unstarted_notices():
            self.job_ended(job_id, phase)
            sent += 1
        cutoff = now - dt.timedelta(seconds=self.config.lost_after_seconds)
        for notice in self.store.overdue_notices(cutoff):
            self._send(notice.id, notice.attempts + 1)
            sent += 1
        return sent

    def resend_all(self) -> int:
        """Embedded shape, at start: no message outlived the process."""
        now = utcnow()
        notices = self.store.overdue_notices(now + dt.timedelta(days=3650))
        for notice in notices:
            wait = (notice.due - now).total_seconds() if notice.due else 0.0
            self._send(notice.id, notice.attempts + 1, max(0.0, wait))
        for job_id, phase in self.store.unstarted_notices():
            self.job_ended(job_id, phase)
        return len(notices)

    # --- delivery (in a worker) ------------------------------------------------------------

    def deliver(self, notice_id: int, attempt: int) -> None:
        notice = self.store.notice(notice_id)
        if notice is None or notice.state != "sending" or notice.attempts != attempt - 1:
            return  # delivered, given up, deleted with its job, or this attempt was made
        hold = utcnow() + dt.timedelta(seconds=self.config.lost_after_seconds)
        if not self.store.claim_notice(notice_id, attempt, hold):
            return
        job = self.store.get(notice.job)
        if job is None:
            return  # deleted with its job meanwhile
        try:
            self._send_one(notice, job, attempt)
        except DeliveryFailed as exc:
            self._failed(notice, attempt, str(exc), exc.permanent)
        except Exception as exc:  # noqa: BLE001 - a fault of ours must not lose the notice
            log.exception("notice %s of job %s: attempt %d failed", notice_id, notice.job, attempt)
            self._failed(notice, attempt, f"internal failure ({type(exc).__name__})", False)
        else:
            self.store.notice_done(notice_id, "delivered")
            self._observe("delivered")
            log.info("notice %s of job %s delivered to %s (attempt %d)", notice_id, notice.job,
                     _shown(notice.target), attempt)

    def _send_one(self, notice: NoticeView, job: JobView, attempt: int) -> None:
        ending = ending_of(job, notice)
        if notice.target.lower().startswith("mailto:"):
            if not self.config.mail_enabled:
                raise DeliveryFailed("e-mail is no longer configured", permanent=True)
            send_mail(self.config, notice.target[len("mailto:"):], ending)
            return
        delivery = f"{notice.id}-{attempt}-{uuid.uuid4().hex[:8]}"
        sent = isoformat(utcnow())
        body = webhook_body(ending, delivery, sent)
        post_webhook(self.config, notice.target, body, webhook_headers(self.config, body, delivery, sent))

    def _failed(self, notice: NoticeView, attempt: int, reason: str, permanent: bool) -> None:
        if permanent or attempt >= self.config.max_attempts:
            self.store.notice_done(notice.id, "failed", reason)
            log.warning("notice %s of job %s to %s: gave up after %d attempts: %s", notice.id,
                        notice.job, _shown(notice.target), attempt, reason)
            self._observe("failed")
            return
        delay = self.config.retry_delay(attempt)
        self.store.notice_retry(notice.id, reason, utcnow() + dt.timedelta(seconds=delay))
        log.info("notice %s of job %s: attempt %d failed (%s); next in %g s", notice.id, notice.job,
                 attempt, reason, delay)
        self._observe("retried")
        self._send(notice.id, attempt + 1, delay)

    def _observe(self, outcome: str) -> None:
        for observe in self.observers:
            try:
                observe(outcome)
            except Exception:  # noqa: BLE001 - metrics must not lose a notice
                log.exception("notice observer failed")


def ending_of(job: JobView, notice: NoticeView) -> Ending:
    url = f"{notice.link.rstrip('/')}/{job.id}"
    return Ending(job_id=job.id, phase=job.phase.value, url=url, run_id=job.run_id,
                  ended=isoformat(job.end_time) if job.end_time else None,
                  results=tuple(f"{url}/results/{r.id}" for r in job.results),
                  error=job.error_message if job.phase in (Phase.ERROR, Phase.ABORTED) else None)


def _shown(target: str) -> str:
    """A target as logs show it: a URL without its query (which may hold a token)."""
    return target.split("?", 1)[0][:200]
