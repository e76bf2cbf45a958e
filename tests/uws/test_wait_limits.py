"""Blocking WAITs are bounded per caller and in total; beyond the bounds a WAIT returns
the job document at once (UWS §2.2.1.2 lets the server return early) instead of holding
one more connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST_TIMINGS, assert_uws, header_identity, link_demo, uws_text

PER_CALLER = 2
TOTAL = 3
HOLD = 4  # seconds a granted WAIT blocks on a PENDING job


@pytest.fixture
def client(tmp_path: Path, demo_root: Path) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from conf import load_settings
    from soda.web.app import create_app

    link_demo(tmp_path / "data", demo_root)
    env = {**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(tmp_path / "data"), "CUTOUT_WAIT_MAX_SECONDS": "10",
           "CUTOUT_WAIT_MAX_PER_CALLER": str(PER_CALLER), "CUTOUT_WAIT_MAX_TOTAL": str(TOTAL)}
    app = create_app(load_settings(environ=env), identify=header_identity, build_demo=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client


def pending_job(client: Any, user: str) -> str:
    response = client.post("/selftest", data={"DURATION": "0"}, headers={"X-Test-User": user})
    assert response.status_code == 303
    return response.headers["location"]


def timed_wait(client: Any, url: str, user: str, seconds: int = HOLD) -> tuple[float, Any]:
    start = time.monotonic()
    response = client.get(url, params={"WAIT": str(seconds)}, headers={"X-Test-User": user})
    return time.monotonic() - start, response


class Waiter(threading.Thread):
    def __init__(self, client: Any, url: str, user: str) -> None:
        super().__init__(daemon=True)
        self.args_ = (client, url, user)
        self.elapsed = 0.0
        self.status: int | None = None  # checked by the test thread: a thread's assert is lost

    def run(self) -> None:
        self.elapsed, response = timed_wait(*self.args_)
        self.status = response.status_code


def hold(client: Any, url: str, user: str, count: int) -> list[Waiter]:
    waiters = [Waiter(client, url, user) for _ in range(count)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.7)  # they are waiting now
    assert all(w.is_alive() for w in waiters)
    return waiters


def assert_returned_at_once(client: Any, url: str, user: str) -> None:
    elapsed, response = timed_wait(client, url, user)
    assert response.status_code == 200
    assert elapsed < 1.5, elapsed
    doc = assert_uws(response.content)  # the job document, as an early return gives it
    assert uws_text(doc, "uws:phase") == "PENDING"


def test_waits_beyond_the_per_caller_bound_return_at_once(client: Any) -> None:
    alice = pending_job(client, "alice")
    waiters = hold(client, alice, "alice", PER_CALLER)
    assert_returned_at_once(client, alice, "alice")
    # Another caller's WAIT is not affected by alice's.
    bob = pending_job(client, "bob")
    elapsed, response = timed_wait(client, bob, "bob", seconds=1)
    assert response.status_code == 200 and elapsed >= 0.9, elapsed
    for waiter in waiters:
        waiter.join(timeout=HOLD + 5)
        assert not waiter.is_alive() and waiter.status == 200, waiter.status
        assert waiter.elapsed >= HOLD - 0.5, waiter.elapsed  # the granted ones did wait
    # Their places were given back: alice may block again.
    elapsed, _ = timed_wait(client, alice, "alice", seconds=1)
    assert elapsed >= 0.9, elapsed


def test_waits_beyond_the_total_bound_return_at_once(client: Any) -> None:
    alice, bob, carol = (pending_job(client, u) for u in ("alice", "bob", "carol"))
    waiters = hold(client, alice, "alice", PER_CALLER) + hold(client, bob, "bob", TOTAL - PER_CALLER)
    assert_returned_at_once(client, carol, "carol")
    # A phase change still wakes the waiters that hold a place.
    client.post(alice + "/phase", data={"PHASE": "ABORT"}, headers={"X-Test-User": "alice"})
    for waiter in waiters[:PER_CALLER]:
        waiter.join(timeout=HOLD + 5)
        assert not waiter.is_alive() and waiter.status == 200, waiter.status
        assert waiter.elapsed < HOLD - 1, waiter.elapsed
    elapsed, _ = timed_wait(client, carol, "carol", seconds=1)
    assert elapsed >= 0.9, elapsed
    for waiter in waiters[PER_CALLER:]:
        waiter.join(timeout=HOLD + 5)
        assert not waiter.is_alive() and waiter.status == 200, waiter.status


def test_anonymous_callers_count_by_address(client: Any) -> None:
    job = pending_job(client, "")
    waiters = hold(client, job, "", PER_CALLER)
    assert_returned_at_once(client, job, "")
    for waiter in waiters:
        waiter.join(timeout=HOLD + 5)
        assert not waiter.is_alive() and waiter.status == 200, waiter.status
