"""OIDC end to end: a real provider process, our real server process, a browser played by
httpx (authorization code + PKCE), then API tokens used by pyvo and curl-style requests,
and the provider's own JWT access tokens."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from astropy.io import fits
from pyvo.dal.adhoc import SodaQuery
from pyvo.dal.tap import AsyncTAPJob

from conftest import assert_uws, base_env, free_port, start_server, uws_text
from oidc_provider import browser_login, register_client, start_provider
from soda.surveys.des import tile_centre

pytestmark = pytest.mark.slow

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"
TOKEN_LIFETIME = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("oidc")
    with start_provider(tmp / "provider.log", token_lifetime=TOKEN_LIFETIME,
                        require_registration=True) as provider:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        client_id, secret = register_client(provider.issuer, [base + "/auth/oidc/callback"])
        env = base_env(tmp / "data", demo_root,
                       CUTOUT_OIDC_ISSUER=provider.issuer, CUTOUT_OIDC_CLIENT_ID=client_id,
                       CUTOUT_OIDC_CLIENT_SECRET=secret, CUTOUT_SESSION_COOKIE_SECURE="false",
                       CUTOUT_SESSION_SECRET="test-only-session-secret-0123456789",
                       CUTOUT_ANONYMOUS_ASYNC="off", CUTOUT_OIDC_CLOCK_SKEW_SECONDS="1")
        server, base = start_server(env, tmp / "server.log", port)
        try:
            yield {"base": base, "issuer": provider.issuer, "client_id": client_id, "secret": secret}
        finally:
            server.stop()


def login(base: str, user: str) -> httpx.Client:
    """A browser: our login page → the provider → our callback → logged in."""
    browser = httpx.Client(follow_redirects=False, timeout=30)
    r = browser.get(base + "/login", params={"next": "/whoami"})
    assert r.status_code == 302
    r = browser.get(base + r.headers["location"])
    assert r.status_code == 302
    authorize = r.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["state"] and query["nonce"]
    assert query["redirect_uri"] == [base + "/auth/oidc/callback"]
    r = browser_login(browser, authorize, user, preferred_username=user)
    assert r.status_code == 302, r.text
    callback = r.headers["location"]
    assert callback.startswith(base + "/auth/oidc/callback?")
    r = browser.get(callback)
    assert r.status_code == 303 and r.headers["location"] == "/whoami", r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    return browser


def test_browser_login_gives_a_session(world: dict) -> None:
    browser = login(world["base"], "alice")
    me = browser.get(world["base"] + "/whoami").json()
    assert me["user"] == "alice" and me["method"] == "session" and me["csrf_token"]


def test_callback_with_a_forged_state_is_refused(world: dict) -> None:
    browser = httpx.Client(follow_redirects=False)
    browser.get(world["base"] + "/login/oidc")
    r = browser.get(world["base"] + "/auth/oidc/callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 401 and r.text.startswith("AuthenticationError: login failed")
    assert browser.get(world["base"] + "/whoami").json()["user"] is None


def test_tokens_created_from_the_session_work_in_pyvo_and_curl(world: dict) -> None:
    base = world["base"]
    browser = login(base, "alice")
    csrf = browser.get(base + "/whoami").json()["csrf_token"]
    # A cookie-authenticated POST without the CSRF token is refused.
    forged = browser.post(base + "/tokens", data={"name": "laptop"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    made = browser.post(base + "/tokens", data={"name": "laptop", "lifetime_days": "30", "csrf_token": csrf})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("cut_") and made.headers["cache-control"] == "no-store"
    listed = browser.get(base + "/tokens").json()["tokens"]
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]

    # curl-style: the token alone, no cookie.
    curl = httpx.Client(headers={"Authorization": f"Bearer {token}"}, follow_redirects=False)
    assert curl.get(base + "/whoami").json() == {"user": "alice", "authenticated": True, "method": "token"}
    created = curl.post(base + "/async", data={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.003"})
    assert created.status_code == 303
    doc = assert_uws(curl.get(created.headers["location"]).content)
    assert uws_text(doc, "uws:ownerId") == "alice"
    assert httpx.get(created.headers["location"]).status_code == 401   # without the token

    # pyvo: a requests session carrying the header.
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    query = SodaQuery(base + "/sync", circle=(RA0, DEC0, 0.004), session=session)
    query["ID"] = DID
    with fits.open(io.BytesIO(query.execute_stream().read())) as hdul:
        assert hdul["SCI"].header["DATASET"] == DID
    job = AsyncTAPJob(created.headers["location"], session=session)
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED" and job.owner == "alice"
    [uri] = job.result_uris
    assert session.get(uri).status_code == 200

    # Revoked: refused at once.
    token_id = made.json()["id"]
    assert browser.delete(base + f"/tokens/{token_id}", headers={"X-CSRF-Token": csrf}).status_code == 204
    refused = curl.get(base + "/whoami")
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]


def _provider_tokens(world: dict, user: str) -> dict:
    """Tokens from the provider itself (code flow with PKCE, done by hand)."""
    import base64
    import hashlib
    import secrets
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = world["base"] + "/auth/oidc/callback"
    discovery = httpx.get(world["issuer"] + "/.well-known/openid-configuration").json()
    authorize = str(httpx.URL(discovery["authorization_endpoint"], params={
        "response_type": "code", "client_id": world["client_id"], "redirect_uri": redirect,
        "scope": "openid", "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}))
    with httpx.Client(follow_redirects=False) as browser:
        answer = browser_login(browser, authorize, user)
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    token = httpx.post(discovery["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "code_verifier": verifier}, auth=(world["client_id"], world["secret"]))
    token.raise_for_status()
    return dict(token.json())


def test_provider_jwt_access_tokens_are_accepted_until_they_expire(world: dict) -> None:
    access_token = _provider_tokens(world, "carol")["access_token"]
    headers = {"Authorization": f"Bearer {access_token}"}
    me = httpx.get(world["base"] + "/whoami", headers=headers)
    assert me.json() == {"user": "carol", "authenticated": True, "method": "jwt"}
    # A token cannot make API tokens.
    assert httpx.post(world["base"] + "/tokens", data={"name": "x"}, headers=headers).status_code == 403
    # A tampered signature is refused.
    head, body, signature = access_token.split(".")
    tampered = f"{head}.{body}.{signature[:-4]}AAAA"
    refused = httpx.get(world["base"] + "/whoami", headers={"Authorization": f"Bearer {tampered}"})
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    # Past its lifetime (the provider makes 4 s tokens; the service allows 1 s of skew here).
    time.sleep(TOKEN_LIFETIME + 2)
    expired = httpx.get(world["base"] + "/whoami", headers=headers)
    assert expired.status_code == 401 and "expired" in expired.text
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]


def test_an_id_token_is_not_an_access_token(world: dict) -> None:
    """RFC 9068: only a token typed at+jwt is accepted, so a leaked ID token opens nothing."""
    id_token = _provider_tokens(world, "erin")["id_token"]
    refused = httpx.get(world["base"] + "/whoami", headers={"Authorization": f"Bearer {id_token}"})
    assert refused.status_code == 401 and "not an access token" in refused.text


def test_401_challenges_tell_vo_clients_where_to_get_a_token(world: dict) -> None:
    r = httpx.post(world["base"] + "/async", data={"ID": DID})
    assert r.status_code == 401
    challenges = r.headers.get_list("www-authenticate")
    assert any(c.startswith('Bearer realm="demo.cutout"') for c in challenges)
    assert f'ivoa_bearer standard_id="ivo://ivoa.net/sso#OpenID", access_url="{world["base"]}/tokens"' in challenges
    # AuthVO: optional authentication is announced on the capabilities with a 200.
    caps = httpx.get(world["base"] + "/capabilities")
    assert caps.status_code == 200 and any(c.startswith("ivoa_bearer") for c in caps.headers.get_list("www-authenticate"))


def test_logout_ends_the_session_and_the_provider_session(world: dict) -> None:
    base = world["base"]
    browser = login(base, "dave")
    csrf = browser.get(base + "/whoami").json()["csrf_token"]
    cookie = browser.cookies["cutout_session"]
    # The cookie carries the session id alone: the ID token and CSRF token stay on the server.
    content = json.loads(base64.b64decode(cookie.split(".")[0] + "=="))
    assert list(content) == ["sid"] and csrf not in cookie
    assert browser.post(base + "/logout").status_code == 403            # no CSRF token
    r = browser.post(base + "/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert r.headers["location"].startswith(world["issuer"])           # RP-initiated logout
    assert "id_token_hint=" in r.headers["location"]
    assert browser.get(base + "/whoami").json()["user"] is None
    # The old cookie, replayed after logout, is worth nothing.
    replay = httpx.Client(follow_redirects=False, timeout=30, cookies={"cutout_session": cookie})
    assert replay.get(base + "/whoami").json()["user"] is None
    assert replay.get(base + "/tokens").status_code == 401
    assert replay.post(base + "/tokens", data={"name": "x", "csrf_token": csrf}).status_code == 401


def test_logout_everywhere_ends_every_session_of_the_user(world: dict) -> None:
    base = world["base"]
    laptop, phone, other = login(base, "erin"), login(base, "erin"), login(base, "frank")
    csrf = laptop.get(base + "/whoami").json()["csrf_token"]
    assert phone.get(base + "/whoami").json()["user"] == "erin"
    r = laptop.post(base + "/logout", data={"csrf_token": csrf, "everywhere": "1"})
    assert r.status_code == 303
    assert laptop.get(base + "/whoami").json()["user"] is None
    assert phone.get(base + "/whoami").json()["user"] is None
    assert phone.get(base + "/tokens").status_code == 401
    assert other.get(base + "/whoami").json()["user"] == "frank"
