"""SAML 2.0 login for browsers: we are the service provider (SP), pysaml2 does the XML.

The AuthnRequest goes out by the HTTP-Redirect binding and the answer comes back to our
Assertion Consumer Service (ACS) by HTTP-POST. The ids of the requests we sent are kept
server-side in an ``OutstandingRequests`` store, not in the session cookie: a SameSite=Lax
cookie is not sent on the IdP's cross-site POST. Each id is accepted once, which is also
what refuses a replayed response.

pysaml2 is synchronous and runs xmlsec1 as a subprocess: call ``finish`` (and friends)
from a thread pool in async code. Nothing here writes to the working directory; pysaml2's
short-lived temporary files go to the system temporary directory.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor, metadata_tostring_fix
from saml2.response import (
    IncorrectlySigned, InvalidAssertion, StatusError, UnsolicitedResponse, VerificationError,
)
from saml2.saml import NAMEID_FORMAT_TRANSIENT
from saml2.sigver import MissingKey, SignatureError, SigverError
from saml2.validate import ResponseLifetimeExceed, ToEarly
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

MAX_RESPONSE_BYTES = 512 * 1024  # base64 text of a SAMLResponse; real ones are a few kB
MAX_RELAY_STATE = 80  # bytes, per the SAML bindings spec (section 3.4.3)


class SamlLoginFailed(Exception):
    """The IdP's answer was refused; the message is safe to show to the user."""


class SamlConfigError(ValueError):
    """The SP cannot be set up (bad IdP metadata, missing xmlsec1, ...)."""


@dataclass(frozen=True)
class SamlConfig:
    entity_id: str  # our SP entity id, e.g. https://host/auth/saml/metadata
    acs_url: str  # our Assertion Consumer Service URL (HTTP-POST binding)
    idp_metadata: str  # a local file path, or an http(s) URL fetched at start and on reload()
    username_attribute: str = "eduPersonPrincipalName"  # friendly name or URI; else the NameID
    key_file: str | None = None  # SP key + cert (PEM): sign AuthnRequests, publish in metadata
    cert_file: str | None = None
    xmlsec_binary: str | None = None  # default: xmlsec1 found on PATH
    request_lifetime_seconds: int = 600
    idp_entity_id: str | None = None  # needed only when the metadata lists several IdPs
    clock_skew_seconds: int = 60  # tolerated difference between our clock and the IdP's
    metadata_timeout_seconds: float = 10.0


class OutstandingRequests(Protocol):
    """Server-side record of the AuthnRequest ids we sent and have not seen answered."""

    def add(self, request_id: str, expires_at: datetime) -> None: ...

    def pop(self, request_id: str) -> bool:
        """True once for a live id, then False (also False for unknown or expired ids)."""
        ...


