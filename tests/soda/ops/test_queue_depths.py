"""The queue depth metric over Redis counts delayed messages (a job's transient retry, a
notice's next attempt), which Dramatiq keeps in a list of their own, not a sorted set."""

from __future__ import annotations

import uuid

import dramatiq
import pytest

from soda.ops.metrics import queue_depths
from uws.broker import make_broker

pytestmark = pytest.mark.redis


def test_delayed_messages_are_counted(redis_url: str) -> None:
    namespace = f"cutout-test-{uuid.uuid4().hex[:8]}"
    broker = make_broker(redis_url, namespace)
    try:
        actor = dramatiq.Actor(lambda: None, broker=broker, actor_name="probe", queue_name="probe",
                               priority=0, options={})
        actor.send()
        actor.send_with_options(delay=60_000)
        actor.send_with_options(delay=60_000)
        assert queue_depths(broker) == {"probe": 3}
    finally:
        broker.flush_all()
        broker.close()
