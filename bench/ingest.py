"""Ingest and position lookups of the image index, on SQLite and PostgreSQL.

Writes N small FITS images (64 x 64, TAN, 3"/px, random centres and rotations over a
10 x 10 degree field) into a temporary folder, ingests them (files/s), ingests them again
(nothing changed: files/s), then times ``IndexCatalogue.at`` (a connection per lookup, as
the service makes them) at 1,000 positions inside an image (hits) and 1,000 random
positions of the field that no image holds (misses): median and p95 in microseconds.

Usage:  .venv/bin/python bench/ingest.py [--images 10000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
The PostgreSQL run makes a database of its own on that server and drops it afterwards;
--postgres "" skips it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from soda.index.catalogue import IndexCatalogue
from soda.index.ingest import ingest
from soda.index.tables import MIGRATIONS
from soda.ops.database import close_database, migrate, open_database
from soda.surveys.generic import GenericSurvey

SIZE, SCALE = 64, 3.0  # pixels, arcsec per pixel
FIELD = (150.0, 160.0, 0.0, 10.0)  # RA and Dec limits of the centres, degrees
LOOKUPS = 1000


def write_images(folder: Path, count: int, rng: np.random.Generator) -> list[WCS]:
    data = np.zeros((SIZE, SIZE), dtype=np.int16)
    found = []
    for i in range(count):
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [rng.uniform(*FIELD[:2]), rng.uniform(*FIELD[2:])]
        wcs.wcs.crpix = [(SIZE + 1) / 2] * 2
        s, t = SCALE / 3600, rng.uniform(0, 2 * math.pi)
        wcs.wcs.cd = [[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]]
        header = wcs.to_header()
        header["FILTER"] = "gri"[i % 3]
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        fits.PrimaryHDU(data, header=header).writeto(sub / f"img{i:05d}.fits")
        found.append(wcs)
    return found


def positions(wcses: list[WCS], rng: np.random.Generator) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    hits = []
    for k in rng.choice(len(wcses), LOOKUPS):
        x, y = rng.uniform(0, SIZE - 1, 2)
        ra, dec = wcses[k].pixel_to_world_values(x, y)
        hits.append((float(ra), float(dec)))
    return hits, [(float(rng.uniform(*FIELD[:2])), float(rng.uniform(*FIELD[2:]))) for _ in range(LOOKUPS)]


def timed(catalogue: IndexCatalogue, where: list[tuple[float, float]]) -> tuple[float, float, int]:
    took, found = [], 0
    for ra, dec in where:
        t0 = time.perf_counter_ns()
        found += bool(catalogue.at("bench", ra, dec))
        took.append((time.perf_counter_ns() - t0) / 1000)
    took.sort()
    return statistics.median(took), took[int(0.95 * len(took)) - 1], found


@contextmanager
def postgres(url: str) -> Iterator[str]:
    import psycopg2

    admin = psycopg2.connect(url, connect_timeout=5)
    admin.autocommit = True
    name = f"cutout_bench_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def run(label: str, url: str, folder: Path, count: int, hits: list, misses: list) -> list[str]:
    db = open_database(url)
    try:
        migrate(db, [("images", MIGRATIONS)])
        first = ingest(db, "bench", GenericSurvey, [folder])
        assert first.images == count and not first.bad, first.summary()
        again = ingest(db, "bench", GenericSurvey, [folder])
        assert again.unchanged == count, again.summary()
        catalogue = IndexCatalogue(db)
        hit_median, hit_p95, held = timed(catalogue, hits)
        miss_median, miss_p95, _ = timed(catalogue, misses)
        assert held == len(hits), f"{held} of {len(hits)} positions inside an image found it"
    finally:
        close_database(db)
    return [label, f"{count / first.seconds:,.0f}", f"{count / again.seconds:,.0f}",
            f"{hit_median:,.0f}", f"{hit_p95:,.0f}", f"{miss_median:,.0f}", f"{miss_p95:,.0f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="cutout-bench-ingest-"))
    try:
        folder = work / "images"
        folder.mkdir()
        t0 = time.perf_counter()
        wcses = write_images(folder, args.images, rng)
        print(f"{args.images} images of {SIZE}x{SIZE} written in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()[0]:.2f} before")
        hits, misses = positions(wcses, rng)
        rows = [run("SQLite", f"sqlite:///{work / 'index.sqlite'}", folder, args.images, hits, misses)]
        if args.postgres:
            with postgres(args.postgres) as url:
                rows.append(run("PostgreSQL", url, folder, args.images, hits, misses))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ["database", "ingest files/s", "re-run files/s", "hit med us", "hit p95 us",
            "miss med us", "miss p95 us"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for line in (head, *rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min) on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
