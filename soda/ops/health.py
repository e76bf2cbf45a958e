"""Dependency checks behind VOSI availability (VOSI 1.1 §3.2); reusable by a readiness probe.

Each check is a blocking call that raises on failure. They run concurrently on a small
private thread pool, each bounded by a timeout, and polls that arrive while a check is
still running share its outcome. A hung dependency (a stalled NFS mount, a half-open TCP
connection) then holds one pool thread and yields a "no answer" note, however often
availability is polled; it never blocks the event loop or starves the shared thread pool.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from soda.ops.runtime import Runtime
    from soda.surveys.registry import Datasets
    from storage import ResultStore
    from uws.store import JobStore

CHECK_TIMEOUT = 3.0  # seconds per check

_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="availability")
# Per runtime, the call of each check now running, shared by concurrent polls.
_RUNNING: weakref.WeakKeyDictionary[Runtime, dict[str, Future[None]]] = weakref.WeakKeyDictionary()
_RUNNING_LOCK = threading.Lock()


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str  # why it failed; empty when ok


Probe = Callable[[], None]


def probes(runtime: Runtime, timeout: float = CHECK_TIMEOUT) -> list[tuple[str, Probe]]:
    """The service's dependencies, by name, each as a call that raises when it is unusable."""
    found: list[tuple[str, Probe]] = [("database", lambda: check_database(runtime.store))]
    if runtime.settings.ops.broker_url:
        url = runtime.settings.ops.broker_url
        found.append(("broker", lambda: check_redis(url, timeout)))
    found.append(("images", lambda: check_images(runtime.datasets)))
    found.append(("results", lambda: check_results(runtime.storage)))
    return found


async def run_checks(runtime: Runtime, timeout: float | None = None) -> list[Check]:
    """Run every check off the event loop, concurrently; anything raised is a failure."""
    timeout = CHECK_TIMEOUT if timeout is None else timeout
    named = probes(runtime, timeout)
    outcomes = await asyncio.gather(*(_outcome(_running(runtime, name, probe), timeout)
                                      for name, probe in named))
    return [Check(name, detail is None, detail or "") for (name, _), detail in zip(named, outcomes)]


def _running(runtime: Runtime, name: str, probe: Probe) -> Future[None]:
    """The check's call now running, or a new one."""
    with _RUNNING_LOCK:
        running = _RUNNING.setdefault(runtime, {})
        future = running.get(name)
        if future is None or future.done():
            future = running[name] = _POOL.submit(probe)
        return future


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


def check_redis(url: str, timeout: float) -> None:
    _redis(url, timeout).ping()


@lru_cache(maxsize=8)
def _redis(url: str, timeout: float) -> redis.Redis:
    # The broker's own client waits without limit and retries with backoff; a probe must not.
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def check_images(datasets: Datasets) -> None:
    """Every survey root can be listed and its index file read."""
    for name, survey in datasets.surveys.items():
        try:
            _readable(getattr(survey, "root", None), getattr(survey, "index_path", None))
        except OSError as exc:
            raise OSError(f"survey {name}: {describe(exc)}") from exc


def _readable(root: os.PathLike[str] | None, index: os.PathLike[str] | None) -> None:
    if root is not None:
        with os.scandir(root) as entries:
            next(entries, None)
    if index is not None:
        with open(index, "rb") as fh:
            fh.read(1)


def check_results(storage: ResultStore) -> None:
    storage.check_writable()


# --- upSince ---------------------------------------------------------------------------------

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class UpSince:
    """VOSI §3.2 upSince: when the service last became available, as far as checks saw.

    The start of the process or, after an outage was seen, the first run of the checks
    that found the service whole again.
    """

    def __init__(self, started: dt.datetime | None = None) -> None:
        self._since: dt.datetime | None = started or utcnow()

    def update(self, available: bool) -> dt.datetime | None:
        """The instant to report; None while unavailable."""
        if not available:
            self._since = None
        elif self._since is None:
            self._since = utcnow()
        return self._since
