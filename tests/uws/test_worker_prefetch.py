"""A worker takes at most one message per thread off the parts queues (uws.broker.start_worker),
and Dramatiq's usual two per thread off the others. Real Redis, in a namespace of the
test's own; the messages a worker has taken are those in its ack sets."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dramatiq
import pytest
import redis

from conftest import eventually, redis_namespace
from uws.broker import make_broker, start_worker

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    with redis_namespace(redis_url, "test-prefetch") as name:
        yield name


def taken(client: redis.Redis, namespace: str, queue: str) -> int:
    """Messages of ``queue`` that some worker has taken and not yet acknowledged."""
    return sum(client.scard(key) for key in client.scan_iter(f"{namespace}:__acks__.*.{queue}"))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_worker_takes_one_part_per_thread_and_two_jobs_per_thread(redis_url: str, namespace: str,
                                                                    threads: int) -> None:
    release = threading.Event()
    broker = make_broker(redis_url, namespace)
    parts = dramatiq.Actor(lambda n: release.wait(30), broker=broker, actor_name="probe_part",
                           queue_name="probe-parts", priority=0, options={})
    jobs = dramatiq.Actor(lambda n: release.wait(30), broker=broker, actor_name="probe_job",
                          queue_name="probe-jobs", priority=0, options={})
    for n in range(8):
        parts.send(n)
    worker = start_worker(broker, threads, poll_ms=50, one_each=["probe-parts"])
    client = redis.Redis.from_url(redis_url)
    try:
        eventually(lambda: taken(client, namespace, "probe-parts") == threads, timeout=10)
        for n in range(8):
            jobs.send(n)
        # The threads are all busy with parts: what a queue's consumer takes now is prefetch.
        eventually(lambda: taken(client, namespace, "probe-jobs") == 2 * threads, timeout=10)
        assert taken(client, namespace, "probe-parts") == threads
        assert client.llen(f"{namespace}:probe-parts") == 8 - threads
    finally:
        release.set()
        worker.stop(timeout=10_000)
        client.close()
        broker.close()
