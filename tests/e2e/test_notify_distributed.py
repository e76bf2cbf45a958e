"""Job notices in the distributed shape: PostgreSQL, Redis, `cutout serve` and a separate
`cutout worker`. The first attempt of an e-mail (real SMTP server) and of a webhook (real
HTTP receiver) fails; the worker is then stopped before their retries are due, and the
retries, kept by Redis, are made by the next worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import SmtpSink, WebhookReceiver, base_env, eventually, start_server, start_worker

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

SECRET = "distributed-hook-key"
RETRY_SECONDS = 5.0


def test_retries_survive_a_worker_restart(tmp_path: Path, postgres_url: str, redis_url: str,
                                          demo_root: Path) -> None:
    smtp = SmtpSink(refuse=1)
    hook = WebhookReceiver(statuses=(503,))
    env = base_env(tmp_path / "data", demo_root, CUTOUT_DATABASE_URL=postgres_url, CUTOUT_BROKER_URL=redis_url,
                   CUTOUT_REDIS_NAMESPACE=f"cutout-test-{uuid.uuid4().hex[:8]}",
                   CUTOUT_NOTIFY_SMTP_HOST="127.0.0.1", CUTOUT_NOTIFY_SMTP_PORT=str(smtp.port),
                   CUTOUT_NOTIFY_SMTP_SECURITY="none", CUTOUT_NOTIFY_MAIL_FROM="jobs@cutouts.test",
                   CUTOUT_NOTIFY_WEBHOOK_SECRET=SECRET, CUTOUT_NOTIFY_ALLOW_HTTP="true",
                   CUTOUT_NOTIFY_ALLOW_PRIVATE_TARGETS="true", CUTOUT_NOTIFY_ANONYMOUS="all",
                   CUTOUT_NOTIFY_RETRY_DELAYS_SECONDS=str(RETRY_SECONDS), CUTOUT_NOTIFY_TIMEOUT_SECONDS="3")
    server, base = start_server(env, tmp_path / "server.log")
    worker = start_worker(env, tmp_path / "worker-1.log")
    try:
        r = httpx.post(base + "/selftest", data={"RESULTS": "1", "PHASE": "RUN", "NOTIFY": [
            "mailto:alice@example.org", hook.url + "/done"]}, timeout=10)
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        eventually(lambda: httpx.get(job + "/phase", timeout=5).text == "COMPLETED", timeout=20)
        eventually(lambda: smtp.attempts == 1 and len(hook.received) == 1, timeout=15)
        first = time.monotonic()
        worker.stop()  # graceful: the delayed retries go back to Redis
        time.sleep(max(0.0, RETRY_SECONDS + 1 - (time.monotonic() - first)))
        assert (smtp.attempts, len(hook.received), smtp.messages) == (1, 1, [])  # no worker, no attempt
        worker = start_worker(env, tmp_path / "worker-2.log")
        eventually(lambda: smtp.messages and len(hook.received) == 2, timeout=20)
        job_id = job.rsplit("/", 1)[1]
        assert f"Subject: Job {job_id} COMPLETED".encode() in smtp.messages[0][2]
        assert f"{base}/selftest/{job_id}".encode() in smtp.messages[0][2]
        _, headers, body, status = hook.received[1]
        assert status == 200 and json.loads(body)["url"] == f"{base}/selftest/{job_id}"
        assert headers["X-Cutout-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert "delivered to" in (tmp_path / "worker-2.log").read_text()
    finally:
        worker.stop()
        server.stop()
        smtp.close()
        hook.close()
