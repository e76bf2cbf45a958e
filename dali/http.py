"""DALI over HTTP with Starlette: reading parameters, answering with documents and errors.

Errors are answered as DALI §4.2 documents: text/plain starting with the label, or a
VOTable (§4.4) when the client asked for one. A route whose standard fixes the form of its
error documents (DataLink §3.4: a VOTable whose text starts with a ``...Fault`` label)
declares it with ``DaliRoute(..., errors=ErrorFormat(...))``; every error answered for that
route then takes that form, whatever raised it: the access policy, the routing (405), the
endpoint, or an unexpected failure (500).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dali.errors import ServiceError, UsageError, not_found
from dali.limits import FORM_LIMITS, FormLimits, UploadLimits
from dali.params import Params, RequestParams, clean
from dali.votable import NOT_XML, VOTABLE_TYPE, error_document

log = logging.getLogger(__name__)

XML_TYPE = "text/xml; charset=utf-8"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Endpoint = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

_ERROR_FORMAT = "dali.error_format"  # the scope key a matched DaliRoute fills
LOGGED = "dali.logged"  # the scope key on_unexpected sets once it has logged the failure


@dataclass(frozen=True)
class ErrorFormat:
    """The one form of a route's error documents: its media type and how the text is written."""

    media_type: str
    render: Callable[[ServiceError], bytes]


class DaliRoute(Route):
    """A route that declares the form of its error documents (``errors``).

    The declaration travels in the request scope from the moment the route matches, also
    when only the path matches (405), so the exception handlers find it.
    """

    def __init__(self, path: str, endpoint: Endpoint, *, methods: Sequence[str] | None = None,
                 errors: ErrorFormat | None = None, **kwargs: Any) -> None:
        super().__init__(path, endpoint, methods=methods, **kwargs)
        self.errors = errors

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE and self.errors is not None:
            child_scope = {**child_scope, _ERROR_FORMAT: self.errors}
        return match, child_scope


# What a file field may be called: it names the file where the job keeps it.
_FILE_FIELD = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


async def read_params(request: Request, uploads: UploadLimits | None = None) -> RequestParams:
    """Query string plus, for POST, the form body (urlencoded or multipart), DALI §3.1;
    with ``uploads``, the files of a multipart body too (DALI §3.4.5), within those limits."""
    pairs: Params = list(request.query_params.multi_items())
    files: dict[str, bytes] = {}
    if request.method == "POST":
        if is_form(request):
            pairs += await read_form(request, uploads, files)
        elif await request.body():
            raise UsageError(
                f"POST bodies must be application/x-www-form-urlencoded or multipart/form-data, "
                f"not {_content_type(request) or 'untyped'}")
    params = clean(pairs)
    params.files = files
    return params


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_form(request: Request) -> bool:
    return _content_type(request) in FORM_TYPES


async def read_form(request: Request, uploads: UploadLimits | None = None,
                    files: dict[str, bytes] | None = None) -> Params:
    """The fields of a form body, within the body limits (``dali.limits``); every refusal
    is a UsageError (413 for too many or too large fields). Files are refused unless
    ``uploads`` allows them; then they go into ``files`` by field name."""
    limits: FormLimits | None = request.scope.get(FORM_LIMITS)
    bounds = {} if limits is None else dict(max_fields=limits.max_fields, max_part_size=limits.max_field_bytes)
    try:
        form = await request.form(**bounds)
    except ServiceError:  # the body limit, a body that stopped arriving
        raise
    except Exception as exc:  # malformed multipart bodies raise several types
        raise _form_error(exc, limits) from None
    pairs: Params = []
    total = 0
    for name, value in form.multi_items():
        if not isinstance(value, UploadFile):
            pairs.append((name, value))
            continue
        if uploads is None or files is None:
            raise UsageError(f"file upload ({name[:40]!r}) is not supported here")
        if not _FILE_FIELD.fullmatch(name):
            raise UsageError(f"a file's field name must be letters, digits, '.', '_' or '-' (at most 64, "
                             f"not starting with '.'), not {name[:40]!r}")
        if name in files or len(files) >= uploads.max_files:
            raise UsageError(f"a request here takes at most {uploads.max_files} files, each under its own "
                             f"field name ({name!r} is one too many)")
        data = await value.read(uploads.max_bytes - total + 1)
        total += len(data)
        if total > uploads.max_bytes:
            raise UsageError(f"the uploaded files are larger than {uploads.max_bytes} bytes", status=413)
        files[name] = data
    return pairs


def _form_error(exc: Exception, limits: FormLimits | None) -> UsageError:
    """The form parser's refusals of too many or too large fields are 413, the rest 400."""
    detail = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc)
    if limits is not None and detail.startswith("Too many fields"):
        return UsageError(f"the form body has more than {limits.max_fields} fields", status=413)
    if limits is not None and detail.startswith(("Field exceeded maximum size", "Part exceeded maximum size")):
        return UsageError(f"a form field is larger than {limits.max_field_bytes} bytes", status=413)
    return UsageError(f"could not read the form body: {detail}")


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML_TYPE)


