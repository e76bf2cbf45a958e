"""The operators' statistics page: charts drawn by the page's script from ``/stats.json``
(the audit records' summary; same guard as /metrics), each with a table as its text."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dali.errors import AuthorizationError, UsageError
from dali.http import Endpoint
from soda.web.pages.site import Site
from soda.web.stats import MAX_DAYS, parse_days

DAY_CHOICES = (7, 30, 90, MAX_DAYS)


def page(site: Site) -> Endpoint:
    async def stats(request: Request) -> Response:
        caller = await site.caller(request)
        if not caller.operator:
            return site.error(request, caller, AuthorizationError(
                f"{request.url.path} is for the service's operators only"))
        try:
            days = parse_days(request.query_params.getlist("days"))  # as /stats.json reads it
        except UsageError as exc:
            return site.error(request, caller, exc)
        return site.render(request, "stats.html", caller, days=days, choices=DAY_CHOICES,
                           source=f"{site.base(request)}/stats.json?days={days}")
    return stats
