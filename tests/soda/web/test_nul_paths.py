"""A path naming a job, result or token with a character XML cannot carry (NUL above all)
names nothing: a labelled 404. On PostgreSQL such a lookup raised in the driver ("a string
literal cannot contain NUL") and answered 500; the in-process fuzzer runs on SQLite, which
compares the string and finds nothing, so only this test on PostgreSQL saw it."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import app_client, header_identity

pytestmark = pytest.mark.postgres

PATHS = ["/async/x%00", "/async/x%00/phase", "/async/x%00/results", "/async/x%00/results/r0",
         "/async/x%00/parameters", "/async/x%01/quote", "/selftest/%00/executionduration"]


@pytest.fixture
def client(tmp_path, demo_root, postgres_url):
    with app_client(tmp_path / "data", demo_root, identify=header_identity,
                    CUTOUT_DATABASE_URL=postgres_url, CUTOUT_ANONYMOUS_ASYNC="open") as c:
        yield c


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("user", [None, "alice"])
def test_a_job_path_with_a_nul_names_no_job(client, path, user):
    headers = {"X-Test-User": user} if user else {}
    statuses = []
    for method in ("GET", "POST", "DELETE"):
        r = client.request(method, path, headers=headers)
        assert r.status_code in (404, 405), (method, path, r.status_code, r.text)
        if r.status_code == 404:
            assert r.text.startswith("UsageError: "), r.text
        statuses.append(r.status_code)
    assert 404 in statuses, (path, statuses)  # every path has a method it answers


def test_a_result_id_with_a_nul_names_no_result(client):
    r = client.post("/selftest", data={"DURATION": "0"}, headers={"X-Test-User": "alice"})
    assert r.status_code == 303, r.text
    job = r.headers["location"].removeprefix("http://testserver")
    r = client.get(f"{job}/results/r%00", headers={"X-Test-User": "alice"})
    assert r.status_code == 404 and r.text.startswith("UsageError: "), r.text


def test_a_token_path_with_a_nul_names_no_token(client):
    _, secret = client.app_state.access.tokens.create(
        "alice", "test", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    for method in ("DELETE", "POST"):
        r = client.request(method, "/tokens/x%00", headers={"Authorization": f"Bearer {secret}"},
                           data={"ACTION": "DELETE"} if method == "POST" else None)
        assert r.status_code == 404 and r.text.startswith("UsageError: "), (method, r.status_code, r.text)
