"""A flood of /sync cutouts on `cutout serve` (shipped defaults: cutting processes) takes
every core but starves nothing else: job pages, WAIT and the front page keep answering,
and what the cutting pool cannot take is refused at once with a labelled 503."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from conftest import assert_uws, base_env, eventually, start_server, uws_text

pytestmark = [pytest.mark.slow]

# Three bands x three planes of a 0.05 degree circle: ~0.2 s of cutting each.
BIG = {"POS": "CIRCLE 24.9655 -44.9583 0.05"}


def _flood(base: str, stop: threading.Event, statuses: list[int], problems: list[str]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            r = client.get(base + "/sync", params=BIG)
            statuses.append(r.status_code)
            if r.status_code == 503:
                if not (r.text.startswith("ServiceUnavailable: ") and r.headers.get("retry-after")):
                    problems.append(r.text[:200])
            elif r.status_code != 200 or r.content[:6] != b"SIMPLE":
                problems.append(f"{r.status_code} {r.text[:200]}")


def test_a_sync_flood_leaves_jobs_and_pages_answering(tmp_path, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_CUTOUT_QUEUE="4")
    server, base = start_server(env, tmp_path / "server.log")
    try:
        stop = threading.Event()
        statuses: list[int] = []
        problems: list[str] = []
        slowest: dict[str, float] = {}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            floods = [pool.submit(_flood, base, stop, statuses, problems) for _ in range(16)]
            eventually(lambda: len(statuses) >= 8, timeout=60)
            r = httpx.post(base + "/selftest", data={"DURATION": "8", "PHASE": "RUN"}, timeout=10)
            assert r.status_code == 303, r.text
            job = r.headers["location"]
            end = time.monotonic() + 6
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < end:
                    for name, url, params in (("front page", base + "/", None),
                                              ("job list", base + "/selftest", None),
                                              ("job", job, None),
                                              ("availability", base + "/availability", None)):
                        t0 = time.monotonic()
                        answer = client.get(url, params=params)
                        assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
                        slowest[name] = max(slowest.get(name, 0.0), time.monotonic() - t0)
                    time.sleep(0.1)
                # A WAIT on the running job is woken by its end (in ~2 s), not starved.
                t0 = time.monotonic()
                waited = client.get(job, params={"WAIT": "20", "PHASE": "EXECUTING"})
                doc = assert_uws(waited.content)
                assert uws_text(doc, "uws:phase") == "COMPLETED", waited.text[:300]
                slowest["WAIT"] = time.monotonic() - t0
            stop.set()
            for f in floods:
                f.result(timeout=120)
        assert not problems, problems[:5]
        assert statuses.count(200) >= 8, statuses
        assert slowest["WAIT"] > 0.5, slowest  # it did wait for the job
        # Every other page answered within a second or two while the cores were cutting.
        assert max(v for k, v in slowest.items() if k != "WAIT") < 2.5, slowest
        assert slowest["WAIT"] < 8, slowest
    finally:
        server.stop()
