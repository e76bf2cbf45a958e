"""The performance bench of issue 15, one command: every figure against a baseline measured
in the same run (interleaved, repeated, median with min-max), then the issue's targets.

Sections (all by default; --only picks some):

  engine  cutouts of 1', 5' and 20' (0.263" pixels) at seeded random positions of a
          DES-like 3-HDU tile in three layouts (plain FITS, row-tiled RICE .fits.fz as DES
          ships, 256x256-tiled RICE), from the file to FITS bytes: ours
          (soda.engine.cutout.cut + soda.output.fits.fits_cutouts) against decompressing
          each whole HDU then slicing, astrocut (if installed) and a naive astropy body
          (open, Cutout2D, writeto); then ours on each layout, interleaved
  http    a real `cutout serve` (embedded shape) over the plain and row-tiled files and a
          naive Starlette + astropy server over the plain file: 0.5' sync latency against
          our engine time and the naive server; throughput with 1, 4 and 16 clients
  jobs    async POST -> COMPLETED of one-cutout jobs, and how long a blocked WAIT takes to
          answer once its job has ended; embedded, then (when --redis answers) with a Redis
          broker and one `cutout worker` process
  bulk    /bulk jobs of 51-pixel stamps all on the tile, each layout, 1 and 2 `cutout worker`s
          (Redis), against one /sync request per position; a 1,000,000-row upload accepted,
          planned and started (not with --quick); needs --redis (bench/bulk.py)
  memory  the server's resident memory idle, at its peak under the HTTP load, and settled
          after it; a fresh process cutting 2048x2048 pixels from the tile in each layout

Usage (from the repository root):

    .venv/bin/pip install astrocut    # optional: the astrocut column
    .venv/bin/python bench/run.py [--quick] [--only SECTION...] [--workdir DIR] [--size PIXELS]

The tile is made once per --size in --workdir (default /tmp/cutout-bench; about 1.5 GB at
the default 10000 px). --quick: fewer repetitions, shorter load windows, no 20' cutouts and
a 4096 px tile unless --size says otherwise: a smoke run in about two minutes, not figures
to quote. The client threads share the machine with the servers: on a small machine the
HTTP figures include their cost. Exit status 0 whatever the figures (it is a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import clients
import cutters
from bulk import TARGETS as BULK_TARGETS
from bulk import bulk_section
from report import Targets, print_table, ratio
from rss import memory, tree_rss
from servers import IDLE_SECONDS, ROOT, CutoutService, Proc, redis_answers, start_cutout_service, start_naive_service
from tiles import LAYOUTS, PIXEL_ARCSEC, Tile, ensure_tile
from timing import interleaved, loadavg

SECTIONS = ("engine", "http", "jobs", "bulk", "memory")
TARGETS = (  # (name, goal, unit), as the issue words them
    ("sync: HTTP / engine, 0.5' plain", "<= 1.3", "x"),
    ("sync: naive HTTP / ours, 0.5' plain", ">= 2", "x"),
    ("throughput: 16 / 1 clients, 0.5' plain", ">= 2", "x"),
    ("throughput: 16 / 1 clients, 0.5' rows", ">= 2", "x"),
    ("engine rows: decompress / ours, 1'", ">= 20", "x"),
    ("engine rows: decompress / ours, 5'", ">= 20", "x"),
    ("engine rows: astrocut / ours, 1'", ">= 1.5", "x"),
    ("engine rows: astrocut / ours, 5'", ">= 1.5", "x"),
    ("retiled: rows / tiled256 (ours), 1'", ">= 4", "x"),
    ("server RSS: settled - idle", "<= 50", "MB"),
    ("worker RSS: after its jobs - idle", "<= 50", "MB"),
    ("cut 2048^2 from the tile: peak RSS (worst layout)", "< 300", "MB"),
    *BULK_TARGETS,
)


@dataclass
class Bench:
    args: argparse.Namespace
    tile: Tile
    wcs: WCS
    targets: Targets = field(default_factory=Targets)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def positions(self, arcmin: float, count: int, stream: int) -> list[cutters.Position] | None:
        """``count`` seeded random positions whose cutout of ``arcmin`` lies inside the tile
        (None when it cannot); the same ``stream`` gives the same positions."""
        margin = arcmin * 60 / PIXEL_ARCSEC / 2 + 8
        if 2 * margin >= self.tile.side:
            return None
        rng = np.random.default_rng([self.args.seed, stream])
        xy = rng.uniform(margin, self.tile.side - margin, size=(count, 2))
        ra, dec = self.wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
        return [cutters.Position(float(r), float(d), arcmin) for r, d in zip(ra, dec, strict=True)]

    def reps(self, full: int, quick: int) -> int:
        return self.args.repeat or (quick if self.quick else full)


# --- engine ----------------------------------------------------------------------------------

def engine_section(b: Bench) -> None:
    sizes = (1.0, 5.0) if b.quick else (1.0, 5.0, 20.0)
    repeat = b.reps(9, 3)
    slow_repeat = max(2, repeat // 2)
    astrocut = cutters.have_astrocut()
    rows = []
    for layout in LAYOUTS:
        image = b.tile.image(layout)
        for n, arcmin in enumerate(sizes):
            positions = b.positions(arcmin, repeat + 1, n)
            if positions is None:
                rows.append((layout, f"{arcmin:g}'", "larger than the tile", *["-"] * 7))
                continue
            if n == 0 and not cutters.same_pixels(image, positions[-1]):  # the warm-up's position
                print(f"!! {layout}: ours and decompress-then-cut give different pixels")
            stats = interleaved(cutters.methods_at(image, positions, astrocut), repeat, slow_repeat)
            ours = stats["ours"].median
            box = round(arcmin * 60 / PIXEL_ARCSEC)
            against = {m: stats[m].median / ours if m in stats else None for m in cutters.METHODS[1:]}
            rows.append((layout, f"{arcmin:g}'", f"~{box}^2", *(stats[m].ms() if m in stats else "not installed"
                                                              for m in cutters.METHODS),
                         *(ratio(against[m]) for m in cutters.METHODS[1:])))
            if layout == "rows" and arcmin in (1.0, 5.0):
                b.targets.set(f"engine rows: decompress / ours, {arcmin:g}'", ">= 20", against["decompress"])
                b.targets.set(f"engine rows: astrocut / ours, {arcmin:g}'", ">= 1.5", against["astrocut"])
    print_table(f"engine: one cutout, file to FITS bytes, ms median (min-max); {b.tile.side}^2 px tile, "
                f"3 HDUs; {repeat} positions (slow methods: {slow_repeat})",
                ("layout", "size", "pixels", "ours", "decompress", "astrocut", "naive",
                 "decompress/ours", "astrocut/ours", "naive/ours"), rows,
                ("ratios > 1: ours is faster; methods interleaved round-robin, one untimed call each first",
                 "decompress: the box is found beforehand; on plain FITS .data is memory-mapped, so only "
                 "the box's pages are read (the memory-mapped slice)",
                 "naive: open + Cutout2D per HDU + writeto (what a straightforward service does)"))
    layouts_section(b, sizes, repeat)


def layouts_section(b: Bench, sizes: tuple[float, ...], repeat: int) -> None:
    """Ours on each layout at the same positions, interleaved: what the storage layout costs."""
    rows = []
    for n, arcmin in enumerate(sizes):
        positions = b.positions(arcmin, repeat + 1, 100 + n)
        if positions is None:
            continue
        images = {layout: b.tile.image(layout) for layout in LAYOUTS}
        stats = interleaved({layout: (lambda i, im=im: cutters.ours(im, positions[i]))
                             for layout, im in images.items()}, repeat)
        rows_over_square = stats["rows"].median / stats["tiled256"].median
        rows.append((f"{arcmin:g}'", *(stats[layout].ms() for layout in LAYOUTS),
                     ratio(stats["rows"].median / stats["plain"].median), ratio(rows_over_square)))
        if arcmin == 1.0:
            b.targets.set("retiled: rows / tiled256 (ours), 1'", ">= 4", rows_over_square)
    print_table(f"engine: ours on each layout, ms median (min-max); {repeat} positions",
                ("size", *LAYOUTS, "rows/plain", "rows/tiled256"), rows)


# --- http ------------------------------------------------------------------------------------

@dataclass
class Services:
    ours: CutoutService
    naive: Proc
    naive_base: str
    idle: int  # kB: the server's VmRSS with its fork server, before its first request
    tmp: Path  # for the logs and data of more servers
    loaded: bool = False


def _sync(service: CutoutService, layout: str, pos: cutters.Position) -> tuple[str, dict[str, str]]:
    c = pos.circle()
    return f"{service.base}/sync", {"ID": service.dataset_id(layout), "CIRCLE": f"{c.ra!r} {c.dec!r} {c.radius!r}"}


def _naive(base: str, pos: cutters.Position) -> tuple[str, dict[str, str]]:
    return f"{base}/cutout", {"RA": repr(pos.ra), "DEC": repr(pos.dec), "SIZE": repr(pos.arcmin)}


def http_section(b: Bench, s: Services) -> None:
    repeat = b.reps(45, 10)
    positions = b.positions(0.5, repeat + 1, 200)
    assert positions is not None
    with httpx.Client(timeout=60) as ours, httpx.Client(timeout=60) as naive:
        def get(client: httpx.Client, request: tuple[str, dict[str, str]]) -> bytes:
            return clients.fits_ok(client.get(request[0], params=request[1]))

        methods: dict[str, Callable[[int], object]] = {
            "plain http": lambda i: get(ours, _sync(s.ours, "plain", positions[i])),
            "plain engine": lambda i: cutters.ours(b.tile.image("plain"), positions[i]),
            "naive http": lambda i: get(naive, _naive(s.naive_base, positions[i])),
            "rows http": lambda i: get(ours, _sync(s.ours, "rows", positions[i])),
            "rows engine": lambda i: cutters.ours(b.tile.image("rows"), positions[i]),
        }
        stats = interleaved(methods, repeat)
    s.loaded = True
    plain_overhead = stats["plain http"].median / stats["plain engine"].median
    naive_over_ours = stats["naive http"].median / stats["plain http"].median
    rows = [("plain", stats["plain engine"].ms(), stats["plain http"].ms(), stats["naive http"].ms(),
             ratio(plain_overhead), ratio(naive_over_ours)),
            ("rows", stats["rows engine"].ms(), stats["rows http"].ms(), "-",
             ratio(stats["rows http"].median / stats["rows engine"].median), "-")]
    b.targets.set("sync: HTTP / engine, 0.5' plain", "<= 1.3", plain_overhead)
    b.targets.set("sync: naive HTTP / ours, 0.5' plain", ">= 2", naive_over_ours)
    print_table(f"http: one 0.5' sync cutout (SCI+MSK+WGT), ms median (min-max); {repeat} positions, "
                "one client, keep-alive",
                ("layout", "engine (in-process)", "ours HTTP", "naive HTTP", "HTTP/engine", "naive/ours"), rows,
                ("engine: the same cut + FITS bytes in the bench process; naive: Starlette + astropy, "
                 "open/Cutout2D/writeto per request, on the plain file",))
    throughput(b, s)


def throughput(b: Bench, s: Services) -> None:
    seconds = b.args.window or (2.0 if b.quick else 10.0)
    sizes = (0.5,) if b.quick else (0.5, 2.0)
    rows = []
    for n, arcmin in enumerate(sizes):
        pool = b.positions(arcmin, 1000, 300 + n)
        assert pool is not None

        def pick(rng: np.random.Generator, p: list[cutters.Position] = pool) -> cutters.Position:
            return p[int(rng.integers(len(p)))]

        servers: dict[str, clients.Request] = {
            "ours plain": lambda rng: _sync(s.ours, "plain", pick(rng)),
            "ours rows": lambda rng: _sync(s.ours, "rows", pick(rng)),
            "naive plain": lambda rng: _naive(s.naive_base, pick(rng)),
        }
        loads: dict[tuple[str, int], clients.Load] = {}
        for count in (1, 4, 16):
            for name, request in servers.items():  # each client count on every server in turn
                loads[name, count] = clients.closed_loop(request, count, seconds, b.args.seed + count)
        for name in servers:
            single = loads[name, 1].rate
            for count in (1, 4, 16):
                load = loads[name, count]
                naive = loads["naive plain", count].rate
                rows.append((f"{arcmin:g}'", name, count, f"{load.rate:.1f}", f"{load.median_ms:.1f}",
                             load.errors, ratio(load.rate / single if single else None),
                             ratio(load.rate / naive if naive and name != "naive plain" else None)))
            if arcmin == 0.5 and name != "naive plain":
                layout = name.split()[1]
                b.targets.set(f"throughput: 16 / 1 clients, 0.5' {layout}", ">= 2",
                              loads[name, 16].rate / single if single else None)
    print_table(f"http: throughput, closed loop, {seconds:g} s per row, cutouts/s",
                ("size", "server", "clients", "cutouts/s", "median ms", "errors", "vs 1 client", "vs naive"), rows,
                ("clients are threads of the bench process, on the same machine as the servers",))


# --- jobs ------------------------------------------------------------------------------------

def jobs_section(b: Bench, s: Services) -> None:
    rows = _job_rows(b, s.ours, "embedded")
    s.loaded = True
    redis = b.args.redis
    if redis and redis_answers(redis):
        distributed = start_cutout_service(b.tile, s.tmp / "distributed", broker_url=redis)
        try:
            worker = distributed.workers[0].popen.pid
            idle = memory(worker).rss
            rows += _job_rows(b, distributed, "redis + 1 worker")
            time.sleep(2.0)
            after, mb = memory(worker), 1024
            print_table("memory: the `cutout worker` process of these jobs, MB",
                        ("idle after start", "peak (VmHWM)", "after its jobs (2 s later)", "after - idle"),
                        [(f"{idle / mb:.0f}", f"{after.peak / mb:.0f}", f"{after.rss / mb:.0f}",
                          f"{(after.rss - idle) / mb:+.0f}")])
            b.targets.set("worker RSS: after its jobs - idle", "<= 50", (after.rss - idle) / mb, "MB")
        finally:
            distributed.stop()
    else:
        rows.append(("redis + 1 worker", "-", "skipped: " + (f"no Redis at {redis}" if redis else "--redis ''"),
                     *["-"] * 4))
    print_table("jobs: one-cutout async jobs, ms median (min-max)",
                ("shape", "job", "engine", "POST -> COMPLETED", "WAIT wake", "wakes seen", "not completed"), rows,
                ("embedded: SQLite, in-process workers; redis: the same SQLite, Redis broker and "
                 "notifications, one `cutout worker` process",
                 "POST -> COMPLETED: POST /async PHASE=RUN, then GET ?WAIT=30 until a final phase",
                 "WAIT wake: from the job's endTime to the answer of the WAIT blocked when it ended "
                 "(counted only when the WAIT was sent before endTime)"))


def _job_rows(b: Bench, service: CutoutService, shape: str) -> list[tuple[object, ...]]:
    count = b.reps(10, 3)
    rows: list[tuple[object, ...]] = []
    with httpx.Client(timeout=60) as client:
        for layout, arcmin in (("plain", 0.5), ("rows", 5.0)):
            positions = b.positions(arcmin, count + 1, 400 + int(arcmin))
            if positions is None:
                continue
            image = b.tile.image(layout)
            engine = interleaved({"engine": lambda i, im=image, p=positions: cutters.ours(im, p[i])}, count)
            runs = [clients.run_job(client, service.base, _sync(service, layout, pos)[1])
                    for pos in positions[:count]]
            totals = [r.total for r in runs if r.phase == "COMPLETED"]
            wakes = [r.wake for r in runs if r.wake is not None]
            failed = [r.phase for r in runs if r.phase != "COMPLETED"]
            rows.append((shape, f"{layout} {arcmin:g}'", engine["engine"].ms(), _ms(totals), _ms(wakes),
                         f"{len(wakes)}/{len(runs)}", ", ".join(failed) or "-"))
    return rows


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.median(values) * 1e3:.1f} ({min(values) * 1e3:.1f}-{max(values) * 1e3:.1f})"


# --- memory ----------------------------------------------------------------------------------

def memory_section(b: Bench, s: Services) -> None:
    if not s.loaded:  # the HTTP section did not run: some load of our own
        seconds = 2.0 if b.quick else 10.0
        pool = b.positions(2.0, 200, 500) or b.positions(0.5, 200, 500)
        assert pool is not None
        for layout in ("plain", "rows"):
            clients.closed_loop(lambda rng, lay=layout: _sync(s.ours, lay, pool[int(rng.integers(len(pool)))]),
                                16, seconds, b.args.seed)
    loaded = memory(s.ours.proc.pid)
    loaded_children = tree_rss(s.ours.proc.pid)
    settle = IDLE_SECONDS + (5.0 if b.quick else 15.0)
    time.sleep(settle)
    settled = memory(s.ours.proc.pid)
    settled_children = tree_rss(s.ours.proc.pid)
    mb = 1024
    print_table("memory: `cutout serve` (embedded: its job workers are threads of it), MB",
                ("idle after start", "after load", "web process peak (VmHWM)", f"settled ({settle:g} s later)",
                 "settled - idle", "cutting processes: after load", "settled"),
                [(f"{s.idle / mb:.0f}", f"{(loaded.rss + loaded_children) / mb:.0f}", f"{loaded.peak / mb:.0f}",
                  f"{(settled.rss + settled_children) / mb:.0f}",
                  f"{(settled.rss + settled_children - s.idle) / mb:+.0f}",
                  f"{loaded_children / mb:.0f}", f"{settled_children / mb:.0f}")],
                (f"RSS of the web process with its children (the fork server, started with it, and the "
                 f"cutting processes, summed: pages they share counted in each); the cutting processes "
                 f"end after cutout_idle_seconds without a cut (set to {IDLE_SECONDS} s here; shipped: 120 s)",))
    b.targets.set("server RSS: settled - idle", "<= 50",
                  (settled.rss + settled_children - s.idle) / mb, "MB")
    probe(b)


def probe(b: Bench) -> None:
    pixels = min(2048, b.tile.side // 2)
    ra, dec = b.wcs.pixel_to_world_values(b.tile.side / 2, b.tile.side / 2)
    rows, worst = [], None
    for layout in LAYOUTS:
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("memory_probe.py")),
                               str(b.tile.paths[layout]), repr(float(ra)), repr(float(dec)), str(pixels)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            rows.append((layout, "failed", done.stderr.strip()[-200:], "-", "-"))
            continue
        kb = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((layout, f"{kb['idle'] / 1024:.0f}", f"{kb['peak'] / 1024:.0f}",
                     f"{(kb['peak'] - kb['idle']) / 1024:.0f}", f"{kb['after'] / 1024:.0f}"))
        worst = max(worst or 0, kb["peak"] / 1024)
    print_table(f"memory: a fresh process cutting ~{pixels}^2 px (3 HDUs) from the {b.tile.side}^2 tile "
                "and writing its FITS bytes, MB",
                ("layout", "idle (imports done)", "peak (VmHWM)", "peak - idle", "after"), rows,
                ("VmHWM counts the file pages a memory-mapped read touches as well as the process's own memory",))
    if pixels == 2048:
        b.targets.set("cut 2048^2 from the tile: peak RSS (worst layout)", "< 300", worst, "MB")


# --- main ------------------------------------------------------------------------------------

@contextlib.contextmanager
def services(b: Bench) -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="cutout-bench-") as tmp:
        ours = start_cutout_service(b.tile, Path(tmp))
        naive: Proc | None = None
        try:
            time.sleep(3.0)  # the fork server of the cutting processes starts with the web process
            idle = memory(ours.proc.pid).rss + tree_rss(ours.proc.pid)
            naive, naive_base = start_naive_service(b.tile.paths["plain"], Path(tmp))
            print(f"servers up: cutout serve pid {ours.proc.pid} at {ours.base}, naive pid {naive.pid}")
            yield Services(ours, naive, naive_base, idle, Path(tmp))
        finally:
            if naive is not None:
                naive.stop()
            ours.stop()


def _versions() -> str:
    import astropy

    found = [f"python {platform.python_version()}", f"numpy {np.__version__}", f"astropy {astropy.__version__}"]
    with contextlib.suppress(ImportError):
        import astrocut

        found.append(f"astrocut {astrocut.__version__}")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        found.append(f"commit {head or '?'}")
    return ", ".join(found)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer repetitions, smaller sizes")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--workdir", default="/tmp/cutout-bench", help="where the tile is made once and kept")
    parser.add_argument("--size", type=int, help="side of the tile in pixels (10000; --quick: 4096)")
    parser.add_argument("--repeat", type=int, help="positions per timed row (engine 9, sync 45, jobs 10)")
    parser.add_argument("--window", type=float, help="seconds per throughput row (10; --quick: 2)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                        help="Redis for the jobs section's distributed shape and the bulk section ('' to skip them)")
    args = parser.parse_args(argv)
    args.size = args.size or (4096 if args.quick else 10000)
    if args.size < 512:
        parser.error("--size must be at least 512")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # tables as they come
    warnings.simplefilter("ignore", FITSFixedWarning)
    chosen = [s for s in SECTIONS if not args.only or s in args.only]
    started = time.perf_counter()
    print(f"bench/run.py {'--quick ' if args.quick else ''}sections: {' '.join(chosen)}; "
          f"load average at start: {loadavg()}")
    print(_versions())
    tile = ensure_tile(Path(args.workdir), args.size)
    b = Bench(args, tile, WCS(fits.getheader(tile.paths["plain"], "SCI"), naxis=2))
    print(f"tile: {args.size}^2 px, SCI+MSK+WGT; " + ", ".join(
        f"{layout} {tile.paths[layout].stat().st_size / 2**20:.0f} MB" for layout in LAYOUTS))
    if "engine" in chosen:
        engine_section(b)
    if "bulk" in chosen:
        with tempfile.TemporaryDirectory(prefix="cutout-bench-bulk-") as tmp:
            bulk_section(tile, b.wcs, Path(tmp), args.redis, b.quick, args.seed, b.targets)
    if any(s in chosen for s in ("http", "jobs", "memory")):
        with services(b) as s:
            if "http" in chosen:
                http_section(b, s)
            if "jobs" in chosen:
                jobs_section(b, s)
            if "memory" in chosen:
                memory_section(b, s)
    b.targets.print(TARGETS, () if args.size == 10000 else (
        f"measured on a {args.size}^2 tile: the targets are set for the 10000^2 one",))
    print(f"\nload average at end: {loadavg()}; {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
