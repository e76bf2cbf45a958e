"""What every page shares: the caller, the templates, the layout's context and errors.

The pages use the browser session of ``/login`` (the cookie alone: a token is for
scripts). Their own POSTs go to the existing endpoints (``/bulk``, ``/tokens``, the job
URLs) with the session's CSRF token, which the layout puts in a ``<meta>`` element.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from auth.session import CSRF_FIELD, SessionUser, csrf_token, session_user
from dali.errors import AuthenticationError, ServiceError
from dali.http import public_base
from soda import SERVICE, VERSION
from soda.ops.runtime import Runtime
from soda.web.access import Access

HERE = Path(__file__).parent
STATIC = HERE / "static"
ALADIN = STATIC / "vendor" / "aladin-lite" / "aladin.js"  # vendor.py puts it there

# The pages in the navigation bar: path, title, who sees the link.
NAV = (("/ui/cutout", "Cutout", "all"), ("/ui/bulk", "Bulk", "all"), ("/ui/jobs", "My jobs", "user"),
       ("/ui/account", "Account", "user"), ("/ui/stats", "Statistics", "operator"))


@dataclass(frozen=True)
class Caller:
    user: SessionUser | None  # None: not logged in
    operator: bool

    @property
    def name(self) -> str | None:
        return self.user.user_id if self.user else None


class Site:
    """The pages' shared parts; ``routes`` mounts every page under /ui/."""

    def __init__(self, runtime: Runtime, access: Access) -> None:
        self.runtime = runtime
        self.access = access
        self.settings = runtime.settings
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["filesize"] = filesize
        self.kept: dict[str, tuple[float, Any]] = {}  # what pages keep a while (cutout.survey_choices)

    def routes(self) -> list[BaseRoute]:
        from soda.web.pages import account, bulk, cutout, jobs, stats
        return [
            Route("/ui", self._to_cutout, methods=["GET"]),
            Route("/ui/", self._to_cutout, methods=["GET"]),
            Route("/ui/cutout", cutout.page(self), methods=["GET"]),
            Route("/ui/cutout/request", cutout.described(self), methods=["GET"]),
            Route("/ui/bulk", bulk.page(self), methods=["GET"]),
            Route("/ui/jobs", jobs.page(self), methods=["GET"]),
            Route("/ui/account", account.page(self), methods=["GET"]),
            Route("/ui/stats", stats.page(self), methods=["GET"]),
            Mount("/ui/static", StaticFiles(directory=str(STATIC)), name="ui-static"),
        ]

    def base(self, request: Request) -> str:
        return public_base(request, self.settings.ops.trust_forwarded_headers)

    async def caller(self, request: Request) -> Caller:
        return Caller(await session_user(request, self.access.sessions), self.access.is_operator(request))

    async def logged_in(self, request: Request) -> Caller | Response:
        """The caller, or where to log in: a redirect when login is configured, else a 401 page."""
        caller = await self.caller(request)
        if caller.user is not None:
            return caller
        if self.settings.auth.login_enabled:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{self.base(request)}/login?next={quote(target, safe='/')}",
                                    status_code=303)
        return self.error(request, caller, AuthenticationError(
            "this page shows a logged-in user's own things, and this service has no login configured"))

    def render(self, request: Request, template: str, caller: Caller, status: int = 200,
               **context: Any) -> HTMLResponse:
        base = self.base(request)
        nav = [(base + path, title, path == request.url.path) for path, title, who in NAV
               if who == "all" or (who == "user" and self.settings.auth.login_enabled)
               or (who == "operator" and caller.operator)]
        return self.templates.TemplateResponse(request, template, {
            "base": base, "caller": caller, "csrf": csrf_token(request), "csrf_field": CSRF_FIELD,
            "nav": nav, "service": SERVICE, "version": VERSION,
            "login_enabled": self.settings.auth.login_enabled, **context},
            status_code=status, headers={"Cache-Control": "no-store"})

    def error(self, request: Request, caller: Caller, exc: ServiceError) -> HTMLResponse:
        """A labelled error (DALI style: the label first) as a page, with its status."""
        response = self.render(request, "error.html", caller, exc.status, error=exc)
        response.headers.update(exc.headers)
        return response

    async def _to_cutout(self, request: Request) -> Response:
        return RedirectResponse(self.base(request) + "/ui/cutout", status_code=307)


def filesize(n: int | None) -> str:
    """Bytes for people, in powers of 1024 as quotas are set: 1.5 MiB."""
    if n is None:
        return ""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
