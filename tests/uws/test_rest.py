"""UWS 1.1 REST binding (§2.2) against the client app, driven with the selftest kind.

Every XML document received is validated against the UWS 1.1 schema, every VOTable
against VOTable 1.4. Spec references are to UWS 1.1 unless marked DALI.

Each test gets the ``embedded`` app and acts as a caller of its own (X-Test-User);
``user=""`` makes a request anonymous.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import UWS, assert_uws, assert_votable, eventually, uws_text

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
BASE = "http://testserver"
LIST = BASE + "/selftest"
FINAL = ("COMPLETED", "ERROR", "ABORTED")
# Defaults of conf/defaults.toml, which the fixture does not override.
DEFAULT_DURATION = 600
MAX_DURATION = 3600
DEFAULT_DESTRUCTION = dt.timedelta(seconds=604800)
MAX_DESTRUCTION = dt.timedelta(seconds=2592000)
WAIT_MAX = 5  # the fixture sets CUTOUT_WAIT_MAX_SECONDS=5


# --- the app and the caller -------------------------------------------------------------

class Caller:
    """The TestClient, sending X-Test-User of this test's own user unless told otherwise."""

    def __init__(self, client: Any, user: str) -> None:
        self.client = client
        self.user = user
        self.app_state = client.app_state

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {"X-Test-User": self.user, **(kwargs.get("headers") or {})}
        return self.client.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture
def client(embedded: Any) -> Caller:
    return Caller(embedded, f"user-{uuid.uuid4().hex[:10]}")


# --- helpers ---------------------------------------------------------------------------

def hdr(user: str | None = None, **extra: str) -> dict[str, str]:
    """Headers for a request as ``user`` (None: the test's own user, "": anonymous)."""
    headers = dict(extra)
    if user is not None:
        headers["X-Test-User"] = user
    return headers


def path_of(url: str) -> str:
    """The path of an absolute URL, so that the TestClient can be pointed at it."""
    return urlsplit(url).path


def create(client, data=None, user: str | None = None, **headers: str) -> str:
    r = client.post("/selftest", data=data or {}, headers=hdr(user, **headers))
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    return location


def job_doc(client, url: str, user: str | None = None, params=None):
    r = client.get(path_of(url), params=params, headers=hdr(user))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    doc = assert_uws(r.content)
    assert doc.tag == f"{{{UWS['uws']}}}job"
    assert doc.get("version") == "1.1"
    return doc


def phase_of(doc) -> str | None:
    return uws_text(doc, "uws:phase")


def wait_phase(client, url: str, phases, user: str | None = None, timeout: float = 20):
    phases = (phases,) if isinstance(phases, str) else tuple(phases)
    # A list around the element: lxml elements must not be truth-tested.
    return eventually(lambda: (d := job_doc(client, url, user)) is not None
                      and phase_of(d) in phases and [d], timeout=timeout)[0]


def completed(client, url: str, user: str | None = None, timeout: float = 20):
    """Wait for a final phase; it must be COMPLETED (else say why it is not)."""
    doc = wait_phase(client, url, FINAL, user, timeout)
    summary = doc.find("uws:errorSummary/uws:message", UWS)
    assert phase_of(doc) == "COMPLETED", (phase_of(doc), None if summary is None else summary.text)
    return doc


def text_atomic(client, url: str, user: str | None = None) -> str:
    r = client.get(path_of(url), headers=hdr(user))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    return r.text


