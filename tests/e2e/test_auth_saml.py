"""SAML end to end over HTTP: a real IdP process, our real server process as the SP, a
browser played by httpx. The user ends with the same session as after an OIDC login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import base_env, free_port, start_server
from saml_idp import browser_post_login, start_idp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("saml")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The IdP reads our SP metadata from our server when the first login arrives.
    with start_idp(tmp / "idp", sp_metadata=f"{base}/auth/saml/metadata") as idp:
        env = base_env(tmp / "data", demo_root, CUTOUT_PUBLIC_URL=base,
                       CUTOUT_SAML_IDP_METADATA=idp.metadata_url,
                       CUTOUT_SESSION_COOKIE_SECURE="false", CUTOUT_ANONYMOUS_ASYNC="off")
        server, base = start_server(env, tmp / "server.log", port)
        try:
            yield {"base": base, "idp": idp}
        finally:
            server.stop()


def saml_answer(base: str, browser: httpx.Client, user: str) -> tuple[str, str, str | None]:
    r = browser.get(base + "/login", params={"next": "/whoami"})
    assert r.status_code == 302 and r.headers["location"].startswith("/login/saml")
    r = browser.get(base + r.headers["location"])
    assert r.status_code == 302, r.text
    return browser_post_login(browser, r.headers["location"], user)


def test_metadata_names_our_acs(world: dict) -> None:
    r = httpx.get(world["base"] + "/auth/saml/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/samlmetadata+xml")
    assert world["base"] + "/auth/saml/acs" in r.text


def test_saml_login_gives_the_same_session_as_oidc(world: dict) -> None:
    base = world["base"]
    browser = httpx.Client(follow_redirects=False)
    acs, response, relay = saml_answer(base, browser, "bob")
    assert acs == base + "/auth/saml/acs" and relay == "/whoami"
    # The IdP's POST arrives cross-site: our session cookie is not needed for it.
    done = httpx.post(acs, data={"SAMLResponse": response, "RelayState": relay}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/whoami", done.text
    browser.cookies.update(done.cookies)
    me = browser.get(base + "/whoami").json()
    assert me["user"] == "bob@idp.test" and me["method"] == "session"
    # The same things follow as after OIDC: an API token from the session.
    made = browser.post(base + "/tokens", data={"name": "cli", "csrf_token": me["csrf_token"]})
    assert made.status_code == 201
    token = made.json()["token"]
    whoami = httpx.get(base + "/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert whoami["user"] == "bob@idp.test" and whoami["method"] == "token"
    # And it ends the same way: after logout, the old cookie replayed is anonymous.
    cookie = browser.cookies["cutout_session"]
    assert browser.post(base + "/logout", data={"csrf_token": me["csrf_token"]}).status_code == 303
    replay = httpx.Client(follow_redirects=False, cookies={"cutout_session": cookie})
    assert replay.get(base + "/whoami").json()["user"] is None
    assert replay.get(base + "/tokens").status_code == 401


def test_a_replayed_response_is_refused(world: dict) -> None:
    base = world["base"]
    acs, response, relay = saml_answer(base, httpx.Client(follow_redirects=False), "carol")
    first = httpx.post(acs, data={"SAMLResponse": response, "RelayState": relay})
    assert first.status_code == 303
    again = httpx.post(acs, data={"SAMLResponse": response, "RelayState": relay})
    assert again.status_code == 401 and again.text.startswith("AuthenticationError: login failed")
    assert "cutout_session" not in again.headers.get("set-cookie", "")


def test_a_tampered_response_is_refused(world: dict) -> None:
    import base64
    base = world["base"]
    acs, response, relay = saml_answer(base, httpx.Client(follow_redirects=False), "dave")
    xml = base64.b64decode(response).replace(b"dave@idp.test", b"root@idp.test")
    forged = httpx.post(acs, data={"SAMLResponse": base64.b64encode(xml).decode(), "RelayState": relay})
    assert forged.status_code == 401, forged.text


def test_acs_without_a_response_is_a_usage_error(world: dict) -> None:
    r = httpx.post(world["base"] + "/auth/saml/acs", data={"RelayState": "/"})
    assert r.status_code == 400 and r.text.startswith("UsageError:")
