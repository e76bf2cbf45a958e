"""Login, logout, personal API tokens and usage: the account endpoints.

Browsers log in with OIDC (``/login/oidc``) or SAML (``/login/saml``) and get the same
kind of server-side session either way. From a session they create API tokens for scripts
and VO clients (``Authorization: Bearer``). Answers are JSON, or a small HTML page when
the browser asks for HTML.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import quote, urlsplit

from lxml import etree
from lxml.html import builder as E
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.oidc import OidcLoginFailed
from auth.session import CSRF_FIELD, csrf_token, end_session, session_user, start_session
from auth.tokens import TokenInfo
from dali.errors import AuthenticationError, AuthorizationError, UsageError, not_found
from dali.http import is_form, path_param, public_base, read_form, read_params
from dali.params import RequestParams
from soda.web.access import Access
from uws.quota import Allowance
from uws.store import JobStore

log = logging.getLogger(__name__)

NEXT = "next_path"


def _safe_next(value: str | None) -> str:
    """Only a path on this service, so login cannot be made an open redirect.

    Browsers read a backslash as a slash (``/\\evil.org`` is ``//evil.org``); SAML's
    RelayState carries at most 80 bytes.
    """
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or len(value.encode()) > 80 or urlsplit(value).netloc
            or any(ord(c) < 32 for c in value)):
        return "/tokens"
    return value


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _page(title: str, *body: Any) -> HTMLResponse:
    doc = E.HTML(E.HEAD(E.META(charset="utf-8"), E.TITLE(title)), E.BODY(E.H1(title), *body))
    return HTMLResponse(etree.tostring(doc, method="html", encoding="unicode", doctype="<!DOCTYPE html>"))


class Accounts:
    def __init__(self, access: Access, store: JobStore, saml: Any | None = None) -> None:
        self.access = access
        self.settings = access.settings
        self.store = store
        self.saml = saml  # auth.saml.SamlServiceProvider when SAML login is configured

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.login, methods=["GET"]),
            Route("/login/oidc", self.login_oidc, methods=["GET"]),
            Route("/auth/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/login/saml", self.login_saml, methods=["GET"]),
            Route("/auth/saml/acs", self.saml_acs, methods=["POST"]),
            Route("/auth/saml/metadata", self.saml_metadata, methods=["GET"]),
            Route("/logout", self.logout, methods=["GET", "POST"]),
            Route("/whoami", self.whoami, methods=["GET"]),
            Route("/tokens", self.tokens, methods=["GET", "POST"]),
            Route("/tokens/{token_id}", self.token, methods=["POST", "DELETE"]),
            Route("/usage", self.usage, methods=["GET"]),
        ]

    def _base(self, request: Request) -> str:
        return public_base(request, self.settings.ops.trust_forwarded_headers)

    # --- logging in and out -------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        methods = [m for m, on in (("oidc", self.access.oidc), ("saml", self.saml)) if on is not None]
        if not methods:
            raise not_found("login is not configured on this service")
        if len(methods) == 1:
            # Quoted: the page to come back to may have a query string of its own.
            return RedirectResponse(f"/login/{methods[0]}?next={quote(next_path, safe='/')}", status_code=302)
        names = {"oidc": "Log in with your institution (OpenID Connect)",
                 "saml": "Log in through the federation (SAML)"}
        return _page("Log in", E.UL(*[E.LI(E.A(names[m], href=f"/login/{m}?next={quote(next_path, safe='/')}"))
                                      for m in methods]))

    async def login_oidc(self, request: Request) -> Response:
        if self.access.oidc is None:
            raise not_found("OIDC login is not configured on this service")
        next_path = _safe_next(request.query_params.get("next"))
        # Not a logout: a cross-site link here must not end the session it finds. Only the
        # state of earlier, unfinished logins goes; the callback starts a fresh session.
        for key in [k for k in request.session if k.startswith("_state_")]:
            del request.session[key]
        request.session[NEXT] = next_path
        return await self.access.oidc.redirect(request, self._base(request) + "/auth/oidc/callback")

    async def oidc_callback(self, request: Request) -> Response:
        if self.access.oidc is None:
            raise not_found("OIDC login is not configured on this service")
        next_path = _safe_next(request.session.get(NEXT))
        try:
            user = await self.access.oidc.finish(request)
        except OidcLoginFailed as exc:
            raise AuthenticationError(f"login failed: {exc}") from None
        await start_session(request, self.access.sessions, user.user_id, "oidc", user.id_token)
        log.info("user %s logged in with OIDC", user.user_id)
        return RedirectResponse(next_path, status_code=303)

    async def login_saml(self, request: Request) -> Response:
        if self.saml is None:
            raise not_found("SAML login is not configured on this service")
        await self.access.limit_logins(request)  # each login stores its AuthnRequest id
        next_path = _safe_next(request.query_params.get("next"))
        url = await run_in_threadpool(self.saml.login_redirect, next_path)
        return RedirectResponse(url, status_code=302)

    async def saml_acs(self, request: Request) -> Response:
        """The IdP's HTTP-POST answer. It arrives cross-site, so the session cookie (SameSite
        Lax) is absent: the request id it answers is checked against the database instead."""
        from auth.saml import SamlLoginFailed
        if self.saml is None:
            raise not_found("SAML login is not configured on this service")
        form = RequestParams(await read_form(request)) if is_form(request) else RequestParams([])
        response, relay = form.single("SAMLResponse"), form.single("RelayState")
        if not response:
            raise UsageError("SAMLResponse is required")
        try:
            user = await run_in_threadpool(self.saml.finish, response, relay)
        except SamlLoginFailed as exc:
            log.warning("SAML login refused: %s", exc)
            raise AuthenticationError(f"login failed: {exc}") from None
        await start_session(request, self.access.sessions, user.user_id, "saml")
        log.info("user %s logged in with SAML", user.user_id)
        return RedirectResponse(_safe_next(relay), status_code=303)

    async def saml_metadata(self, request: Request) -> Response:
        if self.saml is None:
            raise not_found("SAML login is not configured on this service")
        return Response(await run_in_threadpool(self.saml.metadata),
                        media_type="application/samlmetadata+xml")

    async def logout(self, request: Request) -> Response:
        user = await session_user(request, self.access.sessions)
        if request.method == "GET":
            if user is None:
                return _page("Logged out", E.P("You are not logged in."))
            csrf = csrf_token(request)
            return _page("Log out", E.FORM(
                E.INPUT(type="hidden", name=CSRF_FIELD, value=csrf),
                E.BUTTON(f"Log out {user.user_id}", type="submit"), method="post", action="/logout"),
                E.FORM(E.INPUT(type="hidden", name=CSRF_FIELD, value=csrf),
                       E.INPUT(type="hidden", name="everywhere", value="1"),
                       E.BUTTON("Log out of every browser", type="submit"), method="post", action="/logout"))
        if user is None:
            return RedirectResponse("/", status_code=303)
        await self.access.identify(request)  # the CSRF check of a cookie-authenticated POST
        everywhere = (await read_params(request)).single("everywhere") in ("1", "true", "yes", "on")
        url = None
        if user.method == "oidc" and self.access.oidc is not None:
            url = await self.access.oidc.logout_url(request, user.id_token, self._base(request) + "/")
        # The session row goes, so the cookie is worthless even if replayed; clearing the
        # cookie also drops the logout state Authlib kept: the return is not checked.
        await end_session(request, self.access.sessions, everywhere=everywhere)
        log.info("user %s logged out%s", user.user_id, " everywhere" if everywhere else "")
        return RedirectResponse(url or "/", status_code=303)

    async def whoami(self, request: Request) -> Response:
        identity = await self.access.identify(request)
        body: dict[str, Any] = {"user": identity.user_id, "authenticated": not identity.anonymous,
                                "method": identity.method or None}
        if identity.method == "session":
            body[CSRF_FIELD] = csrf_token(request)
        return JSONResponse(body)

    # --- API tokens -----------------------------------------------------------------------

    async def tokens(self, request: Request) -> Response:
        identity = await self.access.require_user(request)
        if request.method == "POST":
            return await self._create_token(request, identity.user_id, identity.method)  # type: ignore[arg-type]
        listed = await run_in_threadpool(self.access.tokens.list, identity.user_id)  # type: ignore[arg-type]
        if _wants_html(request):
            return self._tokens_page(request, identity.user_id or "", listed)
        return JSONResponse({"user": identity.user_id, "tokens": [t.as_json() for t in listed]})

    async def _create_token(self, request: Request, user_id: str, method: str) -> Response:
        # A token is made from a login, never from another token: a stolen token cannot breed.
        if method != "session":
            raise AuthorizationError("API tokens are created from a browser login (a session), "
                                     "not with a token")
        params = await read_params(request)
        name = (params.single("name") or "").strip()
        if not name or len(name) > 100:
            raise UsageError("name is required (1 to 100 characters), to tell tokens apart")
        days_text = params.single("lifetime_days")
        days = self.settings.auth.api_token_default_days
        if days_text is not None:
            try:
                days = int(days_text)
            except ValueError:
                raise UsageError(f"lifetime_days must be a whole number of days, not {days_text!r}") from None
            if not 1 <= days <= self.settings.auth.api_token_max_days:
                raise UsageError(f"lifetime_days must be between 1 and {self.settings.auth.api_token_max_days}")
        expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=days)
        info, secret = await run_in_threadpool(self.access.tokens.create, user_id, name, expires)
        log.info("user %s created API token %s (%s)", user_id, info.id, name)
        if _wants_html(request):
            return _page("Your new API token",
                         E.P("Copy it now: it is shown only once."), E.PRE(secret),
                         E.P("Use it as ", E.CODE("Authorization: Bearer <token>"), "."),
                         E.P(E.A("Back to your tokens", href="/tokens")))
        return JSONResponse({**info.as_json(), "token": secret}, status_code=201,
                            headers={"Cache-Control": "no-store"})

    def _tokens_page(self, request: Request, user_id: str, listed: list[TokenInfo]) -> Response:
        token = csrf_token(request)

        def csrf() -> Any:  # an lxml element has one parent: a fresh field per form
            return E.INPUT(type="hidden", name=CSRF_FIELD, value=token)

        rows = []
        for t in listed:
            shown = t.as_json()
            rows.append(E.TR(E.TD(t.name), E.TD(t.id), E.TD(shown["expires"] or ""),
                             E.TD(shown["last_used"] or "never"),
                             E.TD(E.FORM(csrf(), E.INPUT(type="hidden", name="ACTION", value="DELETE"),
                                         E.BUTTON("Revoke", type="submit"),
                                         method="post", action=f"/tokens/{t.id}"))))
        return _page(f"API tokens of {user_id}",
                     E.TABLE(E.TR(E.TH("name"), E.TH("id"), E.TH("expires"), E.TH("last used"), E.TH("")),
                             *rows),
                     E.H2("New token"),
                     E.FORM(csrf(), E.LABEL("Name ", E.INPUT(name="name", required="required")),
                            E.LABEL(" Days ", E.INPUT(name="lifetime_days", type="number", min="1",
                                                      max=str(self.settings.auth.api_token_max_days),
                                                      value=str(self.settings.auth.api_token_default_days))),
                            E.BUTTON("Create", type="submit"), method="post", action="/tokens"),
                     E.P(E.A("Usage and quotas", href="/usage"), " · ", E.A("Log out", href="/logout")))

    async def token(self, request: Request) -> Response:
        identity = await self.access.require_user(request)
        token_id = path_param(request, "token_id")
        if request.method == "POST":
            action = (await read_params(request)).single("ACTION")
            if action != "DELETE":
                raise UsageError("a POST to a token takes ACTION=DELETE (revoke it)")
        if not await run_in_threadpool(self.access.tokens.revoke, identity.user_id, token_id):
            raise not_found(f"you have no token {token_id!r}")
        log.info("user %s revoked API token %s", identity.user_id, token_id)
        if _wants_html(request):
            return RedirectResponse("/tokens", status_code=303)
        return Response(status_code=204)

    # --- usage and quotas ---------------------------------------------------------------

    async def usage(self, request: Request) -> Response:
        identity = await self.access.require_user(request)
        used = await run_in_threadpool(self.store.usage, identity.user_id)
        allowance: Allowance = self.access.allowance(identity)
        return JSONResponse({
            "user": identity.user_id,
            "active_jobs": used.active_jobs, "max_active_jobs": allowance.max_active_jobs or None,
            "result_bytes": used.result_bytes, "quota_bytes": allowance.max_result_bytes or None,
        })
