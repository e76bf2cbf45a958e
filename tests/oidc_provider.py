"""A real OpenID Connect provider for tests, and its launcher.

The provider is ``oidc-provider-mock`` 0.3.4 (a Flask app built on Authlib's server
side) with two changes made here, through its private internals since this is test
code only:

* access tokens are RFC 9068 JWTs (header ``typ: at+jwt``), signed with the key the
  provider publishes at ``jwks_uri``, with claims ``iss`` (the issuer exactly as in
  discovery), ``sub``, ``aud`` (the client id), ``exp``, ``iat``, ``jti``,
  ``client_id`` and ``scope``; their lifetime is ``--token-lifetime`` (ID tokens get
  the same lifetime);
* PKCE is enforced: the authorization request must carry ``code_challenge`` with
  ``code_challenge_method=S256`` (else a redirect to the client with
  ``error=invalid_request``) and the token request must carry the matching
  ``code_verifier`` (missing: ``invalid_request``, wrong: ``invalid_grant``).

Run it with ``python tests/oidc_provider.py --port N [--token-lifetime S]
[--require-registration]``; from tests use `start_provider`, `register_client` and
`browser_login`.

Clients: by default any ``client_id`` / ``client_secret`` / redirect URI / token
endpoint auth method is accepted (the mock makes up a client on the fly). With
``require_registration=True`` only clients made with `register_client` (RFC 7591,
``POST /oauth2/clients``) are known, and their secret, redirect URIs and auth method
are checked.

Login: the mock has no passwords. Its login form at the authorization endpoint takes
one field, ``sub``, POSTed to the authorization URL with the query string of the
authorization request kept; any ``sub`` is accepted. Claims for a user are set with
``PUT /users/<sub>`` (JSON object of claims); a user never set gets ``{"email": sub}``.
Standard claims reach the ID token and userinfo only when their scope was requested
(``email`` needs scope ``email``, ``preferred_username``/``name`` need ``profile``);
non-standard claims always do.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

READY_TIMEOUT = 20.0


# --- the provider (runs in its own process) -------------------------------------------


class _Subject:
    """What Authlib's JWT token generator wants of a user (the mock's User has .sub only)."""

    def __init__(self, sub: str) -> None:
        self.sub = sub

    def get_user_id(self) -> str:
        return self.sub


def make_app(token_lifetime: int = 3600, require_registration: bool = False):  # type: ignore[no-untyped-def]
    """The oidc-provider-mock Flask app with JWT access tokens and PKCE (S256) enforced."""
    import dataclasses
    from datetime import timedelta

    import flask
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc6749 import InvalidRequestError
    from authlib.oauth2.rfc7636 import CodeChallenge
    from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
    from joserfc.jwk import KeySet, RSAKey
    from oidc_provider_mock import _app
    from oidc_provider_mock._storage import AuthorizationCode, storage

    # The mock keeps no PKCE data with its codes: a code that also remembers them.
    @dataclasses.dataclass(kw_only=True, frozen=True)
    class PkceAuthorizationCode(AuthorizationCode):
        code_challenge: str | None = None
        code_challenge_method: str | None = None

    # Authlib's CodeChallenge only checks a challenge that is present; require one, S256.
    # With the challenge always stored, its token-side check then always runs.
    class RequiredS256Challenge(CodeChallenge):
        SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

        def validate_code_challenge(self, grant, redirect_uri):  # type: ignore[no-untyped-def]
            data = grant.request.payload.data
            if not data.get("code_challenge"):
                raise InvalidRequestError("Missing 'code_challenge' (PKCE is required)")
            if data.get("code_challenge_method") != "S256":
                raise InvalidRequestError("'code_challenge_method' must be S256")
            super().validate_code_challenge(grant, redirect_uri)

    class PkceAuthorizationCodeGrant(_app.AuthorizationCodeGrant):
        def __init__(self, request, server):  # type: ignore[no-untyped-def]
            super().__init__(request, server)
            RequiredS256Challenge(required=True)(self)  # registers its two hooks

        def save_authorization_code(self, code, request):  # type: ignore[no-untyped-def]
            super().save_authorization_code(code, request)
            saved = storage.get_authorization_code(code)
            fields = {f.name: getattr(saved, f.name) for f in dataclasses.fields(AuthorizationCode)}
            storage.store_authorization_code(PkceAuthorizationCode(
                **fields,
                code_challenge=request.payload.data.get("code_challenge"),
                code_challenge_method=request.payload.data.get("code_challenge_method"),
            ))

    # The mock's setup() registers whatever `_app.AuthorizationCodeGrant` names when
    # the app is built; this process runs one app, so rebinding the name is enough.
    _app.AuthorizationCodeGrant = PkceAuthorizationCodeGrant

    class JWTAccessTokens(JWTBearerTokenGenerator):
        # The issuer is per request, as the mock's discovery document computes it.
        @property
        def issuer(self) -> str:
            return flask.request.host_url.rstrip("/")

        @issuer.setter
        def issuer(self, value: str) -> None:  # set by the base __init__; unused
            pass

        def get_jwks(self):  # type: ignore[no-untyped-def]
            # The same key the mock signs ID tokens with and serves at /jwks (kid kept).
            return KeySet([RSAKey.import_key(storage.jwk.as_dict(is_private=True))])

        def access_token_generator(self, client, grant_type, user, scope):  # type: ignore[no-untyped-def]
            # Authlib asks the user for get_user_id(); the mock's User has only .sub.
            subject = _Subject(user.sub) if user is not None else None
            return super().access_token_generator(client, grant_type, subject, scope)

    generator = JWTAccessTokens(
        issuer="",
        alg="RS256",
        refresh_token_generator=lambda *args, **kwargs: generate_token(48),
        expires_generator=lambda client, grant_type: token_lifetime,
    )

    app = _app.app(
        require_client_registration=require_registration,
        access_token_max_age=timedelta(seconds=token_lifetime),
    )
    # The mock wraps itself in Werkzeug's HTML debugger; plain 500s, traceback in the log.
    app.wsgi_app = app.wsgi_app.app  # type: ignore[attr-defined]
    app.debug = False

    # The mock's AuthorizationServer lives in a closure and is put on flask.g by its
    # own before_request hook (registered first); replace its token generator there.
    @app.before_request
    def _jwt_access_tokens() -> None:
        flask.g._authlib_authorization_server.register_token_generator("default", generator)

    # Advertise PKCE in discovery (RFC 8414 code_challenge_methods_supported).
    endpoint = "oidc-provider-mock.openid_config"
    discovery = app.view_functions[endpoint]

    def openid_config():  # type: ignore[no-untyped-def]
        response = discovery()
        document = response.get_json()
        document["code_challenge_methods_supported"] = ["S256"]
        return flask.jsonify(document)

    app.view_functions[endpoint] = openid_config
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenID Connect provider for tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token-lifetime", type=int, default=3600,
                        help="lifetime of access and ID tokens, seconds")
    parser.add_argument("--require-registration", action="store_true",
                        help="accept only clients registered at POST /oauth2/clients")
    args = parser.parse_args(argv)

    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback
    import logging

    import werkzeug.serving

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = make_app(args.token_lifetime, args.require_registration)
    server = werkzeug.serving.make_server(args.host, args.port, app, threaded=True)
    print(f"oidc provider listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- launcher and helpers (used from the tests' process) ------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Provider:
    """A provider subprocess; ``issuer`` is e.g. ``http://127.0.0.1:PORT``."""

    def __init__(self, popen: subprocess.Popen, issuer: str, log_path: Path) -> None:  # type: ignore[type-arg]
        self.popen = popen
        self.issuer = issuer
        self.port = int(urlsplit(issuer).port or 0)
        self.log_path = log_path

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_provider(log_path: Path, port: int | None = None, token_lifetime: int = 3600,
                   *, require_registration: bool = False) -> Provider:
    """Start the provider in a subprocess (output appended to ``log_path``) and wait
    until its discovery document answers."""
    port = port or _free_port()
    issuer = f"http://127.0.0.1:{port}"
    args = [sys.executable, str(Path(__file__).resolve()), "--port", str(port),
            "--token-lifetime", str(token_lifetime)]
    if require_registration:
        args.append("--require-registration")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    provider = Provider(popen, issuer, log_path)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if popen.poll() is not None:
            raise RuntimeError(f"OIDC provider exited with {popen.returncode}:\n"
                               f"{provider.log_tail()}")
        try:
            if httpx.get(provider.discovery_url, timeout=2).status_code == 200:
                return provider
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"OIDC provider not ready after {READY_TIMEOUT:.0f} s:\n"
                               f"{provider.log_tail()}")
        time.sleep(0.05)


