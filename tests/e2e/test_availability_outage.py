"""Acceptance: VOSI availability turns false, naming the reason, when PostgreSQL or Redis
is stopped, and true again when it returns, without restarting the service.

The shared PostgreSQL and Redis of the machine stay untouched: this module runs its own
throwaway instances on free ports (tests/conftest.py) and stops and restarts those.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from conftest import Proc, ThrowawayPostgres, ThrowawayRedis, assert_valid, base_env, start_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

AV = {"vosi": "http://www.ivoa.net/xml/VOSIAvailability/v1.0"}
RECOVERY_SECONDS = 15.0


@dataclass(frozen=True)
class Service:
    proc: Proc
    base: str

    def assert_never_restarted(self) -> None:
        assert self.proc.popen.poll() is None, f"the service exited:\n{self.proc.output()[-3000:]}"


@pytest.fixture(scope="module")
def service(own_postgres: ThrowawayPostgres, own_redis: ThrowawayRedis, demo_root: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("outage")
    env = base_env(tmp / "data", demo_root, CUTOUT_DATABASE_URL=own_postgres.url,
                   CUTOUT_BROKER_URL=own_redis.url,
                   CUTOUT_REDIS_NAMESPACE=f"cutout-outage-{uuid.uuid4().hex[:8]}")
    proc, base = start_server(env, tmp / "server.log")
    yield Service(proc, base)
    proc.stop()


# --- the acceptance tests ----------------------------------------------------------------------

def availability(base: str) -> tuple[bool, list[str]]:
    response = httpx.get(f"{base}/availability", timeout=10)
    assert response.status_code == 200, response.text
    doc: etree._Element = assert_valid(response.content, "VOSIAvailability-v1.0.xsd")
    notes = [n.text or "" for n in doc.findall("vosi:note", AV)]
    return doc.findtext("vosi:available", namespaces=AV) == "true", notes


def wait_for(base: str, available: bool, timeout: float = RECOVERY_SECONDS) -> list[str]:
    """Poll until availability says ``available``; its notes then."""
    end = time.monotonic() + timeout
    state, notes = availability(base)
    while state != available and time.monotonic() < end:
        time.sleep(0.2)
        state, notes = availability(base)
    assert state == available, f"availability stayed {state} for {timeout} s; notes: {notes}"
    return notes


def assert_reason(notes: list[str], failed: str, working: str) -> None:
    """A note names the failed dependency and says why; none blames the working one."""
    assert any(n.startswith(f"{failed}: ") and len(n) > len(failed) + 5 for n in notes), notes
    assert not any(n.startswith(f"{working}: ") for n in notes), notes


def dependencies_scraped(base: str) -> tuple[dict[str, float], set[str]]:
    """/metrics, read as an operator: each dependency's check, and the families exported."""
    started = time.monotonic()
    response = httpx.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 10, "a scrape must not wait on a dependency that is down"
    families = list(text_string_to_metric_families(response.text))
    up = {s.labels["dependency"]: s.value for f in families if f.name == "cutout_dependency_up" for s in f.samples}
    return up, {f.name for f in families}


def test_database_outage_and_recovery(service: Service, own_postgres: ThrowawayPostgres) -> None:
    wait_for(service.base, True)
    own_postgres.stop()
    try:
        assert_reason(wait_for(service.base, False), "database", "broker")
        up, families = dependencies_scraped(service.base)
        assert up["database"] == 0 and up["broker"] == 1, up
        assert "cutout_jobs" not in families and "cutout_queue_depth" in families
    finally:
        own_postgres.start()  # same data directory, same port
    wait_for(service.base, True)
    assert all(dependencies_scraped(service.base)[0].values())
    service.assert_never_restarted()


def test_broker_outage_and_recovery(service: Service, own_redis: ThrowawayRedis) -> None:
    wait_for(service.base, True)
    own_redis.stop()
    try:
        assert_reason(wait_for(service.base, False), "broker", "database")
        up, families = dependencies_scraped(service.base)
        assert up["broker"] == 0 and up["database"] == 1, up
        assert "cutout_queue_depth" not in families and "cutout_jobs" in families
    finally:
        own_redis.start()  # same port
    wait_for(service.base, True)
    service.assert_never_restarted()

