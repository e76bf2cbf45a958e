"""WWW-Authenticate challenges that tell VO clients how to log in (AuthVO draft, RFC 6750).

A 401 carries the ``Bearer`` challenge (RFC 6750 §3) and, where login is configured, one
``ivoa_bearer`` challenge per way to log in: its ``access_url`` is the page that makes
API tokens after a login, its ``standard_id`` the login that page expects (SSO 2.0 ids).

No ``ivoa_cookie`` challenge (AuthVO §3.2.1), on purpose. That scheme promises a client it
can POST a username and password to ``access_url`` as ``standard_id`` says (``BasicAA`` or
``tls-with-password``, AuthVO §3.3.2) and get the cookie back in ``Set-Cookie``. This
service never sees a password: its session cookie comes from a browser round trip through
the OIDC provider or the SAML IdP, and a cookie-authenticated POST also needs the
session's CSRF token. A client following an ``ivoa_cookie`` challenge could not log in,
so scripts and VO clients are pointed at API tokens instead.
"""

from __future__ import annotations

from dali.standards import SSO_OPENID


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scheme(challenge: str) -> str:
    """The auth-scheme of a challenge, lower case (RFC 9110 §11.1: case-insensitive)."""
    return challenge.strip().split(" ", 1)[0].lower()


def bearer(realm: str, error: str | None = None, description: str | None = None) -> str:
    """RFC 6750 §3: the Bearer challenge, with the error when a token was refused."""
    params = [f"realm={_quote(realm)}"]
    if error:
        params.append(f"error={_quote(error)}")
    if description:
        params.append(f"error_description={_quote(description)}")
    return "Bearer " + ", ".join(params)


def ivoa_bearer(token_url: str, standard_id: str = SSO_OPENID) -> str:
    """Where a bearer token for this service is obtained (TOPCAT's ``ivoa_bearer``)."""
    return f"ivoa_bearer standard_id={_quote(standard_id)}, access_url={_quote(token_url)}"