def parse_z(text: str) -> dt.datetime:
    assert ISO_Z.match(text), f"not ISO 8601 UTC with a Z: {text!r}"
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def fmt_z(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def is_nil(doc, path: str) -> bool:
    element = doc.find(path, UWS)
    assert element is not None, f"{path} missing (required in the schema)"
    return element.get(XSI_NIL) == "true" and not element.text


def job_list(client, params=None, user: str | None = None, headers=None):
    r = client.get("/selftest", params=params, headers={**hdr(user), **(headers or {})})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    doc = assert_uws(r.content)
    assert doc.tag == f"{{{UWS['uws']}}}jobs"
    assert doc.get("version") == "1.1"
    return doc


def listed_ids(doc) -> list[str]:
    return [ref.get("id") for ref in doc.findall("uws:jobref", UWS)]


def job_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


def assert_label(r, status: int, label: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain"), r.headers["content-type"]
    assert r.text.startswith(label + ":"), r.text


# --- creation, the job document, atomic children -------------------------------------

def test_create_answers_303_with_absolute_location_and_a_pending_job(client):
    r = client.post("/selftest", data={"DURATION": "0.5", "RUNID": "first run"})
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(LIST + "/"), location
    jid = job_id(location)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", jid), "the job id should be a legal path segment"

    doc = job_doc(client, location)
    assert uws_text(doc, "uws:jobId") == jid
    assert uws_text(doc, "uws:runId") == "first run"
    assert phase_of(doc) == "PENDING"
    assert uws_text(doc, "uws:ownerId") == client.user
    assert is_nil(doc, "uws:quote")
    assert is_nil(doc, "uws:startTime")
    assert is_nil(doc, "uws:endTime")
    assert uws_text(doc, "uws:executionDuration") == str(DEFAULT_DURATION)
    created = parse_z(uws_text(doc, "uws:creationTime"))
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(seconds=30)
    destruction = parse_z(uws_text(doc, "uws:destruction"))
    assert abs(destruction - (created + DEFAULT_DESTRUCTION)) < dt.timedelta(seconds=2)
    params = {p.get("id"): p.text for p in doc.findall("uws:parameters/uws:parameter", UWS)}
    assert params == {"DURATION": "0.5"}  # RUNID is job control, not a parameter
    assert doc.findall("uws:results/uws:result", UWS) == []
    assert doc.find("uws:errorSummary", UWS) is None


def test_atomic_children_are_text_plain(client):
    url = create(client, {"EXECUTIONDURATION": "77"}, user="alice")
    doc = job_doc(client, url, "alice")
    assert text_atomic(client, url + "/phase", "alice") == "PENDING"
    assert text_atomic(client, url + "/executionduration", "alice") == "77"
    destruction = text_atomic(client, url + "/destruction", "alice")
    assert destruction == uws_text(doc, "uws:destruction")
    parse_z(destruction)
    assert text_atomic(client, url + "/quote", "alice") == ""  # no quote: empty string
    assert text_atomic(client, url + "/owner", "alice") == "alice"
    assert uws_text(doc, "uws:ownerId") == "alice"

    anonymous = create(client, user="")
    assert text_atomic(client, anonymous + "/owner", "") == ""
    assert is_nil(job_doc(client, anonymous, ""), "uws:ownerId")
    [ref] = [ref for ref in job_list(client, user="").findall("uws:jobref", UWS)
             if ref.get("id") == job_id(anonymous)]
    assert is_nil(ref, "uws:ownerId")


def test_parameters_and_results_documents(client):
    url = create(client, {"results": "2", "Size": "100", "PHASE": "RUN"})
    r = client.get(path_of(url) + "/parameters")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    params_doc = assert_uws(r.content)
    assert params_doc.tag == f"{{{UWS['uws']}}}parameters"
    # DALI §3.1: names are case-insensitive; the service reports them normalised.
    assert {p.get("id"): p.text for p in params_doc.findall("uws:parameter", UWS)} == {
        "RESULTS": "2", "SIZE": "100"}

    done = wait_phase(client, url, FINAL)
    assert phase_of(done) == "COMPLETED"
    refs = done.findall("uws:results/uws:result", UWS)
    assert [ref.get("id") for ref in refs] == ["result-1.txt", "result-2.txt"]

    r = client.get(path_of(url) + "/results")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    results = assert_uws(r.content)
    assert results.tag == f"{{{UWS['uws']}}}results"
    listed = results.findall("uws:result", UWS)
    assert [ref.get("id") for ref in listed] == ["result-1.txt", "result-2.txt"]
    for ref in listed:
        href = ref.get(XLINK_HREF)
        assert href == f"{url}/results/{ref.get('id')}"
        assert ref.get("size") == "100"
        assert ref.get("mime-type") == "text/plain"
        body = client.get(path_of(href))
        assert body.status_code == 200
        assert body.headers["content-type"].startswith("text/plain")
        assert len(body.content) == 100
        assert body.content.startswith(f"selftest job {job_id(url)} result".encode())
    assert client.get(path_of(url) + "/results/result-3.txt").status_code == 404


def test_timestamps_are_iso8601_utc_with_z(client):
    url = create(client, {"DURATION": "0.2", "PHASE": "RUN"})
    doc = completed(client, url)
    created = parse_z(uws_text(doc, "uws:creationTime"))
    started = parse_z(uws_text(doc, "uws:startTime"))
    ended = parse_z(uws_text(doc, "uws:endTime"))
    parse_z(uws_text(doc, "uws:destruction"))
    parse_z(text_atomic(client, url + "/destruction"))
    assert created <= started <= ended
    assert ended - started >= dt.timedelta(seconds=0.15)  # it ran DURATION=0.2 s
    ref = job_list(client).find("uws:jobref", UWS)
    assert ref.find("uws:creationTime", UWS).text == uws_text(doc, "uws:creationTime")


def test_documents_validate_in_every_phase(client):
    """PENDING, QUEUED/EXECUTING, COMPLETED, ERROR, ABORTED, and the list of them all."""
    pending = create(client, {"DURATION": "0"})
    assert phase_of(job_doc(client, pending)) == "PENDING"

    running = create(client, {"DURATION": "1", "PHASE": "RUN"})
    active = job_doc(client, running)
    assert phase_of(active) in ("QUEUED", "EXECUTING")
    executing = wait_phase(client, running, "EXECUTING")
    assert parse_z(uws_text(executing, "uws:startTime"))
    assert is_nil(executing, "uws:endTime")

    finished = create(client, {"PHASE": "RUN"})
    completed(client, finished)

    failed = create(client, {"FAIL": "fatal", "PHASE": "RUN"})
    error_doc = wait_phase(client, failed, FINAL)
    assert phase_of(error_doc) == "ERROR"
    assert error_doc.find("uws:errorSummary", UWS) is not None

    aborted = create(client)
    assert client.post(path_of(aborted) + "/phase", data={"PHASE": "ABORT"}).status_code == 303
    aborted_doc = job_doc(client, aborted)
    assert phase_of(aborted_doc) == "ABORTED"
    parse_z(uws_text(aborted_doc, "uws:endTime"))

    listing = job_list(client)
    phases = {ref.get("id"): uws_text(ref, "uws:phase") for ref in listing.findall("uws:jobref", UWS)}
    assert phases[job_id(pending)] == "PENDING"
    assert phases[job_id(running)] in ("EXECUTING", "COMPLETED")
    assert phases[job_id(finished)] == "COMPLETED"
    assert phases[job_id(failed)] == "ERROR"
    assert phases[job_id(aborted)] == "ABORTED"
    for ref in listing.findall("uws:jobref", UWS):
        assert ref.get(XLINK_HREF) == f"{LIST}/{ref.get('id')}"
        parse_z(uws_text(ref, "uws:creationTime"))
        assert uws_text(ref, "uws:ownerId") == client.user
    for url in (pending, running, finished, failed, aborted):
        assert_uws(client.get(path_of(url) + "/results").content)
        assert_uws(client.get(path_of(url) + "/parameters").content)


def test_runid_is_kept_unchanged(client):
    run_id = "  My run: ✓ <&> 42  "
    first = create(client, {"RUNID": run_id})
    second = create(client, {"RUNID": run_id, "PHASE": "RUN"})  # runIds may be shared
    for url in (first, second):
        assert uws_text(job_doc(client, url), "uws:runId") == run_id
    refs = job_list(client).findall("uws:jobref", UWS)
    assert [uws_text(ref, "uws:runId") for ref in refs] == [run_id, run_id]
    assert "RUNID" not in {p.get("id").upper() for p in job_doc(client, first).findall(
        "uws:parameters/uws:parameter", UWS)}
    no_run_id = create(client)
    assert job_doc(client, no_run_id).find("uws:runId", UWS) is None


def test_forwarded_headers_shape_every_url(client):
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "vo.example.org",
             "X-Forwarded-Prefix": "/cutout"}
    public = "https://vo.example.org/cutout/selftest"
    r = client.post("/selftest", data={"PHASE": "RUN", "RESULTS": "1"}, headers=proxy)
    assert r.status_code == 303
    url = r.headers["location"]
    assert url.startswith(public + "/"), url
    jid = job_id(url)
    local = f"/selftest/{jid}"

    done = eventually(lambda: (d := assert_uws(client.get(local, headers=proxy).content))
                      is not None and phase_of(d) == "COMPLETED" and [d])[0]
    [ref] = done.findall("uws:results/uws:result", UWS)
    assert ref.get(XLINK_HREF) == f"{public}/{jid}/results/result-1.txt"
    results = assert_uws(client.get(local + "/results", headers=proxy).content)
    assert results.find("uws:result", UWS).get(XLINK_HREF) == f"{public}/{jid}/results/result-1.txt"

    listing = assert_uws(client.get("/selftest", headers=proxy).content)
    assert [ref.get(XLINK_HREF) for ref in listing.findall("uws:jobref", UWS)] == [f"{public}/{jid}"]

    other = client.post("/selftest", headers=proxy).headers["location"]
    assert other.startswith(public + "/")
    other_local = f"/selftest/{job_id(other)}"
    for target, child, data in (
            (local, "/destruction", {"DESTRUCTION": "2099-01-01T00:00:00Z"}),
            (other_local, "/parameters", {"DURATION": "0"}),
            (other_local, "/executionduration", {"EXECUTIONDURATION": "10"}),
            (other_local, "/phase", {"PHASE": "RUN"})):
        r = client.post(target + child, data=data, headers=proxy)
        expected = public + target.removeprefix("/selftest")
        assert (r.status_code, r.headers.get("location")) == (303, expected), (child, r.text)

    r = client.delete(local, headers=proxy)
    assert (r.status_code, r.headers["location"]) == (303, public)
    # Without the headers: the URLs of the TestClient itself.
    assert create(client).startswith(LIST + "/")
    # A list of proxies: the first (client-facing) value counts.
    r = client.post("/selftest", headers={"X-Forwarded-Host": "a.example, b.internal"})
    assert r.headers["location"].startswith("http://a.example/selftest/")


# --- running, aborting, deleting ---------------------------------------------------------

def test_run_by_posting_to_phase_and_illegal_actions_on_a_completed_job(client):
    url = create(client, {"DURATION": "0"})
    r = client.post(path_of(url) + "/phase", data={"PHASE": "RUN"})
    assert (r.status_code, r.headers["location"]) == (303, url)
    assert phase_of(wait_phase(client, url, FINAL)) == "COMPLETED"
    end_time = uws_text(job_doc(client, url), "uws:endTime")

    assert_label(client.post(path_of(url) + "/phase", data={"PHASE": "RUN"}), 403, "UsageError")
    assert_label(client.post(path_of(url) + "/phase", data={"PHASE": "ABORT"}), 403, "UsageError")
    doc = job_doc(client, url)
    assert phase_of(doc) == "COMPLETED"
    assert uws_text(doc, "uws:endTime") == end_time
    assert len(doc.findall("uws:results/uws:result", UWS)) == 1


def test_abort_a_pending_job(client):
    url = create(client)
    r = client.post(path_of(url) + "/phase", data={"PHASE": "ABORT"})
    assert (r.status_code, r.headers["location"]) == (303, url)
    doc = job_doc(client, url)
    assert phase_of(doc) == "ABORTED"
    assert text_atomic(client, url + "/phase") == "ABORTED"
    assert_label(client.get(path_of(url) + "/error"), 404, "UsageError")  # no error to show
    assert_label(client.post(path_of(url) + "/phase", data={"PHASE": "RUN"}), 403, "UsageError")
    time.sleep(0.3)
    assert phase_of(job_doc(client, url)) == "ABORTED"


def test_abort_an_executing_job_ends_it_quickly(client):
    url = create(client, {"DURATION": "30", "PHASE": "RUN"})
    wait_phase(client, url, "EXECUTING")
    started = time.monotonic()
    r = client.post(path_of(url) + "/phase", data={"PHASE": "ABORT"})
    assert (r.status_code, r.headers["location"]) == (303, url)
    doc = wait_phase(client, url, FINAL, timeout=5)
    assert time.monotonic() - started < 3
    assert phase_of(doc) == "ABORTED"
    parse_z(uws_text(doc, "uws:endTime"))
    time.sleep(0.6)  # the worker thread is interrupted; it must not complete the job afterwards
    doc = job_doc(client, url)
    assert phase_of(doc) == "ABORTED"
    assert doc.findall("uws:results/uws:result", UWS) == []


def test_execution_duration_limit_aborts_the_job(client):
    """§2.1.4: a job running longer than executionDuration is aborted."""
    url = create(client, {"DURATION": "30", "EXECUTIONDURATION": "1", "PHASE": "RUN"})
    doc = wait_phase(client, url, FINAL, timeout=8)
    assert phase_of(doc) == "ABORTED"
    start, end = parse_z(uws_text(doc, "uws:startTime")), parse_z(uws_text(doc, "uws:endTime"))
    assert dt.timedelta(seconds=0.9) <= end - start < dt.timedelta(seconds=5)


@pytest.mark.parametrize("how", ["DELETE", "ACTION=DELETE"])
def test_delete_answers_303_to_the_list_and_forgets_the_job(client, how):
    url = create(client, {"PHASE": "RUN"})
    completed(client, url)
    result = path_of(url) + "/results/result-1.txt"
    assert client.get(result).status_code == 200
    keep = create(client)
    if how == "DELETE":
        r = client.delete(path_of(url))
    else:
        r = client.post(path_of(url), data={"ACTION": "DELETE"})
    assert (r.status_code, r.headers["location"]) == (303, LIST)
    assert_label(client.get(path_of(url)), 404, "UsageError")
    assert_label(client.get(path_of(url) + "/phase"), 404, "UsageError")
    assert_label(client.get(result), 404, "UsageError")
    assert listed_ids(job_list(client)) == [job_id(keep)]


def test_delete_an_executing_job(client):
    url = create(client, {"DURATION": "30", "PHASE": "RUN"})
    wait_phase(client, url, "EXECUTING")
    r = client.delete(path_of(url))
    assert (r.status_code, r.headers["location"]) == (303, LIST)
    assert client.get(path_of(url)).status_code == 404
    assert listed_ids(job_list(client)) == []
    time.sleep(0.6)  # let the watchdog interrupt the job's thread before the app stops


# --- the job list ------------------------------------------------------------------------

def _archive(client, jid: str) -> None:
    """Jobs reach ARCHIVED only by the server's own doing; put one there directly."""
    store = client.app_state.runtime.store
    Job = store.tables.Job
    with store.db.connection_context():
        assert Job.update(phase="ARCHIVED").where(Job.id == jid).execute() == 1


def test_job_list_filters(client):
    j1 = create(client)
    time.sleep(0.02)
    j2 = create(client, {"PHASE": "RUN"})
    completed(client, j2)
    time.sleep(0.02)
    j3 = create(client)
    client.post(path_of(j3) + "/phase", data={"PHASE": "ABORT"})
    time.sleep(0.02)
    j4 = create(client)
    i1, i2, i3, i4 = map(job_id, (j1, j2, j3, j4))

    everything = job_list(client)
    # The list is ordered newest first, and holds every phase but ARCHIVED.
    assert listed_ids(everything) == [i4, i3, i2, i1]
    times = [parse_z(uws_text(ref, "uws:creationTime")) for ref in everything.findall("uws:jobref", UWS)]
    assert times == sorted(times, reverse=True)

    def ids(params):  # type: ignore[no-untyped-def]
        return listed_ids(job_list(client, params))

    assert ids({"PHASE": "PENDING"}) == [i4, i1]
    assert ids([("PHASE", "PENDING"), ("PHASE", "COMPLETED")]) == [i4, i2, i1]  # union
    assert ids([("PHASE", "ABORTED"), ("phase", "COMPLETED")]) == [i3, i2]
    assert ids({"PHASE": "ERROR"}) == []

    assert ids({"LAST": "2"}) == [i4, i3]  # the most recent, descending creationTime
    assert ids({"LAST": "1"}) == [i4]
    assert ids({"LAST": "10"}) == [i4, i3, i2, i1]

    t2 = parse_z(uws_text(job_doc(client, j2), "uws:creationTime"))
    after_j2 = fmt_z(t2 + dt.timedelta(milliseconds=1))
    assert ids({"AFTER": after_j2}) == [i4, i3]
    assert ids({"AFTER": "2000-01-01T00:00:00Z"}) == [i4, i3, i2, i1]
    assert ids({"AFTER": "2000-01-01"}) == [i4, i3, i2, i1]  # DALI: no zone means UTC
    assert ids({"AFTER": fmt_z(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))}) == []
    # The same instant written with an offset.
    offset = (t2 + dt.timedelta(milliseconds=1)).astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert ids({"AFTER": offset.isoformat(timespec="milliseconds")}) == [i4, i3]

    # Filters combine with AND.
    assert ids({"PHASE": "PENDING", "LAST": "1"}) == [i4]
    assert ids({"PHASE": "PENDING", "AFTER": after_j2}) == [i4]
    assert ids({"PHASE": "COMPLETED", "AFTER": after_j2}) == []
    assert ids({"AFTER": after_j2, "LAST": "1"}) == [i4]
    assert ids([("PHASE", "PENDING"), ("PHASE", "ABORTED"), ("AFTER", after_j2), ("LAST", "5")]) == [i4, i3]

    # ARCHIVED jobs are listed only when asked for by PHASE.
    _archive(client, i1)
    assert ids(None) == [i4, i3, i2]
    assert ids({"PHASE": "ARCHIVED"}) == [i1]
    assert ids([("PHASE", "ARCHIVED"), ("PHASE", "PENDING")]) == [i4, i1]
    assert ids({"LAST": "10"}) == [i4, i3, i2]


