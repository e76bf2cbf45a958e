"""Acceptance: VOSI availability turns false, naming the reason, when PostgreSQL or Redis
is stopped, and true again when it returns, without restarting the service.

The shared PostgreSQL and Redis of the machine stay untouched: this module runs its own
throwaway instances on free ports and stops and restarts those.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from conftest import Proc, ThrowawayRedis, assert_valid, base_env, free_port, require, start_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

AV = {"vosi": "http://www.ivoa.net/xml/VOSIAvailability/v1.0"}
RECOVERY_SECONDS = 15.0


# --- throwaway servers -----------------------------------------------------------------------

def _wait_until(ready, proc: subprocess.Popen, what: str, log: Path,  # type: ignore[no-untyped-def]
                timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Postgres:
    """A PostgreSQL cluster in a temporary directory, stoppable and restartable on one port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cutout-outage-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None
        # PostgreSQL refuses to run as root.
        self.as_user = ({"user": "postgres", "group": "postgres", "extra_groups": []}
                        if os.geteuid() == 0 else {})
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=60, **self.as_user)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.as_user)
        _wait_until(self._accepts, self.proc, "postgres", self.log)

    def _accepts(self) -> bool:
        import psycopg2

        psycopg2.connect(self.url, connect_timeout=1).close()
        return True

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # "fast" shutdown: ends sessions, then exits

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Postgres]:
    bin_dir = _postgres_bin()
    require("PostgreSQL binaries", None if bin_dir else "no initdb under /usr/lib/postgresql/*/bin or on PATH")
    assert bin_dir is not None
    pg: Postgres | None = None
    try:
        pg = Postgres(bin_dir)  # as root, this needs the postgres user
        pg.init()
        pg.start()
    except Exception as exc:  # noqa: BLE001
        detail = getattr(exc, "stderr", None) or exc
        if pg is not None:
            pg.remove()
        require("a throwaway PostgreSQL", f"could not start one: {detail!s}"[:500])
    assert pg is not None
    yield pg
    pg.remove()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayRedis]:
    binary = shutil.which("redis-server")
    require("redis-server", None if binary else "not on PATH")
    assert binary is not None
    server = ThrowawayRedis(binary, tmp_path_factory.mktemp("redis") / "redis.log")
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        server.stop()
        require("a throwaway Redis", f"could not start one: {exc}"[:500])
    yield server
    server.stop()


@dataclass(frozen=True)
class Service:
    proc: Proc
    base: str

    def assert_never_restarted(self) -> None:
        assert self.proc.popen.poll() is None, f"the service exited:\n{self.proc.output()[-3000:]}"


@pytest.fixture(scope="module")
def service(own_postgres: Postgres, own_redis: ThrowawayRedis, demo_root: Path,
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


def test_database_outage_and_recovery(service: Service, own_postgres: Postgres) -> None:
    wait_for(service.base, True)
    own_postgres.stop()
    try:
        assert_reason(wait_for(service.base, False), "database", "broker")
    finally:
        own_postgres.start()  # same data directory, same port
    wait_for(service.base, True)
    service.assert_never_restarted()


def test_broker_outage_and_recovery(service: Service, own_redis: ThrowawayRedis) -> None:
    wait_for(service.base, True)
    own_redis.stop()
    try:
        assert_reason(wait_for(service.base, False), "broker", "database")
    finally:
        own_redis.start()  # same port
    wait_for(service.base, True)
    service.assert_never_restarted()

