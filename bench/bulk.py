"""The bulk section of bench/run.py (issue 16): 51-pixel stamps per second from one `/bulk`
job of positions that all lie on the bench tile, with 1 and 2 `cutout worker` processes
(Redis broker, one thread each), on each layout, against the per-position path of today in
the same run (the same positions, one /sync request each from one client); then a
1,000,000-row upload accepted, planned and started (full run only), with its times and the
peak memory of the web process and the worker.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from astropy.wcs import WCS

import clients
import cutters
from report import Targets, print_table, ratio
from rss import children, memory
from servers import CutoutService, redis_answers, start_cutout_service
from tiles import LAYOUTS, PIXEL_ARCSEC, Tile

STAMP = 51                                   # pixels on a side
RADIUS = STAMP / 2 * PIXEL_ARCSEC / 3600     # degrees: 25.5 px
PART_ROWS = 2000                             # soda/jobs/bulk.py: rows of one part at most
MILLION = 1_000_000
_UWS = re.compile(rb"<uws:(phase|startTime|endTime)>\s*([^<\s]+)\s*</uws:\1>")
_PROGRESS = re.compile(rb"<progress\b[^>]*>")
_ATTR = re.compile(rb'(\w+)="([^"]*)"')
TARGETS = (
    ("bulk: stamps/s per worker, 1000s of positions on a tile (worst layout, median)", ">= 500", "/s"),
    ("bulk: 1 -> 2 workers scaling efficiency (worst layout, median of rounds)", ">= 0.8", "x"),
)


@dataclass(frozen=True)
class BulkRun:
    total: float          # s: POST to the answer showing COMPLETED (or another final phase)
    own: float | None     # s: the job's startTime -> endTime
    phase: str
    parts: int
    done: int
    failed: int
    unserved: str         # the first row no part cuts and why (manifest-unserved.csv), if any


def positions_csv(wcs: WCS, side: int, count: int, seed: int) -> str:
    """``count`` seeded positions whose 51-pixel stamp lies inside the tile, as CSV."""
    rng = np.random.default_rng([seed, count])
    margin = STAMP / 2 + 8
    xy = rng.uniform(margin, side - margin, size=(count, 2))
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    return "ra,dec,id\n" + "".join(f"{r:.7f},{d:.7f},s{n}\n" for n, (r, d) in enumerate(zip(ra, dec, strict=True)))


def _uws(doc: bytes) -> dict[str, str]:
    return {m[1].decode(): m[2].decode() for m in _UWS.finditer(doc)}


def _progress(doc: bytes) -> dict[str, str]:
    found = _PROGRESS.search(doc)
    return {k.decode(): v.decode() for k, v in _ATTR.findall(found[0])} if found else {}


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def submit(client: httpx.Client, base: str, table: str, run: bool = True) -> tuple[str, float]:
    """POST /bulk with the table inline (DALI UPLOAD); the job's URL and the POST's seconds."""
    data = {"UPLOAD": "positions,param:positions", "RADIUS": repr(RADIUS)} | ({"PHASE": "RUN"} if run else {})
    t0 = time.perf_counter()
    r = client.post(f"{base}/bulk", data=data, files={"positions": ("positions.csv", table, "text/csv")})
    took = time.perf_counter() - t0
    if r.status_code != 303:
        raise RuntimeError(f"POST /bulk: {r.status_code} {r.text[:300]}")
    return str(httpx.URL(base).join(r.headers["location"])), took


def run_bulk(client: httpx.Client, base: str, table: str) -> BulkRun:
    """A bulk job from its POST to its end, followed with WAIT (UWS 1.1 §2.2.1.2)."""
    t0 = time.perf_counter()
    job, _ = submit(client, base, table)
    while True:
        doc = client.get(job, params={"WAIT": "30"}).content
        found = _uws(doc)
        if found.get("phase") in clients.FINAL or "phase" not in found:
            break
    total = time.perf_counter() - t0
    own = (_epoch(found["endTime"]) - _epoch(found["startTime"])
           if "startTime" in found and "endTime" in found else None)
    p = _progress(doc)
    unserved = client.get(f"{job}/results/manifest-unserved.csv").text.splitlines()[1:2]
    client.delete(job)  # its files: the next jobs should not share the disk cache with them
    return BulkRun(total, own, found.get("phase", "?"), int(p.get("parts", 0)), int(p.get("done", 0)),
                   int(p.get("failed", 0)), unserved[0] if unserved else "")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live children so far, from /proc."""
    total = 0
    for p in (pid, *children(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / os.sysconf("SC_CLK_TCK")


def per_position(client: httpx.Client, service: CutoutService, layout: str,
                 positions: list[cutters.Position]) -> float:
    """Stamps/s of today's path: one /sync request per position, one client, keep-alive."""
    t0 = time.perf_counter()
    for pos in positions:
        c = pos.circle()
        clients.fits_ok(client.get(f"{service.base}/sync", params={
            "ID": service.dataset_id(layout), "CIRCLE": f"{c.ra!r} {c.dec!r} {RADIUS!r}"}))
    return len(positions) / (time.perf_counter() - t0)


def _rate(run: BulkRun) -> tuple[float, float | None]:
    """Stamps (rows cut) per second: from the POST, and in the job's own times."""
    return run.done / run.total, (run.done / run.own if run.own else None)


def _spread(values: list[float]) -> str:
    """min / median / max."""
    return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"


def throughput_section(tile: Tile, wcs: WCS, tmp: Path, redis: str, quick: bool, seed: int,
                       targets: Targets) -> None:
    """Per layout, rounds of: the job with one worker, a second worker started, the job
    with two, the second stopped, the per-position path; so a change in the machine's
    load meets both worker counts alike. Rates: the rounds' median; scaling: the median of
    each round's own (its two jobs ran a few seconds apart)."""
    rows_per_job = 400 if quick else 2 * PART_ROWS  # full: two parts, so two workers can share the job
    singles = 50 if quick else 300
    rounds = 1 if quick else 5
    table = positions_csv(wcs, tile.side, rows_per_job, seed)
    arcmin = STAMP * PIXEL_ARCSEC / 60
    sync_positions = [cutters.Position(float(ra), float(dec), arcmin)
                      for ra, dec, _ in (line.split(",") for line in table.splitlines()[1:singles + 1])]
    out, worst_rate, worst_eff = [], None, None
    notes: set[str] = set()
    for layout in LAYOUTS:
        service = start_cutout_service(tile, tmp / f"bulk-{layout}", broker_url=redis, layouts=(layout,),
                                       worker_threads=1, anonymous_bulk_max_rows=str(2 * PART_ROWS))
        try:
            with httpx.Client(timeout=600) as client:
                run_bulk(client, service.base, positions_csv(wcs, tile.side, 50, seed + 1))  # warm-up
                per_position(client, service, layout, sync_positions[:10])  # warm-up
                runs: dict[int, list[BulkRun]] = {1: [], 2: []}
                cpu: dict[int, list[str]] = {1: [], 2: []}
                per_pos: list[float] = []
                for _ in range(rounds):
                    for workers in (1, 2):
                        if workers == 2:
                            service.add_worker(threads=1)
                            run_bulk(client, service.base, positions_csv(wcs, tile.side, 50, seed + 2))  # its warm-up
                        before = [cpu_seconds(w.pid) for w in service.workers]
                        runs[workers].append(run_bulk(client, service.base, table))
                        cpu[workers].append("+".join(f"{cpu_seconds(w.pid) - b:.0f}"
                                                     for w, b in zip(service.workers, before, strict=True)))
                        if workers == 2:
                            service.remove_worker()
                    per_pos.append(per_position(client, service, layout, sync_positions))
                medians: dict[int, float] = {}
                for workers in (1, 2):
                    done = runs[workers]
                    rates = [_rate(r)[0] for r in done]
                    own = [r for r in (_rate(r)[1] for r in done) if r]
                    medians[workers] = statistics.median(rates)
                    bad = [f"{r.phase} {r.done} cut, {r.failed} failed" for r in done if r.phase != "COMPLETED"]
                    notes |= {f"{layout}: rows no part cuts (first: row,id,ra,dec,radius,status,result,error): "
                              f"{r.unserved}" for r in done if r.unserved}
                    parted = all(r.parts >= 2 for r in runs[2])
                    per_round = [_rate(two)[0] / (2 * _rate(one)[0]) for one, two in zip(runs[1], runs[2], strict=True)]
                    eff = statistics.median(per_round) if workers == 2 and parted else None
                    sync = statistics.median(per_pos)
                    out.append((layout, workers, rows_per_job, done[-1].done, done[-1].parts, _spread(rates),
                                _spread(own) if own else "-", f"{medians[workers] / workers:.0f}",
                                " ".join(cpu[workers]), f"{sync:.0f}", ratio(medians[workers] / sync),
                                f"{ratio(min(per_round))} / {ratio(eff)} / {ratio(max(per_round))}" if eff else "-",
                                "; ".join(bad) or "-"))
                    if workers == 1:
                        worst_rate = medians[1] if worst_rate is None else min(worst_rate, medians[1])
                    elif eff is not None:
                        worst_eff = eff if worst_eff is None else min(worst_eff, eff)
        finally:
            service.stop()
    print_table(f"bulk: {STAMP}-pixel stamps (SCI+MSK+WGT, one FITS file each) per second, {rows_per_job} "
                f"positions on the one {tile.side}^2 tile, Redis broker, workers of 1 thread; {rounds} rounds",
                ("layout", "workers", "rows", "cut", "parts", "stamps/s min/med/max", "startTime->endTime",
                 "per worker (med)", "worker CPU s per round", "per-position /sync (med)", "vs per-position",
                 "scaling rate2/(2 rate1) per round min/med/max", "not ok"), out,
                ("stamps/s: rows cut / (POST -> COMPLETED); startTime->endTime: the job's own times in its UWS "
                 "document, rows cut / that; worker CPU s: each worker's CPU time (user + system, with its "
                 "children) during that job",
                 f"each round: the job with 1 worker, a 2nd worker started (and warmed up by a 50-row job), the job "
                 f"with 2, the 2nd stopped, then the per-position path: the first {singles} of the same positions, "
                 "one /sync request each from one client, keep-alive",
                 f"a part is at most {PART_ROWS} rows of one field: a job of {rows_per_job} rows on one tile is "
                 f"{-(-rows_per_job // PART_ROWS)} part(s), so at most that many workers share it "
                 "(scaling: '-' with one part)",
                 "the machine's cores are shared by the web process, the workers, the bench client "
                 "(and anything else running)", *sorted(notes)))
    targets.set(TARGETS[0][0], TARGETS[0][1], worst_rate, "/s")
    targets.set(TARGETS[1][0], TARGETS[1][1], worst_eff)


def _poll(fn: Callable[[], bool], timeout: float, watch: Callable[[], None]) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        watch()
        if fn():
            return time.perf_counter() - t0
        time.sleep(0.5)
    return None


def million_section(tile: Tile, wcs: WCS, tmp: Path, redis: str, seed: int, timeout: float = 480) -> None:
    """A 1,000,000-row table: POST answered, parts planned (jobInfo parts > 0), the job
    EXECUTING; then aborted and deleted (no million stamps are cut)."""
    table = positions_csv(wcs, tile.side, MILLION, seed + 3)
    size = len(table.encode())
    service = start_cutout_service(tile, tmp / "bulk-million", broker_url=redis, layouts=("plain",),
                                   worker_threads=1, bulk_max_rows=str(MILLION),
                                   anonymous_bulk_max_rows=str(MILLION), anonymous_bulk_max_pixels="0",
                                   max_upload_bytes=str(4 * size))
    web, worker = service.proc.pid, service.workers[0].pid
    idle = {"web": memory(web).rss, "worker": memory(worker).rss}
    peak = dict.fromkeys(idle, 0)

    def watch() -> None:  # VmHWM is the peak; VmRSS sampled too, should VmHWM not be there
        for name, pid in (("web", web), ("worker", worker)):
            m = memory(pid)
            peak[name] = max(peak[name], m.peak, m.rss)

    steps: list[tuple[str, str]] = []
    job = ""
    try:
        with httpx.Client(timeout=timeout) as client:
            job, posted = submit(client, service.base, table)
            watch()
            steps.append(("POST /bulk answered 303 (table read and checked)", f"{posted:.1f}"))
            state: dict[str, str] = {}

            def planned() -> bool:
                doc = client.get(job).content
                state.update(_uws(doc) | _progress(doc))
                return int(state.get("parts", 0)) > 0 or state.get("phase") in clients.FINAL

            took = _poll(planned, timeout, watch)
            steps.append(("parts planned (jobInfo parts > 0), after the POST",
                          f"{took:.1f}" if took is not None else f"not within {timeout:g}"))
            steps.append(("phase then; parts; rows total", f"{state.get('phase', '?')}; {state.get('parts', '-')}; "
                                                          f"{state.get('total', '-')}"))
            if took is not None:
                unserved = client.get(f"{job}/results/manifest-unserved.csv").text.splitlines()[1:]
                steps.append(("rows no part cuts (manifest-unserved.csv)",
                              f"{len(unserved):,}" + (f"; first: {unserved[0]}" if unserved else "")))
            started = None
            if took is not None:
                started = _poll(lambda: planned() and int(state.get("done", 0)) > 0, 60, watch)
            steps.append(("first rows cut (jobInfo done > 0), after planning",
                          f"{started:.1f}" if started is not None else "-"))
            client.post(f"{job}/phase", data={"PHASE": "ABORT"})
            client.delete(job)
    finally:
        service.stop()
    mb = 1024
    print_table(f"bulk: a {MILLION:,}-row upload ({size / 2**20:.0f} MB CSV, positions over the "
                f"{tile.side}^2 tile, plain layout), one worker of 1 thread; then aborted and deleted",
                ("step", "seconds (or state)"), steps,
                (f"peak memory (VmHWM), MB: web process {peak['web'] / mb:.0f} (idle {idle['web'] / mb:.0f}), "
                 f"worker {peak['worker'] / mb:.0f} (idle {idle['worker'] / mb:.0f})",))


def bulk_section(tile: Tile, wcs: WCS, tmp: Path, redis: str, quick: bool, seed: int, targets: Targets) -> None:
    if not redis or not redis_answers(redis):
        print("\n== bulk: skipped (no Redis answers at --redis: the bulk jobs' workers share them through it)")
        return
    throughput_section(tile, wcs, tmp, redis, quick, seed, targets)
    if not quick:
        million_section(tile, wcs, tmp, redis, seed)
