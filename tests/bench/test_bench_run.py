"""bench/run.py keeps running: its engine section on a small tile prints every column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_COLUMNS = ("layout", "size", "pixels", "ours", "decompress", "astrocut", "naive",
                  "decompress/ours", "astrocut/ours", "naive/ours")


def _table(out: str, title: str) -> list[list[str]]:
    """The header and the rows of the table whose title starts with ``title``, split on
    runs of two spaces."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"== {title}"))
    table = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith(("==", "   ")):
            break
        if not set(line) <= {"-", " "}:
            table.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return table


@pytest.mark.slow
def test_quick_engine_section_prints_every_column_and_target(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "engine", "--size", "2048",
                           "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "load average at start:" in out and "load average at end:" in out
    assert "different pixels" not in out

    engine = _table(out, "engine: one cutout")
    assert tuple(engine[0]) == ENGINE_COLUMNS
    rows = engine[1:]
    assert [(r[0], r[1]) for r in rows] == [(layout, size) for layout in ("plain", "rows", "tiled256")
                                            for size in ("1'", "5'")]
    for row in rows:
        assert len(row) == len(ENGINE_COLUMNS), row
        assert row[3].endswith(")") and float(row[3].split()[0]) > 0  # ours: "median (min-max)"
        assert all(cell.endswith("x") for cell in (row[7], row[9]))  # decompress/ours, naive/ours
        assert row[5] == "not installed" or row[8].endswith("x")

    layouts = _table(out, "engine: ours on each layout")
    assert layouts[0] == ["size", "plain", "rows", "tiled256", "rows/plain", "rows/tiled256"]
    assert [r[0] for r in layouts[1:]] == ["1'", "5'"]

    targets = _table(out, "targets")
    assert targets[0] == ["target", "goal", "measured", "result"]
    verdicts = {r[0]: r[-1] for r in targets[1:]}
    assert verdicts["engine rows: decompress / ours, 1'"] in ("PASS", "FAIL")
    assert verdicts["retiled: rows / tiled256 (ours), 1'"] in ("PASS", "FAIL")
    assert verdicts["sync: HTTP / engine, 0.5' plain"] == "not measured"


@pytest.mark.slow
@pytest.mark.redis
def test_quick_bulk_section_prints_each_layout_and_worker_count(tmp_path: Path, redis_url: str) -> None:
    done = subprocess.run([sys.executable, "bench/run.py", "--quick", "--only", "bulk", "--size", "2048",
                           "--workdir", str(tmp_path), "--redis", redis_url], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    bulk = _table(done.stdout, "bulk: 51-pixel stamps")
    assert bulk[0][:6] == ["layout", "workers", "rows", "cut", "parts", "stamps/s min/med/max"]
    assert [(r[0], r[1]) for r in bulk[1:]] == [(layout, workers) for layout in ("plain", "rows", "tiled256")
                                                for workers in ("1", "2")]
    for row in bulk[1:]:
        low, median, high = (float(v) for v in row[5].split(" / "))
        assert row[2] == "400" and 0 < int(row[3]) <= 400 and 0 < low <= median <= high and row[-1] == "-", row
        assert row[10].endswith("x")  # against one /sync per position
    verdicts = {r[0]: r[-1] for r in _table(done.stdout, "targets")[1:]}
    assert verdicts["bulk: stamps/s per worker, 1000s of positions on a tile (worst layout, median)"] in ("PASS", "FAIL")
    assert verdicts["bulk: 1 -> 2 workers scaling efficiency (worst layout, median of rounds)"] == "not measured"  # one part
    assert "1,000,000-row upload" not in done.stdout  # the full run's only
