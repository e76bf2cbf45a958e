"""My account: the API tokens (made and revoked at the existing /tokens endpoints, by the
page's script with the session's CSRF token) and the quota usage of /usage as bars."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from auth import Identity
from dali.http import Endpoint
from soda.web.pages.site import Caller, Site


def page(site: Site) -> Endpoint:
    async def account(request: Request) -> Response:
        outcome = await site.logged_in(request)
        if not isinstance(outcome, Caller):
            return outcome
        caller = outcome
        user = caller.name or ""
        tokens = await run_in_threadpool(site.access.tokens.list, user)
        used = await run_in_threadpool(site.runtime.store.usage, user)
        allowance = site.access.allowance(Identity(user, "session"))
        auth = site.settings.auth
        return site.render(request, "account.html", caller, tokens=[t.as_json() for t in tokens],
                           used=used, max_jobs=allowance.max_active_jobs or None,
                           quota=allowance.max_result_bytes or None,
                           default_days=auth.api_token_default_days, max_days=auth.api_token_max_days)
    return account
