"""Dramatiq middleware that gives worker processes their UWS duties.

- ``JobWatchdog``: keeps the heartbeat of running jobs, enforces executionDuration
  (UWS §2.1.4) and interrupts a job's thread when the job is aborted or destroyed.
- ``Scheduler``: runs the periodic sweeps (destruction, lost workers, lost messages).
  Every worker process has one, but a lease in the database lets only one of them
  sweep at a time, so no host crontab is needed and N workers do not sweep N times.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from dramatiq.middleware import Middleware, raise_thread_exception

from uws.kinds import JobInterrupted
from uws.phases import Phase
from uws.store import JobStore

log = logging.getLogger(__name__)


@dataclass
class _Running:
    token: str
    thread_id: int
    deadline: float | None  # time.monotonic() value, None = unlimited
    interrupted: bool = False


class _Ticker:
    """A daemon thread calling ``tick`` every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._interval = interval
        self._tick = tick
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - a failed tick must not end the loop
                log.exception("%s tick failed", self._thread.name)
            self._stop.wait(self._interval)


class _Periodic(Middleware):
    """Runs ``tick`` in its own thread while the worker runs."""

    interval: float
    # Stop before the worker threads are stopped (False: only after they have finished).
    stop_early = True
    _ticker: _Ticker | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._ticker = _Ticker(f"uws-{type(self).__name__.lower()}", self.interval, self.tick)
        self._ticker.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.stop_early:
            self._stop()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None


class JobWatchdog(_Periodic):
    # Keep watching while the worker threads finish: a job aborted or deleted during
    # shutdown is still interrupted instead of holding the shutdown up.
    stop_early = False

    def __init__(self, store: JobStore, *, interval: float, heartbeat_seconds: float) -> None:
        self.store = store
        self.interval = interval
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._last_beat = 0.0

    def track(self, job_id: str, token: str, execution_duration: int) -> None:
        deadline = time.monotonic() + execution_duration if execution_duration > 0 else None
        with self._lock:
            self._running[job_id] = _Running(token, threading.get_ident(), deadline)

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def tick(self) -> None:
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        states = self.store.phases(running)
        now = time.monotonic()
        for job_id, entry in running.items():
            state = states.get(job_id)
            if state is None or state != (Phase.EXECUTING, entry.token):
                self._interrupt(job_id, "aborted, destroyed or taken over")
            elif entry.deadline is not None and now > entry.deadline:
                if self.store.abort_running(job_id, entry.token, "Error: executionDuration exceeded; "
                                            "the job was aborted (UWS 1.1 §2.1.4)"):
                    log.info("job %s exceeded its executionDuration", job_id)
                self._interrupt(job_id, "executionDuration exceeded")
        if now - self._last_beat >= self.heartbeat_seconds:
            self.store.heartbeat(running)
            self._last_beat = now

    def _interrupt(self, job_id: str, why: str) -> None:
        with self._lock:
            entry = self._running.get(job_id)
            if entry is None or entry.interrupted:
                return
            entry.interrupted = True
            log.info("interrupting job %s: %s", job_id, why)
            raise_thread_exception(entry.thread_id, JobInterrupted)


class Scheduler(_Periodic):
    def __init__(self, sweep: Callable[[], object], lease: Callable[[str, float], bool],
                 *, interval: float) -> None:
        self.sweep = sweep
        self.lease = lease
        self.interval = interval
        self.holder = uuid.uuid4().hex[:12]

    def tick(self) -> None:
        # The lease outlives a few intervals so a healthy holder keeps it.
        if self.lease(self.holder, self.interval * 3):
            self.sweep()
