"""The application factory: one Starlette app for either deployment shape."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from auth import IdentityResolver, anonymous_resolver
from conf import Settings, load_settings
from soda.runtime import Runtime
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

    routes: list[BaseRoute] = [
        Route("/", _index(runtime), methods=["GET"]),
        Route("/sync", runtime.cutouts.sync, methods=["GET", "POST"]),
    ]
    for path, kind in runtime.mounts.items():
        routes += JobRoutes(runtime.uws, kind, path, identify).routes()
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.runtime = runtime
    return app


def _index(runtime: Runtime):  # type: ignore[no-untyped-def]
    async def index(request: Request) -> Response:
        lines = ["IVOA SODA 1.0 / UWS 1.1 cutout service", "",
                 "/sync\tSODA 1.0 synchronous cutouts (GET or POST)"]
        for path, kind in runtime.mounts.items():
            lines.append(f"{path}\tUWS job list: {kind.description}")
        return PlainTextResponse("\n".join(lines) + "\n")
    return index
