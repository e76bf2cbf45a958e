"""A real SAML 2.0 identity provider for tests, run as its own process (pysaml2's Server).

    python tests/saml_idp.py --port 0 --sp-metadata URL_OR_FILE --workdir DIR

At start it makes an RSA key and a self-signed certificate in DIR, binds the port (0: any
free one, written to DIR/idp.port), and serves:

    GET  /metadata    IdP metadata: signing certificate, SSO endpoint (HTTP-Redirect)
    GET  /sso         checks the AuthnRequest (and its signature if the SP signs), shows a
                      login form that keeps the request under a one-time server-side key
    POST /sso/login   username=... (any password, any username) -> the HTML auto-POST form
                      (HTTP-POST binding) carrying SAMLResponse and RelayState to the SP's ACS

The SP metadata (a URL, a file, or a directory of *.xml files, one per SP) is read at each
/sso request and the IdP reconfigured when it changed, so a test can start the IdP, build
the SP from the IdP's metadata URL, and only then hand the SP's metadata over
(``Idp.give_sp_metadata``).

The login form also takes knobs to make the IdP misbehave on purpose (tests only):
``sign`` (both | assertion | response | none), ``audience``, ``destination``,
``clock_offset_minutes`` (the assertion's NotBefore/NotOnOrAfter as if the IdP's clock were
this far off; assertions live 5 minutes), ``name_id_format`` (persistent | transient),
``omit`` (comma-separated attribute names not to release), ``in_response_to`` (another
request id; empty: an unsolicited response) and ``encrypt`` (1: encrypt the assertion to
the SP's metadata key).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import html
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TEST_DOMAIN = "idp.test"
LIFETIME_MINUTES = 5  # of an assertion
SIGN_ALG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_ALG = "http://www.w3.org/2001/04/xmlenc#sha256"


# --- the IdP process ---------------------------------------------------------------------

def make_key_and_cert(workdir: Path, common_name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    key_file, cert_file = workdir / "idp-key.pem", workdir / "idp-cert.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


@dataclass
class IdpState:
    base_url: str
    entity_id: str
    key_file: Path
    cert_file: Path
    sp_metadata_source: str
    pending: dict[str, tuple[Any, str]] = field(default_factory=dict)  # key -> (resp args, relay)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None
    _sp_metadata: list[str] | None = None

    def config(self, sp_metadata: list[str] | None) -> Any:
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig
        from saml2.saml import NAME_FORMAT_URI

        settings: dict[str, Any] = {
            "entityid": self.entity_id,
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "accepted_time_diff": 60,
            "signing_algorithm": SIGN_ALG,
            "digest_algorithm": DIGEST_ALG,
            "service": {"idp": {
                "endpoints": {"single_sign_on_service": [
                    (f"{self.base_url}/sso", BINDING_HTTP_REDIRECT)]},
                "policy": {"default": {"lifetime": {"minutes": LIFETIME_MINUTES},
                                       "attribute_restrictions": None,
                                       "name_form": NAME_FORMAT_URI}},
                "name_id_format": [
                    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
                    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"],
            }},
        }
        if sp_metadata:
            settings["metadata"] = {"inline": sp_metadata}
        return IdPConfig().load(settings)

    def metadata(self) -> bytes:
        from saml2.metadata import create_metadata_string

        xml = create_metadata_string(None, config=self.config(None))
        return xml if isinstance(xml, bytes) else str(xml).encode()

    def server(self) -> Any:
        """The pysaml2 Server, rebuilt when the SP metadata changed (or first appeared)."""
        from saml2.server import Server

        sp_metadata = read_sp_metadata(self.sp_metadata_source)
        if not sp_metadata:
            raise LookupError(f"no SP metadata yet at {self.sp_metadata_source}")
        with self.lock:
            if self._server is None or sp_metadata != self._sp_metadata:
                self._server = Server(config=self.config(sp_metadata))
                self._sp_metadata = sp_metadata
            return self._server


def read_sp_metadata(source: str) -> list[str]:
    """The SP metadata documents at a URL, in a file, or in a directory's *.xml files."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as answer:
            return [answer.read().decode()]
    path = Path(source)
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path] if path.exists() else []
    return [file.read_text() for file in files]


def knob_policy(mds: Any, audience: str, clock_offset_minutes: float) -> Any:
    """The release policy, with the audience and the validity window under test control."""
    from saml2 import saml
    from saml2.assertion import Policy
    from saml2.time_util import in_a_while

    class _KnobPolicy(Policy):  # type: ignore[misc]
        def not_on_or_after(self, sp_entity_id: str) -> str:
            return str(in_a_while(minutes=clock_offset_minutes + LIFETIME_MINUTES))

        def conditions(self, sp_entity_id: str) -> Any:
            return saml.Conditions(
                not_before=in_a_while(minutes=clock_offset_minutes),
                not_on_or_after=self.not_on_or_after(sp_entity_id),
                audience_restriction=[saml.AudienceRestriction(
                    audience=[saml.Audience(text=audience)])])

    return _KnobPolicy({"default": {"lifetime": {"minutes": LIFETIME_MINUTES},
                                   "attribute_restrictions": None,
                                   "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"}},
                      mds=mds)


