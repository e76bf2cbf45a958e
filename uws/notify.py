"""Phase-change notifications, so that WAIT (UWS §2.2.1.2) is event-driven.

Every phase transition calls ``publish(job_id)``. Waiting requests hold an
``asyncio.Event`` each (no thread per waiter); ``publish`` may be called from any
thread. In the embedded shape the notifier is in-process; in the distributed shape
transitions made by worker processes travel over one Redis pub/sub channel, read by
one listener task per web process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Protocol

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def publish(self, job_id: str) -> None: ...

    def watch(self, job_id: str) -> contextlib.AbstractAsyncContextManager[asyncio.Event]: ...

    @property
    def closing(self) -> bool: ...

    def shutdown(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalNotifier:
    """Waiters of this process, woken by transitions made in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._closing = False

    @property
    def closing(self) -> bool:
        """True once the process is shutting down: waiters answer at once."""
        return self._closing

    def shutdown(self) -> None:
        """Wake every waiter (from any thread, a signal handler included) so each answers
        what it has before the server stops, and answer any later one at once."""
        self._closing = True
        with self._lock:
            waiters = [w for entries in self._waiters.values() for w in entries]
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]

    def deliver(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)

    def publish(self, job_id: str) -> None:
        self.deliver(job_id)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.shutdown()


class RedisNotifier(LocalNotifier):
    """Publishes over Redis too, and (once started) delivers what other processes publish."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__()
        self.url = url
        self.channel = f"{namespace}:uws:phase"
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def publish(self, job_id: str) -> None:
        self.deliver(job_id)
        try:
            self._client.publish(self.channel, job_id)
        except redis.RedisError as exc:
            # Waiters elsewhere then fall back to their periodic re-check.
            log.warning("could not publish phase change of %s: %s", job_id, exc)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="uws-phase-listener")

    async def stop(self) -> None:
        self.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._client.close()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            client = aioredis.Redis.from_url(self.url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.connected.set()
                    delay = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.deliver(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                log.warning("phase listener lost Redis (%s); reconnecting in %.1fs", exc, delay)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
