"""WWW-Authenticate challenges that tell VO clients how to log in (AuthVO draft, RFC 6750)."""

from __future__ import annotations

from dali.standards import SSO_OPENID


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
