"""A real client against a real server process: pyvo drives selftest jobs end to end and
parses every kind of UWS document the service emits."""

from __future__ import annotations

import datetime as dt
import io
import time

import pytest
import requests

from conftest import UWS, assert_uws, base_env, eventually, start_server, uws_text

pyvo = pytest.importorskip("pyvo")
from pyvo.dal import DALQueryError  # noqa: E402
from pyvo.dal.tap import AsyncTAPJob  # noqa: E402
from pyvo.io.uws import parse_job, parse_job_list  # noqa: E402

WAIT_MAX = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_root):
    """One `cutout serve` (embedded shape, selftest mounted) for the module."""
    tmp_path = tmp_path_factory.mktemp("pyvo")
    env = base_env(tmp_path / "data", demo=demo_root, CUTOUT_WAIT_MAX_SECONDS=str(WAIT_MAX))
    proc, base = start_server(env, tmp_path / "server.log")
    try:
        yield base
    finally:
        proc.stop()
    # No request made while pyvo drove the server ended in an unexpected failure (a 500).
    assert "unexpected failure" not in proc.output(), proc.output()[-3000:]


def submit(base: str, **params: str) -> str:
    r = requests.post(base + "/selftest", data=params, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    return r.headers["Location"]


def fetch(url: str, **params: str) -> bytes:
    r = requests.get(url, params=params, timeout=WAIT_MAX + 10)
    assert r.status_code == 200, r.text
    assert_uws(r.content)
    return r.content


def parsed(url: str, **params: str):  # type: ignore[no-untyped-def]
    return parse_job(io.BytesIO(fetch(url, **params)))


def seconds(value) -> float:  # type: ignore[no-untyped-def]
    return float(value.sec)


def as_utc(astropy_time) -> dt.datetime:  # type: ignore[no-untyped-def]
    return astropy_time.to_datetime().replace(tzinfo=dt.UTC)


def xml_time(body: bytes, path: str) -> dt.datetime:
    from lxml import etree

    text = uws_text(etree.fromstring(body), path)
    assert text is not None and text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_pyvo_drives_a_job_end_to_end(server):
    url = submit(server, DURATION="0.5", RESULTS="2", SIZE="80", RUNID="pyvo run")
    job = AsyncTAPJob(url)
    assert job.url == url
    assert job.job_id == url.rsplit("/", 1)[1]
    assert job.phase == "PENDING"
    assert job.uws_version == "1.1"
    assert job.owner is None
    assert job.quote is None
    assert job.job.runid == "pyvo run"
    assert {p.id_: p.content for p in job.job.parameters} == {
        "DURATION": "0.5", "RESULTS": "2", "SIZE": "80"}

    # executionDuration: read, then changed while PENDING.
    assert seconds(job.execution_duration) == 600
    job.execution_duration = 120
    assert seconds(job.execution_duration) == 120
    assert requests.get(url + "/executionduration", timeout=10).text == "120"

    # destruction: read, then changed (pyvo sends microseconds and a Z).
    body = fetch(url)
    assert as_utc(job.destruction) == xml_time(body, "uws:destruction")
    wanted = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=250000) + dt.timedelta(days=2)
    job.destruction = wanted
    assert abs(as_utc(job.destruction) - wanted.replace(tzinfo=dt.UTC)) < dt.timedelta(milliseconds=1)
    shown = requests.get(url + "/destruction", timeout=10).text
    assert shown.endswith("Z")
    assert abs(dt.datetime.fromisoformat(shown.replace("Z", "+00:00")) - wanted.replace(tzinfo=dt.UTC)) \
        < dt.timedelta(milliseconds=1)

    started = time.monotonic()
    job.run()
    assert job.phase in ("QUEUED", "EXECUTING", "COMPLETED")
    job.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert job.phase == "COMPLETED"
    job.raise_if_error()  # no error: nothing raised

    assert [r.id_ for r in job.results] == ["result-1.txt", "result-2.txt"]
    assert job.result_uris == [f"{url}/results/result-1.txt", f"{url}/results/result-2.txt"]
    assert [(r.size, r.mimetype) for r in job.results] == [(80, "text/plain")] * 2
    r = requests.get(job.result_uris[1], timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert len(r.content) == 80
    assert r.content.startswith(f"selftest job {job.job_id} result 2".encode())
    # Only while PENDING: the service refuses a new executionDuration now.
    with pytest.raises(pyvo.dal.DALServiceError):
        job.execution_duration = 30
    assert seconds(job.execution_duration) == 120

    job.delete()
    assert requests.get(url, timeout=10).status_code == 404
    assert requests.get(url + "/results/result-1.txt", timeout=10).status_code == 404


def test_pyvo_sees_errors_and_deletes_on_exit(server):
    url = submit(server, FAIL="usage", PHASE="RUN")
    with AsyncTAPJob(url) as job:
        job.wait(timeout=30)
        assert job.phase == "ERROR"
        summary = job.job.errorsummary
        assert summary.type_ == "fatal"
        assert summary.has_detail is True
        assert summary.message.content.startswith("UsageError:")
        with pytest.raises(DALQueryError, match="UsageError: this selftest job"):
            job.raise_if_error()
    # Leaving the context deleted the job.
    assert requests.get(url, timeout=10).status_code == 404


def test_pyvo_parses_every_document_the_service_emits(server):
    # PENDING
    pending = submit(server, DURATION="0", RUNID="p")
    doc = parsed(pending)
    assert doc.version == "1.1"
    assert (doc.jobid, doc.phase, doc.runid, doc.ownerid) == (pending.rsplit("/", 1)[1], "PENDING", "p", None)
    assert seconds(doc.executionduration) == 600
    assert doc.starttime is None and doc.endtime is None and doc.quote is None
    assert doc.destruction is not None and doc.creationtime is not None
    assert [(p.id_, p.content) for p in doc.parameters] == [("DURATION", "0")]
    assert list(doc.results) == [] and doc.errorsummary is None

    # QUEUED or EXECUTING, then COMPLETED
    running = submit(server, DURATION="1", RESULTS="1", PHASE="RUN", EXECUTIONDURATION="30")
    doc = parsed(running)
    assert doc.phase in ("QUEUED", "EXECUTING")
    assert seconds(doc.executionduration) == 30
    eventually(lambda: parsed(running).phase == "EXECUTING", timeout=10)
    doc = parsed(running)
    assert doc.starttime is not None and doc.endtime is None
    doc = parse_job(io.BytesIO(fetch(running, WAIT="-1", PHASE="EXECUTING")))
    assert doc.phase == "COMPLETED"
    assert doc.starttime is not None and doc.endtime is not None
    assert doc.endtime >= doc.starttime >= doc.creationtime
    assert [(r.id_, r.href) for r in doc.results] == [("result-1.txt", f"{running}/results/result-1.txt")]

    # ERROR, with its summary
    failed = submit(server, FAIL="fatal", PHASE="RUN")
    eventually(lambda: parsed(failed).phase == "ERROR", timeout=15)
    doc = parsed(failed)
    assert doc.errorsummary.type_ == "fatal"
    assert doc.errorsummary.message.content == "Error: this selftest job was asked to fail fatally"
    transient = submit(server, FAIL="transient", PHASE="RUN")
    eventually(lambda: parsed(transient).phase == "ERROR", timeout=20)
    doc = parsed(transient)
    assert doc.errorsummary.type_ == "transient"
    assert doc.errorsummary.message.content.startswith("ServiceUnavailable:")

    # ABORTED
    aborted = submit(server, DURATION="30", PHASE="RUN")
    eventually(lambda: parsed(aborted).phase == "EXECUTING", timeout=10)
    AsyncTAPJob(aborted).abort()
    eventually(lambda: parsed(aborted).phase == "ABORTED", timeout=5)
    assert parsed(aborted).endtime is not None

    # The job list, whole and filtered.
    r = requests.get(server + "/selftest", timeout=10)
    assert r.status_code == 200
    assert_uws(r.content)
    mine = {u.rsplit("/", 1)[1] for u in (pending, running, failed, transient, aborted)}
    jobs = [j for j in parse_job_list(io.BytesIO(r.content)) if j.jobid in mine]
    expected = [aborted, transient, failed, running, pending]  # newest first
    assert [j.jobid for j in jobs] == [u.rsplit("/", 1)[1] for u in expected]
    assert [j.phase for j in jobs] == ["ABORTED", "ERROR", "ERROR", "COMPLETED", "PENDING"]
    assert all(j.ownerid is None for j in jobs)
    assert [j.runid for j in jobs] == [None, None, None, None, "p"]
    assert all(j.creationtime is not None for j in jobs)
    times = [j.creationtime for j in jobs]
    assert times == sorted(times, reverse=True)

    r = requests.get(server + "/selftest", params=[("PHASE", "ERROR"), ("PHASE", "PENDING"), ("LAST", "2")],
                     timeout=10)
    assert_uws(r.content)
    assert [(j.jobid, j.phase) for j in parse_job_list(io.BytesIO(r.content))] == [
        (transient.rsplit("/", 1)[1], "ERROR"), (failed.rsplit("/", 1)[1], "ERROR")]

    # The results and parameters containers are UWS documents too (pyvo has no parser for them).
    for child in ("/results", "/parameters"):
        r = requests.get(running + child, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/xml")
        assert_uws(r.content).tag == f"{{{UWS['uws']}}}{child[1:]}"
