"""Shared by the benchmark scripts: repeated wall times, interleaved methods, their statistics."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass(frozen=True)
class Stats:
    """Wall times of one method, seconds."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, times: Sequence[float]) -> Stats:
        return cls(statistics.median(times), min(times), max(times), len(times))

    def ms(self) -> str:
        """``median (min-max)`` in milliseconds."""
        return f"{self.median * 1e3:.1f} ({self.low * 1e3:.1f}-{self.high * 1e3:.1f})"


def interleaved(methods: Mapping[str, Callable[[int], object]], repeat: int,
                slow_repeat: int | None = None, slow_seconds: float = 0.5) -> dict[str, Stats]:
    """Times every method ``repeat`` times, round-robin: repetition ``i`` calls each method
    with ``i``, the order rotated each time, so drift in the machine's load falls on every
    method alike.

    Each method is first called once untimed, with ``repeat`` (the page cache, lazy
    imports; callers have ``repeat + 1`` inputs, so no timed call repeats the warm-up's
    input and finds it in a cache); one whose first call took longer than ``slow_seconds``
    is timed only ``slow_repeat`` times (in the first repetitions, still interleaved).
    """
    names = list(methods)
    counts = {}
    for name in names:
        t0 = time.perf_counter()
        methods[name](repeat)
        slow = slow_repeat is not None and time.perf_counter() - t0 > slow_seconds
        counts[name] = min(repeat, slow_repeat) if slow and slow_repeat is not None else repeat
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            if len(times[name]) >= counts[name]:
                continue
            t0 = time.perf_counter()
            methods[name](i)
            times[name].append(time.perf_counter() - t0)
    return {name: Stats.of(t) for name, t in times.items() if t}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