class MemoryOutstanding:
    """In-process ``OutstandingRequests``, for tests and single-process deployments."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._expiry: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def add(self, request_id: str, expires_at: datetime) -> None:
        with self._lock:
            now = self._now()
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            self._expiry[request_id] = expires_at

    def pop(self, request_id: str) -> bool:
        with self._lock:
            expires_at = self._expiry.pop(request_id, None)
            return expires_at is not None and expires_at > self._now()


@dataclass(frozen=True)
class SamlUser:
    user_id: str
    name_id: str
    attributes: dict[str, list[str]]  # keyed by friendly name where pysaml2 knows one
    session_index: str | None
    issuer: str  # the IdP's entity id


class _NoIdentityCache:
    """pysaml2 remembers every user it has seen in memory; we keep nothing."""

    def set(self, *args: object) -> None:
        pass


class SamlServiceProvider:
    def __init__(self, config: SamlConfig, outstanding: OutstandingRequests) -> None:
        self.config = config
        self._outstanding = outstanding
        self._xmlsec = _xmlsec_binary(config.xmlsec_binary)
        # (client, IdP entity id), replaced as one by reload() while requests go on
        self._loaded = self._build(_read_metadata(config))

    @property
    def idp_entity_id(self) -> str:
        return self._loaded[1]

    def reload(self) -> None:
        """Read the IdP metadata again (e.g. after the IdP rolled its signing key)."""
        self._loaded = self._build(_read_metadata(self.config))

    def login_redirect(self, relay_state: str) -> str:
        """The IdP URL to send the browser to; the request id is recorded as outstanding."""
        if len(relay_state.encode()) > MAX_RELAY_STATE:
            raise ValueError(f"RelayState is limited to {MAX_RELAY_STATE} bytes")
        client, idp = self._loaded
        signed = self.config.key_file is not None
        request_id, info = client.prepare_for_authenticate(
            entityid=idp, relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT, sign=signed,
            sigalg=SIG_RSA_SHA256 if signed else None)  # pysaml2 would pick RSA-SHA1
        expires_at = datetime.now(UTC) + timedelta(seconds=self.config.request_lifetime_seconds)
        self._outstanding.add(request_id, expires_at)
        return str(dict(info["headers"])["Location"])

    def finish(self, saml_response: str, relay_state: str | None = None) -> SamlUser:
        """Check the SAMLResponse POSTed to the ACS and name the user.

        ``relay_state`` is not integrity-protected by SAML and plays no part in the checks;
        the caller must treat it as untrusted (e.g. allow only local return paths).
        """
        del relay_state
        request_id = _in_response_to(saml_response)
        client, idp = self._loaded
        try:
            # The single outstanding id given to pysaml2 makes it check that the Response
            # and every bearer SubjectConfirmation answer that request of ours.
            response = client.parse_authn_request_response(
                saml_response, BINDING_HTTP_POST, outstanding={request_id: self.config.acs_url},
                # any non-empty conv_info makes pysaml2 check the Recipient (else it skips)
                conv_info={"acs_url": self.config.acs_url})
        except SamlLoginFailed:
            raise
        except Exception as exc:
            raise SamlLoginFailed(_explain(exc)) from None
        if response is None or response.assertion is None or response.name_id is None:
            raise SamlLoginFailed(_explain_empty(response, self.config.acs_url))
        self._check(response, idp)
        # Only now, so that a forged response cannot use up a real user's request.
        if not self._outstanding.pop(request_id):
            raise SamlLoginFailed("this login response was already used, or its login request "
                                  "expired or was not made here; please log in again")
        return self._user(response, idp)

    def metadata(self) -> bytes:
        """Our SP metadata (EntityDescriptor XML) for the IdP's administrators."""
        descriptor = entity_descriptor(self._loaded[0].config)
        if descriptor.extensions is not None:
            # pysaml2 advertises every algorithm xmlsec1 knows, MD5 and SHA-1 included
            descriptor.extensions.extension_elements = [
                e for e in descriptor.extensions.extension_elements
                if not _weak_algorithm(e.attributes.get("Algorithm", ""))]
            if not descriptor.extensions.extension_elements:
                descriptor.extensions = None
        xml = metadata_tostring_fix(descriptor, {"xs": "http://www.w3.org/2001/XMLSchema"})
        return xml if isinstance(xml, bytes) else str(xml).encode()

    # --- internals ---------------------------------------------------------------------

    def _build(self, idp_metadata: str) -> tuple[Saml2Client, str]:
        cfg = self.config
        if (cfg.key_file is None) != (cfg.cert_file is None):
            raise SamlConfigError("key_file and cert_file go together")
        sp: dict[str, Any] = {
            "endpoints": {"assertion_consumer_service": [(cfg.acs_url, BINDING_HTTP_POST)]},
            "allow_unsolicited": False,
            "authn_requests_signed": cfg.key_file is not None,
            # Either a signed Response or a signed Assertion will do; never neither.
            "want_response_signed": False,
            "want_assertions_signed": False,
            "want_assertions_or_response_signed": True,
        }
        settings: dict[str, Any] = {
            "entityid": cfg.entity_id,
            "service": {"sp": sp},
            "metadata": {"inline": [idp_metadata]},
            "xmlsec_binary": self._xmlsec,
            "accepted_time_diff": cfg.clock_skew_seconds,
            "signing_algorithm": SIG_RSA_SHA256,  # for our AuthnRequests
            "digest_algorithm": DIGEST_SHA256,
            "allow_unknown_attributes": True,
            "only_use_keys_in_metadata": True,  # never trust a certificate in the message
        }
        if cfg.key_file is not None:
            settings["key_file"] = cfg.key_file
            settings["cert_file"] = cfg.cert_file
            settings["encryption_keypairs"] = [{"key_file": cfg.key_file, "cert_file": cfg.cert_file}]
        try:
            sp_config = SPConfig().load(settings)
        except Exception as exc:
            raise SamlConfigError(f"the IdP metadata could not be loaded: {exc}") from exc
        idps = list(sp_config.metadata.identity_providers())
        if cfg.idp_entity_id is not None:
            if cfg.idp_entity_id not in idps:
                raise SamlConfigError(f"IdP {cfg.idp_entity_id!r} is not in the metadata")
            idp = cfg.idp_entity_id
        elif len(idps) == 1:
            idp = idps[0]
        else:
            raise SamlConfigError(f"the metadata lists {len(idps)} IdPs; set idp_entity_id")
        if not sp_config.metadata.certs(idp, "idpsso", "signing"):
            raise SamlConfigError(f"the metadata of {idp!r} has no signing certificate")
        return Saml2Client(config=sp_config, identity_cache=_NoIdentityCache()), idp

    def _check(self, response: Any, idp: str) -> None:
        """What pysaml2 leaves to us: who issued it, and where it was meant to go."""
        issuers = {_text(response.response.issuer), _text(response.assertion.issuer)} - {None}
        if issuers != {idp}:
            raise SamlLoginFailed("the login response was not issued by our identity provider")
        destination = response.response.destination
        if destination is not None and destination != self.config.acs_url:
            raise SamlLoginFailed("the login response was meant for another address")

    def _user(self, response: Any, idp: str) -> SamlUser:
        attributes: dict[str, list[str]] = {
            str(name): [str(v) for v in values if v is not None]
            for name, values in (response.ava or {}).items()}
        name_id = response.name_id
        user_id = _first(attributes.get(self.config.username_attribute)) \
            or _first(_raw_attribute(response.assertion, self.config.username_attribute))
        if not user_id:
            if name_id.format == NAMEID_FORMAT_TRANSIENT:
                # A transient NameID changes at every login: it cannot name an account.
                raise SamlLoginFailed(f"the identity provider released no "
                                      f"{self.config.username_attribute} and only a one-time NameID")
            user_id = name_id.text
        if not user_id:
            raise SamlLoginFailed("the identity provider did not say who you are")
        statements = response.assertion.authn_statement
        session_index = statements[0].session_index if statements else None
        return SamlUser(user_id=str(user_id).strip(), name_id=str(name_id.text or ""),
                        attributes=attributes, session_index=session_index,
                        issuer=idp)


