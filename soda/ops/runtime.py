"""Everything a process of the service needs, built once from the settings.

The same code serves both deployment shapes (docs/architecture.md): with no broker_url the web
process also runs Dramatiq worker threads on the stub broker (embedded); with a Redis
broker_url, ``cutout worker`` processes run the jobs (distributed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import signal
import threading

import dramatiq

from auth.expiry import delete_expired
from conf import Settings
from soda.audit.records import AuditLog, keep_until
from soda.cutouts import Cutouts
from soda.index.catalogue import IndexCatalogue
from soda.index.surveys import prepare_demo_surveys
from soda.jobs.audited import audited_bulk
from soda.jobs.bulk import BulkLimits, bulk_job_kind
from soda.jobs.cutout import cutout_job_kind
from soda.ops.allowance import job_allowance
from soda.ops.database import close_database, migrate, open_database
from soda.ops.health import service_checks
from soda.ops.metrics import WorkerMetrics, observe_audit, observe_cutout, observe_notice, observe_sweep
from soda.ops.pool import CutoutPool
from soda.ops.schemas import SCHEMAS
from soda.surveys.registry import load_datasets
from storage import LocalStore
from uws import JobKind, UWSConfig, UWSService
from uws.broker import make_broker, start_worker
from soda import SERVICE, VERSION
from uws.notices import NoticeConfig
from uws.notify import LocalNotifier, Notifier, RedisNotifier
from uws.selftest import SELFTEST
from uws.store import JobStore

log = logging.getLogger(__name__)


def uws_config(settings: Settings) -> UWSConfig:
    """The UWS layer's own configuration, field by field from the settings."""
    uws, ops = settings.uws, settings.ops
    return UWSConfig(
        wait_max_seconds=uws.wait_max_seconds,
        wait_recheck_seconds=uws.wait_recheck_seconds,
        wait_max_per_caller=uws.wait_max_per_caller,
        wait_max_total=uws.wait_max_total,
        default_execution_duration=uws.default_execution_duration,
        max_execution_duration=uws.max_execution_duration,
        default_destruction_seconds=uws.default_destruction_seconds,
        max_destruction_seconds=uws.max_destruction_seconds,
        trust_forwarded_headers=ops.trust_forwarded_headers,
        accel_redirect_prefix=ops.accel_redirect_prefix,
        heartbeat_seconds=uws.heartbeat_seconds,
        stale_job_seconds=uws.stale_job_seconds,
        max_job_attempts=uws.max_job_attempts,
        requeue_after_seconds=uws.requeue_after_seconds,
        lost_message_grace_seconds=uws.lost_message_grace_seconds,
        transient_retries=uws.transient_retries,
        retry_backoff_ms=uws.retry_backoff_ms,
        sweep_interval_seconds=uws.sweep_interval_seconds,
        watchdog_interval=uws.watchdog_interval_seconds,
        max_job_parameters=settings.limits.max_job_parameters,
        max_job_parameter_bytes=settings.limits.max_job_parameter_bytes,
        max_upload_bytes=settings.limits.max_upload_bytes,
        max_uploads_at_once=settings.limits.max_uploads_at_once,
    )


def notice_config(settings: Settings) -> NoticeConfig:
    """What the service allows of the notices sent when jobs end (NOTIFY)."""
    notify = settings.notify
    return NoticeConfig(
        max_targets=notify.notify_max_targets,
        smtp_host=notify.notify_smtp_host,
        smtp_port=notify.notify_smtp_port,
        smtp_security=notify.notify_smtp_security,
        smtp_user=notify.notify_smtp_user,
        smtp_password=notify.notify_smtp_password.get_secret_value(),
        mail_from=notify.notify_mail_from,
        mail_domains=notify.notify_mail_domains,
        webhook_secret=notify.notify_webhook_secret.get_secret_value(),
        webhook_hosts=notify.notify_webhook_hosts,
        allow_http=notify.notify_allow_http,
        allow_private_targets=notify.notify_allow_private_targets,
        anonymous=notify.notify_anonymous,
        timeout_seconds=notify.notify_timeout_seconds,
        retry_delays_seconds=notify.notify_retry_delays_seconds,
        max_attempts=notify.notify_max_attempts,
        public_url=settings.ops.public_url,
        header_prefix="X-Cutout",
        user_agent=f"{SERVICE}/{VERSION} (job notices)",
    )


def job_kinds(settings: Settings, cutouts: Cutouts, audit: AuditLog | None = None) -> dict[str, JobKind]:
    """Job kinds by the path they are mounted at (``audit``: where the jobs' results are recorded)."""
    limits = settings.limits
    radius = settings.soda.bulk_default_radius
    bulk = bulk_job_kind(
        cutouts,
        BulkLimits(limits.bulk_max_rows, radius, limits.bulk_max_pixels, limits.bulk_max_active_jobs,
                   "(split the table into several jobs)"),
        BulkLimits(limits.anonymous_bulk_max_rows, radius, limits.anonymous_bulk_max_pixels,
                   limits.anonymous_bulk_max_active_jobs, "for anonymous callers (log in for more)"))
    kinds: dict[str, JobKind] = {
        "/async": cutout_job_kind(cutouts, audit),
        "/bulk": audited_bulk(bulk, audit) if audit is not None else bulk,
    }
    if settings.uws.selftest_jobs:
        kinds["/selftest"] = SELFTEST
    return kinds


