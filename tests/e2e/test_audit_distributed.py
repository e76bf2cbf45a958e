"""The audit in the distributed shape for real: PostgreSQL, Redis, a `cutout serve` and a
`cutout worker` process. The worker's parts and the web process's /sync answers each write
their own records (a thread of each process), and /stats.json counts them."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pytest

from conftest import base_env, eventually, start_server, start_worker
from dali.timestamps import utcnow
from soda.audit.tables import AuditTables
from soda.ops.database import close_database, open_database

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

CENTRES = ((24.96547, -44.95830), (0.01305, 2.15837))  # the two demo DES tiles


def test_records_of_a_worker_and_a_web_process(tmp_path, postgres_url, redis_url, demo_root) -> None:  # type: ignore[no-untyped-def]
    env = base_env(tmp_path / "data", demo_root, CUTOUT_DATABASE_URL=postgres_url, CUTOUT_BROKER_URL=redis_url,
                   CUTOUT_REDIS_NAMESPACE=f"cutout-test-{uuid.uuid4().hex[:8]}")
    server, base = start_server(env, tmp_path / "server.log")
    worker = None
    db = open_database(postgres_url)
    table = AuditTables(db).Served
    try:
        worker = start_worker(env, tmp_path / "worker.log", threads=1)
        lines = ["ra,dec"] + [f"{ra + k * 0.002:.5f},{dec:.5f}" for ra, dec in CENTRES for k in range(15)]
        r = httpx.post(base + "/bulk", data={"UPLOAD": "positions,param:positions", "FILTER": "r",
                                             "RADIUS": "0.001", "PHASE": "RUN"},
                       files={"positions": ("positions.csv", "\n".join(lines) + "\n", "text/csv")}, timeout=60)
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        eventually(lambda: httpx.get(job + "/phase", timeout=30).text in ("COMPLETED", "ERROR"), timeout=180,
                   interval=0.3)
        assert httpx.get(job + "/phase", timeout=30).text == "COMPLETED"
        manifest = list(csv.DictReader(io.StringIO(httpx.get(job + "/results/manifest.csv", timeout=30).text)))
        assert sum(m["status"] == "ok" for m in manifest) == 30
        job_id = job.rsplit("/", 1)[1]

        def parts() -> list[tuple[str, str, int]]:
            with db.connection_context():
                return sorted((r.kind, r.survey, r.cutouts) for r in table.select().where(table.job_id == job_id))
        # Written by the worker's own thread within about a second of each part.
        assert eventually(lambda: len(parts()) == 2 and parts(), timeout=20) == [("bulk", "des", 15)] * 2

        client = f"198.51.100.{uuid.uuid4().int % 200 + 1}"  # as nginx (a trusted proxy here) forwards it
        started = utcnow()
        answer = httpx.get(base + "/sync", params={"POS": f"CIRCLE {CENTRES[0][0]} {CENTRES[0][1]} 0.002",
                                                   "FILTER": "g"}, headers={"X-Forwarded-For": client}, timeout=30)
        assert answer.status_code == 200

        def synced() -> list[tuple[str, str, int]]:
            with db.connection_context():
                return [(r.user_id, r.bytes, r.status) for r in table.select().where(
                    (table.kind == "sync") & (table.at >= started) & (table.client == client))]
        assert eventually(synced, timeout=20) == [("anonymous", len(answer.content), 200)]

        stats = httpx.get(base + "/stats.json", params={"days": "1"}, timeout=30)
        assert stats.status_code == 200, stats.text  # this host is an operator by default
        kinds = {k["kind"]: k["cutouts"] for k in stats.json()["by_kind"]}
        assert kinds["bulk"] >= 30 and kinds["sync"] >= 1 and stats.json()["latency_ms"]["count"] >= 1
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        close_database(db)
