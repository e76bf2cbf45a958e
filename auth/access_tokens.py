"""The OIDC provider's own access tokens (RFC 9068 JWTs), checked against its JWKS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError, MissingKeyError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
# A token signed with a key we have not seen may mean the provider rotated its keys; look
# again, but not more often than this, so bad tokens cannot make us hammer the provider.
REFRESH_AT_MOST_EVERY = 30.0


_UNKNOWN_KEY = (BadSignatureError, InvalidKeyIdError, MissingKeyError)


class InvalidAccessToken(Exception):
    """The token is not one of the provider's valid access tokens; the message says why."""


class KeysUnavailable(Exception):
    """The provider's keys could not be fetched (or were not, so soon after a failure);
    the message says why. ``retry_after``: seconds until the next fetch is allowed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


class AccessTokenVerifier:
    def __init__(self, issuer: str, audience: str, username_claim: str,
                 fetch_jwks: Callable[[], dict[str, Any]], leeway: int, retry_after_failure: float) -> None:
        self.issuer = issuer
        self.audience = audience
        self.username_claim = username_claim
        self._fetch = fetch_jwks
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        # A failed fetch is remembered for retry_after_failure seconds: meanwhile tokens
        # that need a fetch are answered with it, so a flood of them (an unknown key, or
        # the provider down) costs at most one outbound fetch per interval.
        self.retry_after_failure = retry_after_failure
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = threading.Lock()
        self.leeway = leeway

    def _keyset(self, refresh: bool) -> KeySet:
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at > REFRESH_AT_MOST_EVERY
            if self._keys is not None and not (refresh and stale):
                return self._keys
            if self._failed_at is not None and now - self._failed_at < self.retry_after_failure:
                raise KeysUnavailable(self._failure, self._failed_at + self.retry_after_failure - now)
            try:
                keys = KeySet.import_key_set(self._fetch())
            except Exception as exc:  # noqa: BLE001 - whatever the fetch met, it is remembered
                self._failed_at, self._failure = now, f"{type(exc).__name__}: {exc}"
                raise KeysUnavailable(self._failure, self.retry_after_failure) from exc
            self._keys, self._fetched_at, self._failed_at = keys, time.monotonic(), None
            return keys

    def verify(self, token: str) -> tuple[str, dict[str, Any]]:
        """The user named by a valid token, and its claims; else InvalidAccessToken.

        Blocking (it may fetch the JWKS): call it from a thread.
        """
        try:
            try:
                decoded = self._decode(token, refresh=False)
            except _UNKNOWN_KEY:
                decoded = self._decode(token, refresh=True)
        except JoseError as exc:
            raise InvalidAccessToken(f"not a valid signed token ({exc.error})") from None
        except (ValueError, KeyError, TypeError):
            raise InvalidAccessToken("not a well-formed JWT") from None
        # RFC 9068 §2.1 / §4: an access token says so in its type, so an ID token is refused.
        if str(decoded.header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidAccessToken("not an access token (typ is not at+jwt)")
        registry = JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True})
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise InvalidAccessToken(_claim_problem(exc)) from None
        user = decoded.claims.get(self.username_claim)
        if not user:
            raise InvalidAccessToken(f"the token has no {self.username_claim!r} claim")
        return str(user), dict(decoded.claims)

    def _decode(self, token: str, refresh: bool) -> jwt.Token:
        return jwt.decode(token, self._keyset(refresh), algorithms=ALGORITHMS)


def _claim_problem(exc: JoseError) -> str:
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "the token has expired"
    if name == "InvalidTokenError":
        return "the token is not valid yet"
    return f"the token was not issued for this service ({exc.description or exc.error})"
