"""What bench/run.py prints: plain-text tables, and the issue's targets with PASS/FAIL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
                notes: Sequence[str] = ()) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n== {title}")
    print(_line(headers, widths))
    print(line)
    for row in cells:
        print(_line(row, widths))
    for note in notes:
        print(f"   {note}")


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """The first column to the left, the figures to the right."""
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


@dataclass(frozen=True)
class Target:
    name: str
    goal: str          # e.g. ">= 2", "<= 1.3"
    measured: float | None
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if self.measured is None or not math.isfinite(self.measured):
            return "not measured"
        op, threshold = self.goal.split()
        value = float(threshold)
        ok = {"<=": self.measured <= value, ">=": self.measured >= value,
              "<": self.measured < value, ">": self.measured > value}[op]
        return "PASS" if ok else "FAIL"


@dataclass
class Targets:
    found: dict[str, Target] = field(default_factory=dict)

    def set(self, name: str, goal: str, measured: float | None, unit: str = "x") -> None:
        self.found[name] = Target(name, goal, measured, unit)

    def print(self, expected: Sequence[tuple[str, str, str]], notes: Sequence[str] = ()) -> None:
        """``expected``: every target (name, goal, unit), so the unmeasured ones show too."""
        rows = []
        for name, goal, unit in expected:
            t = self.found.get(name, Target(name, goal, None, unit))
            shown = "-" if t.measured is None else (f"{t.measured:.2f}x" if t.unit == "x"
                                                     else f"{t.measured:.0f} {t.unit}")
            rows.append((t.name, f"{t.goal} {'' if t.unit == 'x' else t.unit}".strip(), shown, t.verdict))
        print_table("targets (issues 15, 16; from this run)", ("target", "goal", "measured", "result"), rows,
                    notes)
