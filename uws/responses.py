"""HTTP responses of the service: XML, text/plain atomics, error documents, absolute URLs."""

from __future__ import annotations

import logging
import uuid

import peewee as pw
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from uws.errors import ServiceError, ServiceUnavailable, UsageError, votable_error

log = logging.getLogger(__name__)

XML_TYPE = "text/xml; charset=utf-8"
VOTABLE_TYPE = "application/x-votable+xml"


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML_TYPE)


def text_response(text: str, status: int = 200) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


def first_header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value.split(",")[0].strip() if value else None


def public_base(request: Request, trust_forwarded: bool) -> str:
    """The service root as the client sees it, behind proxies too (no trailing slash)."""
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    prefix = request.scope.get("root_path", "")
    if trust_forwarded:
        scheme = first_header(request, "x-forwarded-proto") or scheme
        host = first_header(request, "x-forwarded-host") or host
        forwarded_prefix = first_header(request, "x-forwarded-prefix")
        if forwarded_prefix is not None:
            prefix = forwarded_prefix
    return f"{scheme}://{host}{prefix.rstrip('/')}"


def wants_votable(request: Request) -> bool:
    fmt = (request.query_params.get("RESPONSEFORMAT") or "").lower()
    accept = request.headers.get("accept", "").lower()
    return "votable" in fmt or "x-votable+xml" in accept


def error_response(request: Request, error: ServiceError) -> Response:
    """DALI §4.2: the error document, text/plain unless the client asked for a VOTable."""
    headers = dict(error.headers)
    if wants_votable(request):
        return Response(votable_error(error.text), status_code=error.status,
                        media_type=VOTABLE_TYPE, headers=headers)
    return PlainTextResponse(error.text + "\n", status_code=error.status, headers=headers)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:
        log.warning("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.text)
    return error_response(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: ServiceError = UsageError(f"no resource at {request.url.path}", status=404)
    elif exc.status_code == 405:
        error = UsageError(f"{request.method} is not allowed on {request.url.path}", status=405,
                           headers=dict(exc.headers or {}))
    else:
        error = UsageError(str(exc.detail), status=exc.status_code)
    return error_response(request, error)


async def on_database_error(request: Request, exc: Exception) -> Response:
    log.error("database failure on %s %s: %s", request.method, request.url.path, exc)
    return error_response(request, ServiceUnavailable("the job database is not reachable; try again later",
                                                      headers={"Retry-After": "10"}))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected failure %s on %s %s", incident, request.method, request.url.path)
    return error_response(request, ServiceError(f"internal failure, logged as incident {incident}"))


EXCEPTION_HANDLERS = {
    ServiceError: on_service_error,
    HTTPException: on_http_exception,
    pw.OperationalError: on_database_error,
    pw.InterfaceError: on_database_error,
    Exception: on_unexpected,
}
