"""The service's access policy: who is asking, and what they may do.

It puts auth/'s mechanisms together (session cookie, personal API tokens, the OIDC
provider's JWT access tokens, per-client rate limits) and answers in the service's
error family: 401 with login challenges, 403, 429 with Retry-After.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import httpx2
import peewee as pw
import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import ANONYMOUS, Identity
from auth import challenges
from auth.access_tokens import AccessTokenVerifier, InvalidAccessToken, KeysUnavailable, looks_like_jwt
from auth.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from auth.oidc import OidcConfig, OidcLogin
from auth.session import CSRF_FIELD, CSRF_HEADER, SessionStore, csrf_ok, session_user
from auth.tokens import Check, TokenStore, looks_like_token
from conf import Settings
from dali.errors import AuthenticationError, AuthorizationError, ServiceUnavailable
from dali.http import Networks, client_address, is_form, public_base, read_form
from dali.params import RequestParams
from dali.standards import SSO_OPENID, SSO_SAML2
from soda.ops.allowance import job_allowance
from uws.quota import Allowance

log = logging.getLogger(__name__)

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Access:
    def __init__(self, settings: Settings, db: pw.Database) -> None:
        self.settings = settings
        self.trust_forwarded = settings.ops.trust_forwarded_headers
        self.tokens = TokenStore(db)
        self.sessions = SessionStore(db, settings.auth.session_max_age_seconds)
        self.operators = Networks(settings.ops.operator_clients)
        self.oidc: OidcLogin | None = None
        self.jwt: AccessTokenVerifier | None = None
        auth, limits, ops = settings.auth, settings.limits, settings.ops
        if auth.oidc_enabled:
            self.oidc = OidcLogin(OidcConfig(
                auth.oidc_issuer, auth.oidc_client_id, auth.secret("oidc_client_secret"),
                auth.oidc_scopes, auth.oidc_username_claim))
            if auth.oidc_accept_access_tokens:
                self.jwt = AccessTokenVerifier(
                    auth.oidc_issuer, auth.oidc_token_audience or auth.oidc_client_id,
                    auth.oidc_username_claim, self._fetch_jwks,
                    leeway=auth.oidc_clock_skew_seconds, retry_after_failure=auth.oidc_jwks_retry_seconds)
        self.limiter: RateLimiter | None = None
        if limits.anonymous_rate_limit:
            window = limits.anonymous_rate_window_seconds
            self.limiter = (RedisRateLimiter(ops.broker_url, ops.redis_namespace,
                                             limits.anonymous_rate_limit, window)
                            if ops.broker_url else
                            MemoryRateLimiter(limits.anonymous_rate_limit, window))

    def close(self) -> None:
        if self.limiter is not None:
            self.limiter.close()

    def _fetch_jwks(self) -> dict[str, Any]:
        discovery = httpx2.get(OidcConfig(self.settings.auth.oidc_issuer, "").discovery_url, timeout=10)
        discovery.raise_for_status()
        keys = httpx2.get(discovery.json()["jwks_uri"], timeout=10)
        keys.raise_for_status()
        return dict(keys.json())

    # --- who is asking ----------------------------------------------------------------

    async def identify(self, request: Request) -> Identity:
        """The IdentityResolver of every SODA and UWS endpoint."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return await self._bearer(authorization)
        user = await session_user(request, self.sessions)
        if user is not None:
            if request.method in UNSAFE and not csrf_ok(request, await _submitted_csrf(request)):
                raise AuthorizationError(
                    f"this request carries the session cookie of {user.user_id} but not its CSRF "
                    f"token (send it as the {CSRF_FIELD} form field or the X-CSRF-Token header; "
                    f"scripts should use an API token instead)")
            return Identity(user.user_id, "session")
        return await self._anonymous(client_address(request, self.trust_forwarded))

    async def _bearer(self, authorization: str) -> Identity:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise self.invalid_token("send credentials as 'Authorization: Bearer <token>'",
                                     error="invalid_request")
        if looks_like_token(value):
            check, info = await run_in_threadpool(self.tokens.check, value)
            if check is Check.VALID and info is not None:
                return Identity(info.user_id, "token")
            if check is Check.EXPIRED and info is not None:
                raise self.invalid_token(f"the API token {info.name!r} expired on "
                                         f"{info.expires.isoformat(timespec='seconds')}Z; create a new one")
            raise self.invalid_token("unknown or revoked API token")
        if self.jwt is not None and looks_like_jwt(value):
            try:
                user_id, _ = await run_in_threadpool(self.jwt.verify, value)
            except InvalidAccessToken as exc:
                raise self.invalid_token(f"access token refused: {exc}") from None
            except KeysUnavailable as exc:
                if exc.__cause__ is not None:  # a fetch failed now, not one remembered
                    log.warning("cannot fetch the OIDC provider's keys: %s", exc)
                raise ServiceUnavailable("the identity provider's keys cannot be fetched just now; "
                                         "try again shortly",
                                         headers={"Retry-After": str(math.ceil(exc.retry_after))}) from None
            return Identity(user_id, "jwt")
        raise self.invalid_token("not a token of this service")

    def invalid_token(self, message: str, error: str = "invalid_token") -> AuthenticationError:
        return AuthenticationError(message, headers={"WWW-Authenticate": challenges.bearer(
            self.settings.soda.ivoa_authority, error, message)})

    async def _anonymous(self, client: str) -> Identity:
        if not self.settings.limits.anonymous_access:
            raise AuthenticationError("this service needs a login: send 'Authorization: Bearer <token>' "
                                      "(create a token at /tokens after logging in at /login)")
        await self.limit_rate(client, "anonymous callers", "or log in")
        return ANONYMOUS

    async def limit_rate(self, client: str, who: str, alternative: str = "") -> None:
        """The anonymous rate limit (per client address): 429 with Retry-After beyond it."""
        if self.limiter is None:
            return
        try:
            wait = await run_in_threadpool(self.limiter.hit, client)
        except redis.RedisError as exc:  # the limit is protection, not a reason to fail
            log.warning("rate limiter unavailable, request allowed: %s", exc)
            return
        if wait is not None:
            seconds = max(1, int(wait + 0.999))
            limits = self.settings.limits
            raise ServiceUnavailable(
                f"too many requests from {client}: {who} may make {limits.anonymous_rate_limit} "
                f"per {limits.anonymous_rate_window_seconds} s; retry in {seconds} s"
                + (f", {alternative}" if alternative else ""), status=429, headers={"Retry-After": str(seconds)})

    async def limit_logins(self, request: Request) -> None:
        """A login that writes a row before the caller is known (a SAML AuthnRequest id)
        counts against the anonymous rate limit of the client's address."""
        await self.limit_rate(client_address(request, self.trust_forwarded), "logins")

    def is_operator(self, request: Request) -> bool:
        """Whether the caller is at an operator address (operator_clients): /metrics, and
        the detail of failed checks, are for them."""
        return client_address(request, self.trust_forwarded) in self.operators

    def require_operator(self, request: Request) -> None:
        if not self.is_operator(request):
            raise AuthorizationError(f"{request.url.path} is for the service's operators only")

    # --- what they may do -------------------------------------------------------------

    def allowance(self, identity: Identity) -> Allowance:
        return job_allowance(self.settings.limits, identity)

    async def require_user(self, request: Request) -> Identity:
        identity = await self.identify(request)
        if identity.anonymous:
            raise AuthenticationError("log in first (at /login), or send 'Authorization: Bearer <token>'")
        return identity

    def challenges(self, request: Request) -> list[str]:
        """Every way to log in, as a 401 (or a capabilities answer) offers it (AuthVO §3):
        the Bearer challenge, and an ``ivoa_bearer`` per configured login, all pointing at
        the token page. No ``ivoa_cookie``: auth/challenges.py says why."""
        offered = [challenges.bearer(self.settings.soda.ivoa_authority)]
        tokens = public_base(request, self.trust_forwarded) + "/tokens"
        auth = self.settings.auth
        for configured, standard_id in ((auth.oidc_enabled, SSO_OPENID), (auth.saml_enabled, SSO_SAML2)):
            if configured:
                offered.append(challenges.ivoa_bearer(tokens, standard_id))
        return offered


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if is_form(request):
        return RequestParams(await read_form(request)).single(CSRF_FIELD)
    return None


class ChallengeMiddleware:
    """Adds the login challenges to every 401 (AuthVO §4.1, RFC 9110 §11.6.1), and to the
    capabilities answer when login is optional (AuthVO §4.1: 200 with challenges).

    A challenge the answer already carries replaces ours of the same scheme: the Bearer
    challenge of a refused token, with ``error="invalid_token"`` (RFC 6750 §3.1), stands
    for the plain one, and the ``ivoa_bearer`` challenges are added beside it.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        optional_here = (scope["path"].rstrip("/").endswith("/capabilities")
                         and self.access.settings.auth.login_enabled)

        async def send_with_challenges(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                    message["status"] == 401 or (optional_here and message["status"] == 200)):
                headers = list(message.get("headers", []))
                answered = {challenges.scheme(v.decode("latin-1"))
                            for k, v in headers if k.lower() == b"www-authenticate"}
                for challenge in self.access.challenges(request):
                    if challenges.scheme(challenge) not in answered:
                        headers.append((b"www-authenticate", challenge.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_challenges)
