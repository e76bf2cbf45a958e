"""The test OpenID Connect provider (tests/oidc_provider.py), run for real on loopback.

Checks what the OIDC login and bearer-token tests rely on: discovery, the code flow
with PKCE S256 enforced, RFC 9068 JWT access tokens verifiable against the JWKS, the
token lifetime option, client registration, and the launcher itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import ExpiredTokenError
from joserfc.jwk import KeySet

from oidc_provider import Provider, browser_login, register_client, start_provider

REDIRECT_URI = "http://127.0.0.1:9/auth/callback"  # never contacted: 302s are not followed
CLIENT_ID = "cutout-test"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with start_provider(log) as p:
        yield p


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """Clients must register; tokens live 5 s."""
    log = tmp_path_factory.mktemp("oidc") / "strict.log"
    with start_provider(log, token_lifetime=5, require_registration=True) as p:
        yield p


@pytest.fixture(scope="module")
def metadata(provider: Provider) -> dict:  # type: ignore[type-arg]
    return httpx.get(provider.discovery_url).raise_for_status().json()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(meta: dict, client_id: str = CLIENT_ID, **params: str) -> str:  # type: ignore[type-arg]
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
             "scope": "openid profile email", "state": secrets.token_urlsafe(8),
             "nonce": secrets.token_urlsafe(8), **params}
    return f"{meta['authorization_endpoint']}?{urlencode({k: v for k, v in query.items() if v})}"


def callback_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login_code(browser: httpx.Client, meta: dict, sub: str = "alice",  # type: ignore[type-arg]
               client_id: str = CLIENT_ID, **claims: object) -> tuple[str, str]:
    """Authorize with a fresh S256 challenge; returns (code, verifier)."""
    verifier, challenge = pkce_pair()
    url = authorize_url(meta, client_id, code_challenge=challenge, code_challenge_method="S256")
    params = callback_params(browser_login(browser, url, sub, **claims))
    assert parse_qs(urlsplit(url).query)["state"] == [params["state"]]
    return params["code"], verifier


def token_request(meta: dict, code: str, verifier: str | None,  # type: ignore[type-arg]
                  auth: tuple[str, str] = (CLIENT_ID, "any-secret")) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(meta["token_endpoint"], data=data, auth=auth)


def jwks(meta: dict) -> KeySet:  # type: ignore[type-arg]
    return KeySet.import_key_set(httpx.get(meta["jwks_uri"]).raise_for_status().json())


def verify(token: str, meta: dict, client_id: str = CLIENT_ID,  # type: ignore[type-arg]
           sub: str | None = None) -> jwt.Token:
    """Signature against the JWKS, then iss/aud/exp/iat/sub as a resource server would."""
    decoded = jwt.decode(token, jwks(meta), algorithms=["RS256"])
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": client_id},
        exp={"essential": True}, iat={"essential": True},
        sub={"essential": True, **({"value": sub} if sub else {})},
    )
    registry.validate(decoded.claims)
    return decoded


# --- discovery -----------------------------------------------------------------------


def test_discovery(provider: Provider, metadata: dict) -> None:  # type: ignore[type-arg]
    assert provider.issuer == f"http://127.0.0.1:{provider.port}"
    assert metadata["issuer"] == provider.issuer
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                 "userinfo_endpoint", "end_session_endpoint", "registration_endpoint"):
        assert metadata[name].startswith(provider.issuer + "/"), name
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "code" in metadata["response_types_supported"]
    keys = httpx.get(metadata["jwks_uri"]).json()["keys"]
    assert [(k["kty"], bool(k.get("kid")), "d" in k) for k in keys] == [("RSA", True, False)]


# --- the code flow with PKCE, and the tokens -------------------------------------------


def test_code_flow_gives_jwt_access_token(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    code, verifier = login_code(browser, metadata, "alice")
    response = token_request(metadata, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid profile email"

    access = verify(body["access_token"], metadata, sub="alice")
    keys = httpx.get(metadata["jwks_uri"]).json()["keys"]
    assert access.header["typ"] == "at+jwt"
    assert access.header["alg"] == "RS256"
    assert access.header["kid"] == keys[0]["kid"]
    claims = access.claims
    assert claims["iss"] == metadata["issuer"]
    assert claims["aud"] == CLIENT_ID
    assert claims["client_id"] == CLIENT_ID
    assert claims["sub"] == "alice"
    assert claims["scope"] == "openid profile email"
    assert claims["jti"]
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60

    ident = verify(body["id_token"], metadata, sub="alice")
    assert ident.claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    assert ident.claims["email"] == "alice"  # the mock's default claims: {"email": sub}

    # The JWT is also the bearer token of the provider's own userinfo endpoint.
    info = httpx.get(metadata["userinfo_endpoint"],
                     headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == "alice"

    # The code is single use.
    again = token_request(metadata, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_jti_differs_per_token(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    tokens = [token_request(metadata, *login_code(browser, metadata)).json()["access_token"]
              for _ in range(2)]
    jtis = {jwt.decode(t, jwks(metadata)).claims["jti"] for t in tokens}
    assert len(jtis) == 2


def test_login_claims(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    code, verifier = login_code(browser, metadata, "bob", preferred_username="bobby",
                                email="bob@example.org", groups=["astro", "staff"])
    body = token_request(metadata, code, verifier).json()
    claims = verify(body["id_token"], metadata).claims
    assert (claims["sub"], claims["preferred_username"], claims["email"], claims["groups"]) == (
        "bob", "bobby", "bob@example.org", ["astro", "staff"])
    info = httpx.get(metadata["userinfo_endpoint"],
                     headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert info["preferred_username"] == "bobby"


def test_refresh_gives_jwt_access_token(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    body = token_request(metadata, *login_code(browser, metadata, "carol")).json()
    response = httpx.post(metadata["token_endpoint"], auth=(CLIENT_ID, "any-secret"),
                          data={"grant_type": "refresh_token",
                                "refresh_token": body["refresh_token"]})
    assert response.status_code == 200, response.text
    access = verify(response.json()["access_token"], metadata,
                    sub="carol")
    assert access.header["typ"] == "at+jwt"
    assert access.claims["exp"] - access.claims["iat"] == 3600


# --- PKCE is enforced --------------------------------------------------------------------


def test_token_request_without_verifier_fails(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    code, _ = login_code(browser, metadata)
    response = token_request(metadata, code, None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_request_with_wrong_verifier_fails(metadata: dict, browser: httpx.Client) -> None:  # type: ignore[type-arg]
    code, verifier = login_code(browser, metadata)
    response = token_request(metadata, code, pkce_pair()[0])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # a refused verifier does not burn the code
    assert token_request(metadata, code, verifier).status_code == 200


@pytest.mark.parametrize("params", [
    {},                                                             # no PKCE at all
    {"code_challenge_method": "S256"},                              # method, no challenge
    {"code_challenge": pkce_pair()[1]},                             # challenge, method implied plain
    {"code_challenge": pkce_pair()[1], "code_challenge_method": "plain"},
], ids=["none", "no-challenge", "no-method", "plain"])
def test_authorize_without_s256_challenge_fails(metadata: dict, browser: httpx.Client,  # type: ignore[type-arg]
                                                params: dict[str, str]) -> None:
    url = authorize_url(metadata, **params)
    # Both the login page and the form submission refuse, redirecting with the error.
    for response in (browser_login(browser, url, "alice"),
                     browser.post(url, data={"sub": "alice"})):
        result = callback_params(response)
        assert result["error"] == "invalid_request"
        assert "code" not in result


# --- Authlib's own client, as the app uses it ----------------------------------------------


def test_authlib_starlette_client(provider: Provider, browser: httpx.Client) -> None:
    from authlib.integrations.starlette_client import OAuth

    async def flow() -> tuple[dict, dict]:  # type: ignore[type-arg]
        oauth = OAuth()
        oauth.register("test", client_id=CLIENT_ID, client_secret="s3cret",
                       server_metadata_url=provider.discovery_url,
                       client_kwargs={"scope": "openid email profile",
                                      "code_challenge_method": "S256"})
        client = oauth.create_client("test")
        rv = await client.create_authorization_url(REDIRECT_URI)
        assert "code_challenge=" in rv["url"] and rv["code_verifier"]
        response = await asyncio.to_thread(browser_login, browser, rv["url"], "dave",
                                           preferred_username="dave")
        params = callback_params(response)
        assert params["state"] == rv["state"]
        token = await client.fetch_access_token(redirect_uri=REDIRECT_URI, code=params["code"],
                                                code_verifier=rv["code_verifier"])
        userinfo = await client.parse_id_token(token, nonce=rv["nonce"])
        return token, dict(userinfo)

    token, userinfo = asyncio.run(flow())
    assert userinfo["sub"] == "dave"
    assert userinfo["preferred_username"] == "dave"
    meta = httpx.get(provider.discovery_url).json()
    assert verify(token["access_token"], meta).header["typ"] == "at+jwt"


# --- registration and token lifetime (the strict provider) ------------------------------------


def test_registered_client_and_short_lifetime(strict: Provider, browser: httpx.Client) -> None:
    meta = httpx.get(strict.discovery_url).json()
    client_id, secret = register_client(strict.issuer, [REDIRECT_URI])
    code, verifier = login_code(browser, meta, "erin", client_id=client_id)

    wrong = token_request(meta, code, verifier, auth=(client_id, "wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"

    response = token_request(meta, code, verifier, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 5
    access = verify(body["access_token"], meta, client_id=client_id)
    assert access.claims["exp"] - access.claims["iat"] == 5
    assert access.claims["aud"] == client_id == access.claims["client_id"]
    ident = verify(body["id_token"], meta, client_id=client_id)
    assert ident.claims["exp"] - ident.claims["iat"] == 5

    registry = jwt.JWTClaimsRegistry(now=access.claims["exp"] + 1, exp={"essential": True})
    with pytest.raises(ExpiredTokenError):
        registry.validate(access.claims)


def test_unregistered_client_refused(strict: Provider, browser: httpx.Client) -> None:
    meta = httpx.get(strict.discovery_url).json()
    _, challenge = pkce_pair()
    url = authorize_url(meta, "nobody", code_challenge=challenge, code_challenge_method="S256")
    response = browser_login(browser, url, "alice")
    assert response.status_code == 400
    assert "invalid_client" in response.text


def test_registered_redirect_uri_enforced(strict: Provider, browser: httpx.Client) -> None:
    meta = httpx.get(strict.discovery_url).json()
    client_id, _ = register_client(strict.issuer, ["http://127.0.0.1:9/other"])
    _, challenge = pkce_pair()
    url = authorize_url(meta, client_id, code_challenge=challenge, code_challenge_method="S256")
    response = browser_login(browser, url, "alice")
    assert response.status_code == 400, response.headers


# --- the launcher -------------------------------------------------------------------------


def test_launcher_reports_a_dead_provider(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound, not listening: the provider cannot bind it
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited") as info:
            start_provider(tmp_path / "dead.log", port=port)
    assert "in use" in str(info.value)  # the log tail is in the message
    assert time.monotonic() - started < 15


def test_stop_ends_the_process(tmp_path: Path) -> None:
    with start_provider(tmp_path / "p.log", token_lifetime=60) as p:
        assert httpx.get(p.discovery_url).status_code == 200
    assert p.popen.poll() is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(p.discovery_url, timeout=2)