def test_after_is_strict_for_the_creation_time_the_service_reports(client):
    """§2.2.2.1: AFTER lists jobs created *after* the instant. A client that passes the
    creationTime it was shown for a job must not get that job back."""
    first = create(client)
    time.sleep(0.02)
    second = create(client)
    shown = uws_text(job_doc(client, first), "uws:creationTime")
    assert listed_ids(job_list(client, {"AFTER": shown})) == [job_id(second)]


def test_only_the_callers_jobs(client):
    alice, bob = client.user + "-alice", client.user + "-bob"
    a = create(client, {"RESULTS": "1", "PHASE": "RUN"}, user=alice)
    a_pending = create(client, user=alice)
    b = create(client, user=bob)
    anon = create(client, user="")
    completed(client, a, alice)

    alices = job_list(client, user=alice)
    assert listed_ids(alices) == [job_id(a_pending), job_id(a)]
    assert {uws_text(ref, "uws:ownerId") for ref in alices.findall("uws:jobref", UWS)} == {alice}
    assert listed_ids(job_list(client, user=bob)) == [job_id(b)]
    anonymous = listed_ids(job_list(client, user=""))
    assert job_id(anon) in anonymous
    assert not {job_id(a), job_id(a_pending), job_id(b)} & set(anonymous)
    assert uws_text(job_doc(client, a, alice), "uws:ownerId") == alice
    assert text_atomic(client, a + "/owner", alice) == alice

    bob = hdr(bob)
    for url in (a, a_pending):
        p = path_of(url)
        for child in ("", "/phase", "/executionduration", "/destruction", "/quote", "/error",
                      "/results", "/results/result-1.txt", "/parameters", "/owner"):
            assert_label(client.get(p + child, headers=bob), 403, "AuthorizationError")
        assert_label(client.get(p, params={"WAIT": "3"}, headers=bob), 403, "AuthorizationError")
        for child, data in (("/phase", {"PHASE": "RUN"}), ("/phase", {"PHASE": "ABORT"}),
                            ("/executionduration", {"EXECUTIONDURATION": "5"}),
                            ("/destruction", {"DESTRUCTION": "2030-01-01T00:00:00Z"}),
                            ("/parameters", {"DURATION": "3"}), ("", {"ACTION": "DELETE"})):
            assert_label(client.post(p + child, data=data, headers=bob), 403, "AuthorizationError")
        assert_label(client.delete(p, headers=bob), 403, "AuthorizationError")
        # Nor may an anonymous caller: 401, since logging in (as alice) would help.
        assert_label(client.get(p, headers=hdr("")), 401, "AuthenticationError")
        assert_label(client.delete(p, headers=hdr("")), 401, "AuthenticationError")
    # Nothing bob tried had an effect.
    doc = job_doc(client, a_pending, alice)
    assert phase_of(doc) == "PENDING"
    assert uws_text(doc, "uws:executionDuration") == str(DEFAULT_DURATION)
    assert doc.findall("uws:parameters/uws:parameter", UWS) == []
    assert phase_of(job_doc(client, a, alice)) == "COMPLETED"
    assert client.get(path_of(a) + "/results/result-1.txt", headers=hdr(alice)).status_code == 200


