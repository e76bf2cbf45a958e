"""NOTIFY against the embedded app (stub broker, worker threads in process): a real SMTP
server and a real HTTP receiver on loopback, each failing the first attempt; the checks
at creation (labelled 400s), the check again at delivery, and jobs that end the same
whatever their notices do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SmtpSink, WebhookReceiver, app_client, assert_uws, eventually, free_port, header_identity, uws_text
from dali.timestamps import utcnow

SECRET = "test-webhook-key"
LIST = "http://testserver/selftest"
ALICE = {"X-Test-User": "alice"}


def notify_env(**extra: str) -> dict[str, str]:
    """Notices on, to loopback targets (which only tests and private services allow)."""
    return {"CUTOUT_NOTIFY_WEBHOOK_SECRET": SECRET, "CUTOUT_NOTIFY_ALLOW_HTTP": "true",
            "CUTOUT_NOTIFY_ALLOW_PRIVATE_TARGETS": "true", "CUTOUT_NOTIFY_RETRY_DELAYS_SECONDS": "0.3",
            "CUTOUT_NOTIFY_MAX_ATTEMPTS": "3", "CUTOUT_NOTIFY_TIMEOUT_SECONDS": "2",
            "CUTOUT_NOTIFY_SMTP_SECURITY": "none", "CUTOUT_NOTIFY_MAIL_FROM": "jobs@cutouts.test",
            "CUTOUT_WORKER_POLL_MS": "20", **extra}


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink(refuse=1)
    yield sink
    sink.close()


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses=(500,))
    yield receiver
    receiver.close()


def create(client, *pairs: tuple[str, str], headers=ALICE):  # type: ignore[no-untyped-def]
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return client.post(LIST, data=form, headers=headers)


def finished(client, job_url: str, timeout: float = 10) -> str:  # type: ignore[no-untyped-def]
    doc = assert_uws(client.get(job_url + "?WAIT=5", headers=ALICE).content)
    end = time.monotonic() + timeout
    while uws_text(doc, "uws:phase") not in ("COMPLETED", "ERROR", "ABORTED") and time.monotonic() < end:
        doc = assert_uws(client.get(job_url + "?WAIT=5", headers=ALICE).content)
    return uws_text(doc, "uws:phase") or ""


def notice_counts(client) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The service's /metrics counts of notice attempts, by outcome."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {"delivered": 0.0, "retried": 0.0, "failed": 0.0}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "cutout_job_notices_total":
                counts[sample.labels["outcome"]] = sample.value
    return counts


def notices(client, job_url: str):  # type: ignore[no-untyped-def]
    return client.app_state.runtime.store.notices(job_url.rsplit("/", 1)[1])


def test_mail_is_retried_and_carries_the_job_link(tmp_path: Path, demo_root: Path, smtp: SmtpSink) -> None:
    env = notify_env(CUTOUT_NOTIFY_SMTP_HOST="127.0.0.1", CUTOUT_NOTIFY_SMTP_PORT=str(smtp.port))
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **env) as client:
        r = create(client, ("RESULTS", "2"), ("NOTIFY", "mailto:alice@example.org"), ("PHASE", "RUN"))
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        job_id = job.rsplit("/", 1)[1]
        assert finished(client, job) == "COMPLETED"
        # The job ended before its notice went out: the first attempt is refused (451).
        eventually(lambda: smtp.messages, timeout=15)
        assert smtp.attempts == 2
        sender, recipients, content = smtp.messages[0]
        assert (sender, recipients) == ("jobs@cutouts.test", ["alice@example.org"])
        mail = email.message_from_bytes(content, policy=email.policy.default)
        assert mail["Subject"] == f"Job {job_id} COMPLETED"
        body = mail.get_content().replace("\r\n", "\n")
        assert f"Job: {LIST}/{job_id}\n" in body
        assert f"{LIST}/{job_id}/results/result-1.txt" in body and f"{LIST}/{job_id}/results/result-2.txt" in body
        (notice,) = eventually(lambda: [n for n in notices(client, job) if n.state == "delivered"])
        assert (notice.attempts, notice.phase) == (2, "COMPLETED")
        assert "451" in (notice.last_error or "")
        # NOTIFY is listed with the job's parameters, and the job's own are unchanged.
        params = assert_uws(client.get(job + "/parameters", headers=ALICE).content)
        listed = {(p.get("id"), p.text) for p in params}
        assert ("NOTIFY", "mailto:alice@example.org") in listed and ("RESULTS", "2") in listed


def test_webhook_is_retried_signed_and_tells_the_error(tmp_path: Path, demo_root: Path,
                                                       hook: WebhookReceiver) -> None:
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **notify_env()) as client:
        before = notice_counts(client)
        target = hook.url + "/hooks/jobs?token=abc"
        r = create(client, ("FAIL", "usage"), ("NOTIFY", target), ("RUNID", "run-7"), ("PHASE", "RUN"))
        assert r.status_code == 303, r.text
        job = r.headers["location"]
        job_id = job.rsplit("/", 1)[1]
        assert finished(client, job) == "ERROR"
        eventually(lambda: len(hook.received) == 2, timeout=15)
        (first_path, _, first_body, first_status), (path, headers, body, status) = hook.received
        assert (first_path, path, first_status, status) == ("/hooks/jobs?token=abc", "/hooks/jobs?token=abc", 500, 200)
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Cutout-Signature"], expected)
        assert headers["Content-Type"] == "application/json"
        sent = json.loads(body)
        assert sent["job_id"] == job_id and sent["phase"] == "ERROR" and sent["run_id"] == "run-7"
        assert sent["url"] == f"{LIST}/{job_id}" and sent["results"] == []
        assert "usage error" in sent["error"] and sent["ended"].endswith("Z")
        assert headers["X-Cutout-Delivery"] == sent["delivery"] and headers["X-Cutout-Timestamp"] == sent["sent"]
        assert "owner" not in sent and "alice" not in body.decode()
        assert json.loads(first_body)["delivery"] != sent["delivery"]  # each attempt its own id
        eventually(lambda: [n.state for n in notices(client, job)] == ["delivered"])
        moved = {"retried": 1, "delivered": 1, "failed": 0}
        eventually(lambda: {k: v - before[k] for k, v in notice_counts(client).items()} == moved)


def test_an_abort_is_told_too(tmp_path: Path, demo_root: Path, hook: WebhookReceiver) -> None:
    hook.statuses.clear()
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **notify_env()) as client:
        job = create(client, ("DURATION", "30"), ("NOTIFY", hook.url + "/a"), ("PHASE", "RUN")).headers["location"]
        assert client.post(job + "/phase", data={"PHASE": "ABORT"}, headers=ALICE).status_code == 303
        eventually(lambda: hook.received, timeout=10)
        assert json.loads(hook.received[0][2])["phase"] == "ABORTED"


def test_jobs_end_the_same_when_every_delivery_fails(tmp_path: Path, demo_root: Path) -> None:
    closed = free_port()  # nothing listens here: every attempt is refused
    env = notify_env(CUTOUT_NOTIFY_SMTP_HOST="127.0.0.1", CUTOUT_NOTIFY_SMTP_PORT=str(closed))
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **env) as client:
        started = time.monotonic()
        job = create(client, ("RESULTS", "3"), ("NOTIFY", "mailto:a@example.org"),
                     ("NOTIFY", f"http://127.0.0.1:{closed}/hook"), ("PHASE", "RUN")).headers["location"]
        assert finished(client, job) == "COMPLETED"
        assert time.monotonic() - started < 5
        gave_up = eventually(lambda: (lambda ns: ns if all(n.state == "failed" for n in ns) else None)(
            notices(client, job)), timeout=15)
        assert [n.attempts for n in gave_up] == [3, 3]
        doc = assert_uws(client.get(job, headers=ALICE).content)
        assert uws_text(doc, "uws:phase") == "COMPLETED" and uws_text(doc, "uws:errorSummary") is None
        assert len(doc.findall(".//{http://www.ivoa.net/xml/UWS/v1.0}result")) == 3


def test_delivery_checks_the_target_again(tmp_path: Path, demo_root: Path, hook: WebhookReceiver) -> None:
    """Allowed when the job was made; no longer when it ends: nothing is sent."""
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **notify_env()) as client:
        job = create(client, ("NOTIFY", hook.url + "/x")).headers["location"]
        dispatcher = client.app_state.runtime.uws.dispatcher
        dispatcher.config = dataclasses.replace(dispatcher.config, allow_private_targets=False)
        assert client.post(job + "/phase", data={"PHASE": "RUN"}, headers=ALICE).status_code == 303
        assert finished(client, job) == "COMPLETED"
        (notice,) = eventually(lambda: [n for n in notices(client, job) if n.state == "failed"], timeout=10)
        assert notice.attempts == 1 and "not a public address" in (notice.last_error or "")
        assert hook.received == []


# --- refused at creation ------------------------------------------------------------------------

REFUSED = [
    ("https://127.0.0.1/hook", "not a public address"),
    ("https://10.1.2.3/hook", "not a public address"),
    ("https://169.254.169.254/latest/meta-data", "not a public address"),
    ("https://[::1]/hook", "not a public address"),
    ("https://[::ffff:127.0.0.1]/hook", "not a public address"),
    ("https://[fd00::1]/hook", "not a public address"),
    ("https://0.0.0.0/hook", "not a public address"),
    ("https://2130706433/hook", "not a public address"),  # 127.0.0.1 written as one number
    ("https://localhost/hook", "not a public address"),
    ("http://hooks.example.org/x", "must use https"),
    ("https://elsewhere.example.org/x", "only to hooks.example.org"),
    ("https://user:pw@hooks.example.org/x", "no user, password"),
    ("ftp://hooks.example.org/x", "must be mailto"),
    ("hooks.example.org", "must be mailto"),
    ("mailto:someone@elsewhere.test", "only to addresses at example.org"),
    ("mailto:not an address", "not one e-mail address"),
    ("mailto:a@example.org,b@example.org", "not one e-mail address"),
    ("mailto:a@example.org?subject=x", "not one e-mail address"),
    ("mailto:a@example.org\r\nBcc: b@example.org", "not one e-mail address"),  # no header injection
]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[object]:
    """The shipped policy (public https targets only), with mail and an allow-list of hosts."""
    env = {"CUTOUT_NOTIFY_WEBHOOK_SECRET": SECRET, "CUTOUT_NOTIFY_SMTP_HOST": "127.0.0.1",
           "CUTOUT_NOTIFY_MAIL_FROM": "jobs@cutouts.test", "CUTOUT_NOTIFY_MAIL_DOMAINS": "example.org",
           "CUTOUT_NOTIFY_WEBHOOK_HOSTS": "hooks.example.org,localhost,127.0.0.1,10.1.2.3,169.254.169.254,"
                                          "::1,::ffff:127.0.0.1,fd00::1,0.0.0.0,2130706433,8.8.8.8"}
    with app_client(tmp_path_factory.mktemp("strict") / "data", demo_root, identify=header_identity, **env) as client:
        yield client


@pytest.mark.parametrize(("target", "reason"), REFUSED)
def test_a_target_not_allowed_is_a_labelled_400(strict, target: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    before = strict.get(LIST, headers=ALICE).content
    r = create(strict, ("NOTIFY", target))
    assert r.status_code == 400, r.text
    assert r.text.startswith("UsageError: ") and reason in r.text, r.text
    assert strict.get(LIST, headers=ALICE).content == before  # no job was made


def test_too_many_targets_and_anonymous_mail_are_refused(strict) -> None:  # type: ignore[no-untyped-def]
    r = create(strict, *[("NOTIFY", f"mailto:u{i}@example.org") for i in range(4)])
    assert r.status_code == 400 and "at most 3" in r.text
    r = create(strict, ("NOTIFY", "mailto:u@example.org"), headers={})
    assert r.status_code == 400 and "log in to be notified by e-mail" in r.text


def test_a_public_target_is_accepted_and_kept_out_of_the_kind(strict) -> None:  # type: ignore[no-untyped-def]
    r = create(strict, ("RESULTS", "1"), ("NOTIFY", "https://8.8.8.8/hook"), ("NOTIFY", "mailto:u@example.org"))
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    r = strict.post(job + "/parameters", data={"NOTIFY": "mailto:v@example.org"}, headers=ALICE)
    assert r.status_code == 400 and "only when the job is created" in r.text
    assert strict.post(job + "/parameters", data={"RESULTS": "2"}, headers=ALICE).status_code == 303
    params = {(p.get("id"), p.text) for p in assert_uws(strict.get(job + "/parameters", headers=ALICE).content)}
    assert params == {("RESULTS", "2"), ("NOTIFY", "https://8.8.8.8/hook"), ("NOTIFY", "mailto:u@example.org")}
    assert [n.state for n in notices(strict, job)] == ["waiting", "waiting"]


def test_notify_is_refused_on_the_shipped_defaults(tmp_path: Path, demo_root: Path) -> None:
    with app_client(tmp_path / "data", demo_root, identify=header_identity) as client:
        r = create(client, ("NOTIFY", "https://8.8.8.8/hook"))
        assert r.status_code == 400 and "sends no notifications" in r.text


def test_the_sweeps_send_what_was_left_behind(tmp_path: Path, demo_root: Path, hook: WebhookReceiver) -> None:
    """A job that ended while its notices could not be scheduled (the process stopped in
    between), and a notice whose message was lost: the sweeps send both."""
    hook.statuses.clear()
    with app_client(tmp_path / "data", demo_root, identify=header_identity, **notify_env()) as client:
        runtime = client.app_state.runtime
        dispatcher = runtime.uws.dispatcher
        unscheduled = create(client, ("NOTIFY", hook.url + "/unscheduled")).headers["location"]
        lost = create(client, ("NOTIFY", hook.url + "/lost")).headers["location"]
        kind = runtime.uws.kinds["selftest"]

        def run_here(job_url: str) -> None:  # in this thread, so nothing races the changes around it
            job_id = job_url.rsplit("/", 1)[1]
            assert runtime.store.queue(job_id)
            runtime.uws.execute(kind, job_id)
            assert runtime.store.get(job_id).phase.value == "COMPLETED"

        runtime.store.ended.remove(dispatcher.job_ended)
        try:
            run_here(unscheduled)
        finally:
            runtime.store.ended.append(dispatcher.job_ended)
        actor, dispatcher.actor = dispatcher.actor, None  # its message goes nowhere
        try:
            run_here(lost)
        finally:
            dispatcher.actor = actor
        assert [n.state for n in notices(client, unscheduled)] == ["waiting"]
        assert [n.state for n in notices(client, lost)] == ["sending"]
        time.sleep(0.5)
        assert hook.received == []
        assert runtime.uws.sweep().notices == 1  # the unscheduled one; the lost one is not yet overdue
        eventually(lambda: [r[0] for r in hook.received] == ["/unscheduled"])
        later = utcnow() + dt.timedelta(seconds=dispatcher.config.lost_after_seconds + 1)
        assert dispatcher.resend_lost(later) == 1
        eventually(lambda: sorted(r[0] for r in hook.received) == ["/lost", "/unscheduled"])
        eventually(lambda: [n.state for n in notices(client, lost) + notices(client, unscheduled)]
                   == ["delivered", "delivered"])
