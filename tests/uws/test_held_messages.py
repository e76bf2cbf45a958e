"""Which QUEUED jobs' messages Redis still holds for delivery (uws.broker.held_job_ids),
read in bounded chunks: a long queue is never read into memory in one reply. Real Redis,
in a namespace of the test's own."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import dramatiq
import pytest

from conftest import redis_namespace
from uws.broker import held_job_ids, make_broker

QUEUE = "probe"
MESSAGES = 5_000


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    with redis_namespace(redis_url, "test-held") as name:
        yield name


def broker_with_actor(redis_url: str, namespace: str) -> dramatiq.Broker:
    broker = make_broker(redis_url, namespace)
    dramatiq.Actor(lambda job_id: None, broker=broker, actor_name="probe_job", queue_name=QUEUE,
                   priority=0, options={})
    return broker


def test_held_messages_are_found_in_chunks_and_dead_workers_messages_are_not(
        redis_url: str, namespace: str) -> None:
    sender = broker_with_actor(redis_url, namespace)
    actor = sender.get_actor("probe_job")
    for i in range(MESSAGES):
        actor.send(f"job-{i}")
    # Another worker takes the first five, then dies (sends no more heartbeats).
    taker = broker_with_actor(redis_url, namespace)
    consumer = taker.consume(QUEUE, prefetch=5, timeout=100)
    taken = next(consumer)
    assert taken is not None and taken.args == ("job-0",)

    among = {f"job-{i}" for i in range(10)} | {f"job-{MESSAGES - 1}", "job-never-sent"}
    tracemalloc.start()
    held = held_job_ids(sender, QUEUE, 60, among)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert held == among - {"job-never-sent"}  # the taker is alive: its messages are held
    # Reading the whole queue at once peaked at ~3.9 MB here; a chunk at a time, ~0.5 MB.
    assert peak < 1_500_000, peak

    time.sleep(0.5)
    actor.send("job-late")  # the sender's heartbeat is fresh again; the taker's is not
    held = held_job_ids(sender, QUEUE, 0.4, among | {"job-late"})
    assert held == {f"job-{i}" for i in range(5, 10)} | {f"job-{MESSAGES - 1}", "job-late"}
    consumer.close()
    taker.close()
    sender.close()