# --- changing a job ---------------------------------------------------------------------

def _params(client, url: str) -> list[tuple[str, str]]:
    doc = assert_uws(client.get(path_of(url) + "/parameters").content)
    return [(p.get("id"), p.text) for p in doc.findall("uws:parameter", UWS)]


def test_parameters_change_only_while_pending(client):
    url = create(client, {"DURATION": "0"})
    r = client.post(path_of(url) + "/parameters", data={"RESULTS": "3"})
    assert (r.status_code, r.headers["location"]) == (303, url)
    assert dict(_params(client, url)) == {"DURATION": "0", "RESULTS": "3"}
    # A name posted again replaces every earlier value; names are case-insensitive.
    client.post(path_of(url) + "/parameters", data={"results": "2"})
    assert dict(_params(client, url)) == {"DURATION": "0", "RESULTS": "2"}
    assert [name for name, _ in _params(client, url)].count("RESULTS") == 1
    # A rejected value leaves the parameters as they were.
    assert client.post(path_of(url) + "/parameters", data={"RESULTS": "many"}).status_code == 400
    assert dict(_params(client, url)) == {"DURATION": "0", "RESULTS": "2"}

    client.post(path_of(url) + "/phase", data={"PHASE": "RUN"})
    assert_label(client.post(path_of(url) + "/parameters", data={"RESULTS": "5"}), 403, "UsageError")
    done = wait_phase(client, url, FINAL)
    assert phase_of(done) == "COMPLETED"
    assert_label(client.post(path_of(url) + "/parameters", data={"RESULTS": "5"}), 403, "UsageError")
    assert dict(_params(client, url)) == {"DURATION": "0", "RESULTS": "2"}
    assert len(done.findall("uws:results/uws:result", UWS)) == 2


