"""SAML login (auth.saml) end to end against a real IdP process (tests/saml_idp.py).

The SP's ACS URL is never contacted: the test plays the browser at the IdP, reads the
auto-POST form and hands its SAMLResponse to ``SamlServiceProvider.finish`` directly.
"""

from __future__ import annotations

import base64
import copy
import re
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from saml_idp import Idp, browser_post_login, make_key_and_cert, start_idp

from auth.saml import (
    MemoryOutstanding, SamlConfig, SamlConfigError, SamlLoginFailed, SamlServiceProvider,
)

ENTITY_ID = "http://sp.test/auth/saml/metadata"
ACS_URL = "http://sp.test/auth/saml/acs"
EPPN_URI = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make_sp(idp: Idp, outstanding: Any = None, **config: Any) -> SamlServiceProvider:
    settings: dict[str, Any] = {"entity_id": ENTITY_ID, "acs_url": ACS_URL,
                                "idp_metadata": idp.metadata_url, **config}
    return SamlServiceProvider(SamlConfig(**settings), outstanding or MemoryOutstanding())


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    with start_idp(tmp_path_factory.mktemp("idp")) as running:
        yield running


@pytest.fixture(scope="module")
def sp(idp: Idp) -> SamlServiceProvider:
    provider = make_sp(idp)
    idp.give_sp_metadata(provider.metadata())  # the IdP learns of us only after we exist
    return provider


@pytest.fixture(scope="module")
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as client:
        yield client


def login(sp: SamlServiceProvider, browser: httpx.Client, username: str = "alice",
          relay_state: str = "/jobs", **knobs: str) -> tuple[str, str | None]:
    acs, saml_response, relay = browser_post_login(
        browser, sp.login_redirect(relay_state), username, **knobs)
    assert acs == ACS_URL
    return saml_response, relay


def refused(sp: SamlServiceProvider, saml_response: str, relay: str | None = None) -> str:
    with pytest.raises(SamlLoginFailed) as failure:
        sp.finish(saml_response, relay)
    return str(failure.value)


def in_response_to(saml_response: str) -> str:
    return str(etree.fromstring(base64.b64decode(saml_response)).get("InResponseTo"))


def rewrite(saml_response: str, old: bytes, new: bytes) -> str:
    xml = base64.b64decode(saml_response)
    assert old in xml
    return base64.b64encode(xml.replace(old, new)).decode()


