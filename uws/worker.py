"""Dramatiq middleware that gives worker processes their UWS duties.

- ``JobWatchdog``: keeps the heartbeat of running jobs and parts of jobs, enforces
  executionDuration (UWS §2.1.4) and interrupts a job's (or part's) thread when the job
  is aborted or destroyed (or the part was taken over).
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
    job_id: str = ""
    part: bool = False  # a part of a parted job: ``token`` is the part's claim


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

    def track(self, job_id: str, token: str, execution_duration: float) -> None:
        """The calling thread runs the job ``job_id``, claimed with ``token``, for at most
        ``execution_duration`` seconds from now (0 or less: unlimited)."""
        deadline = time.monotonic() + execution_duration if execution_duration > 0 else None
        with self._lock:
            self._running[job_id] = _Running(token, threading.get_ident(), deadline, job_id=job_id)

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def track_part(self, job_id: str, token: str, seconds_left: float | None) -> None:
        """The calling thread runs a part of the parted job ``job_id``, claimed with
        ``token``, within the job's execution duration (``seconds_left``; None: unlimited)."""
        deadline = time.monotonic() + seconds_left if seconds_left is not None else None
        with self._lock:
            self._running[token] = _Running(token, threading.get_ident(), deadline, job_id=job_id, part=True)

    def untrack_part(self, token: str) -> None:
        self.untrack(token)

    def tick(self) -> None:
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        states = self.store.phases({entry.job_id for entry in running.values()})
        parts = [key for key, entry in running.items() if entry.part]
        still_running = self.store.running_parts(parts) if parts else set()
        now = time.monotonic()
        for key, entry in running.items():
            state = states.get(entry.job_id)
            if entry.part:
                # Any claim of the job's: its parts run while it is planned and EXECUTING.
                lost = state is None or state[0] != Phase.EXECUTING or key not in still_running
            else:
                lost = state is None or state != (Phase.EXECUTING, entry.token)
            if lost:
                self._interrupt(key, "aborted, destroyed or taken over")
            elif entry.deadline is not None and now > entry.deadline:
                message = "Error: executionDuration exceeded; the job was aborted (UWS 1.1 §2.1.4)"
                if (self.store.abort(entry.job_id, message) if entry.part
                        else self.store.abort_running(entry.job_id, entry.token, message)):
                    log.info("job %s exceeded its executionDuration", entry.job_id)
                self._interrupt(key, "executionDuration exceeded")
        if now - self._last_beat >= self.heartbeat_seconds:
            self.store.heartbeat({entry.job_id for entry in running.values() if not entry.part})
            self.store.part_heartbeat(parts)
            self._last_beat = now

    def _interrupt(self, key: str, why: str) -> None:
        with self._lock:
            entry = self._running.get(key)
            if entry is None or entry.interrupted:
                return
            entry.interrupted = True
            what = f"a part of job {entry.job_id}" if entry.part else f"job {entry.job_id}"
            log.info("interrupting %s: %s", what, why)
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
