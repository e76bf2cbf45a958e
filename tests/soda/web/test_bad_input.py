"""Bad input, table-driven: every case must give the expected 4xx status and a DALI/SODA
error document (text/plain starting with the label, or a valid VOTable when asked for),
never a 500 and never a traceback.

One app serves the whole module (the cases are single requests; starting the embedded
app per case would cost most of the time budget). Placeholders in the paths: {job} is a
PENDING job, {done} a COMPLETED one, both the caller's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    FAST_TIMINGS,
    UWS,
    assert_uws,
    assert_votable,
    eventually,
    header_identity,
    link_demo,
    uws_text,
)

VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
USAGE = "UsageError"
MULTI = "MultiValuedParamNotSupported"
JSON = {"content": b'{"DURATION": 1}', "headers": {"Content-Type": "application/json"}}


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    label: str | tuple[str, ...] = USAGE
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.label,) if isinstance(self.label, str) else self.label


def get(id: str, path: str, params: Any = None, status: int = 400, label: Any = USAGE) -> Case:
    return Case(id, "GET", path, status, label, {"params": params} if params is not None else {})


def post(id: str, path: str, data: Any = None, status: int = 400, label: Any = USAGE, **kwargs: Any) -> Case:
    if data is not None:
        kwargs["data"] = data
    return Case(id, "POST", path, status, label, kwargs)


JOB_CHILDREN = ("", "/phase", "/executionduration", "/destruction", "/quote", "/error",
                "/results", "/results/result-1.txt", "/parameters", "/owner")

CASES = [
    # The job list filters (§2.2.2.1).
    get("list-phase-unknown", "/selftest", {"PHASE": "FINISHED"}),
    get("list-phase-lower-case", "/selftest", {"PHASE": "pending"}),
    get("list-phase-run-is-not-a-phase", "/selftest", {"PHASE": "RUN"}),
    get("list-last-zero", "/selftest", {"LAST": "0"}),
    get("list-last-negative", "/selftest", {"LAST": "-3"}),
    get("list-last-text", "/selftest", {"LAST": "x"}),
    get("list-last-decimal", "/selftest", {"LAST": "1.5"}),
    get("list-last-repeated", "/selftest", [("LAST", "1"), ("LAST", "2")], label=MULTI),
    get("list-after-words", "/selftest", {"AFTER": "yesterday"}),
    get("list-after-impossible-date", "/selftest", {"AFTER": "2026-02-30T00:00:00Z"}),
    get("list-after-bad-zone", "/selftest", {"AFTER": "2026-01-01T00:00:00+25:00"}),
    get("list-after-out-of-range", "/selftest", {"AFTER": "0001-01-01T00:00:00+01:00"}),
    get("list-after-repeated", "/selftest", [("AFTER", "2026-01-01"), ("AFTER", "2026-01-02")], label=MULTI),
    get("list-control-character", "/selftest", {"PHASE": "PENDING\x00"}),
    # Creation (§2.2.3.1; DALI §3).
    post("create-phase-abort", "/selftest", {"PHASE": "ABORT"}),
    post("create-phase-lower-case-run", "/selftest", {"PHASE": "run"}),
    post("create-phase-repeated", "/selftest", {"PHASE": ["RUN", "RUN"]}, label=MULTI),
    post("create-runid-too-long", "/selftest", {"RUNID": "r" * 65}),
    post("create-runid-repeated", "/selftest", {"RUNID": ["a", "b"]}, label=MULTI),
    post("create-runid-control-character", "/selftest", {"RUNID": "a\x1bb"}),
    post("create-executionduration-negative", "/selftest", {"EXECUTIONDURATION": "-5"}),
    post("create-executionduration-text", "/selftest", {"EXECUTIONDURATION": "ten"}),
    post("create-executionduration-decimal", "/selftest", {"EXECUTIONDURATION": "1.5"}),
    post("create-destruction-words", "/selftest", {"DESTRUCTION": "next week"}),
    post("create-destruction-out-of-range", "/selftest", {"DESTRUCTION": "9999-12-31T23:59:59-01:00"}),
    post("create-json-body", "/selftest", **JSON),
    post("create-text-body", "/selftest", content=b"DURATION=1", headers={"Content-Type": "text/plain"}),
    post("create-file-upload", "/selftest", files={"DURATION": ("d.txt", b"1", "text/plain")}),
    post("create-multipart-without-boundary", "/selftest", content=b"x",
         headers={"Content-Type": "multipart/form-data"}),
    post("create-control-character-in-value", "/selftest", {"DURATION": "1\x01"}),
    post("create-control-character-in-name", "/selftest", {"DUR\x07ATION": "1"}),
    # The selftest kind's own parameters.
    post("selftest-unknown-parameter", "/selftest", {"BOGUS": "1"}),
    post("selftest-duration-text", "/selftest", {"DURATION": "long"}),
    post("selftest-duration-too-long", "/selftest", {"DURATION": "3601"}),
    post("selftest-duration-negative", "/selftest", {"DURATION": "-1"}),
    post("selftest-duration-nan", "/selftest", {"DURATION": "nan"}),
    post("selftest-results-too-many", "/selftest", {"RESULTS": "101"}),
    post("selftest-results-decimal", "/selftest", {"RESULTS": "1.5"}),
    post("selftest-size-too-big", "/selftest", {"SIZE": str(2 << 20)}),
    post("selftest-fail-unknown", "/selftest", {"FAIL": "explode"}),
    post("selftest-fail-upper-case", "/selftest", {"FAIL": "USAGE"}),  # values are case-sensitive
    post("selftest-fail-times-zero", "/selftest", {"FAIL": "usage", "FAIL_TIMES": "0"}),
    post("selftest-duration-repeated", "/selftest", {"DURATION": ["1", "2"]}, label=(MULTI, USAGE)),
    # The job URL itself takes only ACTION=DELETE (DALI §2.1).
    post("job-post-with-parameters", "/selftest/{job}", {"DURATION": "1"}),
    post("job-post-unknown-action", "/selftest/{job}", {"ACTION": "ARCHIVE"}),
    post("job-post-lower-case-delete", "/selftest/{job}", {"ACTION": "delete"}),
    post("job-post-json", "/selftest/{job}", **JSON),
    # /phase.
    post("phase-unknown", "/selftest/{job}/phase", {"PHASE": "START"}),
    post("phase-lower-case-run", "/selftest/{job}/phase", {"PHASE": "run"}),
    post("phase-missing", "/selftest/{job}/phase", {}),
    post("phase-repeated", "/selftest/{job}/phase", {"PHASE": ["RUN", "ABORT"]}, label=MULTI),
    post("phase-json", "/selftest/{job}/phase", content=b'{"PHASE": "RUN"}',
         headers={"Content-Type": "application/json"}),
    post("phase-run-completed-job", "/selftest/{done}/phase", {"PHASE": "RUN"}, status=403),
    post("phase-abort-completed-job", "/selftest/{done}/phase", {"PHASE": "ABORT"}, status=403),
    # WAIT (§2.2.1.2).
    get("wait-text", "/selftest/{job}", {"WAIT": "soon"}),
    get("wait-below-minus-one", "/selftest/{job}", {"WAIT": "-2"}),
    get("wait-decimal", "/selftest/{job}", {"WAIT": "1.5"}),
    get("wait-unknown-phase", "/selftest/{job}", {"WAIT": "1", "PHASE": "RUNNING"}),
    get("wait-repeated", "/selftest/{job}", [("WAIT", "1"), ("WAIT", "2")], label=MULTI),
    # /executionduration.
    post("executionduration-negative", "/selftest/{job}/executionduration", {"EXECUTIONDURATION": "-1"}),
    post("executionduration-text", "/selftest/{job}/executionduration", {"EXECUTIONDURATION": "1h"}),
    post("executionduration-missing", "/selftest/{job}/executionduration", {}),
    post("executionduration-repeated", "/selftest/{job}/executionduration",
         {"EXECUTIONDURATION": ["1", "2"]}, label=MULTI),
    post("executionduration-completed-job", "/selftest/{done}/executionduration",
         {"EXECUTIONDURATION": "10"}, status=403),
    # /destruction.
    post("destruction-day-first", "/selftest/{job}/destruction", {"DESTRUCTION": "31/12/2030"}),
    post("destruction-month-13", "/selftest/{job}/destruction", {"DESTRUCTION": "2030-13-01T00:00:00Z"}),
    post("destruction-missing", "/selftest/{job}/destruction", {}),
    post("destruction-out-of-range", "/selftest/{job}/destruction", {"DESTRUCTION": "0001-01-01T00:00:00+01:00"}),
    # /parameters.
    post("parameters-unknown-name", "/selftest/{job}/parameters", {"FOO": "1"}),
    post("parameters-bad-value", "/selftest/{job}/parameters", {"RESULTS": "-1"}),
    post("parameters-json", "/selftest/{job}/parameters", **JSON),
    post("parameters-completed-job", "/selftest/{done}/parameters", {"RESULTS": "2"}, status=403),
    # Unknown jobs, children and results (§2.2, DALI §4.2).
    *[get(f"unknown-job{child.replace('/', '-') or '-itself'}", f"/selftest/no-such-job{child}", status=404)
      for child in JOB_CHILDREN],
    post("unknown-job-phase-post", "/selftest/no-such-job/phase", {"PHASE": "RUN"}, status=404),
    post("unknown-job-action-delete", "/selftest/no-such-job", {"ACTION": "DELETE"}, status=404),
    Case("unknown-job-delete", "DELETE", "/selftest/no-such-job", 404),
    get("unknown-result", "/selftest/{done}/results/no-such-result", status=404),
    get("unknown-result-traversal", "/selftest/{done}/results/..%2F..%2Fcutout.sqlite", status=404),
    get("unknown-child", "/selftest/{job}/no-such-child", status=404),
    get("unknown-resource", "/no-such-resource", status=404),
    get("error-of-a-completed-job", "/selftest/{done}/error", status=404),
    # Wrong methods.
    Case("put-job-list", "PUT", "/selftest", 405),
    Case("delete-job-list", "DELETE", "/selftest", 405),
    Case("put-phase", "PUT", "/selftest/{job}/phase", 405, kwargs={"content": b"RUN"}),
    Case("patch-job", "PATCH", "/selftest/{job}", 405),
    Case("delete-results", "DELETE", "/selftest/{done}/results", 405),
    Case("delete-result", "DELETE", "/selftest/{done}/results/result-1.txt", 405),
    post("post-quote", "/selftest/{job}/quote", {"QUOTE": "2030-01-01T00:00:00Z"}, status=405),
    post("post-owner", "/selftest/{job}/owner", {"OWNER": "mallory"}, status=405),
    post("post-error", "/selftest/{done}/error", {}, status=405),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Any]:
    """The embedded app as the ``embedded`` fixture builds it, once for the module; server
    exceptions come back as responses so that a 500 is reported as such."""
    from starlette.testclient import TestClient

    from conf import load_settings
    from soda.web.app import create_app

    data = link_demo(tmp_path_factory.mktemp("bad-input") / "data", demo_root)
    env = {**FAST_TIMINGS, "CUTOUT_DATA_DIR": str(data), "CUTOUT_WAIT_MAX_SECONDS": "5"}
    app = create_app(load_settings(environ=env), identify=header_identity, build_demo=False)
    with TestClient(app, base_url="http://testserver", follow_redirects=False,
                    raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def jobs(client: Any) -> dict[str, str]:
    pending = client.post("/selftest", data={"DURATION": "0"}).headers["location"].rsplit("/", 1)[1]
    done = client.post("/selftest", data={"PHASE": "RUN"}).headers["location"].rsplit("/", 1)[1]
    eventually(lambda: client.get(f"/selftest/{done}/phase").text == "COMPLETED")
    return {"job": pending, "done": done}


def send(client: Any, jobs: dict[str, str], case: Case, headers: dict[str, str] | None = None) -> Any:
    kwargs = dict(case.kwargs)
    if headers:
        kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
    return client.request(case.method, case.path.format(**jobs), **kwargs)


def assert_no_traceback(text: str) -> None:
    for sign in ("Traceback", 'File "', "Exception:", "internal failure"):
        assert sign not in text, f"the error document leaks {sign!r}:\n{text}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_text_error_document(client, jobs, case):
    r = send(client, jobs, case)
    assert r.status_code != 500, f"server failure on {case.id}: {r.text}"
    assert r.status_code == case.status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain"), r.headers["content-type"]
    assert r.text.startswith(tuple(label + ":" for label in case.labels)), r.text
    assert len(r.text.strip()) > len(r.text.split(":", 1)[0]) + 5, "the message should explain"
    assert_no_traceback(r.text)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_votable_error_document_when_asked(client, jobs, case):
    """DALI §4.2/§4.4.2: the same error as a VOTable for a client that accepts one."""
    r = send(client, jobs, case, {"Accept": "application/x-votable+xml"})
    assert r.status_code != 500, f"server failure on {case.id}: {r.text}"
    assert r.status_code == case.status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/x-votable+xml")
    vot = assert_votable(r.content)
    [resource] = vot.findall("v:RESOURCE[@type='results']", VOT)
    [info] = resource.findall("v:INFO[@name='QUERY_STATUS']", VOT)
    assert info.get("value") == "ERROR"
    assert (info.text or "").startswith(tuple(label + ":" for label in case.labels)), info.text
    assert_no_traceback(info.text or "")


def test_responseformat_votable_also_selects_a_votable_error(client, jobs):
    r = client.get("/selftest", params={"LAST": "0", "RESPONSEFORMAT": "votable"})
    assert r.status_code == 400
    vot = assert_votable(r.content)
    info = vot.find("v:RESOURCE/v:INFO[@name='QUERY_STATUS']", VOT)
    assert info.get("value") == "ERROR" and info.text.startswith("UsageError:")


def test_a_huge_last_is_answered_not_crashed_on(client, jobs):
    """LAST beyond any database integer: list everything or refuse it, but never a 500."""
    r = client.get("/selftest", params={"LAST": "9" * 30})
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 200:
        assert {ref.get("id") for ref in assert_uws(r.content).findall("uws:jobref", UWS)} >= set(jobs.values())
    else:
        assert r.text.startswith("UsageError:")


def test_405_names_the_allowed_methods(client, jobs):
    """RFC 9110 §15.5.6: a 405 carries Allow listing the methods the resource supports."""
    r = client.put("/selftest")
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers.get("allow", "").split(",")}
    assert {"GET", "POST"} <= allowed, r.headers.get("allow")
    r = client.put(f"/selftest/{jobs['job']}")
    assert {"GET", "POST", "DELETE"} <= {m.strip() for m in r.headers.get("allow", "").split(",")}, \
        r.headers.get("allow")


def test_bad_requests_leave_the_job_unchanged(client, jobs):
    """None of the refused requests above changed the PENDING job."""
    for case in CASES:
        if "{job}" in case.path:
            send(client, jobs, case)
    doc = assert_uws(client.get(f"/selftest/{jobs['job']}").content)
    assert uws_text(doc, "uws:phase") == "PENDING"
    assert [(p.get("id"), p.text) for p in doc.findall("uws:parameters/uws:parameter", UWS)] == [("DURATION", "0")]
    assert uws_text(doc, "uws:executionDuration") == "600"
    assert uws_text(doc, "uws:ownerId") is None
