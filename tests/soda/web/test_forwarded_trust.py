"""Forwarded headers count only from the configured proxies (trusted_proxies), and only
when they are what they claim to be: an address, a scheme, a host, a path prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request

from conftest import app_client
from dali.http import public_base

TILE = "DES0139-4457"
DID = f"ivo://demo.cutout/des?{TILE}_r"

OIDC = {"CUTOUT_OIDC_ISSUER": "http://127.0.0.1:9/never-contacted", "CUTOUT_OIDC_CLIENT_ID": "cutout"}


def test_a_changing_x_forwarded_for_does_not_bypass_the_rate_limit(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="100",
                    CUTOUT_ANONYMOUS_RATE_WINDOW_SECONDS="3600") as c:
        statuses = [c.get("/links", params={"ID": DID}, headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                    for i in range(101)]
    assert statuses[:100] == [200] * 100 and statuses[100] == 429, statuses[-5:]


def test_a_trusted_proxy_names_the_client(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="2",
                    CUTOUT_ANONYMOUS_RATE_WINDOW_SECONDS="3600", CUTOUT_TRUSTED_PROXIES="127.0.0.0/8") as c:
        one = [c.get("/links", params={"ID": DID}, headers={"X-Forwarded-For": "198.51.100.1"}).status_code
               for _ in range(3)]
        other = c.get("/links", params={"ID": DID}, headers={"X-Forwarded-For": "198.51.100.2"})
        # Not an address: the proxy's own address counts (already at its limit? no: a new key).
        junk = [c.get("/links", params={"ID": DID}, headers={"X-Forwarded-For": "x" * i}).status_code
                for i in range(1, 4)]
    assert one == [200, 200, 429] and other.status_code == 200
    assert junk == [200, 200, 429]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_a_prefix_that_is_not_a_path_never_reaches_a_location(tmp_path: Path, demo_root: Path,
                                                               trusted: str) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_ASYNC="open",
                    CUTOUT_TRUSTED_PROXIES=trusted) as c:
        for prefix in ("@evil.org", "//evil.org", "/\\evil.org", "/a@evil.org", "/x\x01"):
            r = c.post("/async", data={"ID": DID}, headers={"X-Forwarded-Prefix": prefix})
            assert r.status_code == 303, r.text
            assert r.headers["location"].startswith("http://testserver/async/"), (prefix, r.headers["location"])


def test_untrusted_forwarded_headers_are_dropped(tmp_path: Path, demo_root: Path) -> None:
    spoofed = {"X-Forwarded-Host": "evil.org", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/evil"}
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_ASYNC="open", **OIDC) as c:
        created = c.post("/async", data={"ID": DID}, headers=spoofed)
        caps = c.get("/capabilities", headers=spoofed)
        challenged = c.get("/usage", headers=spoofed)  # the login challenges name the token page
    assert created.headers["location"].startswith("http://testserver/async/")
    assert b"evil" not in caps.content and b"https:" not in caps.content
    challenges = challenged.headers.get_list("www-authenticate")
    assert any("http://testserver/tokens" in h for h in challenges), challenges
    assert not any("evil" in h for h in challenges), challenges


def test_trusted_values_are_checked_each(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, CUTOUT_TRUSTED_PROXIES="127.0.0.1", **OIDC) as c:
        good = c.get("/usage", headers={"X-Forwarded-Host": "vo.example.org:8443",
                                        "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/cut-outs"})
        bad = c.get("/usage", headers={"X-Forwarded-Host": "evil.org/x@y", "X-Forwarded-Proto": "javascript",
                                       "X-Forwarded-Prefix": "@evil.org"})
    assert any("https://vo.example.org:8443/cut-outs/tokens" in h for h in good.headers.get_list("www-authenticate"))
    assert any('"http://testserver/tokens"' in h for h in bad.headers.get_list("www-authenticate")), bad.headers


def test_public_base_checks_every_value() -> None:
    def base(*headers: tuple[str, str]) -> str:
        scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"",
                 "scheme": "http", "server": ("internal", 8000),
                 "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]}
        return public_base(Request(scope), trust_forwarded=True)

    assert base(("Host", "h"), ("X-Forwarded-Prefix", "@evil.org")) == "http://h"
    assert base(("Host", "h"), ("X-Forwarded-Host", "evil.org@x")) == "http://h"
    assert base(("Host", "a@evil.org")) == "http://internal:8000"
    assert base(("Host", "h"), ("X-Forwarded-Proto", "gopher")) == "http://h"
    assert base(("Host", "h"), ("X-Forwarded-Host", "[::1]:8080"), ("X-Forwarded-Prefix", "/a/b/")) == "http://[::1]:8080/a/b"
