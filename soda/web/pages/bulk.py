"""The bulk page: a position table sent to the bulk job list as its UPLOAD (DALI §3.4.5),
then the job followed live (its phase, and its progress from jobInfo: ``uws.parts``)
until the archive and the manifest can be downloaded."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dali.errors import not_found
from dali.http import Endpoint
from soda.web.pages.cutout import survey_choices
from soda.web.pages.site import Site
from starlette.concurrency import run_in_threadpool


def bulk_path(site: Site) -> str | None:
    """Where the job kind that takes files (the bulk kind) is mounted."""
    return next((path for path, kind in site.runtime.mounts.items() if kind.uploads), None)


def page(site: Site) -> Endpoint:
    async def bulk(request: Request) -> Response:
        caller = await site.caller(request)
        path = bulk_path(site)
        if path is None:
            return site.error(request, caller, not_found("this service has no bulk job list"))
        limits = site.settings.limits
        anonymous = caller.user is None
        if anonymous and limits.anonymous_async == "off":
            return await _login_first(site, request)
        choices = await run_in_threadpool(survey_choices, site)
        bands = list(dict.fromkeys(b for c in choices for b in c.bands))  # the surveys' order
        rows = limits.anonymous_bulk_max_rows if anonymous else limits.bulk_max_rows
        return site.render(request, "bulk.html", caller, action=site.base(request) + path.rstrip("/"),
                           bands=bands, max_rows=rows)
    return bulk


async def _login_first(site: Site, request: Request) -> Response:
    outcome = await site.logged_in(request)
    assert isinstance(outcome, Response)
    return outcome
