"""Prometheus metrics (prometheus-client), correct with several web and worker processes.

Processes on one host share a multiprocess directory (PROMETHEUS_MULTIPROC_DIR, set by
``cutout serve``/``cutout worker`` to data_dir/metrics); ``/metrics`` aggregates it. Jobs
by phase and queue depth are read from the database and the broker at scrape time, so
they are right whichever process changed them. Each scrape also runs the dependency checks
of VOSI availability (``cutout_dependency_up``); a dependency that is down leaves out what
is read from it, and the scrape still answers, so an outage shows as itself rather than
as a service that cannot be scraped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uws.phases import Phase

if TYPE_CHECKING:
    from soda.ops.health import Check
    from soda.ops.runtime import Runtime
    from uws.service import SweepReport

log = logging.getLogger(__name__)

REQUESTS = Counter("cutout_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("cutout_http_request_seconds", "Time to answer an HTTP request", ["route"])
RESPONSE_BYTES = Counter("cutout_http_response_bytes_total", "Bytes of response bodies sent", ["route"])
CUTOUT_SECONDS = Histogram("cutout_cutout_seconds", "Time to cut and encode one cutout", ["format"],
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WORKER_THREADS = Gauge("cutout_worker_threads", "Job worker threads", multiprocess_mode="livesum")
WORKER_BUSY = Gauge("cutout_worker_busy_threads", "Job worker threads running a job",
                    multiprocess_mode="livesum")
SWEEPS = Counter("cutout_sweeps_total", "Scheduled sweeps run (destruction, lost workers, lost messages)")
SWEPT = Counter("cutout_sweep_jobs_total", "Jobs handled by sweeps", ["action"])
AUDIT_RECORDS = Counter("cutout_audit_records_total", "Audit records of served cutouts, by outcome: "
                        "written, dropped (a failed write, or too many waiting)", ["outcome"])
NOTICES = Counter("cutout_job_notices_total", "Attempts to send the notices of ended jobs (NOTIFY), "
                  "by outcome: delivered, retried (failed, tried again later), failed (given up)",
                  ["outcome"])


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_cutout(extension: str, seconds: float) -> None:
    CUTOUT_SECONDS.labels(extension).observe(seconds)


def observe_audit(written: int, dropped: int) -> None:
    if written:
        AUDIT_RECORDS.labels("written").inc(written)
    if dropped:
        AUDIT_RECORDS.labels("dropped").inc(dropped)


def observe_notice(outcome: str) -> None:
    NOTICES.labels(outcome).inc()


def observe_sweep(report: "SweepReport") -> None:
    SWEEPS.inc()
    for action in ("destroyed", "orphans", "requeued", "failed", "resent", "notices"):
        count = getattr(report, action)
        if count:
            SWEPT.labels(action).inc(count)
    for action, count in report.others.items():  # the runtime's own sweeps, e.g. "auth"
        SWEPT.labels(action).inc(count)


class WorkerMetrics(Middleware):
    """Dramatiq middleware: how many worker threads there are and how many are busy."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        WORKER_THREADS.inc(worker.worker_threads)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        WORKER_THREADS.dec(worker.worker_threads)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:  # type: ignore[type-arg]
        WORKER_BUSY.inc()

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message,  # type: ignore[type-arg]
                              *, result: object = None, exception: BaseException | None = None) -> None:
        WORKER_BUSY.dec()

    after_skip_message = after_process_message


class StateCollector(Collector):
    """Jobs by phase and queue depth, read when scraped; each left out while its source
    (the database, the broker) is down or fails, so the rest of the scrape still answers.
    A broker found down is not asked at all: its client retries without a time limit."""

    def __init__(self, runtime: "Runtime", down: frozenset[str] = frozenset()) -> None:
        self.runtime = runtime
        self.down = down

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if "database" not in self.down:
            yield from self._phases()
        if "broker" not in self.down:
            yield from self._depths()

    def _phases(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self.runtime.store.count_by_phase()
        except Exception as exc:  # cutout_dependency_up says which dependency is down
            log.warning("metrics: jobs by phase left out: %s", exc)
        else:
            phases = GaugeMetricFamily("cutout_jobs", "Jobs by phase", labels=["phase"])
            for phase in Phase:
                phases.add_metric([phase.value], counts.get(phase, 0))
            yield phases

    def _depths(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = queue_depths(self.runtime.broker)
        except Exception as exc:
            log.warning("metrics: queue depths left out: %s", exc)
        else:
            depth = GaugeMetricFamily("cutout_queue_depth", "Messages waiting in the job queues", labels=["queue"])
            for queue, size in depths.items():
                depth.add_metric([queue], size)
            yield depth


class DependencyCollector(Collector):
    """One scrape's dependency checks (those of VOSI availability): 1 up, 0 down."""

    def __init__(self, checks: "list[Check]") -> None:
        self.checks = checks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("cutout_dependency_up", "Whether a dependency passed its check at this scrape "
                               "(database, broker, images, results)", labels=["dependency"])
        for check in self.checks:
            up.add_metric([check.name], 1.0 if check.ok else 0.0)
        yield up


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    depths = {}
    for queue in sorted(q for q in broker.get_declared_queues()):
        client = getattr(broker, "client", None)
        if client is not None:  # Redis: the queue list plus its delayed messages (a list too)
            namespace = getattr(broker, "namespace", "dramatiq")
            depths[queue] = int(client.llen(f"{namespace}:{queue}")) + int(client.llen(f"{namespace}:{queue}.DQ"))
        else:  # the embedded stub broker
            depths[queue] = broker.queues[queue].qsize()  # type: ignore[attr-defined]
    return depths


def metrics_endpoint(runtime: "Runtime"):  # type: ignore[no-untyped-def]
    def exposition(checks: "list[Check]") -> bytes:
        if multiprocess_dir():  # every process of the host, from their shared files
            processes = CollectorRegistry()
            multiprocess.MultiProcessCollector(processes)
        else:
            processes = REGISTRY  # this process alone
        state = CollectorRegistry()  # read now, from what is up
        state.register(StateCollector(runtime, frozenset(c.name for c in checks if not c.ok)))
        state.register(DependencyCollector(checks))
        # Two expositions with distinct metric names concatenate into one valid exposition.
        return generate_latest(processes) + generate_latest(state)

    async def metrics(request: Request) -> Response:
        checks = await runtime.health.run()  # bounded by the checks' timeout, off the event loop
        return Response(await run_in_threadpool(exposition, checks), media_type=CONTENT_TYPE_LATEST)
    return metrics


class MetricsMiddleware:
    """Counts requests by route template (not raw path: no label explosion), status, bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        sent = {"bytes": 0}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            route = _route_of(scope)
            REQUESTS.labels(route, _method_of(scope), str(status["code"])).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
            RESPONSE_BYTES.labels(route).inc(sent["bytes"])


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def _method_of(scope: Scope) -> str:
    """The method as a label: any token is a valid HTTP method, so others are one label."""
    method = scope.get("method", "")
    return method if method in METHODS else "other"


def _route_of(scope: Scope) -> str:
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", "other")
    return "other"