def text_response(text: str, status: int = 200) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


def path_param(request: Request, name: str) -> str:
    """A path parameter (a job, result or token id). The ids we give out never hold the
    characters XML cannot carry, and PostgreSQL cannot even compare text with a NUL: such a
    path names nothing."""
    value: str = request.path_params[name]
    if NOT_XML.search(value):
        raise not_found(f"no {name.replace('_', ' ')} holds control characters")
    return value


def first_header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return value.split(",")[0].strip() if value else None


# What a forwarded value may be; anything else is ignored (the request's own value counts).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:%-]+)*/?")  # a path: no '@', '//', '\\'
FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                     b"x-forwarded-prefix", b"x-forwarded-port", b"x-forwarded-server",
                     b"x-real-ip", b"forwarded")


def valid_host(value: str | None) -> bool:
    """A host name or [IPv6 literal], with an optional port: nothing that moves a URL."""
    return bool(value) and _HOST.fullmatch(value) is not None  # type: ignore[arg-type]


def valid_prefix(value: str | None) -> bool:
    """A path prefix: '/' then path segments; never '@', '//', '\\' or control characters."""
    return value is not None and (value == "" or (
        value.startswith("/") and _PREFIX.fullmatch(value) is not None))


def valid_proto(value: str | None) -> bool:
    return value in ("http", "https")


def valid_address(value: str | None) -> bool:
    try:
        ipaddress.ip_address(value or "")
    except ValueError:
        return False
    return True


def client_address(request: Request, trust_forwarded: bool) -> str:
    """The caller's address; behind a trusted proxy (nginx), the one it puts last in
    X-Forwarded-For (if it is an address). Other callers' forwarded headers never get this
    far: ``dali.http.ForwardedHeaders`` drops them."""
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
        if valid_address(forwarded):
            return forwarded
    return request.client.host if request.client else "unknown"


def public_base(request: Request, trust_forwarded: bool) -> str:
    """The service root as the client sees it, behind proxies too (no trailing slash).

    The forwarded headers reach this far only from a trusted proxy (``ForwardedHeaders``);
    each is checked again here, and a value that is not a scheme, a host or a path is
    ignored."""
    scheme = request.url.scheme if valid_proto(request.url.scheme) else "http"
    host = request.headers.get("host") or ""
    if not valid_host(host):
        server = request.scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    prefix = request.scope.get("root_path", "")
    if trust_forwarded:
        forwarded_proto = first_header(request, "x-forwarded-proto")
        if valid_proto(forwarded_proto):
            scheme = forwarded_proto  # type: ignore[assignment]
        forwarded_host = first_header(request, "x-forwarded-host")
        if valid_host(forwarded_host):
            host = forwarded_host  # type: ignore[assignment]
        forwarded_prefix = first_header(request, "x-forwarded-prefix")
        if valid_prefix(forwarded_prefix):
            prefix = forwarded_prefix  # type: ignore[assignment]
    return f"{scheme}://{host}{prefix.rstrip('/')}"


class Networks:
    """A set of addresses and networks (trusted proxies, operators): ``address in networks``."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries]

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


class ForwardedHeaders:
    """Drops the forwarded headers (X-Forwarded-*, Forwarded, X-Real-IP) of a request that
    did not come from a trusted proxy: anyone else could set them to anything (another
    client address for the rate limit, another host or prefix for every absolute URL)."""

    def __init__(self, app: ASGIApp, trusted: Sequence[str]) -> None:
        self.app = app
        self.trusted = Networks(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if not peer or peer[0] not in self.trusted:
                # In place: the outer middleware (the 500 handler) reads this same scope.
                scope["headers"] = [(k, v) for k, v in scope.get("headers", [])
                                    if k.lower() not in FORWARDED_HEADERS]
        await self.app(scope, receive, send)


def wants_votable(request: Request) -> bool:
    fmt = (request.query_params.get("RESPONSEFORMAT") or "").lower()
    accept = request.headers.get("accept", "").lower()
    return "votable" in fmt or "x-votable+xml" in accept


def error_response(request: Request, error: ServiceError) -> Response:
    """DALI §4.2: the error document in the form its route declares; else text/plain unless
    the client asked for a VOTable. The error's headers (WWW-Authenticate, Retry-After, Allow)
    are kept in every form."""
    headers = dict(error.headers)
    declared: ErrorFormat | None = request.scope.get(_ERROR_FORMAT)
    if declared is not None:
        return Response(declared.render(error), status_code=error.status,
                        media_type=declared.media_type, headers=headers)
    if wants_votable(request):
        return Response(error_document(error.text), status_code=error.status,
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


async def on_unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected failure %s on %s %s", incident, request.method, request.url.path)
    request.scope[LOGGED] = True  # the exception is raised again, for the server: logged once
    return error_response(request, ServiceError(f"internal failure, logged as incident {incident}"))


EXCEPTION_HANDLERS: dict[type[Exception], ExceptionHandler] = {
    ServiceError: on_service_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
