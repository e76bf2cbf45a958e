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


def children(pid: int) -> list[int]:
    """The process's children (its cutting processes, their fork server)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = [int(c) for c in text.split()]
    return found + [g for c in found for g in children(c)]


def tree_rss(pid: int) -> int:
    """kB resident in the process's children together (0 without any)."""
    total = 0
    for child in children(pid):
        try:
            total += memory(child).rss
        except (OSError, KeyError):
            pass  # ended meanwhile
    return total
