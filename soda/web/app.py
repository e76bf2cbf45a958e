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
from starlette.types import Receive, Scope, Send

import peewee as pw
from starlette.middleware.sessions import SessionMiddleware

from auth import Identity, IdentityResolver
from auth.outstanding import DatabaseOutstanding
from auth.session import load_or_create_secret
from conf import Settings, load_settings
from dali.errors import AuthenticationError, ServiceUnavailable
from dali.http import EXCEPTION_HANDLERS, LOGGED, DaliRoute, Endpoint, ForwardedHeaders, error_response
from soda.ops.logs import RequestIdMiddleware
from soda.ops.metrics import MetricsMiddleware, metrics_endpoint
from soda.ops.runtime import Runtime
from soda.web.access import Access, ChallengeMiddleware
from soda.web.accounts import Accounts
from soda.web import datalink
from soda.web.datalink import LinkAccess, Links
from soda.web.index import index_endpoint
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
    routes: list[BaseRoute] = [
        Route("/", index_endpoint(runtime), methods=["GET"]),
        Route("/sync", sync_endpoint(runtime.cutouts, identify, runtime.pool), methods=["GET", "POST"]),
        DaliRoute("/links", _identified(links.links, identify), methods=["GET", "POST"],
                  errors=datalink.ERRORS),
        Route("/files", _guarded(links.files, identify, anonymous=settings.limits.anonymous_files),
              methods=["GET"]),
        Route("/capabilities", capabilities_endpoint(runtime), methods=["GET"]),
        Route("/availability", availability_endpoint(runtime), methods=["GET"]),
        Route("/healthz", _live, methods=["GET"]),
        Route("/readyz", _ready(runtime), methods=["GET"]),
        Route("/metrics", metrics_endpoint(runtime), methods=["GET"]),
    ]
    routes += accounts.routes()
    for path, kind in runtime.mounts.items():
        routes += JobRoutes(runtime.uws, kind, path, identify, access.allowance).routes()
    # Aladin Lite and other browser clients call the VO endpoints from other origins; they
    # get no credentials that way (no allow_credentials), so the session cookie stays home.
    middleware = [Middleware(ForwardedHeaders, trusted=settings.ops.trusted_proxies),
                  Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware),
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
    app.state.runtime = runtime
    app.state.access = access
    return app


class Service(Starlette):
    """Starlette, but an unexpected failure is logged once: by ``dali.http.on_unexpected``,
    with its incident number, when it answers the 500. Starlette raises the exception again
    after that answer, for the server to log a second time; here it stops if it was logged.
    (A failure in the middle of an answer was not: the server logs that one.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            if not scope.get(LOGGED):
                raise


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


def _ready(runtime: Runtime):  # type: ignore[no-untyped-def]
    """Readiness: the same dependency checks as VOSI availability; 503 while one fails."""
    async def ready(request: Request) -> Response:
        failed = [c for c in await runtime.health.run() if not c.ok]
        if failed:
            return PlainTextResponse("".join(f"{c.name}: {c.detail}\n" for c in failed), status_code=503)
        return PlainTextResponse("ready\n")
    return ready