def test_execution_duration_changes_and_clamping(client):
    url = create(client, {"EXECUTIONDURATION": "120"})
    duration = url + "/executionduration"
    assert text_atomic(client, duration) == "120"
    r = client.post(path_of(duration), data={"EXECUTIONDURATION": "300"})
    assert (r.status_code, r.headers["location"]) == (303, url)
    assert text_atomic(client, duration) == "300"
    assert uws_text(job_doc(client, url), "uws:executionDuration") == "300"
    # The server limits the value (§2.1.4): above the maximum, and 0 (unlimited).
    client.post(path_of(duration), data={"EXECUTIONDURATION": str(MAX_DURATION * 10)})
    assert text_atomic(client, duration) == str(MAX_DURATION)
    client.post(path_of(duration), data={"EXECUTIONDURATION": "0"})
    assert text_atomic(client, duration) == str(MAX_DURATION)
    clamped = create(client, {"EXECUTIONDURATION": "999999"})
    assert text_atomic(client, clamped + "/executionduration") == str(MAX_DURATION)

    # Only while PENDING.
    client.post(path_of(duration), data={"EXECUTIONDURATION": "60"})
    client.post(path_of(url) + "/phase", data={"PHASE": "RUN"})
    completed(client, url)
    assert_label(client.post(path_of(duration), data={"EXECUTIONDURATION": "30"}), 403, "UsageError")
    assert text_atomic(client, duration) == "60"
    aborted = create(client)
    client.post(path_of(aborted) + "/phase", data={"PHASE": "ABORT"})
    assert_label(client.post(path_of(aborted) + "/executionduration",
                               data={"EXECUTIONDURATION": "30"}), 403, "UsageError")