def send_elsewhere(redirect_url: str, sso_url: str) -> str:
    """The same AuthnRequest (same id), taken to another IdP's SSO endpoint."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect_url).query))
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15)
    xml = re.sub(rb'Destination="[^"]*"', f'Destination="{sso_url}"'.encode(), xml)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    query["SAMLRequest"] = base64.b64encode(deflate.compress(xml) + deflate.flush()).decode()
    return f"{sso_url}?{urllib.parse.urlencode(query)}"


# --- the happy paths ---------------------------------------------------------------------

def test_login_names_the_user(sp: SamlServiceProvider, idp: Idp, browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "alice")
    assert relay == "/jobs"
    user = sp.finish(saml_response, relay)
    assert user.user_id == "alice@idp.test"
    assert user.issuer == idp.entity_id
    assert user.attributes["eduPersonPrincipalName"] == ["alice@idp.test"]
    assert user.attributes["mail"] == ["alice@example.org"]
    assert user.attributes["displayName"] == ["Alice"]
    assert len(user.name_id) == 32 and user.session_index


def test_the_same_user_gets_the_same_persistent_name_id(
        sp: SamlServiceProvider, browser: httpx.Client) -> None:
    first = sp.finish(*login(sp, browser, "bob"))
    second = sp.finish(*login(sp, browser, "bob"))
    assert first.user_id == second.user_id == "bob@idp.test"
    assert first.name_id == second.name_id
    assert first.session_index != second.session_index


@pytest.mark.parametrize("sign", ["assertion", "response"])
def test_a_signed_assertion_or_a_signed_response_is_enough(
        sp: SamlServiceProvider, browser: httpx.Client, sign: str) -> None:
    assert sp.finish(*login(sp, browser, "carol", sign=sign)).user_id == "carol@idp.test"


def test_username_attribute_by_uri(idp: Idp, sp: SamlServiceProvider, browser: httpx.Client) -> None:
    by_uri = make_sp(idp, username_attribute=EPPN_URI)
    assert by_uri.finish(*login(by_uri, browser, "dave")).user_id == "dave@idp.test"
    by_mail = make_sp(idp, username_attribute="mail")
    assert by_mail.finish(*login(by_mail, browser, "dave")).user_id == "dave@example.org"


def test_without_the_attribute_the_persistent_name_id_names_the_user(
        sp: SamlServiceProvider, browser: httpx.Client) -> None:
    user = sp.finish(*login(sp, browser, "erin", omit="eduPersonPrincipalName"))
    assert user.user_id == user.name_id and "eduPersonPrincipalName" not in user.attributes


def test_a_transient_name_id_alone_cannot_name_a_user(
        sp: SamlServiceProvider, browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "erin", omit="eduPersonPrincipalName",
                                 name_id_format="transient")
    assert "one-time NameID" in refused(sp, saml_response, relay)
    # with the attribute, a transient NameID is fine
    user = sp.finish(*login(sp, browser, "erin", name_id_format="transient"))
    assert user.user_id == "erin@idp.test"


# --- forged, replayed, unsolicited, stale ------------------------------------------------

@pytest.mark.parametrize("sign", ["both", "assertion", "response"])
def test_a_tampered_response_is_refused(sp: SamlServiceProvider, browser: httpx.Client,
                                        sign: str) -> None:
    saml_response, relay = login(sp, browser, "alice", sign=sign)
    forged = rewrite(saml_response, b"alice@idp.test", b"admin@idp.test")
    assert "not correctly signed" in refused(sp, forged, relay)
    # the failed forgery did not use up the request: the genuine answer still goes through
    assert sp.finish(saml_response, relay).user_id == "alice@idp.test"


def test_the_envelope_of_a_signed_assertion_cannot_be_pointed_at_another_request(
        sp: SamlServiceProvider, browser: httpx.Client) -> None:
    # Only the assertion is signed, so the Response's InResponseTo is the attacker's to
    # change; the signed SubjectConfirmationData still names the original request.
    first, relay = login(sp, browser, "alice", sign="assertion")
    second, _ = login(sp, browser, "bob", sign="assertion")
    first_id, second_id = (in_response_to(r) for r in (first, second))
    moved = rewrite(first, f'InResponseTo="{first_id}" Version'.encode(),
                    f'InResponseTo="{second_id}" Version'.encode())
    assert "does not answer a login request of ours" in refused(sp, moved, relay)
    assert sp.finish(second, relay).user_id == "bob@idp.test"
    assert sp.finish(first, relay).user_id == "alice@idp.test"


@pytest.mark.parametrize("where", ["before", "extensions"])
def test_a_wrapped_signature_is_refused(sp: SamlServiceProvider, browser: httpx.Client,
                                        where: str) -> None:
    """XML signature wrapping: an unsigned forged assertion next to the signed original."""
    saml_response, relay = login(sp, browser, "alice", sign="assertion")
    root = etree.fromstring(base64.b64decode(saml_response))
    genuine = root.find(f"{SAML}Assertion")
    forged = copy.deepcopy(genuine)
    forged.remove(forged.find(f"{DS}Signature"))
    forged.set("ID", "id-forged")
    for value in forged.iter(f"{SAML}AttributeValue"):
        value.text = (value.text or "").replace("alice", "admin")
    genuine.addprevious(forged)
    if where == "extensions":  # hide the signed original where a careless SP won't look
        extensions = etree.Element(f"{SAMLP}Extensions")
        root.find(f"{SAML}Issuer").addnext(extensions)
        extensions.append(genuine)
    wrapped = base64.b64encode(etree.tostring(root)).decode()
    expected = {"before": "exactly one assertion", "extensions": "not correctly signed"}[where]
    assert expected in refused(sp, wrapped, relay)


def test_an_unsigned_response_is_refused(sp: SamlServiceProvider, browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "alice", sign="none")
    assert "not correctly signed" in refused(sp, saml_response, relay)


def test_a_replayed_response_is_refused(sp: SamlServiceProvider, browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "alice")
    sp.finish(saml_response, relay)
    assert "already used" in refused(sp, saml_response, relay)


def test_a_response_to_a_request_we_did_not_send_is_refused(
        idp: Idp, sp: SamlServiceProvider, browser: httpx.Client) -> None:
    # the same SP configuration, but another process (its own outstanding store) asked
    other = make_sp(idp)
    saml_response, relay = login(other, browser, "alice")
    assert "already used" in refused(sp, saml_response, relay)
    assert other.finish(saml_response, relay).user_id == "alice@idp.test"


def test_an_unsolicited_response_is_refused(sp: SamlServiceProvider, browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "alice", in_response_to="")
    assert "unsolicited" in refused(sp, saml_response, relay)
    saml_response, relay = login(sp, browser, "alice", in_response_to="id-made-up")
    assert "already used" in refused(sp, saml_response, relay)


def test_a_response_to_an_expired_request_is_refused(idp: Idp, sp: SamlServiceProvider,
                                                      browser: httpx.Client) -> None:
    clock = Clock()
    slow = make_sp(idp, MemoryOutstanding(now=clock), request_lifetime_seconds=300)
    saml_response, relay = login(slow, browser, "alice")
    clock.now += timedelta(seconds=301)
    assert "expired" in refused(slow, saml_response, relay)


def test_the_assertion_validity_window_is_checked_with_some_clock_skew(
        sp: SamlServiceProvider, browser: httpx.Client) -> None:
    # assertions live 5 minutes; 1 minute of clock difference is tolerated
    saml_response, relay = login(sp, browser, "alice", clock_offset_minutes="-10")
    assert "expired" in refused(sp, saml_response, relay)
    saml_response, relay = login(sp, browser, "alice", clock_offset_minutes="10")
    assert "not valid yet" in refused(sp, saml_response, relay)
    for offset in ("0.75", "-5.75"):  # the window opens late, or has just shut
        assert sp.finish(*login(sp, browser, "alice", clock_offset_minutes=offset))


def test_a_response_for_another_service_is_refused(sp: SamlServiceProvider,
                                                   browser: httpx.Client) -> None:
    saml_response, relay = login(sp, browser, "alice", audience="http://elsewhere.test/sp")
    assert "another service" in refused(sp, saml_response, relay)


def test_a_response_sent_to_another_address_is_refused(sp: SamlServiceProvider,
                                                       browser: httpx.Client) -> None:
    acs, saml_response, relay = browser_post_login(
        browser, sp.login_redirect("/"), "alice", destination="http://elsewhere.test/acs")
    assert acs == "http://elsewhere.test/acs"
    assert "another address" in refused(sp, saml_response, relay)


def test_a_response_from_another_idp_is_refused(
        tmp_path: Path, idp: Idp, sp: SamlServiceProvider, browser: httpx.Client) -> None:
    assert idp.sp_metadata_path is not None
    # An impostor claiming our IdP's entity id, and an honest stranger: both sign with
    # keys of their own, and both know our SP.
    with start_idp(tmp_path / "impostor", str(idp.sp_metadata_path), entity_id=idp.entity_id) \
            as impostor, start_idp(tmp_path / "stranger", str(idp.sp_metadata_path)) as stranger:
        for other in (impostor, stranger):
            redirect = send_elsewhere(sp.login_redirect("/"), f"{other.url}/sso")
            acs, saml_response, relay = browser_post_login(browser, redirect, "alice")
            assert acs == ACS_URL
            message = refused(sp, saml_response, relay)
            assert "not correctly signed" in message or "not issued by our" in message


def test_garbage_is_refused(sp: SamlServiceProvider) -> None:
    assert "missing" in refused(sp, "")
    assert "not a SAML response" in refused(sp, base64.b64encode(b"<html/>").decode())
    assert "not valid base64" in refused(sp, "%%%not base64%%%")


# --- the request we send, our metadata, setup --------------------------------------------

def test_login_redirect_carries_a_request_and_the_relay_state(
        idp: Idp, sp: SamlServiceProvider) -> None:
    url = urllib.parse.urlsplit(sp.login_redirect("/jobs/42"))
    assert f"{url.scheme}://{url.netloc}" == idp.url and url.path == "/sso"
    query = urllib.parse.parse_qs(url.query)
    assert query["RelayState"] == ["/jobs/42"] and query["SAMLRequest"]
    assert "Signature" not in query
    with pytest.raises(ValueError):
        sp.login_redirect("/" + "x" * 80)


def test_signed_authn_requests(tmp_path: Path, idp: Idp, browser: httpx.Client) -> None:
    key_file, cert_file = make_key_and_cert(tmp_path, "sp.test")
    signing = make_sp(idp, entity_id="http://sp.test/signed", key_file=str(key_file),
                      cert_file=str(cert_file))
    metadata = signing.metadata()
    assert b"X509Certificate" in metadata and b'AuthnRequestsSigned="true"' in metadata
    idp.give_sp_metadata(metadata, name="signed")
    url = signing.login_redirect("/")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    user = signing.finish(*browser_post_login(browser, url, "frank")[1:])
    assert user.user_id == "frank@idp.test"
    # the IdP checks the signature: a changed RelayState breaks it, and it must be there
    page = browser.get(url.replace("RelayState=%2F", "RelayState=%2Fx"))
    assert page.status_code == 400 and "signature is wrong" in page.text
    unsigned = re.sub(r"&(SigAlg|Signature)=[^&]*", "", url)
    page = browser.get(unsigned)
    assert page.status_code == 400 and "signs its AuthnRequests" in page.text
    # with a key in our metadata, IdPs may encrypt the assertion to it
    for sign in ("both", "assertion", "response"):
        saml_response, relay = browser_post_login(
            browser, signing.login_redirect("/"), "frank", encrypt="1", sign=sign)[1:]
        assert b"EncryptedAssertion" in base64.b64decode(saml_response)
        assert signing.finish(saml_response, relay).user_id == "frank@idp.test"


def test_metadata_names_our_entity_and_acs(sp: SamlServiceProvider) -> None:
    root = etree.fromstring(sp.metadata())
    assert root.tag == f"{MD}EntityDescriptor" and root.get("entityID") == ENTITY_ID
    acs = root.findall(f"{MD}SPSSODescriptor/{MD}AssertionConsumerService")
    assert [(e.get("Location"), e.get("Binding")) for e in acs] == [
        (ACS_URL, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")]
    algorithms = [e.get("Algorithm") for e in root.iter() if e.get("Algorithm")]
    assert algorithms and not any(a.endswith(("md5", "sha1")) for a in algorithms)
    assert root.find(f"{MD}SPSSODescriptor/{MD}KeyDescriptor") is None  # no key configured


def test_metadata_from_a_file_and_reload(tmp_path: Path, idp: Idp, browser: httpx.Client,
                                         sp: SamlServiceProvider) -> None:
    path = tmp_path / "idp.xml"
    path.write_bytes(httpx.get(idp.metadata_url).content)
    from_file = make_sp(idp, idp_metadata=str(path))
    assert from_file.idp_entity_id == idp.entity_id
    from_file.reload()
    assert from_file.finish(*login(from_file, browser, "gina")).user_id == "gina@idp.test"


def test_setup_errors_are_clear(tmp_path: Path, idp: Idp) -> None:
    with pytest.raises(SamlConfigError, match="cannot read"):
        make_sp(idp, idp_metadata=str(tmp_path / "missing.xml"))
    (tmp_path / "bad.xml").write_text("<not-metadata/>")
    with pytest.raises(SamlConfigError):
        make_sp(idp, idp_metadata=str(tmp_path / "bad.xml"))
    with pytest.raises(SamlConfigError, match="not in the metadata"):
        make_sp(idp, idp_entity_id="http://nobody.test/idp")
    with pytest.raises(SamlConfigError, match="xmlsec1 not found"):
        make_sp(idp, xmlsec_binary=str(tmp_path / "no-xmlsec1"))
