"""The application factory: one Starlette app for either deployment shape."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

import peewee as pw
from starlette.middleware.sessions import SessionMiddleware

from auth import Identity, IdentityResolver
from auth.outstanding import DatabaseOutstanding
from auth.session import load_or_create_secret
from conf import Settings, load_settings
from dali.errors import AuthenticationError, ServiceUnavailable
from dali.http import EXCEPTION_HANDLERS, LOGGED, DaliRoute, Endpoint, ForwardedHeaders, error_response
from dali.limits import BodyLimitMiddleware
from soda.ops.logs import RequestIdMiddleware
from soda.ops.metrics import MetricsMiddleware, metrics_endpoint
from soda.ops.runtime import Runtime
from soda.web.access import Access, ChallengeMiddleware
from soda.web.accounts import Accounts
from soda.web import datalink
from soda.web.datalink import LinkAccess, Links
from soda.web.coverage import CoverageMaps, coverage_endpoint
from soda.web.index import index_endpoint
from soda.web.pages import Site
from soda.web.openapi import openapi_endpoint
from soda.web import sia
from soda.web.sia import SiaQueryService
from soda.web.stats import stats_endpoint
from soda.web.sync import sync_endpoint
from soda.web.vosi import availability_endpoint, capabilities_endpoint
from uws import JobRoutes

if TYPE_CHECKING:
    from auth.saml import SamlServiceProvider

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None,
               identify: IdentityResolver | None = None, *, build_demo: bool = True) -> Starlette:
    """The service; ``build_demo`` builds missing demo images of the configured surveys first.

    ``identify`` replaces the access policy's resolver (tests of layers below auth).
    """
    settings = settings or load_settings()
    runtime = Runtime(settings, build_demo=build_demo)
    access = Access(settings, runtime.db)
    identify = identify or access.identify
    accounts = Accounts(access, runtime.store, saml_provider(settings, runtime.db))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start_web()
        try:
            yield
        finally:
            await runtime.stop_web()
            access.close()

    links = Links(runtime.datasets, settings.ops.trust_forwarded_headers, link_access(runtime))
    coverage_maps = CoverageMaps(settings.soda.coverage_max_order)  # shared by /query
    routes: list[BaseRoute] = [
        Route("/", index_endpoint(runtime), methods=["GET"]),
        Route("/sync", sync_endpoint(runtime.cutouts, identify, runtime.pool, runtime.audit,
                                    settings.ops.trust_forwarded_headers), methods=["GET", "POST"]),
        DaliRoute("/links", _identified(links.links, identify), methods=["GET", "POST"],
                  errors=datalink.ERRORS),
        DaliRoute("/query", _guarded(SiaQueryService(runtime, coverage_maps).query, identify), methods=["GET", "POST"],
                  errors=sia.ERRORS),
        Route("/coverage/{file}", _guarded(coverage_endpoint(
            runtime, coverage_maps), identify), methods=["GET"]),
        Route("/files", _guarded(links.files, identify, anonymous=settings.limits.anonymous_files),
              methods=["GET"]),
        Route("/capabilities", capabilities_endpoint(runtime), methods=["GET"]),
        Route("/availability", availability_endpoint(runtime, access.is_operator), methods=["GET"]),
        Route("/healthz", _live, methods=["GET"]),
        Route("/readyz", _ready(runtime, access.is_operator), methods=["GET"]),
        Route("/metrics", _operators_only(metrics_endpoint(runtime), access), methods=["GET"]),
        Route("/openapi.json", openapi_endpoint(runtime.mounts, settings.auth.session_cookie_name,
                                                settings.ops.trust_forwarded_headers), methods=["GET"]),
        Route("/stats.json", _operators_only(stats_endpoint(runtime), access), methods=["GET"]),
    ]
    routes += accounts.routes()
    routes += Site(runtime, access).routes()  # the web pages for people, under /ui/
    for path, kind in runtime.mounts.items():
        routes += JobRoutes(runtime.uws, kind, path, identify, access.allowance).routes()
    # Aladin Lite and other browser clients call the VO endpoints from other origins; they
    # get no credentials that way (no allow_credentials), so the session cookie stays home.
    middleware = [Middleware(ForwardedHeaders, trusted=settings.ops.trusted_proxies),
                  Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware), body_limits(settings, runtime),
                  Middleware(CORSMiddleware, allow_origins=list(settings.ops.cors_origins),
                             allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"],
                             expose_headers=["Location", "Content-Disposition", "WWW-Authenticate",
                                             "Retry-After"]),
                  Middleware(ChallengeMiddleware, access=access),
                  Middleware(SessionMiddleware, secret_key=session_secret(settings),
                             session_cookie=settings.auth.session_cookie_name,
                             max_age=settings.auth.session_max_age_seconds, same_site="lax",
                             https_only=settings.auth.session_cookie_secure)]
    handlers = {**EXCEPTION_HANDLERS, pw.OperationalError: _database_error, pw.InterfaceError: _database_error}
    app = Service(routes=routes, exception_handlers=handlers, lifespan=lifespan,
                  middleware=middleware)
    app.hsts = f"max-age={settings.ops.hsts_max_age_seconds}" if settings.ops.hsts_max_age_seconds else ""
    app.trust_forwarded = settings.ops.trust_forwarded_headers
    app.state.runtime = runtime
    app.state.access = access
    return app


def body_limits(settings: Settings, runtime: Runtime) -> Middleware:
    """Request bodies and form fields bounded in size and count, slow bodies in time; the job
    lists whose jobs take files (UPLOAD) take up to max_upload_bytes more."""
    ops = settings.ops
    uploading = frozenset(path.rstrip("/") for path, kind in runtime.mounts.items() if kind.uploads)
    return Middleware(BodyLimitMiddleware, max_bytes=ops.max_request_body_bytes,
                      max_fields=ops.max_form_fields, max_field_bytes=ops.max_form_field_bytes,
                      body_timeout=ops.request_body_timeout_seconds, upload_paths=uploading,
                      upload_bytes=ops.max_request_body_bytes + settings.limits.max_upload_bytes)


# Account pages: they show tokens (a new one in full), CSRF tokens and who is logged in.
PRIVATE_PATHS = ("/tokens", "/whoami", "/usage", "/login", "/logout", "/auth/", "/ui/account")


class Service(Starlette):
    """Starlette, plus what every answer gets, the 500s of the outermost layer included:

    - the security headers (``security_headers``);
    - an unexpected failure logged once: by ``dali.http.on_unexpected``, with its incident
      number, when it answers the 500. Starlette raises the exception again after that
      answer, for the server to log a second time; here it stops if it was logged. (A
      failure in the middle of an answer was not: the server logs that one.)
    """

    hsts = ""  # the Strict-Transport-Security value for https requests; empty: none
    trust_forwarded = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": security_headers(
                    scope, list(message.get("headers", [])), self.hsts, self.trust_forwarded)}
            await send(message)

        try:
            await super().__call__(scope, receive, secured if scope["type"] == "http" else send)
        except Exception:
            if not scope.get(LOGGED):
                raise


def security_headers(scope: Scope, headers: list[tuple[bytes, bytes]], hsts: str,
                     trust_forwarded: bool) -> list[tuple[bytes, bytes]]:
    """nosniff on every answer; HTML pages never in a frame; no caching of account pages
    (they show secrets); HSTS when the request came over https."""
    present = {k.lower() for k, _ in headers}
    added: list[tuple[bytes, bytes]] = [(b"x-content-type-options", b"nosniff")]
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    if content_type.lower().startswith(b"text/html"):
        added += [(b"content-security-policy", b"frame-ancestors 'none'"), (b"x-frame-options", b"DENY")]
    path = scope.get("path", "")
    if any(path == p or path.startswith(p.rstrip("/") + "/") for p in PRIVATE_PATHS):
        added.append((b"cache-control", b"no-store"))
    if hsts and _over_https(scope, trust_forwarded):
        added.append((b"strict-transport-security", hsts.encode("latin-1")))
    return headers + [(k, v) for k, v in added if k not in present]


def _over_https(scope: Scope, trust_forwarded: bool) -> bool:
    """The scheme, or the X-Forwarded-Proto of a trusted proxy (``ForwardedHeaders`` drops
    anyone else's)."""
    if scope.get("scheme") == "https":
        return True
    if trust_forwarded:
        for key, value in scope.get("headers", []):
            if key.lower() == b"x-forwarded-proto":
                return value.split(b",")[0].strip().lower() == b"https"
    return False


def session_secret(settings: Settings) -> str:
    """From the environment or a file outside the repository; else one kept in data_dir."""
    return settings.auth.secret("session_secret") or load_or_create_secret(
        settings.ops.data_dir / "secrets" / "session.key")


def saml_provider(settings: Settings, db: pw.Database) -> SamlServiceProvider | None:
    if not settings.auth.saml_enabled:
        return None
    from auth.saml import SamlConfig, SamlServiceProvider
    return SamlServiceProvider(SamlConfig(
        entity_id=settings.ops.public_url + "/auth/saml/metadata",
        acs_url=settings.ops.public_url + "/auth/saml/acs",
        idp_metadata=settings.auth.saml_idp_metadata,
        username_attribute=settings.auth.saml_username_attribute,
        key_file=settings.auth.saml_sp_key_file or None, cert_file=settings.auth.saml_sp_cert_file or None),
        DatabaseOutstanding(db))


async def _database_error(request: Request, exc: Exception) -> Response:
    log.error("database failure on %s %s: %s", request.method, request.url.path, exc)
    return error_response(request, ServiceUnavailable("the job database is not reachable; try again later",
                                                      headers={"Retry-After": "10"}))


def link_access(runtime: Runtime) -> LinkAccess:
    """What the links tell anonymous callers they may follow: the limits they meet there."""
    limits = runtime.settings.limits
    return LinkAccess(anonymous=limits.anonymous_access, files=limits.anonymous_files,
                      jobs=limits.anonymous_async != "off",
                      preview_pixels=runtime.cutouts.anonymous_limits.max_preview_source)


def _identified(endpoint: Callable[[Request, Identity], Awaitable[Response]],
                identify: IdentityResolver) -> Endpoint:
    """An endpoint that answers according to who asks, behind the access policy."""
    async def identified(request: Request) -> Response:
        return await endpoint(request, await identify(request))
    return identified


def _guarded(endpoint: Endpoint, identify: IdentityResolver, *, anonymous: bool = True) -> Endpoint:
    """An endpoint that knows nothing of callers, behind the access policy."""
    async def guarded(request: Request) -> Response:
        identity = await identify(request)
        if identity.anonymous and not anonymous:
            raise AuthenticationError("whole files are for logged-in users; anonymous callers "
                                      "may ask /sync for cutouts")
        return await endpoint(request)
    return guarded


async def _live(request: Request) -> Response:
    """Liveness: the process answers."""
    return PlainTextResponse("ok\n")


def _ready(runtime: Runtime, is_operator: Callable[[Request], bool]):  # type: ignore[no-untyped-def]
    """Readiness: the same dependency checks as VOSI availability; 503 while one fails.
    Why one failed is for operators (and the log); others read what failed."""
    async def ready(request: Request) -> Response:
        failed = [c for c in await runtime.health.run() if not c.ok]
        if failed:
            operator = is_operator(request)
            return PlainTextResponse("".join(c.summary(operator) + "\n" for c in failed), status_code=503,
                                     headers={"Cache-Control": "no-store"})
        return PlainTextResponse("ready\n", headers={"Cache-Control": "no-store"})
    return ready


def _operators_only(endpoint: Endpoint, access: Access) -> Endpoint:
    """An endpoint for the operators' addresses (operator_clients) only: 403 to others."""
    async def guarded(request: Request) -> Response:
        access.require_operator(request)
        return await endpoint(request)
    return guarded

