"""Per-client request rate limits: a fixed window counted in memory or in Redis.

The embedded shape has one process, so memory is enough; the distributed shape counts
in Redis so that every web process behind nginx sees the same count.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis


class RateLimiter(Protocol):
    def hit(self, key: str) -> float | None:
        """Count one request of ``key``; None if allowed, else seconds until it may retry."""

    def close(self) -> None:
        """Let go of any connection held."""


class MemoryRateLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        now = self.clock()
        slot = int(now // self.window)
        with self._lock:
            if len(self._counts) > 10_000:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items() if k[1] == slot}
            count = self._counts.get((key, slot), 0) + 1
            self._counts[(key, slot)] = count
        return None if count <= self.limit else _retry_after(now, slot, self.window)

    def close(self) -> None:
        return None


class RedisRateLimiter:
    def __init__(self, url: str, namespace: str, limit: int, window: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = f"{namespace}:rate:"
        self.limit = limit
        self.window = window
        self.clock = clock

    def hit(self, key: str) -> float | None:
        now = self.clock()
        slot = int(now // self.window)
        name = f"{self.prefix}{key}:{slot}"
        with self.redis.pipeline() as pipe:
            pipe.incr(name)
            pipe.expire(name, math.ceil(self.window) + 1)
            count = int(pipe.execute()[0])
        return None if count <= self.limit else _retry_after(now, slot, self.window)

    def close(self) -> None:
        self.redis.close()


def _retry_after(now: float, slot: int, window: float) -> float:
    return max((slot + 1) * window - now, 0.001)
