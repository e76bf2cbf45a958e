"""HTTP clients of the bench: one sync cutout, closed-loop load from N threads, and an
async job followed to its end with UWS WAIT (UWS 1.1 §2.2.1.2)."""

from __future__ import annotations

import datetime as dt
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np

Request = Callable[[np.random.Generator], tuple[str, dict[str, str]]]  # rng -> (url, params)

_PHASE = re.compile(rb"<uws:phase>\s*(\w+)\s*</uws:phase>")
_END = re.compile(rb"<uws:endTime>\s*([^<\s]+)\s*</uws:endTime>")
FINAL = ("COMPLETED", "ERROR", "ABORTED")


def fits_ok(response: httpx.Response) -> bytes:
    if response.status_code != 200 or not response.content.startswith(b"SIMPLE"):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response.content


@dataclass(frozen=True)
class Load:
    clients: int
    seconds: float
    done: int
    errors: int
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1e3 if self.latencies else float("nan")


def closed_loop(request: Request, clients: int, seconds: float, seed: int) -> Load:
    """``clients`` threads, each sending its next request as soon as the last is answered,
    for ``seconds``; counts the cutouts answered (200 with a FITS body)."""
    start = threading.Barrier(clients + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    window: list[float] = []

    def run(k: int) -> None:
        rng = np.random.default_rng([seed, k])
        with httpx.Client(timeout=120) as client:
            start.wait()
            end = window[0] + seconds
            while time.perf_counter() < end:
                url, params = request(rng)
                t0 = time.perf_counter()
                try:
                    fits_ok(client.get(url, params=params))
                except (httpx.HTTPError, RuntimeError):
                    with lock:
                        errors[0] += 1
                    continue
                t1 = time.perf_counter()
                if t1 <= end:  # answers after the window closed are not counted
                    with lock:
                        latencies.append(t1 - t0)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    window.append(time.perf_counter())
    start.wait()
    for t in threads:
        t.join()
    return Load(clients, seconds, len(latencies), errors[0], tuple(latencies))


@dataclass(frozen=True)
class JobRun:
    total: float          # seconds from the POST to the answer showing the final phase
    phase: str
    wake: float | None    # seconds from endTime to that answer, when it was a blocked WAIT


def _epoch(iso: bytes) -> float:
    return dt.datetime.fromisoformat(iso.decode().replace("Z", "+00:00")).timestamp()


def run_job(client: httpx.Client, base: str, params: dict[str, str]) -> JobRun:
    """POST /async with PHASE=RUN, then GET the job with WAIT=30 until it ends.

    The wake latency is the time from the job's endTime (the service's clock: the same
    host) to the answer of the WAIT that was blocked when the job ended.
    """
    t0 = time.perf_counter()
    created = client.post(f"{base}/async", data=params | {"PHASE": "RUN"})
    if created.status_code != 303:
        raise RuntimeError(f"POST /async: {created.status_code} {created.text[:300]}")
    url = httpx.URL(base).join(created.headers["location"])
    phase = "QUEUED"
    while True:
        sent = time.time()
        answer = client.get(url, params={"WAIT": "30"})
        answered = time.time()
        found = _PHASE.search(answer.content)
        phase = found[1].decode() if found else f"? ({answer.status_code})"
        if phase in FINAL or not found:
            break
    total = time.perf_counter() - t0
    end = _END.search(answer.content)
    wake = None
    if end is not None and sent < _epoch(end[1]):
        wake = answered - _epoch(end[1])
    return JobRun(total, phase, wake)
