"""The Dramatiq broker of either deployment shape.

Embedded: the stub broker, consumed by worker threads inside the web process.
Distributed: Redis, consumed by ``cutout worker`` processes on any number of hosts.
Dramatiq's TimeLimit middleware is left out on purpose: executionDuration is a
per-job value enforced by ``uws.worker.JobWatchdog``.
"""

from __future__ import annotations

import dramatiq
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
