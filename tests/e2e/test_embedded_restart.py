"""The embedded shape (`cutout serve` alone): jobs queued or running when the process
died are sent again when it starts."""

from __future__ import annotations

import httpx

from conftest import base_env, eventually, free_port, start_server


def test_jobs_survive_a_killed_embedded_server(tmp_path, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_WORKER_THREADS="1")
    port = free_port()
    server, base = start_server(env, tmp_path / "server-1.log", port)
    try:
        running = httpx.post(base + "/selftest", data={"DURATION": "4", "PHASE": "RUN"}).headers["location"]
        eventually(lambda: httpx.get(running + "/phase").text == "EXECUTING")
        waiting = httpx.post(base + "/selftest", data={"PHASE": "RUN"}).headers["location"]
        assert httpx.get(waiting + "/phase").text == "QUEUED"  # the only worker thread is busy
    finally:
        server.kill()
    server, base = start_server(env, tmp_path / "server-2.log", port)
    try:
        for url in (running, waiting):
            eventually(lambda: httpx.get(url + "/phase").text == "COMPLETED", timeout=30)
            assert httpx.get(url + "/results/result-1.txt").status_code == 200
        assert "re-sent" in server.output()
    finally:
        server.stop()
