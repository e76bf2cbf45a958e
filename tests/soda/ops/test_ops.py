"""Health, readiness, Prometheus metrics and request ids."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import base_env, eventually, start_server
from soda.surveys.des import tile_centre

TILE = "DES0139-4457"
RA0, DEC0 = tile_centre(TILE)
DID = f"ivo://demo.cutout/des?{TILE}_r"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_liveness_and_readiness(embedded, tmp_path, monkeypatch):
    assert embedded.get("/healthz").text == "ok\n"
    assert embedded.get("/readyz").status_code == 200
    runtime = embedded.app_state.runtime
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(runtime.storage, "root", blocker / "results")
    r = embedded.get("/readyz")
    assert r.status_code == 503 and r.text.startswith("results: ")


def test_metrics_parse_and_move(embedded):
    before = samples(embedded.get("/metrics").text)
    for _ in range(3):
        assert embedded.get("/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.002"}).status_code == 200
    embedded.get("/sync", params={"CIRCLE": "999 0 1"})
    r = embedded.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    after = samples(r.text)
    moved = (value(after, "cutout_http_requests_total", route="/sync", method="GET", status="200")
             - value(before, "cutout_http_requests_total", route="/sync", method="GET", status="200"))
    assert moved == 3
    assert (value(after, "cutout_http_requests_total", route="/sync", method="GET", status="400")
            - value(before, "cutout_http_requests_total", route="/sync", method="GET", status="400")) == 1
    assert (value(after, "cutout_cutout_seconds_count", format="fits")
            - value(before, "cutout_cutout_seconds_count", format="fits")) == 3
    assert value(after, "cutout_http_response_bytes_total", route="/sync") > \
        value(before, "cutout_http_response_bytes_total", route="/sync")
    assert value(after, "cutout_jobs", phase="PENDING") >= 0
    assert ("cutout_queue_depth", (("queue", "uws-soda"),)) in after
    assert value(after, "cutout_worker_threads") >= 1


def test_request_id_is_echoed_and_made_when_missing(embedded):
    given = embedded.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = embedded.get("/healthz").headers["x-request-id"]
    assert len(made) == 32
    odd = embedded.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert odd != "bad id\twith spaces" and len(odd) == 32


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("ops")
    proc, base = start_server(base_env(tmp / "data", demo_root), tmp / "server.log")
    yield proc, base, tmp
    proc.stop()


def test_json_logs_follow_the_request_into_the_job(server):
    proc, base, _ = server
    r = httpx.post(base + "/selftest", data={"PHASE": "RUN", "RESULTS": "1"},
                   headers={"X-Request-ID": "trace-me-42"})
    url = r.headers["location"]
    eventually(lambda: httpx.get(url + "/phase").text == "COMPLETED")
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert lines, proc.output()[-2000:]
    traced = [e for e in lines if e.get("request_id") == "trace-me-42"]
    assert any(f"job {url.rsplit('/', 1)[1]} (selftest) started" in e["message"] for e in traced), traced
    assert all({"time", "level", "logger", "message"} <= set(e) for e in lines)


def test_metrics_in_multiprocess_mode(server):
    proc, base, tmp = server
    assert (tmp / "data" / "metrics").is_dir() and any((tmp / "data" / "metrics").iterdir())
    for _ in range(2):
        httpx.get(base + "/sync", params={"ID": DID, "CIRCLE": f"{RA0} {DEC0} 0.002"})
    found = samples(httpx.get(base + "/metrics").text)
    assert value(found, "cutout_http_requests_total", route="/sync", method="GET", status="200") >= 2
    assert value(found, "cutout_worker_threads") >= 1
