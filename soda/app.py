"""The application factory: one Starlette app for either deployment shape."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from auth import IdentityResolver, anonymous_resolver
from conf import Settings, load_settings
from soda.availability import run_checks
from soda.datalink import Links
from soda.logs import RequestIdMiddleware
from soda.metrics import MetricsMiddleware, metrics_endpoint
from soda.runtime import Runtime
from soda.vosi import availability_endpoint, capabilities_endpoint
from uws import JobRoutes
from uws.responses import EXCEPTION_HANDLERS

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None,
               identify: IdentityResolver = anonymous_resolver, *, build_demo: bool = True) -> Starlette:
    """The service; ``build_demo`` builds missing demo images of the configured surveys first."""
    settings = settings or load_settings()
    runtime = Runtime(settings, build_demo=build_demo)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start_web()
        try:
            yield
        finally:
            await runtime.stop_web()

    links = Links(runtime.datasets, runtime.settings.trust_forwarded_headers)
    routes: list[BaseRoute] = [
        Route("/", _index(runtime), methods=["GET"]),
        Route("/sync", runtime.cutouts.sync, methods=["GET", "POST"]),
        Route("/links", links.links, methods=["GET", "POST"]),
        Route("/files", links.files, methods=["GET"]),
        Route("/capabilities", capabilities_endpoint(runtime), methods=["GET"]),
        Route("/availability", availability_endpoint(runtime), methods=["GET"]),
        Route("/healthz", _live, methods=["GET"]),
        Route("/readyz", _ready(runtime), methods=["GET"]),
        Route("/metrics", metrics_endpoint(runtime), methods=["GET"]),
    ]
    for path, kind in runtime.mounts.items():
        routes += JobRoutes(runtime.uws, kind, path, identify).routes()
    # Aladin Lite and other browser clients call the VO endpoints from other origins.
    middleware = [Middleware(RequestIdMiddleware), Middleware(MetricsMiddleware),
                  Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                             allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"],
                             expose_headers=["Location", "Content-Disposition"])]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan,
                    middleware=middleware)
    app.state.runtime = runtime
    return app


async def _live(request: Request) -> Response:
    """Liveness: the process answers."""
    return PlainTextResponse("ok\n")


def _ready(runtime: Runtime):  # type: ignore[no-untyped-def]
    """Readiness: the same dependency checks as VOSI availability; 503 while one fails."""
    async def ready(request: Request) -> Response:
        failed = [c for c in await run_checks(runtime) if not c.ok]
        if failed:
            return PlainTextResponse("".join(f"{c.name}: {c.detail}\n" for c in failed), status_code=503)
        return PlainTextResponse("ready\n")
    return ready


def _index(runtime: Runtime):  # type: ignore[no-untyped-def]
    async def index(request: Request) -> Response:
        lines = ["IVOA SODA 1.0 / UWS 1.1 cutout service", "",
                 "/sync\tSODA 1.0 synchronous cutouts (GET or POST)",
                 "/links\tDataLink 1.1 links of a dataset (ID=...)",
                 "/capabilities\tVOSI 1.1 capabilities", "/availability\tVOSI 1.1 availability"]
        for path, kind in runtime.mounts.items():
            lines.append(f"{path}\tUWS job list: {kind.description}")
        return PlainTextResponse("\n".join(lines) + "\n")
    return index
