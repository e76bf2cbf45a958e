"""Bounds on what a request may make the application read: body size, form fields, slow bodies.

``BodyLimitMiddleware`` is a pure ASGI middleware. A declared Content-Length over the limit
is refused when the application first asks for the body, before a byte of it is read; a
body without one (chunked) is counted as it streams and refused as soon as it passes the
limit. The refusal is raised where the body is read, so it is answered like every other
error of the route (in the error form the route declares). A client that stops sending its body is
answered 408 after ``body_timeout`` seconds. The form limits travel in the request scope
to ``dali.http.read_params``, which hands them to the form parser.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dali.errors import UsageError

FORM_LIMITS = "dali.form_limits"  # the scope key read_params reads


@dataclass(frozen=True)
class FormLimits:
    max_fields: int
    max_field_bytes: int


@dataclass(frozen=True)
class UploadLimits:
    """Files a route takes in a multipart body (DALI 1.1 §3.4.5 UPLOAD)."""

    max_files: int
    max_bytes: int  # all files together


def body_too_large(max_bytes: int) -> UsageError:
    return UsageError(f"request body larger than {max_bytes} bytes", status=413)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_fields: int, max_field_bytes: int,
                 body_timeout: float, upload_paths: frozenset[str] = frozenset(), upload_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Multipart POSTs to these paths may carry files (job lists: UPLOAD), so a larger body.
        self.upload_paths = upload_paths
        self.upload_bytes = max(upload_bytes, max_bytes)
        self.form_limits = FormLimits(max_fields, max_field_bytes)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[FORM_LIMITS] = self.form_limits
        max_bytes = self.upload_bytes if self._uploading(scope) else self.max_bytes
        declared = _content_length(scope)
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: waiting for a disconnect is not bounded here
                return await receive()
            if declared is not None and declared > max_bytes:
                raise body_too_large(max_bytes)  # refused before a byte is read
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise UsageError(f"the request body did not arrive within {self.body_timeout:g} s",
                                 status=408, headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise body_too_large(max_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, limited_receive, send)

    def _uploading(self, scope: Scope) -> bool:
        if scope.get("method") != "POST" or scope.get("path", "").rstrip("/") not in self.upload_paths:
            return False
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                return value.split(b";")[0].strip().lower() == b"multipart/form-data"
        return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
