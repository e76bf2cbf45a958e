"""Logs: JSON lines for log collectors, readable lines at a terminal. Both carry the
request id that follows a request into the job it creates and the worker that runs it
(uws.context.request_id)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import Literal, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uws import context

HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)  # logs only, never clients
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-31 12:00:00.123 INFO    cutout.worker [request-id] message``, local time;
    a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        when = f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')}.{int(record.msecs):03d}"
        request_id = getattr(record, "request_id", None)
        line = f"{when} {record.levelname:<7} {record.name}" + (f" [{request_id}]" if request_id else "")
        line += f" {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def chosen_format(setting: str, stream: TextIO) -> Literal["json", "text"]:
    """The log format for ``setting`` ("auto", "json" or "text"): auto is text on a terminal."""
    if setting == "auto":
        try:
            return "text" if stream.isatty() else "json"
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return "json"
    return "text" if setting == "text" else "json"


def configure(level: str, log_format: str = "auto", stream: TextIO | None = None) -> Literal["json", "text"]:
    """Send every log record to ``stream`` (stderr) in ``log_format``; returns the format chosen."""
    stream = sys.stderr if stream is None else stream
    chosen = chosen_format(log_format, stream)
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # pysaml2 logs whole SAML responses (personal attributes) at DEBUG and tracebacks at
    # ERROR for every refused login; our own log line says why a login failed.
    logging.getLogger("saml2").setLevel(logging.CRITICAL)
    return chosen


class RequestIdMiddleware:
    """Takes X-Request-ID from the client or nginx (when sane) or makes one, and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if _ACCEPTABLE.match(given) else uuid.uuid4().hex
        token = context.request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            context.request_id.reset(token)
