"""A client-side deadline for database calls: the answer to a server that stops answering.

The server's ``statement_timeout`` cancels slow statements, but only a server that runs can
enforce it: a frozen one (SIGSTOP, a hung host, a network black hole where the kernel still
acknowledges) leaves the caller blocked in a socket read for as long as the freeze lasts,
holding a web thread and a pooled connection. libpq has no read timeout, so a watchdog
thread shuts down the socket of a call that outlives its deadline: the blocked read returns
at once, the driver raises ``OperationalError`` (answered as 503 by the web layer), and the
pool drops the broken connection instead of handing it out again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Protocol

log = logging.getLogger(__name__)


class _Connection(Protocol):
    def fileno(self) -> int: ...


class QueryDeadlines:
    """Watches the database calls in flight and cuts those older than ``seconds``."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a query deadline must be positive")
        self.seconds = seconds
        self._calls: dict[object, tuple[float, _Connection]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.cut = 0  # calls cut so far, for logs and tests
        self.last_cut = -math.inf  # time.monotonic() of the last cut

    @contextlib.contextmanager
    def watch(self, conn: _Connection, seconds: float | None = None) -> Iterator[None]:
        """Bound the database call made inside the block on ``conn`` (to ``seconds``, when
        shorter than the deadline)."""
        key = object()
        limit = self.seconds if seconds is None else min(seconds, self.seconds)
        with self._lock:
            self._calls[key] = (time.monotonic() + limit, conn)
            self._start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(key, None)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="query-deadlines", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        tick = min(0.25, self.seconds / 4)
        while not self._wake.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [(key, conn) for key, (end, conn) in self._calls.items() if end <= now]
                for key, _ in late:
                    del self._calls[key]
            for _, conn in late:
                self._cut(conn)

    def _cut(self, conn: _Connection) -> None:
        # Recorded before the cut: the call wakes at the cut, and what it does next (the
        # pool checking its other connections) must already know the server is silent.
        self.last_cut = time.monotonic()
        with contextlib.suppress(OSError, ValueError):
            fd = conn.fileno()
            # A duplicate of the descriptor: shutdown acts on the socket both share, and the
            # driver's own descriptor stays valid for it to close.
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            self.cut += 1
            log.warning("a database call passed its deadline: connection cut")

    def close(self) -> None:
        self._wake.set()
