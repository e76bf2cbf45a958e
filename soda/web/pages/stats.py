"""The operators' statistics page: charts drawn by the page's script from ``/stats.json``
(the audit records' summary; same guard as /metrics), each with a table as its text."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from dali.errors import AuthorizationError, UsageError
from dali.http import Endpoint
from soda.web.pages.site import Site

DAY_CHOICES = (7, 30, 90, 366)


def page(site: Site) -> Endpoint:
    async def stats(request: Request) -> Response:
        caller = await site.caller(request)
        if not caller.operator:
            return site.error(request, caller, AuthorizationError(
                f"{request.url.path} is for the service's operators only"))
        text = request.query_params.get("days", "30")
        if not re.fullmatch(r"[0-9]{1,3}", text) or not 1 <= int(text) <= 366:  # int() of 4301 digits raises
            return site.error(request, caller, UsageError(
                f"days must be a whole number from 1 to 366, not {text[:40]!r}"))
        return site.render(request, "stats.html", caller, days=int(text), choices=DAY_CHOICES,
                           source=f"{site.base(request)}/stats.json?days={int(text)}")
    return stats