def test_destruction_changes_and_clamping(client):
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    url = create(client, {"DESTRUCTION": fmt_z(soon)})
    destruction = url + "/destruction"
    assert parse_z(text_atomic(client, destruction)) == soon
    created = parse_z(uws_text(job_doc(client, url), "uws:creationTime"))

    later = soon + dt.timedelta(days=1)
    as_offset = later.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    r = client.post(path_of(destruction), data={"DESTRUCTION": as_offset})
    assert (r.status_code, r.headers["location"]) == (303, url)
    assert parse_z(text_atomic(client, destruction)) == later
    assert parse_z(uws_text(job_doc(client, url), "uws:destruction")) == later

    # The server overrides a time beyond its limit (§2.1.5): at most creation + 30 days.
    client.post(path_of(destruction), data={"DESTRUCTION": "2100-01-01T00:00:00Z"})
    clamped = parse_z(text_atomic(client, destruction))
    assert abs(clamped - (created + MAX_DESTRUCTION)) < dt.timedelta(seconds=1)
    far = create(client, {"DESTRUCTION": "2100-01-01T00:00:00Z"})
    far_doc = job_doc(client, far)
    far_created = parse_z(uws_text(far_doc, "uws:creationTime"))
    assert abs(parse_z(uws_text(far_doc, "uws:destruction")) - (far_created + MAX_DESTRUCTION)) \
        < dt.timedelta(seconds=1)