class Handler(BaseHTTPRequestHandler):
    state: IdpState  # set on the subclass made in main()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"idp: {self.command} {self.path.split('?')[0]} {format % args}\n")

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path == "/metadata":
                self.send(200, self.state.metadata(), "application/samlmetadata+xml")
            elif url.path == "/sso":
                self.sso(query)
            else:
                self.send(404, b"not found\n")
        except Exception as exc:  # the test wants to read why, not a dropped connection
            self.send(400, f"{type(exc).__name__}: {exc}\n".encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        try:
            if self.path == "/sso/login":
                self.login(form)
            else:
                self.send(404, b"not found\n")
        except Exception as exc:
            self.send(400, f"{type(exc).__name__}: {exc}\n".encode())

    def send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def sso(self, query: dict[str, str]) -> None:
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

        if "SAMLRequest" not in query:
            self.send(400, b"no SAMLRequest\n")
            return
        server = self.state.server()
        request = server.parse_authn_request(
            query["SAMLRequest"], BINDING_HTTP_REDIRECT, relay_state=query.get("RelayState"),
            sigalg=query.get("SigAlg"), signature=query.get("Signature"))
        if request is None:
            self.send(400, b"the AuthnRequest was refused\n")
            return
        # pysaml2 checks a redirect signature only when told to want one from every SP
        if "Signature" in query:
            if not self.redirect_signature_ok(server, request, query):
                self.send(400, b"the AuthnRequest signature is wrong\n")
                return
        elif self.sp_signs_requests(server, request.message.issuer.text):
            self.send(400, b"this SP's metadata says it signs its AuthnRequests, this one is not\n")
            return
        # checks the ACS URL against the SP's metadata, and that we know the SP at all
        response_args = server.response_args(request.message, [BINDING_HTTP_POST])
        key = secrets.token_urlsafe(16)
        with self.state.lock:
            self.state.pending[key] = (response_args, query.get("RelayState", ""))
        sp = html.escape(request.message.issuer.text)
        page = (f"<!DOCTYPE html><html><head><title>Test IdP login</title></head><body>"
                f"<p>Log in to {sp}</p>"
                f'<form method="post" action="{self.state.base_url}/sso/login">'
                f'<input type="hidden" name="key" value="{key}">'
                f'<label>User <input name="username"></label> '
                f'<label>Password <input name="password" type="password"></label> '
                f'<button type="submit">Log in</button></form></body></html>')
        self.send(200, page.encode(), "text/html; charset=utf-8")

    def sp_signs_requests(self, server: Any, sp_entity_id: str) -> bool:
        descriptors = server.metadata[sp_entity_id].get("spsso_descriptor", [])
        return any(d.get("authn_requests_signed") == "true" for d in descriptors)

    def redirect_signature_ok(self, server: Any, request: Any, query: dict[str, str]) -> bool:
        from saml2.sigver import verify_redirect_signature

        certs = server.metadata.certs(request.message.issuer.text, "spsso", "signing")
        signed = {k: query[k] for k in ("SAMLRequest", "RelayState", "SigAlg", "Signature") if k in query}
        return any(verify_redirect_signature(signed, server.sec.sec_backend, cert=cert[1])
                   for cert in certs)

    def login(self, form: dict[str, str]) -> None:
        from saml2 import BINDING_HTTP_POST
        from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT, NameID

        with self.state.lock:
            pending = self.state.pending.pop(form.get("key", ""), None)
        username = form.get("username", "").strip()
        if pending is None or not username:
            self.send(400, b"unknown login request, or no username\n")
            return
        response_args, relay_state = pending
        server = self.state.server()
        sp_entity_id = response_args["sp_entity_id"]
        destination = form.get("destination") or response_args["destination"]
        identity = {"eduPersonPrincipalName": [f"{username}@{TEST_DOMAIN}"],
                    "mail": [f"{username}@example.org"],
                    "displayName": [username.title()]}
        for name in filter(None, form.get("omit", "").split(",")):
            identity.pop(name.strip(), None)
        if form.get("name_id_format") == "transient":
            name_id = NameID(format=NAMEID_FORMAT_TRANSIENT, text=secrets.token_hex(16))
        else:
            stable = hashlib.sha256(f"{self.state.entity_id}|{sp_entity_id}|{username}".encode())
            name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=stable.hexdigest()[:32],
                             name_qualifier=self.state.entity_id, sp_name_qualifier=sp_entity_id)
        sign = form.get("sign", "both")
        policy = knob_policy(server.metadata, audience=form.get("audience") or sp_entity_id,
                             clock_offset_minutes=float(form.get("clock_offset_minutes", "0")))
        in_response_to = form.get("in_response_to", response_args["in_response_to"]) or None
        response = server.create_authn_response(
            identity, in_response_to=in_response_to, destination=destination,
            sp_entity_id=sp_entity_id, name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_assertion=sign in ("both", "assertion"), sign_response=sign in ("both", "response"),
            release_policy=policy, sign_alg=SIGN_ALG, digest_alg=DIGEST_ALG,
            # to the encryption key in the SP's metadata, as Shibboleth does by default
            encrypt_assertion=form.get("encrypt") == "1")
        info = server.apply_binding(BINDING_HTTP_POST, str(response), destination, relay_state,
                                    response=True)
        self.send(200, str(info["data"]).encode(), "text/html; charset=utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--sp-metadata", required=True, help="URL or file (may appear later)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--entity-id", help="default: http://HOST:PORT/metadata")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    base_url = f"http://{args.host}:{httpd.server_address[1]}"
    key_file, cert_file = make_key_and_cert(args.workdir, "test-idp")
    Handler.state = IdpState(base_url=base_url, entity_id=args.entity_id or f"{base_url}/metadata",
                             key_file=key_file, cert_file=cert_file,
                             sp_metadata_source=args.sp_metadata)
    # written last: the launcher takes its appearance as "ready"
    port_file = args.workdir / "idp.port"
    port_file.with_suffix(".tmp").write_text(str(httpd.server_address[1]))
    port_file.with_suffix(".tmp").replace(port_file)
    print(f"test IdP at {base_url} (entity id {Handler.state.entity_id})", file=sys.stderr, flush=True)
    httpd.serve_forever()


