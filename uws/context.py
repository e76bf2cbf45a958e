"""The request id of the work in hand, so logs of one request (and of the job it
created, in whichever worker runs it) can be followed by one id."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