def register_client(issuer: str, redirect_uris: list[str],
                    token_endpoint_auth_method: str = "client_secret_basic") -> tuple[str, str]:
    """Register a client (RFC 7591); returns ``(client_id, client_secret)``.

    ``token_endpoint_auth_method`` is one of ``client_secret_basic`` (Authlib's
    default), ``client_secret_post`` or ``none``; the provider enforces it when
    registration is required."""
    response = httpx.post(f"{issuer}/oauth2/clients", json={
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": token_endpoint_auth_method,
    })
    response.raise_for_status()
    body = response.json()
    return body["client_id"], body["client_secret"]


def browser_login(client: httpx.Client, authorize_url: str, sub: str,
                  **claims: object) -> httpx.Response:
    """Do at the provider what a user's browser does, as ``sub``.

    ``authorize_url`` is the full URL the app redirected the browser to. Opens the
    login page and, if it is shown (200), POSTs the form ``sub=<sub>`` to the same URL
    (query string kept). Returns the provider's answer without following it: normally
    a 302 whose Location is the app's callback with ``code`` and ``state``; if the
    authorization request itself is refused, the provider's error (a 302 to the
    callback with ``error=...``, or a 400 page) is returned instead.

    ``claims`` (e.g. ``preferred_username="alice"``, ``email="a@example.org"``,
    ``groups=[...]``) are added to the mock's default ``{"email": sub}`` and replace
    any claims the user had. ``client`` must make real network requests (a plain
    ``httpx.Client``, not Starlette's TestClient) and must not follow redirects.
    """
    if claims:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
        client.put(f"{origin}/users/{quote(sub, safe='')}",
                   json={"email": sub, **claims}, follow_redirects=False).raise_for_status()
    page = client.get(authorize_url, follow_redirects=False)
    if page.status_code != 200:
        return page
    return client.post(authorize_url, data={"sub": sub}, follow_redirects=False)


if __name__ == "__main__":
    main()
