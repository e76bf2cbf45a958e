"""Dependency checks behind VOSI availability (VOSI 1.1 §3.2); reusable by a readiness probe.

Each check is a blocking call that raises on failure. They run concurrently on a small
thread pool of their own (owned by the runtime), each bounded by a timeout, and polls
that arrive while a check is still running share its outcome. A hung dependency (a
stalled NFS mount, a half-open TCP connection) then holds one pool thread and yields a
"no answer" note, however often availability is polled; it never blocks the event loop
or starves the shared thread pool.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dali.timestamps import utcnow

if TYPE_CHECKING:
    from soda.ops.runtime import Runtime
    from soda.surveys.registry import Datasets
    from storage import ResultStore
    from uws.store import JobStore

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0  # seconds per check


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str  # why it failed; empty when ok. For operators and the log only.

    def summary(self, operator: bool) -> str:
        """What a failed check says: its detail to an operator; to anyone else only what
        failed ("database: unavailable"), since driver messages name hosts and ports."""
        return f"{self.name}: {self.detail if operator else 'unavailable'}"


Probe = Callable[[], None]


class HealthChecks:
    """The service's dependency checks, with the threads that run them.

    Owned (created and closed) by the runtime. Polls that arrive while a check is still
    running share its outcome, so a hung dependency holds one thread, however often
    availability is polled.
    """

    def __init__(self, probes: list[tuple[str, Probe]], timeout: float = CHECK_TIMEOUT) -> None:
        self.probes = probes
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(probes)), thread_name_prefix="health")
        self._running: dict[str, Future[None]] = {}
        self._logged: dict[str, str] = {}  # the detail last logged, by check
        self._lock = threading.Lock()

    async def run(self) -> list[Check]:
        """Run every check off the event loop, concurrently; anything raised is a failure."""
        timeout = self.timeout
        outcomes = await asyncio.gather(*(_outcome(self._call(name, probe), timeout)
                                          for name, probe in self.probes))
        checks = [Check(name, detail is None, detail or "") for (name, _), detail in zip(self.probes, outcomes)]
        self._log(checks)
        return checks

    def _log(self, checks: list[Check]) -> None:
        """Each failure's detail, once while it lasts (the answers show it to operators only)."""
        with self._lock:
            for check in checks:
                before = self._logged.get(check.name, "")
                if check.detail and check.detail != before:
                    log.warning("check %s failed: %s", check.name, check.detail)
                elif before and check.ok:
                    log.info("check %s passes again", check.name)
                self._logged[check.name] = check.detail

    def _call(self, name: str, probe: Probe) -> Future[None]:
        """The check's call now running, or a new one."""
        with self._lock:
            future = self._running.get(name)
            if future is None or future.done():
                future = self._running[name] = self._pool.submit(probe)
            return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def service_checks(runtime: Runtime) -> HealthChecks:
    """The service's dependencies, by name, each as a call that raises when it is unusable."""
    found: list[tuple[str, Probe]] = [("database", lambda: check_database(runtime.store))]
    if runtime.settings.ops.broker_url:
        found.append(("broker", redis_probe(runtime.settings.ops.broker_url, CHECK_TIMEOUT)))
    found.append(("images", lambda: check_images(runtime.datasets)))
    found.append(("results", lambda: check_results(runtime.storage)))
    return HealthChecks(found)


async def _outcome(future: Future[None], timeout: float) -> str | None:
    """None when the check passed, else why not; anything raised is a failure, never a 500."""
    waiting = asyncio.wrap_future(future)
    # Not cancelled on timeout: other polls may share the call.
    done, _ = await asyncio.wait({waiting}, timeout=timeout)
    if not done:
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        return f"no answer within {timeout:g} s"
    if waiting.cancelled():
        return "cancelled"
    error = waiting.exception()
    return None if error is None else describe(error)


def describe(exc: BaseException) -> str:
    """One line saying why: driver messages often run to several lines of hints."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --- the checks ----------------------------------------------------------------------------

def check_database(store: JobStore) -> None:
    # The PostgreSQL pool round-trips a pooled connection before handing it out, so a
    # connection left over from before a server restart cannot fail this check.
    store.ping()


def redis_probe(url: str, timeout: float) -> Probe:
    """A ping of Redis through a client of its own: the broker's client waits without
    limit and retries with backoff; a probe must not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                  retry=Retry(NoBackoff(), 0))
    return lambda: bool(client.ping())


def check_images(datasets: Datasets) -> None:
    """Every survey has images in the index, and the file of one of them can be read."""
    for name, survey in datasets.surveys.items():
        try:
            image = survey.example()
            if image is None:
                raise OSError("no images in the index (run `cutout ingest`)")
            with open(image.path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise OSError(f"survey {name}: {describe(exc)}") from exc


def check_results(storage: ResultStore) -> None:
    storage.check_writable()


# --- upSince ---------------------------------------------------------------------------------

def now_in_seconds() -> dt.datetime:
    """Now (UTC, aware), to the second: what HTTP dates and upSince show."""
    return utcnow().replace(microsecond=0, tzinfo=dt.UTC)


class UpSince:
    """VOSI §3.2 upSince: when the service last became available, as far as checks saw.

    The start of the process or, after an outage was seen, the first run of the checks
    that found the service whole again.
    """

    def __init__(self, started: dt.datetime | None = None) -> None:
        self._since: dt.datetime | None = started or now_in_seconds()

    def update(self, available: bool) -> dt.datetime | None:
        """The instant to report; None while unavailable."""
        if not available:
            self._since = None
        elif self._since is None:
            self._since = now_in_seconds()
        return self._since
