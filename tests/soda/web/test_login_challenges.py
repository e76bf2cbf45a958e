"""Every 401 offers every way to log in (AuthVO §3, §4.1; RFC 6750 §3): the Bearer
challenge (with ``error="invalid_token"`` when a token was refused) and one
``ivoa_bearer`` challenge per configured login, pointing at the token page. No
``ivoa_cookie``: the session cookie cannot be had by the password POST that scheme
promises (auth/challenges.py). Logins are configured for real: an OIDC issuer (never
contacted here: the challenges name it, nothing asks it) and a running SAML IdP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from saml_idp import Idp, start_idp

from conftest import app_client, assert_votable

DID = "ivo://demo.cutout/des?DES0139-4457_r"
OPENID = 'ivoa_bearer standard_id="ivo://ivoa.net/sso#OpenID", access_url="{base}/tokens"'
SAML = 'ivoa_bearer standard_id="ivo://ivoa.net/sso#saml2.0", access_url="{base}/tokens"'
LOGINS = {"none": (), "oidc": (OPENID,), "saml": (SAML,), "oidc+saml": (OPENID, SAML)}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    with start_idp(tmp_path_factory.mktemp("idp")) as running:
        yield running


@pytest.fixture(scope="module", params=list(LOGINS))
def service(request: pytest.FixtureRequest, idp: Idp, tmp_path_factory: pytest.TempPathFactory,
            demo_root: Path) -> Iterator[dict]:  # type: ignore[type-arg]
    env = {"CUTOUT_ANONYMOUS_RATE_LIMIT": "0", "CUTOUT_ANONYMOUS_ASYNC": "off", "CUTOUT_TRUSTED_PROXIES": "127.0.0.1"}
    if "oidc" in request.param:
        env |= {"CUTOUT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted", "CUTOUT_OIDC_CLIENT_ID": "cutout"}
    if "saml" in request.param:
        env |= {"CUTOUT_SAML_IDP_METADATA": idp.metadata_url, "CUTOUT_PUBLIC_URL": "http://testserver"}
    data = tmp_path_factory.mktemp(f"challenges-{request.param}") / "data"
    with app_client(data, demo_root, **env) as client:
        yesterday = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
        _, expired = client.app_state.access.tokens.create("alice", "old", yesterday)  # type: ignore[attr-defined]
        yield {"client": client, "offered": LOGINS[request.param],
               "refused": {"Authorization": "Bearer cut_not-a-token-of-ours"},
               "expired": {"Authorization": f"Bearer {expired}"}}


def assert_every_challenge(response: httpx.Response, offered: tuple[str, ...], *, refused: bool,
                           base: str = "http://testserver") -> None:
    assert response.status_code == 401, response.text
    got = response.headers.get_list("www-authenticate")
    bearer = [c for c in got if c.split(" ", 1)[0].lower() == "bearer"]
    assert len(bearer) == 1, got
    assert bearer[0].startswith('Bearer realm="demo.cutout"'), got
    assert ('error="invalid_token"' in bearer[0]) is refused, got
    assert sorted(c for c in got if c not in bearer) == sorted(o.format(base=base) for o in offered)


# A token refused on the VO endpoints, the job list and the account pages.
REFUSED_ON = ["/async", f"/sync?ID={DID}&CIRCLE=24.97+-44.96+0.01", f"/links?ID={DID}", "/whoami",
              "/usage"]


@pytest.mark.parametrize("path", REFUSED_ON)
def test_refused_token_gets_every_challenge(service: dict, path: str) -> None:  # type: ignore[type-arg]
    response = service["client"].get(path, headers=service["refused"])
    assert_every_challenge(response, service["offered"], refused=True)


@pytest.mark.parametrize("path", ["/async", f"/links?ID={DID}"])
def test_expired_token_gets_every_challenge(service: dict, path: str) -> None:  # type: ignore[type-arg]
    response = service["client"].get(path, headers=service["expired"])
    assert_every_challenge(response, service["offered"], refused=True)
    assert "expired" in response.text


@pytest.mark.parametrize("method,path", [("GET", f"/files?ID={DID}"), ("GET", "/usage"),
                                         ("GET", "/tokens"), ("POST", "/async")])
def test_anonymous_on_a_protected_resource_gets_every_challenge(service: dict, method: str, path: str) -> None:  # type: ignore[type-arg]
    response = service["client"].request(method, path, data={"ID": DID} if method == "POST" else None)
    assert_every_challenge(response, service["offered"], refused=False)


def test_links_keeps_every_challenge_in_its_votable_fault(service: dict) -> None:  # type: ignore[type-arg]
    response = service["client"].get("/links", params={"ID": DID}, headers=service["refused"])
    assert_every_challenge(response, service["offered"], refused=True)
    info = assert_votable(response.content).find("{*}RESOURCE/{*}INFO")
    assert info.text.startswith("UsageFault: ")


def test_challenges_name_the_token_page_as_the_client_sees_it(service: dict) -> None:  # type: ignore[type-arg]
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "vo.example.org",
               "X-Forwarded-Prefix": "/cutouts"}
    response = service["client"].get("/usage", headers=proxied)
    assert_every_challenge(response, service["offered"], refused=False,
                           base="https://vo.example.org/cutouts")


def test_capabilities_offer_login_only_where_it_is_configured(service: dict) -> None:  # type: ignore[type-arg]
    response = service["client"].get("/capabilities")
    assert response.status_code == 200
    got = response.headers.get_list("www-authenticate")
    if not service["offered"]:
        assert got == []          # AuthVO §4.1: no authentication, no challenge
    else:                          # optional authentication: 200 with the challenges
        assert sorted(c for c in got if c.startswith("ivoa_bearer")) == sorted(
            o.format(base="http://testserver") for o in service["offered"])
    assert not any(c.lower().startswith("ivoa_cookie") for c in got)