class Runtime:
    def __init__(self, settings: Settings, *, build_demo: bool = False) -> None:
        self.settings = settings
        ops = settings.ops
        ops.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(ops.effective_database_url,
                                connect_timeout=ops.database_connect_timeout_seconds,
                                statement_timeout=ops.database_statement_timeout_seconds)
        migrate(self.db, list(SCHEMAS))
        prepare_demo_surveys(self.db, settings, build=build_demo)
        self.catalogue = IndexCatalogue(self.db)
        self.datasets = load_datasets(settings, self.catalogue)
        self.cutouts = Cutouts(self.datasets, settings, observe_cutout)
        self.storage = LocalStore(ops.results_dir)
        self.notifier: Notifier = (RedisNotifier(ops.broker_url, ops.redis_namespace)
                                   if ops.broker_url else LocalNotifier())
        self.store = JobStore(self.db, self.notifier)
        self.uws = UWSService(uws_config(settings), self.store, self.storage, self.notifier,
                              allowance=lambda caller: job_allowance(settings.limits, caller),
                              notices=notice_config(settings))
        # Who cut what: written in batches by a thread of its own, never in a cutout's way.
        self.audit = AuditLog(self.db, enabled=ops.audit_keep_days > 0, observe=observe_audit)
        self.mounts = job_kinds(settings, self.cutouts, self.audit)
        for kind in self.mounts.values():
            self.uws.register(kind)
        self.broker = make_broker(ops.broker_url or None, ops.redis_namespace,
                                  socket_timeout=ops.redis_socket_timeout_seconds)
        self.broker.add_middleware(WorkerMetrics())
        self.uws.attach(self.broker)
        self.uws.sweep_observers.append(observe_sweep)
        if self.uws.dispatcher is not None:
            self.uws.dispatcher.observers.append(observe_notice)
        # Expired API tokens, sessions and SAML requests go with the job sweeps (uws knows
        # nothing of auth, so the runtime hands the sweep over).
        self.uws.sweep_hooks["auth"] = functools.partial(
            delete_expired, self.db, tokens_kept=dt.timedelta(days=settings.auth.api_token_expired_kept_days))
        self.uws.sweep_hooks["audit"] = lambda now: self.audit.purge(keep_until(ops.audit_keep_days, now))
        self.worker: dramatiq.Worker | None = None
        soda = settings.soda
        cores = os.cpu_count() or 1
        self.pool = CutoutPool(soda.cutout_threads or cores,
                               (soda.cutout_processes or cores) if soda.cutout_in_processes else 0,
                               settings=settings, queue=soda.cutout_queue,
                               tasks_per_process=soda.cutout_process_tasks,
                               idle_seconds=soda.cutout_idle_seconds)
        self.health = service_checks(self)
        self._signal_handlers: dict[int, object] = {}

    def start_workers(self, threads: int | None = None) -> dramatiq.Worker:
        self.worker = start_worker(self.broker, threads or self.settings.uws.worker_threads,
                                   self.settings.uws.worker_poll_ms, one_each=self.uws.parts_queues())
        return self.worker

    async def start_web(self) -> None:
        self.pool.start_fork_server()
        await self.notifier.start()
        self._wake_waiters_on_shutdown_signals()
        if self.settings.ops.embedded:
            self.start_workers()
            report = self.uws.recover_after_restart()
            if report.resent:
                log.info("re-sent %d jobs queued before the restart", report.resent)

    def _wake_waiters_on_shutdown_signals(self) -> None:
        """The server learns of SIGTERM/SIGINT before it waits for open requests; the app
        only at the end of that wait (lifespan shutdown), after a WAIT has been cut off.
        So chain onto the server's own handler: the notifier wakes every WAIT, which
        answers the job document at once."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread; no server of ours runs elsewhere
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # the default action: no graceful shutdown to take part in

            def handler(signum: int, frame: object, previous=previous) -> None:  # type: ignore[no-untyped-def]
                # Scheduled on the loop: a signal handler must not take the notifier's lock.
                loop.call_soon_threadsafe(self.notifier.shutdown)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._signal_handlers[sig] = previous

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._signal_handlers.items():
                signal.signal(sig, previous)  # type: ignore[arg-type]
        self._signal_handlers.clear()

    async def stop_web(self) -> None:
        self._restore_signal_handlers()
        self.notifier.shutdown()
        self.stop_workers()
        await self.notifier.stop()
        self.close()

    def stop_workers(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=5000)
            self.worker = None

    def close(self) -> None:
        self.health.close()
        self.pool.close()
        self.broker.close()
        self.audit.close()  # the records still queued, before the database closes
        close_database(self.db)
