"""Where CPU-bound cutting and encoding run, apart from everything else.

Starlette runs blocking calls (database, tokens) on anyio's shared thread pool; a flood
of cutouts there would slow WAIT, logins and job pages. Cutouts get pools of their own:

* a small thread pool for planning (index lookups: I/O, not CPU);
* a pool of processes that cut and encode (``cutout_processes``; 0: one per core), so a
  web process uses every core: decompression and FITS encoding hold the GIL, and threads
  alone used at most 1.3 of 2 cores. With ``cutout_processes = "off"`` they run on the
  thread pool instead (one process, for debugging or a one-core machine).

Both are bounded. At most ``cutout_queue`` cuts may wait for a process; beyond that a
request is refused at once (503 ServiceUnavailable with Retry-After) instead of queueing
without end. A process that dies (killed, out of memory) fails the requests its pool held (Python's
pool breaks as a whole): that pool is replaced and the next request finds a whole one. The processes are replaced after
``cutout_process_tasks`` cuts each (a new pool takes the next cuts while the old one
finishes its own: Python 3.11's ``max_tasks_per_child`` can leave work waiting for a
replacement process that never starts), and they end when none has cut anything for
``cutout_idle_seconds``, which returns whatever memory their caches and the C allocator
held; the next cut starts them again (about half a second).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from dali.errors import ServiceUnavailable

if TYPE_CHECKING:
    from conf import Settings
    from soda.cutouts import CutoutLimits, Cutouts, SodaRequest, Target

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

# Imported once by the fork server, so each new cutting process starts in milliseconds.
_PRELOAD = ["soda.ops.cutting"]


class CutoutsBusy(ServiceUnavailable):
    """Every cutting process is busy and the queue in front of them is full."""

    def __init__(self, queued: int) -> None:
        super().__init__(f"the service is cutting as fast as it can and {queued} cutouts are waiting; "
                         f"try again in a moment", headers={"Retry-After": "2"})


class CutoutPool:
    def __init__(self, threads: int, processes: int = 0, *, settings: Settings | None = None,
                 queue: int = 0, tasks_per_process: int | None = None, idle_seconds: float = 0) -> None:
        self.threads = threads
        self.processes = processes
        self.max_queued = queue
        self.idle_seconds = idle_seconds
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cutout")
        self._settings = settings
        self._tasks_per_process = tasks_per_process
        self._lock = threading.Lock()
        self._processes: ProcessPoolExecutor | None = None
        self._submitted = 0  # cuts sent to the current pool of processes
        self._in_flight = 0
        self._last_done = time.monotonic()
        self._closed = threading.Event()
        if processes and idle_seconds > 0:
            threading.Thread(target=self._end_idle_processes, name="cutout-idle", daemon=True).start()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the thread pool; the caller's context (the request id of logs) goes along."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._executor.submit(call))

    async def make(self, cutouts: Cutouts, targets: Sequence[Target], request: SodaRequest,
                   limits: CutoutLimits) -> bytes | None:
        """``cutouts.make`` in a cutting process (or on the thread pool when there are none)."""
        if not self.processes:
            return await self.run(cutouts.make, targets, request, limits)
        from soda.ops import cutting

        # Off the event loop: starting a pool's processes (and waiting for the fork server
        # at the first cut) takes milliseconds to a second.
        executor, future = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._submit, cutting.make, list(targets), request, limits)
        try:
            body, seconds = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace_broken(executor)
            log.error("a cutting process ended abruptly (killed, out of memory, or it could not start); "
                      "its pool is replaced")
            raise ServiceUnavailable("the process cutting this request ended abruptly; try again",
                                     headers={"Retry-After": "1"}) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the request itself is cancelled (the client went away)
            raise ServiceUnavailable("the cutting processes were stopped before this cutout; try again",
                                     headers={"Retry-After": "1"}) from None
        if body is not None:
            cutouts.observe(request.extension, seconds)
        return body

    def _submit(self, fn: Callable[..., T], *args: object) -> tuple[ProcessPoolExecutor, Future[T]]:
        with self._lock:
            if self._closed.is_set():
                raise ServiceUnavailable("the service is stopping; try again", headers={"Retry-After": "5"})
            if self._in_flight >= self.processes + self.max_queued:
                raise CutoutsBusy(self._in_flight - self.processes)
            if self._tasks_per_process and self._submitted >= self._tasks_per_process * self.processes:
                retired, self._processes = self._processes, None
                if retired is not None:
                    retired.shutdown(wait=False)  # finishes what it holds, then its processes end
            executor = self._process_executor()
            try:
                future = executor.submit(fn, *args)
            except BrokenProcessPool:  # broken since the last request: start afresh
                self._processes = None
                future = self._process_executor().submit(fn, *args)
            self._submitted += 1
            self._in_flight += 1
            executor = self._processes
        future.add_done_callback(self._done)
        assert executor is not None
        return executor, future

    def _done(self, future: Future[object]) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last_done = time.monotonic()

    def _end_idle_processes(self) -> None:
        while not self._closed.wait(min(self.idle_seconds / 2, 10.0)):
            with self._lock:
                idle = (self._processes is not None and self._in_flight == 0
                        and time.monotonic() - self._last_done >= self.idle_seconds)
                ending, self._processes = (self._processes, None) if idle else (None, self._processes)
            if ending is not None:
                log.debug("cutting processes idle for %.0f s: ended", self.idle_seconds)
                ending.shutdown(wait=True)

    def start_fork_server(self) -> None:
        """Start the fork server now (in the background: it imports the pipeline, about a
        second), so the first cut does not wait for it and the process's size at start
        includes it. One per process, shared by every pool."""
        if not self.processes:
            return

        def start() -> None:
            from multiprocessing import forkserver

            multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
            forkserver.ensure_running()

        threading.Thread(target=start, name="cutout-fork-server", daemon=True).start()

    def _process_executor(self) -> ProcessPoolExecutor:
        if self._processes is None:
            from soda.ops import cutting

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._processes = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=context, initializer=cutting.start,
                initargs=(self._settings,))
            self._submitted = 0
        return self._processes

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        """Forget ``broken`` if it is still the current pool (not one made since)."""
        with self._lock:
            if self._processes is broken:
                self._processes = None
        broken.shutdown(wait=False, cancel_futures=True)

    @property
    def running_processes(self) -> int:
        """Cutting processes alive now (0 before the first cut and after an idle spell)."""
        with self._lock:
            executor = self._processes
        return 0 if executor is None else len(getattr(executor, "_processes", None) or {})

    def close(self) -> None:
        self._closed.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            processes, self._processes = self._processes, None
        if processes is not None:
            processes.shutdown(wait=True, cancel_futures=True)
