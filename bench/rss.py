"""Resident memory of a process, from /proc/<pid>/status (Linux)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Memory:
    """kB."""

    rss: int   # VmRSS: resident now
    peak: int  # VmHWM: the most ever resident


def memory(pid: int) -> Memory:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return Memory(fields["VmRSS"], fields["VmHWM"])
