"""What every answer says about itself (nosniff, framing, caching, HSTS), and what the
operators' endpoints tell callers who are not operators."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import app_client

DID = "ivo://demo.cutout/des?DES0139-4457_r"
OUTSIDE = ("192.0.2.9", 40000)  # not an operator address
LEAK = "connection to server at 127.0.0.1, port 15433 failed: Connection refused"


@pytest.fixture
def service(tmp_path: Path, demo_root: Path) -> Iterator[httpx.Client]:
    with app_client(tmp_path / "data", demo_root, CUTOUT_ANONYMOUS_RATE_LIMIT="0",
                    CUTOUT_TRUSTED_PROXIES="127.0.0.1") as c:
        yield c


def outsider(c: httpx.Client, **kwargs: object) -> TestClient:
    return TestClient(c.app, base_url="http://testserver", client=OUTSIDE, follow_redirects=False,  # type: ignore[attr-defined]
                      **kwargs)  # type: ignore[arg-type]


def test_nosniff_on_every_answer(service: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [service.get("/capabilities"), service.get("/nowhere"), service.get("/sync", params={"ID": DID, "CIRCLE": "bad"}),
               service.get("/healthz"), service.get("/", headers={"Accept": "text/html"})]
    def broken(dataset_id: str):  # type: ignore[no-untyped-def]
        raise RuntimeError("the image store fell over")
    monkeypatch.setattr(service.app_state.runtime.datasets, "by_id", broken)  # type: ignore[attr-defined]
    answers.append(outsider(service, raise_server_exceptions=False).get("/links", params={"ID": DID}))
    assert [r.status_code for r in answers] == [200, 404, 400, 200, 200, 500]
    for r in answers:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.headers)


def test_html_pages_refuse_framing(service: httpx.Client) -> None:
    page = service.get("/", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY"
    xml = service.get("/capabilities")
    assert "x-frame-options" not in xml.headers and "content-security-policy" not in xml.headers


def test_hsts_only_over_https(service: httpx.Client) -> None:
    proxied = service.get("/capabilities", headers={"X-Forwarded-Proto": "https"})  # from a trusted proxy
    assert proxied.headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in service.get("/capabilities").headers
    spoofed = outsider(service).get("/capabilities", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in spoofed.headers
    direct = TestClient(service.app, base_url="https://testserver", client=OUTSIDE)  # type: ignore[attr-defined]
    assert direct.get("/capabilities").headers["strict-transport-security"] == "max-age=31536000"


def test_account_pages_are_never_cached(service: httpx.Client) -> None:
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    _, secret = service.app_state.access.tokens.create("alice", "test", later)  # type: ignore[attr-defined]
    user = {"Authorization": f"Bearer {secret}"}
    answers = [service.get("/tokens", headers={**user, "Accept": "text/html"}), service.get("/tokens", headers=user),
               service.post("/tokens", data={"name": "x"}, headers=user), service.get("/whoami", headers=user),
               service.get("/usage", headers=user), service.get("/tokens")]
    assert [r.status_code for r in answers] == [200, 200, 403, 200, 200, 401]
    for r in answers:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.headers)
    assert "no-store" not in service.get("/capabilities").headers.get("cache-control", "")


def fail_database(c: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused() -> None:
        raise OSError(LEAK)
    health = c.app_state.runtime.health  # type: ignore[attr-defined]
    monkeypatch.setattr(health, "probes", [("database", refused) if n == "database" else (n, p)
                                           for n, p in health.probes])


def test_failed_checks_name_no_address_but_to_operators(service: httpx.Client, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fail_database(service, monkeypatch)
    with caplog.at_level(logging.WARNING):
        public = outsider(service)
        ready, available = public.get("/readyz"), public.get("/availability")
        spoofed = public.get("/readyz", headers={"X-Forwarded-For": "127.0.0.1"})
        operator_ready, operator_available = service.get("/readyz"), service.get("/availability")
    assert ready.status_code == 503 and ready.text == "database: unavailable\n"
    assert available.status_code == 200 and b"<vosi:note>database: unavailable</vosi:note>" in available.content
    assert b"<vosi:available>false" in available.content
    for r in (ready, available, spoofed):
        assert "15433" not in r.text and "127.0.0.1" not in r.text, r.text
    assert operator_ready.status_code == 503 and LEAK in operator_ready.text
    assert LEAK in operator_available.text
    assert any(LEAK in rec.getMessage() for rec in caplog.records)  # the detail is in the log


def test_metrics_for_operators_only(service: httpx.Client) -> None:
    refused = outsider(service).get("/metrics")
    assert refused.status_code == 403 and refused.text.startswith("AuthorizationError:"), refused.text
    assert outsider(service).get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403
    assert service.get("/metrics").status_code == 200  # the host itself (default operator_clients)
    # Behind a trusted proxy the forwarded client address counts.
    assert service.get("/metrics", headers={"X-Forwarded-For": "192.0.2.9"}).status_code == 403
