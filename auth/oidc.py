"""OIDC login for browsers (authorization code + PKCE S256, nonce and state checked).

A thin wrapper over Authlib's Starlette client: the provider is discovered from its
issuer URL, and the state, nonce and PKCE verifier are kept in the signed session
cookie between the redirect and the callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from starlette.requests import Request
from starlette.responses import RedirectResponse


class OidcLoginFailed(Exception):
    """The provider's answer was refused; the message is safe to show to the user."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = ""  # empty: a public client (PKCE alone)
    scopes: str = "openid profile email"
    username_claim: str = "sub"

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class OidcUser:
    user_id: str
    claims: dict[str, Any]
    id_token: str | None


class OidcLogin:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        registry = OAuth()
        kwargs: dict[str, Any] = {"scope": config.scopes, "code_challenge_method": "S256"}
        if not config.client_secret:
            kwargs["token_endpoint_auth_method"] = "none"
        self.client = registry.register(
            "provider", client_id=config.client_id, client_secret=config.client_secret or None,
            server_metadata_url=config.discovery_url, client_kwargs=kwargs)

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once, then cached by Authlib)."""
        return dict(await self.client.load_server_metadata())

    async def redirect(self, request: Request, callback_url: str) -> RedirectResponse:
        """Send the browser to the provider; state, nonce and verifier go to the session."""
        return await self.client.authorize_redirect(request, callback_url)

    async def finish(self, request: Request) -> OidcUser:
        """At the callback: exchange the code, check the ID token, name the user."""
        try:
            token = await self.client.authorize_access_token(request)
        except OAuthError as exc:
            raise OidcLoginFailed(f"the identity provider refused the login: {exc.error}"
                                  + (f" ({exc.description})" if exc.description else "")) from None
        except Exception as exc:  # a mismatched state raises a bare error inside Authlib
            raise OidcLoginFailed(f"the login answer could not be checked: {type(exc).__name__}") from None
        claims = dict(token.get("userinfo") or {})
        if not claims:
            raise OidcLoginFailed("the identity provider sent no ID token")
        user_id = claims.get(self.config.username_claim)
        if not user_id:
            raise OidcLoginFailed(f"the identity provider sent no {self.config.username_claim!r} claim")
        return OidcUser(str(user_id), claims, token.get("id_token"))

    async def logout_url(self, request: Request, id_token: str | None, after: str) -> str | None:
        """The provider's end-session URL (RP-initiated logout), or None if it has none."""
        if not (await self.metadata()).get("end_session_endpoint"):
            return None
        response = await self.client.logout_redirect(request, post_logout_redirect_uri=after,
                                                     id_token_hint=id_token)
        return response.headers["location"]
