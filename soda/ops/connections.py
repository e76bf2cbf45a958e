"""Connections of ``cutout serve``: bounded in number, in time and in size, and quiet when refused.

uvicorn bounds requests in progress and open connections together (``limit_concurrency``:
beyond it each request is answered 503), idle keep-alive connections
(``timeout_keep_alive``) and the size of a request head (``h11_max_incomplete_event_size``),
but not the time a client may take to send a request head: a connection that opens and
sends nothing, or trickles its headers, is held for ever. ``BoundedH11Protocol`` closes it
after ``request_header_timeout_seconds``. Behind nginx, ``client_header_timeout``,
``client_body_timeout`` and ``limit_conn`` do the same before a request reaches us
(``nginx/README.md``).

The refusals are DALI error documents (text/plain, starting with the label), and the log
lines of a flood (accept failing for lack of file descriptors, refused requests) are
written at most once per ``accept_error_log_seconds``, with the count of those left out.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from conf import Settings, load_settings

log = logging.getLogger(__name__)

RETRY_AFTER = "2"  # seconds: a connection is usually free again soon
BUSY_TEXT = b"ServiceUnavailable: too many connections to this server; try again later\n"
# Log lines a flood repeats for every connection or request.
FLOOD_MESSAGES = ("socket.accept() out of system resource", "Exceeded concurrency limit.",
                  "Invalid HTTP request received.")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    max_head_bytes: int
    log_interval: float

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        ops = settings.ops
        return cls(ops.request_header_timeout_seconds, ops.max_request_head_bytes,
                   ops.accept_error_log_seconds)


_limits: ConnectionLimits | None = None
_installed = threading.Lock()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of ``uvicorn.run`` that bound connections, from the settings."""
    ops = settings.ops
    return dict(http=BoundedH11Protocol, timeout_keep_alive=ops.keep_alive_timeout_seconds,
                limit_concurrency=ops.max_connections, backlog=ops.listen_backlog,
                h11_max_incomplete_event_size=ops.max_request_head_bytes)


def install(settings: Settings | None = None) -> ConnectionLimits:
    """Once per process: the limits, the labelled 503 and the flood filter on the log.

    ``cutout serve`` calls it with its settings; a web process uvicorn started anew
    (``--workers``) loads the same settings from the environment when its first
    connection arrives.
    """
    global _limits
    with _installed:
        if _limits is None:
            _limits = ConnectionLimits.of(settings or load_settings())
            h11_impl.service_unavailable = service_unavailable  # type: ignore[attr-defined]
            flood = RateLimitedLog(FLOOD_MESSAGES, _limits.log_interval)
            for name in ("asyncio", "uvicorn.error"):
                logging.getLogger(name).addFilter(flood)
        return _limits


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to its hard limit (its children
    inherit it); returns the (old, new) soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
            return soft, soft
        return soft, hard
    return soft, soft


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer beyond ``limit_concurrency``, as a DALI error document."""
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BUSY_TEXT)).encode()),
        (b"retry-after", RETRY_AFTER.encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": BUSY_TEXT, "more_body": False})


class RateLimitedLog(logging.Filter):
    """Lets each of ``messages`` (a prefix of the log message) through once per interval."""

    def __init__(self, messages: tuple[str, ...], interval: float) -> None:
        super().__init__()
        self.messages = messages
        self.interval = interval
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        prefix = next((m for m in self.messages if text.startswith(m)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        with self._lock:
            last = self._last.get(prefix)
            if last is not None and now - last < self.interval:
                self._left_out[prefix] = self._left_out.get(prefix, 0) + 1
                return False
            self._last[prefix] = now
            left_out = self._left_out.pop(prefix, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like it in the last {self.interval:g} s not logged)"
        return True


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that does not send a whole request
    head within the header timeout (after it opens, or after its previous response)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = install()
        self._header_timeout = limits.header_timeout
        self._max_head_bytes = limits.max_head_bytes
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self.cycle is not self._head_cycle:
            self._stop_head_timer()  # a new request head arrived in time
        elif self.cycle is None or self.cycle.response_complete:
            self._await_head()  # bytes of a next request: its head is timed from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        text = (f"UsageError: invalid HTTP request, or a request head larger than "
                f"{self._max_head_bytes} bytes\n").encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=text), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _await_head(self) -> None:
        if self._head_timer is None:
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle and not self.transport.is_closing():
            self.transport.close()  # no request head within the timeout
