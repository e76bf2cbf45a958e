"""No job is left behind by a killed worker: Dramatiq prefetches messages, so a worker
process holds more jobs than it runs; when it is killed, the jobs it had taken off the
queue but not started stay QUEUED. The sweep must send them again within
stale_job_seconds and a sweep, not after the broker's own heartbeat timeout (a minute)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import ThrowawayRedis, base_env, eventually, require, start_server, start_worker

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

STALE = 2.0   # FAST_TIMINGS
SWEEP = 0.5


@pytest.fixture
def own_redis(tmp_path: Path):
    binary = shutil.which("redis-server")
    require("redis-server", None if binary else "not on PATH")
    server = ThrowawayRedis(binary, tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def test_jobs_prefetched_by_a_killed_worker_are_sent_again(tmp_path, own_redis, postgres_url, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_DATABASE_URL=postgres_url,
                   CUTOUT_BROKER_URL=own_redis.url,
                   CUTOUT_REDIS_NAMESPACE=f"cutout-prefetch-{uuid.uuid4().hex[:8]}")
    server, base = start_server(env, tmp_path / "server.log")
    workers = []
    try:
        # One thread: the worker runs one job and holds the next one prefetched.
        workers.append(start_worker(env, tmp_path / "worker-1.log", threads=1))
        urls = []
        for _ in range(4):
            r = httpx.post(base + "/selftest", data={"DURATION": "1", "PHASE": "RUN"}, timeout=10)
            assert r.status_code == 303, r.text
            urls.append(r.headers["location"])

        def phases() -> list[str]:
            return [httpx.get(u + "/phase", timeout=10).text for u in urls]

        eventually(lambda: "EXECUTING" in phases(), timeout=20)
        workers[0].kill()
        killed = phases()
        assert killed.count("QUEUED") >= 2, killed
        workers.append(start_worker(env, tmp_path / "worker-2.log", threads=1))
        t0 = time.monotonic()
        # Recovery (stale_job_seconds + a sweep) and the four 1 s jobs, one at a time, with slack.
        budget = STALE + SWEEP + 4 * 1 + 8
        eventually(lambda: phases() == ["COMPLETED"] * 4, timeout=budget, interval=0.2)
        print(f"every job completed {time.monotonic() - t0:.1f}s after the new worker started")
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
