"""The Dramatiq broker of either deployment shape.

Embedded: the stub broker, consumed by worker threads inside the web process.
Distributed: Redis, consumed by ``cutout worker`` processes on any number of hosts.
Dramatiq's TimeLimit middleware is left out on purpose: executionDuration is a
per-job value enforced by ``uws.worker.JobWatchdog``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries


def make_broker(url: str | None, namespace: str, *, socket_timeout: float = 5.0) -> dramatiq.Broker:
    """``socket_timeout`` bounds connecting to Redis and waiting for each answer, so a
    frozen Redis fails a send (the job stays PENDING, the client is told to retry)
    instead of holding the request."""
    middleware = [Retries(max_retries=0), CurrentMessage()]
    if url:
        pool = redis.ConnectionPool.from_url(url, socket_timeout=socket_timeout,
                                             socket_connect_timeout=socket_timeout)
        return RedisBroker(client=redis.Redis(connection_pool=pool), namespace=namespace,
                           middleware=middleware)
    return StubBroker(middleware=middleware)


class _Worker(dramatiq.Worker):
    """Dramatiq's worker, but taking at most one message per thread off some queues.

    Dramatiq prefetches twice as many messages as the worker has threads from every
    queue. For the parts of a parted job that lets the first worker to poll take two parts
    of a job (all of a two-part job) while another worker sits idle; a part is long, so
    nothing is gained by holding one in advance.
    """

    def __init__(self, broker: dramatiq.Broker, *, one_each: Iterable[str], **options: Any) -> None:
        super().__init__(broker, **options)
        self.one_each = frozenset(one_each)

    def _add_consumer(self, queue_name: str, *, delay: bool = False) -> None:
        if delay or queue_name not in self.one_each:
            super()._add_consumer(queue_name, delay=delay)
            return
        usual = self.queue_prefetch
        self.queue_prefetch = self.worker_threads
        try:
            super()._add_consumer(queue_name, delay=delay)
        finally:
            self.queue_prefetch = usual


def start_worker(broker: dramatiq.Broker, threads: int, poll_ms: int = 100,
                 one_each: Iterable[str] = ()) -> dramatiq.Worker:
    """A worker of ``threads`` threads on every declared queue; from the queues ``one_each``
    it takes at most one message per thread at a time (Dramatiq's prefetch: twice that)."""
    worker = _Worker(broker, one_each=one_each, worker_threads=threads, worker_timeout=poll_ms)
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


def first_argument(args: Sequence[Any]) -> str:
    return str(args[0])


def held_job_ids(broker: dramatiq.Broker, queue: str, dead_after: float, among: set[str],
                 chunk: int = 500, key: Callable[[Sequence[Any]], str] = first_argument) -> set[str] | None:
    """Which of the job ids ``among`` (or other ``key`` of a message's arguments) have a message that ``queue`` holds where it will be
    delivered: waiting in the queue (or its delay queue), or taken by a worker that is
    still alive (a heartbeat within ``dead_after`` seconds). None when the broker cannot say
    (the stub broker, or Redis is unreachable).

    A message taken by a dead worker (SIGKILL, host lost) is not held: Dramatiq's Redis
    broker gives it back only after its own heartbeat timeout, and then only by chance.

    Dramatiq's Redis broker keeps every message it has not been told is done in the
    queue's ``.msgs`` hash, and moves its id between the queue list and a worker's ack set
    in one script; so the held messages are that hash less the ack sets of dead workers.
    Both are read ``chunk`` entries at a time (HSCAN, SSCAN), whatever the queue's length:
    a long queue is never read in one reply. An entry present throughout is always seen.
    """
    client = getattr(broker, "client", None)
    if client is None:
        return None
    namespace = getattr(broker, "namespace", "dramatiq")
    try:
        cutoff_ms = time.time() * 1000 - dead_after * 1000
        dead = [w.decode() if isinstance(w, bytes) else w for w in client.zrangebyscore(
            f"{namespace}:__heartbeats__", "-inf", f"({cutoff_ms}")]
        held: set[str] = set()
        for name in (queue, f"{queue}.DQ"):
            taken_by_dead: set[bytes] = set()  # a worker's ack set is bounded by its prefetch
            for worker in dead:
                taken_by_dead.update(client.sscan_iter(f"{namespace}:__acks__.{worker}.{name}", count=chunk))
            for message_id, data in client.hscan_iter(f"{namespace}:{name}.msgs", count=chunk):
                if message_id in taken_by_dead:
                    continue
                args = json.loads(data).get("args") or []
                if args and key(args) in among:
                    held.add(key(args))
        return held
    except (redis.RedisError, ValueError):
        return None