# --- errors ---------------------------------------------------------------------------------

def _error_votable(client, url: str) -> str:
    r = client.get(path_of(url) + "/error")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    vot = assert_votable(r.content)
    [resource] = vot.findall("v:RESOURCE", VOT)
    assert resource.get("type") == "results"
    [info] = resource.findall("v:INFO[@name='QUERY_STATUS']", VOT)
    assert info.get("value") == "ERROR"
    return info.text or ""


@pytest.mark.parametrize("fail, error_type, label", [
    ("usage", "fatal", "UsageError:"),
    ("fatal", "fatal", "Error:"),
    ("crash", "fatal", "Error:"),
    ("transient", "transient", "ServiceUnavailable:"),
])
def test_failed_jobs_are_in_error_with_a_summary_and_an_error_document(client, fail, error_type, label):
    url = create(client, {"FAIL": fail, "PHASE": "RUN"})
    doc = wait_phase(client, url, FINAL, timeout=20)
    assert phase_of(doc) == "ERROR"
    parse_z(uws_text(doc, "uws:endTime"))
    summary = doc.find("uws:errorSummary", UWS)
    assert summary is not None
    assert summary.get("type") == error_type
    assert summary.get("hasDetail") == "true"
    message = summary.find("uws:message", UWS).text
    assert message.startswith(label), message
    assert "Traceback" not in message
    if fail == "crash":
        assert "incident" in message
    assert text_atomic(client, url + "/phase") == "ERROR"
    assert _error_votable(client, url) == message
    # A failed job is still served, and its (empty) results list validates.
    assert_uws(client.get(path_of(url) + "/results").content)
    assert_label(client.post(path_of(url) + "/phase", data={"PHASE": "RUN"}), 403, "UsageError")


def test_transient_failure_is_retried_and_completes(client):
    url = create(client, {"FAIL": "transient", "FAIL_TIMES": "1", "PHASE": "RUN"})
    doc = wait_phase(client, url, FINAL, timeout=20)
    assert phase_of(doc) == "COMPLETED"
    assert doc.find("uws:errorSummary", UWS) is None
    assert [r.get("id") for r in doc.findall("uws:results/uws:result", UWS)] == ["result-1.txt"]
    assert_label(client.get(path_of(url) + "/error"), 404, "UsageError")


def test_error_is_404_unless_the_job_failed(client):
    pending = create(client)
    finished = create(client, {"PHASE": "RUN"})
    completed(client, finished)
    for url in (pending, finished):
        assert_label(client.get(path_of(url) + "/error"), 404, "UsageError")
    aborted_by_limit = create(client, {"DURATION": "30", "EXECUTIONDURATION": "1", "PHASE": "RUN"})
    wait_phase(client, aborted_by_limit, FINAL, timeout=8)
    # Aborted by the server with a reason: the reason is served like an error.
    assert "executionDuration" in _error_votable(client, aborted_by_limit)


