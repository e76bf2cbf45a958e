"""A server shutting down (SIGTERM) answers the WAIT requests it holds with the job
document at once, instead of cutting them off at its graceful timeout with a 500."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import httpx
import pytest

from conftest import assert_uws, base_env, eventually, start_server, uws_text

pytestmark = [pytest.mark.slow]


def test_sigterm_answers_waiters_with_the_job_document(tmp_path, demo_root):
    env = base_env(tmp_path / "data", demo_root, CUTOUT_WAIT_MAX_SECONDS="60")
    server, base = start_server(env, tmp_path / "server.log")
    try:
        r = httpx.post(base + "/selftest", data={"DURATION": "60", "PHASE": "RUN"}, timeout=10)
        assert r.status_code == 303, r.text
        url = r.headers["location"]
        eventually(lambda: httpx.get(url + "/phase", timeout=10).text == "EXECUTING")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiter = pool.submit(httpx.get, url, params={"WAIT": "60"}, timeout=30)
            time.sleep(1.0)  # the WAIT is in the server
            assert not waiter.done()
            t0 = time.monotonic()
            os.killpg(server.pid, signal.SIGTERM)
            answer = waiter.result(timeout=30)
            answered_in = time.monotonic() - t0
        assert answer.status_code == 200, (answer.status_code, answer.text[:500])
        assert uws_text(assert_uws(answer.content), "uws:phase") == "EXECUTING"
        # At once, not at the server's graceful-shutdown timeout (5 s).
        assert answered_in < 3, answered_in
        server.popen.wait(timeout=20)
    finally:
        server.stop()