def _xmlsec_binary(configured: str | None) -> str:
    found = shutil.which(configured or "xmlsec1")
    if found is None:
        raise SamlConfigError(f"xmlsec1 not found ({configured or 'on PATH'}); "
                              "install the xmlsec1 package")
    return found


def _read_metadata(config: SamlConfig) -> str:
    source = config.idp_metadata
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=config.metadata_timeout_seconds) as answer:
                return str(answer.read().decode("utf-8"))
        with open(source, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SamlConfigError(f"cannot read the IdP metadata from {source}: {exc}") from exc


def _in_response_to(saml_response: str) -> str:
    """The request id the (not yet verified) response claims to answer."""
    if not saml_response or len(saml_response) > MAX_RESPONSE_BYTES:
        raise SamlLoginFailed("the login response is missing or too large")
    try:
        xml = base64.b64decode(saml_response, validate=False)
        parsed = samlp.response_from_string(xml)
    except (binascii.Error, ValueError):
        raise SamlLoginFailed("the login response is not valid base64") from None
    except Exception:
        raise SamlLoginFailed("the login response is not a SAML response") from None
    if parsed is None:
        raise SamlLoginFailed("the login response is not a SAML response")
    if not parsed.in_response_to:
        raise SamlLoginFailed("unsolicited login responses are not accepted; "
                              "please start the login from this site")
    return str(parsed.in_response_to)


def _explain(exc: Exception) -> str:
    """A user-safe reason for a pysaml2 exception (whose texts may carry XML or ids)."""
    if isinstance(exc, UnsolicitedResponse):
        return "the login response does not answer a login request of ours"
    if isinstance(exc, (SignatureError, IncorrectlySigned, MissingKey, SigverError)):
        return "the login response is not correctly signed by our identity provider"
    if isinstance(exc, StatusError):
        return f"the identity provider did not log you in ({type(exc).__name__})"
    if isinstance(exc, ResponseLifetimeExceed):
        return "the login response has expired (or the clocks disagree)"
    if isinstance(exc, ToEarly):
        return "the login response is not valid yet (or the clocks disagree)"
    if isinstance(exc, InvalidAssertion):
        return "the login response must hold exactly one assertion"
    text = str(exc)
    if "AudienceRestrictions" in text:
        return "the login response is meant for another service"
    if isinstance(exc, VerificationError) and "recipient" in text:
        return "the login response was meant for another address"
    if "recall" in text:  # a SubjectConfirmation naming another request
        return "the login response does not answer a login request of ours"
    return f"the login response could not be verified ({type(exc).__name__})"


def _explain_empty(response: Any, acs_url: str) -> str:
    """pysaml2 returns a response without an assertion for some failed checks."""
    if response is not None and response.response is not None:
        destination = response.response.destination
        if destination is not None and destination != acs_url:
            return "the login response was meant for another address"
        status = response.response.status
        if status is not None and status.status_code is not None \
                and status.status_code.value != samlp.STATUS_SUCCESS:
            return "the identity provider did not log you in"
        return "the login response is too old or from the future (or the clocks disagree)"
    return "the login response could not be verified"


def _weak_algorithm(uri: str) -> bool:
    return uri.endswith(("md5", "sha1", "ripemd160"))


def _text(element: Any) -> str | None:
    return None if element is None or element.text is None else str(element.text).strip()


def _first(values: list[str] | None) -> str | None:
    return next((v.strip() for v in values or [] if v and v.strip()), None)


def _raw_attribute(assertion: Any, name: str) -> list[str]:
    """Values of an attribute matched by its Name or FriendlyName, as sent."""
    for statement in assertion.attribute_statement:
        for attribute in statement.attribute:
            if name in (attribute.name, attribute.friendly_name):
                return [str(v.text) for v in attribute.attribute_value if v.text is not None]
    return []