# --- for tests: start the process, play the browser ---------------------------------------

@dataclass
class Idp:
    url: str
    entity_id: str
    workdir: Path
    sp_metadata_path: Path | None  # where give_sp_metadata writes, when not a URL
    process: subprocess.Popen[bytes]

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/metadata"

    @property
    def log(self) -> str:
        return (self.workdir / "idp.log").read_text(errors="replace")

    def give_sp_metadata(self, xml: bytes, name: str = "sp") -> None:
        """Register an SP (``name`` tells SPs apart when the source is a directory)."""
        if self.sp_metadata_path is None:
            raise RuntimeError("this IdP reads its SP metadata from a URL")
        target = self.sp_metadata_path
        if target.is_dir():
            target = target / f"{name}.xml"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(xml)
        tmp.replace(target)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Idp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_idp(workdir: Path, sp_metadata: str | None = None, port: int | None = None,
              entity_id: str | None = None, timeout: float = 30) -> Idp:
    """Start the IdP process; returns once /metadata answers.

    ``sp_metadata`` is a URL, or a file or directory that may be filled later; by default
    the directory ``workdir/sp-metadata``, filled with ``Idp.give_sp_metadata``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    sp_path = None
    if sp_metadata is None:
        sp_path = workdir / "sp-metadata"
        sp_path.mkdir(exist_ok=True)
        sp_metadata = str(sp_path)
    elif not sp_metadata.startswith(("http://", "https://")):
        sp_path = Path(sp_metadata)
    port_file = workdir / "idp.port"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--port", str(port or 0),
               "--sp-metadata", sp_metadata, "--workdir", str(workdir)]
    if entity_id is not None:
        command += ["--entity-id", entity_id]
    log = (workdir / "idp.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = (workdir / "idp.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the test IdP exited with {process.returncode}:\n{tail}")
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/metadata", timeout=5) as answer:
                    if answer.status == 200:
                        break
        if time.monotonic() > deadline:
            process.kill()
            tail = (workdir / "idp.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the test IdP did not answer within {timeout}s:\n{tail}")
        time.sleep(0.05)
    return Idp(url=url, entity_id=entity_id or f"{url}/metadata", workdir=workdir,
               sp_metadata_path=sp_path, process=process)


def browser_post_login(client: Any, idp_redirect_url: str, username: str,
                       **knobs: str) -> tuple[str, str, str | None]:
    """Play the browser at the IdP: follow the redirect, log in, read the auto-POST form.

    ``client`` is an ``httpx.Client``; ``knobs`` go into the login form (see the module
    docstring). Returns (ACS URL, SAMLResponse, RelayState).
    """
    from lxml import html as lxml_html

    page = client.get(idp_redirect_url)
    if page.status_code != 200:
        raise AssertionError(f"IdP refused the AuthnRequest: {page.status_code} {page.text}")
    form = lxml_html.fromstring(page.text).forms[0]
    fields = dict(form.fields)
    fields.update(username=username, password="secret", **knobs)
    answer = client.post(str(page.url.join(form.action)), data=fields)
    if answer.status_code != 200:
        raise AssertionError(f"IdP refused the login: {answer.status_code} {answer.text}")
    post = lxml_html.fromstring(answer.text).forms[0]
    values = dict(post.fields)
    return str(post.action), str(values["SAMLResponse"]), values.get("RelayState")


if __name__ == "__main__":
    main()
