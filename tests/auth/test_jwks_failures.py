"""A failed fetch of the provider's keys is remembered (oidc_jwks_retry_seconds): a flood
of provider JWTs while the JWKS cannot be had makes one fetch per interval, not one each.
The provider is a real HTTP server on loopback that counts what it is asked."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from conftest import app_client


class CountingProvider:
    """Discovery answers; the JWKS answers 500 (the provider's key service is down)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                provider.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    body, status = json.dumps({"issuer": provider.issuer,
                                               "jwks_uri": provider.issuer + "/jwks"}).encode(), 200
                else:
                    body, status = b"down", 500
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def provider() -> Iterator[CountingProvider]:
    with CountingProvider() as p:
        yield p


def provider_jwt(issuer: str) -> str:
    key = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    claims = {"iss": issuer, "aud": "cutout", "sub": "mallory", "exp": int(time.time()) + 600}
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "never-published"}, claims, key)


def test_a_flood_of_jwts_makes_one_jwks_fetch_per_interval(tmp_path, demo_root, provider) -> None:  # type: ignore[no-untyped-def]
    token = provider_jwt(provider.issuer)
    with app_client(tmp_path / "data", demo_root, CUTOUT_OIDC_ISSUER=provider.issuer,
                    CUTOUT_OIDC_CLIENT_ID="cutout", CUTOUT_OIDC_JWKS_RETRY_SECONDS="1.5") as client:
        def ask() -> httpx.Response:
            return client.get("/async", headers={"Authorization": f"Bearer {token}"})

        answers = [ask() for _ in range(20)]
        assert {r.status_code for r in answers} == {503}, answers[0].text
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 2
        assert provider.hits["/jwks"] == 1
        time.sleep(1.6)  # the interval has passed: one more fetch, for the first token after it
        assert [ask().status_code for _ in range(5)] == [503] * 5
        assert provider.hits["/jwks"] == 2