def test_unknown_jobs_children_and_results_are_404(client):
    url = create(client, {"PHASE": "RUN"})
    completed(client, url)
    for child in ("", "/phase", "/executionduration", "/destruction", "/quote", "/error",
                  "/results", "/results/result-1.txt", "/parameters", "/owner"):
        assert_label(client.get("/selftest/no-such-job" + child), 404, "UsageError")
    assert_label(client.get(path_of(url) + "/results/no-such-result"), 404, "UsageError")
    assert_label(client.get(path_of(url) + "/no-such-child"), 404, "UsageError")
    assert_label(client.post("/selftest/no-such-job/phase", data={"PHASE": "RUN"}), 404, "UsageError")
    assert_label(client.delete("/selftest/no-such-job"), 404, "UsageError")


# --- WAIT (§2.2.1.2) --------------------------------------------------------------------------

def _timed_get(client, url: str, params) -> tuple[float, object]:
    started = time.monotonic()
    doc = job_doc(client, url, params=params)
    return time.monotonic() - started, doc


def test_wait_returns_at_once_in_a_final_phase_or_another_phase(client):
    done = create(client, {"PHASE": "RUN"})
    completed(client, done)
    elapsed, doc = _timed_get(client, done, {"WAIT": "30"})
    assert elapsed < 1 and phase_of(doc) == "COMPLETED"
    elapsed, doc = _timed_get(client, done, {"WAIT": "-1"})
    assert elapsed < 1 and phase_of(doc) == "COMPLETED"

    pending = create(client)
    elapsed, doc = _timed_get(client, pending, {"WAIT": "30", "PHASE": "EXECUTING"})
    assert elapsed < 1 and phase_of(doc) == "PENDING"
    elapsed, doc = _timed_get(client, pending, {"WAIT": "0"})
    assert elapsed < 1 and phase_of(doc) == "PENDING"


def test_wait_returns_when_the_phase_changes(client):
    url = create(client, {"DURATION": "1", "PHASE": "RUN"})
    wait_phase(client, url, "EXECUTING")
    elapsed, doc = _timed_get(client, url, {"WAIT": "30", "PHASE": "EXECUTING"})
    assert phase_of(doc) == "COMPLETED"
    assert elapsed < WAIT_MAX - 1.5, elapsed  # woken by the change, not by the cap


def test_wait_on_a_pending_job_is_woken_by_run(client):
    url = create(client, {"DURATION": "0"})

    def run_soon() -> None:
        time.sleep(0.5)
        client.post(path_of(url) + "/phase", data={"PHASE": "RUN"})

    runner = threading.Thread(target=run_soon)
    runner.start()
    try:
        elapsed, doc = _timed_get(client, url, {"WAIT": "30", "PHASE": "PENDING"})
    finally:
        runner.join()
    assert phase_of(doc) in ("QUEUED", "EXECUTING", "COMPLETED")
    assert 0.4 <= elapsed < 3, elapsed


def test_wait_returns_after_the_given_seconds_at_the_latest(client):
    url = create(client)
    elapsed, doc = _timed_get(client, url, {"WAIT": "1"})
    assert phase_of(doc) == "PENDING"
    assert 0.9 <= elapsed < 3, elapsed


def test_wait_minus_one_is_capped_by_wait_max(client):
    url = create(client)
    elapsed, doc = _timed_get(client, url, {"WAIT": "-1"})
    assert phase_of(doc) == "PENDING"
    assert WAIT_MAX - 0.5 <= elapsed < WAIT_MAX + 3, elapsed


# --- load ------------------------------------------------------------------------------------

def test_concurrent_jobs_writing_results_all_complete(client):
    """Jobs running side by side (the embedded shape runs several worker threads on one
    SQLite database) must not fail each other: every one of them COMPLETES."""
    urls = [create(client, {"RESULTS": "5", "SIZE": "10", "PHASE": "RUN"}) for _ in range(32)]
    outcomes = {}
    for url in urls:
        doc = wait_phase(client, url, FINAL, timeout=30)
        summary = doc.find("uws:errorSummary/uws:message", UWS)
        outcomes[job_id(url)] = (phase_of(doc), None if summary is None else summary.text)
    failed = {jid: outcome for jid, outcome in outcomes.items() if outcome[0] != "COMPLETED"}
    assert not failed, f"{len(failed)} of {len(urls)} jobs did not complete: {failed}"
    for url in urls[:3]:
        assert len(job_doc(client, url).findall("uws:results/uws:result", UWS)) == 5
