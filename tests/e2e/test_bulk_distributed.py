"""A bulk job of 10,000 positions in the distributed shape for real: PostgreSQL, Redis, a web
process and two `cutout worker` processes share its parts (one per field and 2000 rows);
one worker is SIGKILLed mid-job and the job still ends with every row cut once, the
progress in jobInfo only growing, each file the cut a single /sync request makes, and the
job's ZIP archive holding them all."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import time
import uuid
import zipfile

import httpx
import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_uws, base_env, eventually, start_server, start_worker
from uws.xml import PROGRESS_NS

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
CENTRES = ((24.96547, -44.95830), (0.01305, 2.15837))  # the two demo DES tiles
ROWS = 10_000


def positions() -> str:
    rng = np.random.default_rng(16)
    lines = ["ra,dec,id"]
    for n in range(ROWS):
        ra, dec = CENTRES[n % 2]
        dra, ddec = rng.uniform(-0.03, 0.03, 2)
        lines.append(f"{ra + dra / math.cos(math.radians(dec)):.6f},{dec + ddec:.6f},s{n}")
    return "\n".join(lines) + "\n"


def progress(url: str) -> dict[str, str]:
    doc = assert_uws(httpx.get(url, timeout=30).content)
    info = doc.find(f"{UWS}jobInfo")
    found = info.find(f"{{{PROGRESS_NS}}}progress") if info is not None else None
    return dict(found.attrib) if found is not None else {}


def test_ten_thousand_positions_on_two_workers_one_killed(tmp_path, postgres_url, redis_url, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_DATABASE_URL=postgres_url, CUTOUT_BROKER_URL=redis_url,
                   CUTOUT_REDIS_NAMESPACE=f"cutout-test-{uuid.uuid4().hex[:8]}",
                   CUTOUT_ANONYMOUS_BULK_MAX_ROWS=str(ROWS))
    server, base = start_server(env, tmp_path / "server.log")
    workers = []
    try:
        workers = [start_worker(env, tmp_path / f"worker-{n}.log", threads=1) for n in (1, 2)]
        r = httpx.post(base + "/bulk", data={"UPLOAD": "positions,param:positions", "FILTER": "r",
                                             "RADIUS": "0.001", "PHASE": "RUN"},
                       files={"positions": ("positions.csv", positions(), "text/csv")}, timeout=120)
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        seen: list[dict[str, str]] = []

        def at_least(parts: int) -> bool:
            seen.append(progress(job))
            return int(seen[-1].get("partsDone", 0)) >= parts

        eventually(lambda: at_least(1), timeout=120, interval=0.2)
        assert int(seen[-1]["partsDone"]) < int(seen[-1]["parts"]), "the job ended before a worker was killed"
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].popen.wait(timeout=10)

        def ended() -> bool:
            seen.append(progress(job))
            return httpx.get(job + "/phase", timeout=30).text in ("COMPLETED", "ERROR")

        eventually(ended, timeout=300, interval=0.5)
        assert httpx.get(job + "/phase", timeout=30).text == "COMPLETED"
        final = progress(job)
        assert final["total"] == str(ROWS) and final["done"] == str(ROWS) and final["failed"] == "0"
        done = [int(p["done"]) for p in seen if p]
        assert done == sorted(done), "progress went back"
        rows = list(csv.DictReader(io.StringIO(httpx.get(job + "/results/manifest.csv", timeout=60).text)))
        assert len(rows) == ROWS and {m["status"] for m in rows} == {"ok"}
        assert len({m["result"] for m in rows}) == ROWS
        # All of it as one archive: every row's file, each byte for byte the one listed.
        archive = zipfile.ZipFile(io.BytesIO(httpx.get(job + "/results.zip", timeout=300).content))
        names = set(archive.namelist())
        assert {m["result"] for m in rows} <= names and {"manifest.csv", "manifest.xml"} <= names
        for m in rows[:: ROWS // 10]:  # ten rows, each against a single /sync cutout
            mine = httpx.get(f"{job}/results/{m['result']}", timeout=30).content
            assert archive.read(m["result"]) == mine
            single = httpx.get(base + "/sync", params={"POS": f"CIRCLE {m['ra']} {m['dec']} 0.001", "FILTER": "r"},
                               timeout=30)
            assert single.status_code == 200, single.text
            with fits.open(io.BytesIO(mine)) as a, fits.open(io.BytesIO(single.content)) as b:
                assert [h.name for h in a] == [h.name for h in b]
                for x, y in zip(a[1:], b[1:], strict=True):
                    assert np.array_equal(x.data, y.data) and x.header["SRCBOX"] == y.header["SRCBOX"]
    finally:
        for w in workers:
            w.stop()
        server.stop()
