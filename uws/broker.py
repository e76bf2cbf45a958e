"""The Dramatiq broker of either deployment shape.

Embedded: the stub broker, consumed by worker threads inside the web process.
Distributed: Redis, consumed by ``cutout worker`` processes on any number of hosts.
Dramatiq's TimeLimit middleware is left out on purpose: executionDuration is a
per-job value enforced by ``uws.worker.JobWatchdog``.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries


def make_broker(url: str | None, namespace: str) -> dramatiq.Broker:
    middleware = [Retries(max_retries=0), CurrentMessage()]
    if url:
        return RedisBroker(url=url, namespace=namespace, middleware=middleware)
    return StubBroker(middleware=middleware)


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    return worker


def unacked_messages(broker: dramatiq.Broker, queue: str) -> int | None:
    """Messages of ``queue`` that the broker still holds (waiting, delayed or being
    worked on), or None when the broker cannot say (the stub broker)."""
    client = getattr(broker, "client", None)
    if client is None:
        return None
    namespace = getattr(broker, "namespace", "dramatiq")
    try:
        # Dramatiq's Redis broker keeps every message in these hashes until it is acked.
        return int(client.hlen(f"{namespace}:{queue}.msgs")) + int(client.hlen(f"{namespace}:{queue}.DQ.msgs"))
    except redis.RedisError:
        return None  # broker down: nothing to compare now; the next sweep looks again
